#include "sampler.hpp"

#include <algorithm>
#include <cmath>

#include "kiln/autograd.hpp"
#include "kiln/error.hpp"
#include "kiln/ops.hpp"
#include "kiln/random.hpp"

namespace diffusion {

using kiln::Tensor;
namespace ops = kiln::ops;

Prediction parse_prediction(const std::string& s) {
  if (s == "eps") return Prediction::eps;
  if (s == "v") return Prediction::v;
  throw kiln::Error("diffusion: unknown prediction '" + s + "' (use \"eps\" or \"v\")");
}

Tensor scale_rows(const Tensor& x, const std::vector<float>& c) {
  kiln::Shape shape(static_cast<std::size_t>(x.dim()), 1);
  shape[0] = static_cast<std::int64_t>(c.size());
  return ops::mul(x, Tensor::from_vector(c, shape));
}

Denoised denoise(const UNet& net, const Schedule& schedule, const SamplerOptions& o,
                 const Tensor& x, std::int64_t t, const Tensor& labels) {
  const std::int64_t n = x.size(0);
  const std::vector<float> ts(static_cast<std::size_t>(n), static_cast<float>(t));
  Tensor out;
  const bool guided = labels.defined() && o.guidance != 1.0;
  if (guided) {
    std::vector<std::int64_t> lab = labels.to_int_vector();
    for (std::int64_t r = 0; r < n; ++r) lab.push_back(net.config().num_classes);
    std::vector<float> ts2 = ts;
    ts2.insert(ts2.end(), ts.begin(), ts.end());
    const Tensor both = net.forward(ops::concat({x, x}, 0), ts2, Tensor::from_ints(lab, {2 * n}));
    const Tensor cond = both.slice(0, 0, n), uncond = both.slice(0, n, 2 * n);
    out = ops::add(uncond, ops::mul_scalar(ops::sub(cond, uncond), static_cast<float>(o.guidance)));
  } else {
    out = net.forward(x, ts, labels);
  }
  const double ab = schedule.alpha_bar(t);
  const auto sa = static_cast<float>(std::sqrt(ab)), s1 = static_cast<float>(std::sqrt(1 - ab));
  Denoised d;
  if (o.prediction == Prediction::eps) {
    d.eps = out;
    d.x0 = ops::mul_scalar(ops::sub(x, ops::mul_scalar(out, s1)), 1.f / sa);
  } else {
    d.x0 = ops::sub(ops::mul_scalar(x, sa), ops::mul_scalar(out, s1));
    d.eps = ops::add(ops::mul_scalar(x, s1), ops::mul_scalar(out, sa));
  }
  if (o.clip) {
    d.x0 = ops::clamp(d.x0, -1.f, 1.f);
    d.eps = ops::mul_scalar(ops::sub(x, ops::mul_scalar(d.x0, sa)), 1.f / s1);
  }
  return d;
}

Tensor sample(const UNet& net, const Schedule& schedule, const SamplerOptions& o,
              const std::vector<std::int64_t>& indices, std::uint64_t seed, const Tensor& labels,
              const Tensor& init, std::vector<Tensor>* frames) {
  kiln::NoGradGuard no_grad;
  KILN_CHECK(o.method == "ddim" || o.method == "ddpm", "diffusion: unknown sampler '", o.method,
             "' (use \"ddim\" or \"ddpm\")");
  KILN_CHECK(o.strength >= 0 && o.strength <= 1, "diffusion: 'strength' must be in [0, 1], got ",
             o.strength);
  KILN_CHECK(o.eta >= 0, "diffusion: 'eta' must be >= 0, got ", o.eta);
  const UNetConfig& cfg = net.config();
  const auto n = static_cast<std::int64_t>(indices.size());
  const kiln::Shape one = {cfg.in_channels, cfg.image_size, cfg.image_size};
  const std::int64_t per = kiln::shape_numel(one);
  const std::vector<std::int64_t> taus = sampling_timesteps(schedule.timesteps(), o.steps);
  const auto total = static_cast<std::int64_t>(taus.size());

  // Image-to-image runs the last round(strength * steps) steps.
  std::int64_t first = 0;
  Tensor noise = kiln::randn_for_samples(indices, one, seed, 0);
  Tensor x;
  if (init.defined()) {
    KILN_CHECK(init.shape() == (kiln::Shape{n, cfg.in_channels, cfg.image_size, cfg.image_size}),
               "diffusion: the start images have shape ", kiln::shape_str(init.shape()));
    const auto run =
        static_cast<std::int64_t>(std::llround(o.strength * static_cast<double>(total)));
    first = total - run;
    if (run == 0) {
      x = init.clone();
    } else {
      const double ab = schedule.alpha_bar(taus[static_cast<std::size_t>(first)]);
      x = ops::add(ops::mul_scalar(init, static_cast<float>(std::sqrt(ab))),
                   ops::mul_scalar(noise, static_cast<float>(std::sqrt(1 - ab))));
    }
  } else {
    x = noise;
  }
  std::vector<kiln::Philox> rngs;
  for (std::int64_t i : indices) rngs.emplace_back(seed, static_cast<std::uint64_t>(i), 1);

  const std::int64_t nsteps = total - first;
  const std::int64_t F = o.frames;
  if (frames && F >= 2) frames->push_back(x.clone());
  for (std::int64_t k = first; k < total; ++k) {
    const std::int64_t t = taus[static_cast<std::size_t>(k)];
    const std::int64_t t_prev = k + 1 < total ? taus[static_cast<std::size_t>(k + 1)] : -1;
    const double ab = schedule.alpha_bar(t),
                 ab_prev = t_prev >= 0 ? schedule.alpha_bar(t_prev) : 1.0;
    const Denoised d = denoise(net, schedule, o, x, t, labels);
    double sigma = 0;
    Tensor mean;
    if (o.method == "ddim") {
      sigma = o.eta * std::sqrt((1 - ab_prev) / (1 - ab)) * std::sqrt(1 - ab / ab_prev);
      const double dir = std::sqrt(std::max(0.0, 1 - ab_prev - sigma * sigma));
      mean = ops::add(ops::mul_scalar(d.x0, static_cast<float>(std::sqrt(ab_prev))),
                      ops::mul_scalar(d.eps, static_cast<float>(dir)));
    } else {
      const double beta = 1 - ab / ab_prev;  // the step's beta on the respaced schedule
      const double c0 = std::sqrt(ab_prev) * beta / (1 - ab);
      const double ct = std::sqrt(1 - beta) * (1 - ab_prev) / (1 - ab);
      mean = ops::add(ops::mul_scalar(d.x0, static_cast<float>(c0)),
                      ops::mul_scalar(x, static_cast<float>(ct)));
      sigma = t_prev >= 0 ? std::sqrt(beta * (1 - ab_prev) / (1 - ab)) : 0.0;
    }
    if (sigma > 0) {
      Tensor z = Tensor::empty({n, cfg.in_channels, cfg.image_size, cfg.image_size});
      for (std::int64_t r = 0; r < n; ++r) {
        rngs[static_cast<std::size_t>(r)].fill_normal(z.data<float>() + r * per, per);
      }
      x = ops::add(mean, ops::mul_scalar(z, static_cast<float>(sigma)));
    } else {
      x = mean;
    }
    const std::int64_t done = k - first + 1;
    if (frames && F >= 2 && (done * (F - 1)) / nsteps > ((done - 1) * (F - 1)) / nsteps) {
      frames->push_back(x.clone());
    }
  }
  if (frames && F >= 2) {
    while (static_cast<std::int64_t>(frames->size()) < F) frames->push_back(x.clone());
  }
  return x;
}

}  // namespace diffusion
