// gan/generate and gan/interpolate.
#include <cmath>

#include "kiln/autograd.hpp"
#include "kiln/data.hpp"
#include "kiln/image.hpp"
#include "kiln/ops.hpp"
#include "kiln/random.hpp"
#include "tasks.hpp"

namespace kiln_gan {

using kiln::Artifact;
using kiln::Params;
using kiln::ParamSpec;
using kiln::Tensor;

namespace {

ParamSpec model_param() {
  return ParamSpec::path("model", "Generator exported by gan/train (\"@train\" or a file)");
}
ParamSpec truncation_param() {
  return ParamSpec::number("truncation", 0,
                           "Truncation psi: latent components outside [-psi, psi] are redrawn "
                           "(0: no truncation)")
      .range(0, 10);
}
ParamSpec labels_param(const std::string& what) {
  return ParamSpec::integers("labels", {}, what).range(0, 9);
}

}  // namespace

std::vector<ParamSpec> generate_params() {
  return {model_param(),
          labels_param("Class of each sample (conditional models): sample i gets "
                       "labels[i % len]; empty: i % 10"),
          truncation_param()};
}

std::vector<ParamSpec> interpolate_params() {
  return {model_param(),
          ParamSpec::integer("rows", 8, "Latent walks (grid rows)").range(1, 64),
          ParamSpec::integer("steps", 10, "Images per walk, endpoints included (grid columns)")
              .range(2, 64),
          ParamSpec::choice("path", "slerp", {"slerp", "lerp"},
                            "Spherical or straight interpolation between the endpoints"),
          labels_param("Class of each row (conditional models): row r gets labels[r % len]; "
                       "empty: r % 10"),
          truncation_param()};
}

void sample_latent(std::uint64_t seed, std::int64_t index, double truncation, float* out,
                   std::int64_t nz) {
  kiln::Philox rng(seed, static_cast<std::uint64_t>(index), 0);
  for (std::int64_t k = 0; k < nz; ++k) {
    float v = rng.normal();
    if (truncation > 0) {
      while (std::abs(v) > truncation) v = rng.normal();
    }
    out[k] = v;
  }
}

namespace {

std::int64_t label_for(const std::vector<std::int64_t>& labels, std::int64_t i) {
  return labels.empty() ? i % 10 : labels[static_cast<std::size_t>(i) % labels.size()];
}

class GenerateTask final : public kiln::GenerateTask {
 public:
  GenerateTask(const Params& p, kiln::TaskContext& ctx)
      : p_(p), g_(load_generator(p.string("model"))) {
    g_->set_compute_dtype(ctx.precision());
  }

  std::vector<Artifact> generate(const kiln::SampleRequest& req) override {
    const std::int64_t n = static_cast<std::int64_t>(req.indices.size()), nz = g_->sizes().nz;
    const bool conditional = g_->sizes().classes > 0;
    Tensor z = Tensor::empty({n, nz});
    std::vector<std::int64_t> labels;
    for (std::int64_t r = 0; r < n; ++r) {
      sample_latent(req.seed, req.indices[r], p_.number("truncation"), z.data<float>() + r * nz,
                    nz);
      labels.push_back(conditional ? label_for(p_.integers("labels"), req.indices[r]) : 0);
    }
    kiln::NoGradGuard ng;
    const Tensor x = g_->forward(z, Tensor::from_ints(labels, {n}));
    std::vector<kiln::Image> images = kiln::batch_to_images(x, -1.f, 1.f);
    std::vector<Artifact> out;
    for (std::int64_t r = 0; r < n; ++r) {
      Artifact a = Artifact::make_image(req.indices[r], std::move(images[r]));
      if (conditional) {
        a.info["label"] = std::to_string(labels[r]);
        a.info["class"] = kiln::data::fashion_mnist_classes()[labels[r]];
      }
      out.push_back(std::move(a));
    }
    return out;
  }

 private:
  Params p_;
  std::unique_ptr<Generator> g_;
};

class InterpolateTask final : public kiln::RunTask {
 public:
  InterpolateTask(const Params& p, kiln::TaskContext& ctx)
      : p_(p), ctx_(ctx), g_(load_generator(p.string("model"))) {
    g_->set_compute_dtype(ctx.precision());
  }

  std::vector<Artifact> run() override {
    const std::int64_t rows = p_.integer("rows"), steps = p_.integer("steps");
    const std::int64_t nz = g_->sizes().nz, n = rows * steps;
    const bool slerp = p_.string("path") == "slerp";
    Tensor z = Tensor::empty({n, nz});
    std::vector<std::int64_t> labels;
    std::vector<float> a(nz), b(nz);
    for (std::int64_t r = 0; r < rows; ++r) {
      // Row r walks from latent 2r to latent 2r + 1 of the stage's seed.
      sample_latent(ctx_.seed(), 2 * r, p_.number("truncation"), a.data(), nz);
      sample_latent(ctx_.seed(), 2 * r + 1, p_.number("truncation"), b.data(), nz);
      double dot = 0, na = 0, nb = 0;
      for (std::int64_t k = 0; k < nz; ++k) {
        dot += double(a[k]) * b[k];
        na += double(a[k]) * a[k];
        nb += double(b[k]) * b[k];
      }
      const double omega = std::acos(std::clamp(dot / std::sqrt(na * nb), -1.0, 1.0));
      for (std::int64_t s = 0; s < steps; ++s) {
        const double t = static_cast<double>(s) / static_cast<double>(steps - 1);
        double wa = 1 - t, wb = t;
        if (slerp && std::sin(omega) > 1e-6) {
          wa = std::sin((1 - t) * omega) / std::sin(omega);
          wb = std::sin(t * omega) / std::sin(omega);
        }
        float* out = z.data<float>() + (r * steps + s) * nz;
        for (std::int64_t k = 0; k < nz; ++k) out[k] = static_cast<float>(wa * a[k] + wb * b[k]);
        labels.push_back(g_->sizes().classes > 0 ? label_for(p_.integers("labels"), r) : 0);
      }
    }
    kiln::NoGradGuard ng;
    const Tensor x = g_->forward(z, Tensor::from_ints(labels, {n}));
    std::vector<Artifact> out;
    out.push_back(Artifact::make_image(
        -1, kiln::make_grid(kiln::batch_to_images(x, -1.f, 1.f), static_cast<int>(steps)),
        "interpolation"));
    return out;
  }

 private:
  Params p_;
  kiln::TaskContext& ctx_;
  std::unique_ptr<Generator> g_;
};

}  // namespace

std::unique_ptr<kiln::Task> make_generate_task(const Params& p, kiln::TaskContext& ctx) {
  return std::make_unique<GenerateTask>(p, ctx);
}
std::unique_ptr<kiln::Task> make_interpolate_task(const Params& p, kiln::TaskContext& ctx) {
  return std::make_unique<InterpolateTask>(p, ctx);
}

}  // namespace kiln_gan
