// Task `dream`: Deep Dream (Mordvintsev et al. 2015). Gradient ascent on the mean squared
// activation (or its spatial variance per channel) of chosen layers, over octaves (small to large,
// the detail carried up), with random jitter (a circular shift from the seed before each step).
#include <algorithm>
#include <cmath>
#include <cstdio>

#include "common.hpp"
#include "imaging.hpp"
#include "kiln/autograd.hpp"
#include "kiln/error.hpp"
#include "kiln/ops.hpp"
#include "kiln/random.hpp"

namespace kiln::style {
namespace {

class DreamTask final : public RunTask {
 public:
  DreamTask(const Params& p, TaskContext& ctx) : p_(p), ctx_(ctx) {
    net_ = make_net(p);
    layers_ = p.strings("layers");
    if (layers_.empty()) layers_ = net_->default_dream_layers();
    net_->check_layers(layers_, "layers");
  }

  std::vector<Artifact> run() override {
    Tensor base;
    if (p_.has("input")) {
      const Image img = load_rgb(p_.string("input"), "input", kMaxDecodePixels);
      const auto [w, h] = fit_long_side(img.width, img.height, p_.integer("size"));
      base = image_batch(img, w, h);
    } else {
      const int s = p_.integer("size") > 0 ? static_cast<int>(p_.integer("size")) : 256;
      base = Tensor::empty({1, 3, s, s});
      Philox rng(ctx_.seed(), 0, 0);
      rng.fill_uniform(base.data<float>(), base.numel(), 0.4f, 0.6f);
    }
    const int W = static_cast<int>(base.size(3)), H = static_cast<int>(base.size(2));
    check_memory("style_transfer/dream", W, H, 4.0 * (net_->floats_per_pixel() * 3 + 12) * W * H,
                 p_.integer("memory_limit_mb"),
                 "feature maps of the '" + net_->name() + "' net and their gradients");
    const int octaves = static_cast<int>(p_.integer("octaves"));
    const double scale = p_.number("octave_scale");
    const std::int64_t steps = p_.integer("steps");
    const float lr = static_cast<float>(p_.number("lr"));
    const int jitter = static_cast<int>(p_.integer("jitter"));
    const bool variance = p_.string("objective") == "variance";
    Philox jit(ctx_.seed(), 0, 1);
    Table table{{"octave", "width", "height", "step", "objective"}, {}};
    Tensor img, detail;
    double first = 0, last = 0;
    std::int64_t done = 0;
    for (int o = octaves - 1; o >= 0; --o) {
      const double f = std::pow(scale, -o);
      const int w = std::max(8, static_cast<int>(std::lround(W * f)));
      const int h = std::max(8, static_cast<int>(std::lround(H * f)));
      const Tensor b = resize_bilinear(base, w, h);
      img = detail.defined() ? ops::add(b, resize_bilinear(detail, w, h)) : b.clone();
      img = img.contiguous();
      for (std::int64_t s = 0; s < steps && !ctx_.cancelled(); ++s) {
        const int dy = jitter > 0 ? static_cast<int>(jit.below(2 * jitter + 1)) - jitter : 0;
        const int dx = jitter > 0 ? static_cast<int>(jit.below(2 * jitter + 1)) - jitter : 0;
        Tensor x = roll(img, dy, dx).set_requires_grad(true);
        const FeatureMap fm = net_->forward(x, layers_);
        Tensor obj = Tensor::scalar(0.f);
        for (const auto& l : layers_) {
          Tensor a = fm.at(l);
          // "variance": activations around their spatial mean per channel, so flat colour
          // (which random filters answer too) earns nothing and patterns grow instead.
          if (variance) a = ops::sub(a, ops::mean(a, {2, 3}, true));
          obj = ops::add(obj, ops::mean(ops::square(a)));
        }
        obj = ops::mul_scalar(obj, 1.f / static_cast<float>(layers_.size()));
        const double value = obj.item();
        KILN_CHECK(std::isfinite(value), "style_transfer/dream: the objective became ", value,
                   "; lower lr");
        obj.backward();
        Tensor g = roll(x.grad(), -dy, -dx);
        float* gd = g.data<float>();
        double mean_abs = 0;
        for (std::int64_t i = 0; i < g.numel(); ++i) mean_abs += std::abs(gd[i]);
        mean_abs /= static_cast<double>(g.numel());
        const float k = lr / static_cast<float>(mean_abs + 1e-8);
        float* d = img.data<float>();
        for (std::int64_t i = 0; i < img.numel(); ++i)
          d[i] = std::clamp(d[i] + k * gd[i], 0.f, 1.f);
        img.bump_version();
        if (done == 0) first = value;
        last = value;
        table.rows.push_back({std::to_string(octaves - 1 - o), std::to_string(w), std::to_string(h),
                              std::to_string(s), fmt6g(value)});
        ctx_.progress(++done, steps * octaves, "step");
      }
      detail = ops::sub(img, b).contiguous();
    }
    std::vector<Artifact> arts;
    arts.push_back(Artifact::make_image(-1, batch_image(img), "dream"));
    arts.push_back(Artifact::make_table("objective", table));
    arts.push_back(Artifact::make_metrics({{"initial_objective", first},
                                           {"final_objective", last},
                                           {"steps", static_cast<double>(done)}}));
    return arts;
  }

 private:
  Params p_;
  TaskContext& ctx_;
  std::unique_ptr<FeatureNet> net_;
  std::vector<std::string> layers_;
};

}  // namespace

TaskSpec dream_spec() {
  TaskSpec t = TaskSpec::run("dream", "Deep Dream: amplify what a feature net's layers respond to");
  std::vector<ParamSpec> ps = {
      ParamSpec::path("input", "Start image (PNG/JPEG); without it, grey noise from the seed")
          .make_optional(),
      ParamSpec::integer("size", 0,
                         "Longer side of the output (0: the input's; 256 without an input)")
          .range(0, 65536),
      ParamSpec::strings("layers", {},
                         "Layers whose mean squared activation is maximised (empty: the net's "
                         "default, the deepest random layer / relu4_2)"),
      ParamSpec::choice("objective", "variance", {"variance", "energy"},
                        "What is maximised: the mean squared deviation of each channel from its "
                        "spatial mean (patterns), or the mean squared activation (classic)"),
      ParamSpec::integer("octaves", 4, "Octaves (scales), smallest first").range(1, 12),
      ParamSpec::number("octave_scale", 1.4, "Size ratio between octaves").range(1.01, 4),
      ParamSpec::integer("steps", 20, "Gradient-ascent steps per octave").range(1, 10000),
      ParamSpec::number("lr", 0.01,
                        "Step in pixel units, applied to the gradient divided by its mean "
                        "absolute value")
          .range(1e-6, 1),
      ParamSpec::integer("jitter", 8, "Largest random shift in pixels before each step")
          .range(0, 256),
      ParamSpec::integer("memory_limit_mb", 4096,
                         "Refuse outputs whose estimated working memory exceeds this")
          .range(16, 1 << 20),
  };
  append(ps, net_params());
  for (auto& p : ps) t.param(p);
  return t;
}

std::unique_ptr<Task> make_dream(const Params& p, TaskContext& ctx) {
  return std::make_unique<DreamTask>(p, ctx);
}

}  // namespace kiln::style
