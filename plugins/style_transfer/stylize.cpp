// Task `stylize`: Gatys et al.'s optimisation of an image's pixels against content, style and
// total-variation losses, with Adam or L-BFGS, coarse to fine over `scales` sizes.
#include <chrono>
#include <cmath>
#include <cstdio>

#include "common.hpp"
#include "imaging.hpp"
#include "kiln/autograd.hpp"
#include "kiln/error.hpp"
#include "kiln/ops.hpp"
#include "kiln/optim.hpp"
#include "kiln/random.hpp"
#include "lbfgs.hpp"

namespace kiln::style {
namespace {

class StylizeTask final : public RunTask {
 public:
  StylizeTask(const Params& p, TaskContext& ctx) : p_(p), ctx_(ctx) {
    net_ = make_net(p);
    opts_ = loss_options(p, *net_);
    Losses check(*net_, opts_);  // validates layer names and weights before any work
    const std::string init = p.string("init");
    KILN_CHECK(init != "image" || p.has("init_image"),
               "style_transfer/stylize: init = \"image\" needs init_image = \"<file>\"");
  }

  std::vector<Artifact> run() override {
    const auto t0 = std::chrono::steady_clock::now();
    const Image content_img = load_rgb(p_.string("content"), "content", kMaxDecodePixels);
    const auto [W, H] = fit_long_side(content_img.width, content_img.height, p_.integer("size"));
    const bool lbfgs = p_.string("optimizer") == "lbfgs";
    const std::int64_t history = p_.integer("lbfgs_history");
    const double per_pixel =
        4.0 * (net_->floats_per_pixel() * 3.0 +
               3.0 * (8.0 + (lbfgs ? 2.0 * static_cast<double>(history) : 2.0)));
    const double style_side = static_cast<double>(std::max(W, H)) * p_.number("style_scale");
    check_memory("style_transfer/stylize", W, H,
                 per_pixel * W * H + 4.0 * net_->floats_per_pixel() * style_side * style_side,
                 p_.integer("memory_limit_mb"),
                 "feature maps of the '" + net_->name() + "' net, their gradients and the " +
                     (lbfgs ? "L-BFGS history" : "Adam state"));

    const int scales = static_cast<int>(p_.integer("scales"));
    const std::int64_t iterations = p_.integer("iterations");
    Table table{
        {"scale", "width", "height", "iteration", "evaluations", "total", "content", "style", "tv"},
        {}};
    Tensor x;  // the image being optimised, [1, 3, h, w]
    Tensor content_final;
    double first_content = 0, first_style = 0, last_total = 0, last_content = 0, last_style = 0,
           last_tv = 0, first_total = 0;
    std::int64_t done = 0, evaluations_total = 0;
    // Steady-state speed: iterations of the last scale after its first kWarm (which pay for
    // primitive creation and first-touch allocations).
    constexpr std::int64_t kWarm = 3;
    auto t_warm = std::chrono::steady_clock::now();
    std::int64_t warm_done = -1;
    auto mark = [&](int lvl, std::int64_t it) {
      if (lvl == scales - 1 && it + 1 == kWarm) {
        t_warm = std::chrono::steady_clock::now();
        warm_done = done;
      }
    };
    const std::int64_t all = iterations * scales;
    for (int level = 0; level < scales; ++level) {
      const double f = std::pow(0.5, scales - 1 - level);
      const int w = std::max(8, static_cast<int>(std::lround(W * f)));
      const int h = std::max(8, static_cast<int>(std::lround(H * f)));
      const Tensor content = image_batch(content_img, w, h);
      if (level == scales - 1) content_final = content;
      const StyleImages styles =
          load_styles(p_, std::max<std::int64_t>(8, std::lround(style_side * f)), kMaxDecodePixels);
      Losses losses(*net_, opts_);
      losses.set_style(styles.images, styles.weights);
      const FeatureMap cf = losses.content_features(content);
      x = level == 0 ? initial(content, w, h) : resize_bilinear(x, w, h);
      x = ops::clamp(x, 0.f, 1.f).contiguous().clone();
      x.set_requires_grad(true);

      auto record = [&](std::int64_t it, std::int64_t evals, const LossTerms& t, double total) {
        table.rows.push_back({std::to_string(level), std::to_string(w), std::to_string(h),
                              std::to_string(it), std::to_string(evals), fmt6g(total),
                              fmt6g(t.content), fmt6g(t.style), fmt6g(t.tv)});
        if (level == 0 && it == 0) {
          first_content = t.content;
          first_style = t.style;
          first_total = total;
        }
        last_total = total;
        last_content = t.content;
        last_style = t.style;
        last_tv = t.tv;
      };

      if (!lbfgs) {
        optim::Adam adam({{"image", x}}, {.lr = static_cast<float>(p_.number("lr"))});
        for (std::int64_t it = 0; it < iterations && !ctx_.cancelled(); ++it) {
          adam.zero_grad();
          const LossTerms t = losses.compute(x, cf);
          const double total = t.total.item();
          KILN_CHECK(std::isfinite(total), "style_transfer/stylize: the loss became ", total,
                     " at iteration ", it, "; lower lr or the loss weights");
          t.total.backward();
          adam.step();
          {
            NoGradGuard ng;
            float* d = x.data<float>();
            for (std::int64_t i = 0; i < x.numel(); ++i) d[i] = std::clamp(d[i], 0.f, 1.f);
            x.bump_version();
          }
          record(it, it + 1, t, total);
          ++evaluations_total;
          ctx_.progress(++done, all, "iteration");
          mark(level, it);
        }
      } else {
        Lbfgs opt(x.numel(), {.history = static_cast<int>(history),
                              .lr = p_.number("lr"),
                              .line_search = p_.string("line_search") == "armijo"});
        std::vector<float> xv = x.to_vector();
        LossTerms trial, accepted;  // terms of the last evaluation and of the current point
        double trial_total = 0;
        bool have_initial = false;
        auto objective = [&](const std::vector<float>& v, std::vector<float>& g) {
          Tensor xi = Tensor::from_vector(v, x.shape()).set_requires_grad(true);
          LossTerms t = losses.compute(xi, cf);
          const double total = t.total.item();
          t.total.backward();
          const std::vector<float> gv = xi.grad().to_vector();
          std::copy(gv.begin(), gv.end(), g.begin());
          trial = t;
          trial_total = total;
          if (!have_initial) {  // the first evaluation is the starting point
            accepted = t;
            have_initial = true;
          }
          return total;
        };
        for (std::int64_t it = 0; it < iterations && !ctx_.cancelled(); ++it) {
          const std::int64_t before = opt.evaluations();
          const double total = opt.iterate(xv, objective);
          KILN_CHECK(std::isfinite(total), "style_transfer/stylize: the loss became ", total,
                     " at iteration ", it, "; lower lr or the loss weights");
          // When the line search rejected every trial, x did not move: keep its terms.
          if (total == trial_total) accepted = trial;
          record(it, opt.evaluations(), accepted, total);
          evaluations_total += opt.evaluations() - before;
          ctx_.progress(++done, all, "iteration");
          mark(level, it);
        }
        x = Tensor::from_vector(xv, x.shape());
      }
    }
    const auto t_end = std::chrono::steady_clock::now();
    const double seconds = std::chrono::duration<double>(t_end - t0).count();
    const double steady_seconds = std::chrono::duration<double>(t_end - t_warm).count();
    Tensor out = ops::clamp(x.detach(), 0.f, 1.f).contiguous();
    if (p_.boolean("preserve_colors")) out = transfer_luminance(out, content_final);

    std::vector<Artifact> arts;
    arts.push_back(Artifact::make_image(-1, batch_image(out), "stylized"));
    arts.back().info = {
        {"width", std::to_string(W)},
        {"height", std::to_string(H)},
        {"net", net_->name()},
        {"evaluations", std::to_string(evaluations_total)},
        {"seconds", fmt6g(seconds)},
        {"evaluations_per_second", fmt6g(evaluations_total / std::max(seconds, 1e-9))}};
    if (warm_done >= 0 && done > warm_done) {
      arts.back().info["steady_iterations"] = std::to_string(done - warm_done);
      arts.back().info["steady_iterations_per_second"] =
          fmt6g(static_cast<double>(done - warm_done) / std::max(steady_seconds, 1e-9));
    }
    arts.push_back(Artifact::make_table("losses", table));
    arts.push_back(
        Artifact::make_metrics({{"content_loss", last_content},
                                {"style_loss", last_style},
                                {"tv_loss", last_tv},
                                {"total_loss", last_total},
                                {"initial_content_loss", first_content},
                                {"initial_style_loss", first_style},
                                {"initial_total_loss", first_total},
                                {"iterations", static_cast<double>(done)},
                                {"evaluations", static_cast<double>(evaluations_total)}}));
    return arts;
  }

 private:
  Tensor initial(const Tensor& content, int w, int h) const {
    const std::string init = p_.string("init");
    if (init == "content") return content.clone();
    if (init == "noise") {
      Tensor n = Tensor::empty({1, 3, h, w});
      Philox rng(ctx_.seed(), 0, 0);
      rng.fill_uniform(n.data<float>(), n.numel(), 0.f, 1.f);
      return n;
    }
    const Image img = load_rgb(p_.string("init_image"), "init_image", kMaxDecodePixels);
    return image_batch(img, w, h);
  }

  Params p_;
  TaskContext& ctx_;
  std::unique_ptr<FeatureNet> net_;
  LossOptions opts_;
};

}  // namespace

TaskSpec stylize_spec() {
  TaskSpec t = TaskSpec::run(
      "stylize", "Gatys style transfer: optimise an image against content, style and TV losses");
  std::vector<ParamSpec> ps = {
      ParamSpec::path("content", "Content image (PNG or JPEG)"),
  };
  append(ps, style_params());
  append(ps, net_params());
  append(ps, loss_params(1e3, 0.0));
  append(ps,
         {
             ParamSpec::choice("optimizer", "lbfgs", {"lbfgs", "adam"},
                               "L-BFGS (two-loop recursion) or Adam"),
             ParamSpec::number("lr", 1.0,
                               "Step: L-BFGS's initial step length (1 is the natural one), "
                               "Adam's learning rate in pixel units (e.g. 0.02)")
                 .range(1e-6, 100),
             ParamSpec::integer("lbfgs_history", 10, "Pairs L-BFGS remembers").range(1, 100),
             ParamSpec::choice("line_search", "armijo", {"armijo", "none"},
                               "L-BFGS step length: backtracking to the Armijo condition, "
                               "or a fixed step lr"),
             ParamSpec::integer("iterations", 200, "Optimiser iterations at each scale")
                 .range(1, 100000),
             ParamSpec::choice("init", "content", {"content", "noise", "image"},
                               "Start from the content image, uniform noise (from the seed) "
                               "or init_image"),
             ParamSpec::path("init_image", "Start image for init = \"image\"").make_optional(),
             ParamSpec::integer("size", 0, "Longer side of the output in pixels (0: the content's)")
                 .range(0, 65536),
             ParamSpec::integer("scales", 1,
                                "Coarse-to-fine levels: sizes size/2^(scales-1) .. size, "
                                "each optimised `iterations` times and upsampled")
                 .range(1, 8),
             ParamSpec::boolean("preserve_colors", false,
                                "Keep the content's colours (luminance-only transfer)"),
             ParamSpec::integer("memory_limit_mb", 4096,
                                "Refuse outputs whose estimated working memory exceeds this")
                 .range(16, 1 << 20),
         });
  for (auto& p : ps) t.param(p);
  return t;
}

std::unique_ptr<Task> make_stylize(const Params& p, TaskContext& ctx) {
  return std::make_unique<StylizeTask>(p, ctx);
}

}  // namespace kiln::style
