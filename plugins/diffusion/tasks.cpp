#include "tasks.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <numeric>
#include <sstream>

#include "kiln/autograd.hpp"
#include "kiln/data.hpp"
#include "kiln/image.hpp"
#include "kiln/ops.hpp"
#include "kiln/optim.hpp"
#include "kiln/random.hpp"
#include "kiln/safetensors.hpp"
#include "kiln/tensor_map.hpp"
#include "sampler.hpp"

namespace diffusion {

using kiln::Artifact;
using kiln::Params;
using kiln::ParamSpec;
using kiln::Tensor;
using kiln::TensorMap;
namespace ops = kiln::ops;

std::vector<ParamSpec> train_params() {
  return {
      ParamSpec::path("data", "Folder with Fashion-MNIST (or MNIST) IDX files"),
      ParamSpec::integer("limit", 0, "Train on the first this many images (0: all)").at_least(0),
      ParamSpec::boolean("conditional", true,
                         "Class-conditional (a label embedding; classifier-free guidance)"),
      ParamSpec::number("p_uncond", 0.1,
                        "Share of training examples whose label is dropped (for guidance)")
          .range(0, 1),
      ParamSpec::integer("channels", 64, "U-Net channels of the first level").range(4, 1024),
      ParamSpec::integers("channel_mult", {1, 2, 4},
                          "Channel multiplier per level; each level after the first halves the "
                          "resolution")
          .range(1, 16),
      ParamSpec::integer("res_blocks", 2, "Residual blocks per level going down (one more up)")
          .range(1, 8),
      ParamSpec::integer("groups", 32, "Group norm groups (must divide every level's channels)")
          .range(1, 1024),
      ParamSpec::boolean("attention", true, "Self-attention at the lowest resolution"),
      ParamSpec::choice("schedule", "linear", {"linear", "cosine"}, "Noise schedule"),
      ParamSpec::integer("timesteps", 1000, "Diffusion timesteps T").range(2, 100000),
      ParamSpec::number("beta_start", 1e-4, "First beta of the linear schedule").range(1e-8, 0.5),
      ParamSpec::number("beta_end", 0.02, "Last beta of the linear schedule").range(1e-8, 0.999),
      ParamSpec::choice("prediction", "eps", {"eps", "v"},
                        "What the network predicts: the noise (eps) or v = sqrt(ab) eps - "
                        "sqrt(1 - ab) x0"),
      ParamSpec::number("lr", 2e-4, "Adam learning rate").range(1e-7, 1.0),
      ParamSpec::integer("warmup", 100, "Steps of linear learning-rate warm-up").at_least(0),
      ParamSpec::number("clip", 1.0, "Clip the gradient norm to this (0: no clipping)").at_least(0),
      ParamSpec::number("ema", 0.999,
                        "Decay of the exponential moving average of the weights that is exported "
                        "(0: export the trained weights)")
          .range(0, 0.99999),
      ParamSpec::integer("val_images", 256, "Test images whose loss evaluate() reports (0: none)")
          .at_least(0)};
}

std::vector<ParamSpec> generate_params() {
  return {
      ParamSpec::path("model", "A model trained by diffusion/train"),
      ParamSpec::choice("sampler", "ddim", {"ddim", "ddpm"},
                        "DDIM (deterministic at eta = 0) or DDPM ancestral sampling"),
      ParamSpec::integer("steps", 50, "Denoising steps (at most the model's timesteps)")
          .range(1, 100000),
      ParamSpec::number("eta", 0.0, "DDIM noise: 0 deterministic, 1 as DDPM's posterior")
          .range(0, 1),
      ParamSpec::number("guidance", 3.0,
                        "Classifier-free guidance scale (1: conditional only, 0: unconditional)")
          .range(0, 50),
      ParamSpec::integers("labels", {},
                          "Class of sample i: labels[i % len]; -1 for no label. Empty: i % classes "
                          "for a conditional model")
          .range(-1, 100000),
      ParamSpec::boolean("clip", true, "Clip the predicted clean image to [-1, 1] at every step"),
      ParamSpec::path("init_image",
                      "Image-to-image: a PNG/JPEG, or a folder of them (sample i starts from image "
                      "i % count, in name order)")
          .make_optional(),
      ParamSpec::number("strength", 0.6,
                        "Image-to-image: share of the denoising steps run from the noised image "
                        "(0: the image itself, 1: pure noise)")
          .range(0, 1),
      ParamSpec::integer("strip", 0,
                         "Each sample as a strip of this many intermediate images, from the start "
                         "noise to the result (0: only the result)")
          .range(0, 64)};
}

namespace {

UNetConfig config_from(const Params& p, std::int64_t in_channels, std::int64_t image_size,
                       std::int64_t num_classes) {
  UNetConfig c;
  c.in_channels = in_channels;
  c.image_size = image_size;
  c.channels = p.integer("channels");
  c.channel_mult = p.integers("channel_mult");
  c.res_blocks = p.integer("res_blocks");
  c.groups = p.integer("groups");
  c.attention = p.boolean("attention");
  c.num_classes = num_classes;
  return c;
}

Schedule schedule_from(const Params& p) {
  return Schedule::make(p.string("schedule"), p.integer("timesteps"), p.number("beta_start"),
                        p.number("beta_end"));
}

std::shared_ptr<const kiln::data::Dataset> first(std::shared_ptr<const kiln::data::Dataset> d,
                                                 std::int64_t limit) {
  if (limit <= 0 || limit >= d->size()) return d;
  std::vector<std::int64_t> idx(static_cast<std::size_t>(limit));
  std::iota(idx.begin(), idx.end(), 0);
  return kiln::data::subset(d, std::move(idx));
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (std::size_t i = 0; i < v.size(); ++i) s += (i ? "\n" : "") + v[i];
  return s;
}

std::vector<std::string> split_lines(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  std::string line;
  while (std::getline(in, line)) out.push_back(line);
  return out;
}

// x_t and the regression target of examples with timesteps t and noise eps.
struct Noised {
  Tensor x_t, target;
};
Noised noise_images(const Schedule& s, Prediction pred, const Tensor& x0, const Tensor& eps,
                    const std::vector<std::int64_t>& t) {
  std::vector<float> a, b;
  for (std::int64_t ti : t) {
    a.push_back(static_cast<float>(std::sqrt(s.alpha_bar(ti))));
    b.push_back(static_cast<float>(std::sqrt(1 - s.alpha_bar(ti))));
  }
  Noised n;
  n.x_t = ops::add(scale_rows(x0, a), scale_rows(eps, b));
  n.target = pred == Prediction::eps ? eps : ops::sub(scale_rows(eps, a), scale_rows(x0, b));
  return n;
}

// ------------------------------------------------------------------------------ train

class TrainTask final : public kiln::TrainTask {
 public:
  TrainTask(const Params& p, kiln::TaskContext& ctx)
      : params_(p), ctx_(ctx), schedule_(schedule_from(p)) {
    auto images = kiln::data::load_fashion_mnist(p.string("data"), "train");
    KILN_CHECK(images->height() == images->width(), "diffusion/train: the images in '",
               p.string("data"), "' are ", images->height(), "x", images->width(),
               "; the U-Net takes square images");
    class_names_ = images->class_names();
    train_ = first(images, p.integer("limit"));
    if (p.integer("val_images") > 0) {
      val_ =
          first(kiln::data::load_fashion_mnist(p.string("data"), "test"), p.integer("val_images"));
    }
    const std::int64_t classes =
        p.boolean("conditional") ? static_cast<std::int64_t>(class_names_.size()) : 0;
    kiln::Generator gen(ctx.seed());
    net_ =
        std::make_unique<UNet>(config_from(p, images->channels(), images->height(), classes), gen);
    if (ctx.precision() == kiln::DType::bf16) net_->set_compute_dtype(kiln::DType::bf16);
    prediction_ = parse_prediction(p.string("prediction"));
    optimizer_ = std::make_unique<kiln::optim::Adam>(
        net_->named_parameters(),
        kiln::optim::AdamOptions{.lr = static_cast<float>(p.number("lr"))});
    for (const auto& [name, t] : net_->state_dict()) ema_[name] = t.clone();
  }

  std::shared_ptr<const kiln::data::Dataset> train_data() override { return train_; }

  kiln::Metrics train_step(const kiln::data::Batch& batch, const kiln::StepInfo& info) override {
    const Tensor x0 = ops::add_scalar(ops::mul_scalar(batch.at("image"), 2.f), -1.f);
    const std::int64_t n = x0.size(0);
    const auto step = static_cast<std::uint64_t>(info.step);
    // The step's randomness: Philox(seed, step, stream) with stream 0 = timesteps, 1 = noise,
    // 2 = label dropout.
    kiln::Philox rt(info.seed, step, 0), rn(info.seed, step, 1), rd(info.seed, step, 2);
    std::vector<std::int64_t> t(static_cast<std::size_t>(n));
    for (auto& ti : t)
      ti = static_cast<std::int64_t>(rt.below(static_cast<std::uint64_t>(schedule_.timesteps())));
    Tensor eps = Tensor::empty(x0.shape());
    rn.fill_normal(eps.data<float>(), eps.numel());
    Tensor labels;
    const std::int64_t classes = net_->config().num_classes;
    if (classes > 0) {
      std::vector<std::int64_t> lab = batch.at("label").to_int_vector();
      const double p = params_.number("p_uncond");
      for (auto& l : lab) {
        KILN_CHECK(l >= 0 && l < classes, "diffusion/train: label ", l, " outside [0, ", classes,
                   ")");
        if (rd.uniform() < p) l = classes;
      }
      labels = Tensor::from_ints(lab, {n});
    }
    const Noised nz = noise_images(schedule_, prediction_, x0, eps, t);
    std::vector<float> tf(t.begin(), t.end());

    const double lr = params_.number("lr");
    const std::int64_t warmup = params_.integer("warmup");
    optimizer_->set_lr(static_cast<float>(
        warmup > 0
            ? lr * std::min(1.0, static_cast<double>(info.step + 1) / static_cast<double>(warmup))
            : lr));
    optimizer_->zero_grad();
    const Tensor loss = ops::mse_loss(net_->forward(nz.x_t, tf, labels), nz.target);
    loss.backward();
    const float clip = static_cast<float>(params_.number("clip"));
    const float norm = clip > 0 ? kiln::optim::clip_grad_norm(optimizer_->params(), clip)
                                : kiln::optim::grad_norm(optimizer_->params());
    if (std::isfinite(norm)) {
      optimizer_->step();
      update_ema(info.step);
    }
    return {{"loss", loss.item()}, {"grad_norm", norm}, {"lr", optimizer_->lr()}};
  }

  kiln::Metrics evaluate() override {
    if (!val_) return {};
    kiln::NoGradGuard no_grad;
    // Fixed timesteps and noise per test image (Philox(seed, i, 3/4)) so that evaluations are
    // comparable across the run.
    double total = 0;
    const std::int64_t n = val_->size(), bs = 64;
    for (std::int64_t s = 0; s < n; s += bs) {
      std::vector<std::int64_t> idx(static_cast<std::size_t>(std::min(bs, n - s)));
      std::iota(idx.begin(), idx.end(), s);
      const kiln::data::Batch b = val_->get_batch(idx);
      const Tensor x0 = ops::add_scalar(ops::mul_scalar(b.at("image"), 2.f), -1.f);
      std::vector<std::int64_t> t;
      for (std::int64_t i : idx) {
        t.push_back(static_cast<std::int64_t>(
            kiln::Philox(ctx_.seed(), static_cast<std::uint64_t>(i), 3)
                .below(static_cast<std::uint64_t>(schedule_.timesteps()))));
      }
      const Tensor eps =
          kiln::randn_for_samples(idx, {x0.size(1), x0.size(2), x0.size(3)}, ctx_.seed(), 4);
      const Noised nz = noise_images(schedule_, prediction_, x0, eps, t);
      Tensor labels;
      if (net_->config().num_classes > 0) labels = b.at("label");
      std::vector<float> tf(t.begin(), t.end());
      const Tensor l =
          ops::mse_loss(net_->forward(nz.x_t, tf, labels), nz.target, ops::Reduction::sum);
      total += l.item();
    }
    return {{"val_loss",
             total / static_cast<double>(n * kiln::shape_numel({net_->config().in_channels,
                                                                net_->config().image_size,
                                                                net_->config().image_size}))}};
  }

  TensorMap state() const override {
    TensorMap s;
    kiln::add_prefixed(s, "model.", net_->state_dict());
    kiln::add_prefixed(s, "ema.", ema_);
    kiln::add_prefixed(s, "optim.", optimizer_->state_dict());
    return s;
  }

  void load_state(const TensorMap& state) override {
    const auto parts = kiln::split_prefixed(state, {"model.", "ema.", "optim."}, "diffusion/train");
    const TensorMap &model = parts[0], &ema = parts[1], &optim = parts[2];
    for (const auto& [k, t] : ema_) {
      KILN_CHECK(model.count(k) && ema.count(k),
                 "diffusion/train: the training state lacks 'model.", k, "' or 'ema.", k,
                 "'; was it written by another configuration of diffusion/train?");
      KILN_CHECK(ema.at(k).shape() == t.shape(), "diffusion/train: 'ema.", k, "' has shape ",
                 kiln::shape_str(ema.at(k).shape()), ", expected ", kiln::shape_str(t.shape()));
    }
    net_->load_state_dict(model);
    for (auto& [k, t] : ema_) t.copy_(ema.at(k));
    optimizer_->load_state_dict(optim);
  }

  kiln::Checkpoint export_model() const override {
    const bool use_ema = params_.number("ema") > 0;
    TensorMap weights;
    for (const auto& [k, t] : net_->state_dict()) weights[k] = (use_ema ? ema_.at(k) : t).clone();
    auto meta = kiln::checkpoint_metadata(kPluginName, kPluginVersion, "train", params_);
    meta["diffusion.image_size"] = std::to_string(net_->config().image_size);
    meta["diffusion.in_channels"] = std::to_string(net_->config().in_channels);
    meta["diffusion.class_names"] =
        join(net_->config().num_classes > 0 ? class_names_ : std::vector<std::string>{});
    return {weights, meta};
  }

 private:
  void update_ema(std::int64_t step) {
    const double decay = params_.number("ema");
    if (decay <= 0) return;
    // Warm-up of the decay, so early averages are not dominated by the random initialisation.
    const auto d = static_cast<float>(
        std::min(decay, (1.0 + static_cast<double>(step)) / (10.0 + static_cast<double>(step))));
    kiln::NoGradGuard guard;
    for (const auto& [k, p] : net_->named_parameters()) {
      Tensor& e = ema_.at(k);
      float* ed = e.data<float>();
      const Tensor pc = p.contiguous();
      const float* pd = pc.data<float>();
      const std::int64_t n = e.numel();
      for (std::int64_t i = 0; i < n; ++i) ed[i] = d * ed[i] + (1 - d) * pd[i];
      e.bump_version();
    }
  }

  Params params_;
  kiln::TaskContext& ctx_;
  Schedule schedule_;
  Prediction prediction_ = Prediction::eps;
  std::vector<std::string> class_names_;
  std::shared_ptr<const kiln::data::Dataset> train_, val_;
  std::unique_ptr<UNet> net_;
  std::unique_ptr<kiln::optim::Adam> optimizer_;
  TensorMap ema_;
};

// ------------------------------------------------------------------------------ generate

Tensor load_start_images(const std::string& path, const UNetConfig& c) {
  const int ch = static_cast<int>(c.in_channels), s = static_cast<int>(c.image_size);
  Tensor images;
  if (std::filesystem::is_directory(path)) {
    images = kiln::data::load_image_folder(path, ch, s, s)->images();
  } else {
    kiln::Image im = kiln::read_image(path);
    if (im.channels != ch) im = kiln::convert_channels(im, ch);
    if (im.width != s || im.height != s) im = kiln::resize_image(im, s, s);
    images = kiln::image_to_tensor(im, -1.f, 1.f).reshape({1, ch, s, s});
    return images;
  }
  std::vector<float> v = images.to_vector();
  for (float& x : v) x = x / 255.f * 2.f - 1.f;
  return Tensor::from_vector(v, images.shape());
}

class GenerateTask final : public kiln::GenerateTask {
 public:
  GenerateTask(const Params& p, kiln::TaskContext& ctx) : model_(load_model(p.string("model"))) {
    opts_.method = p.string("sampler");
    opts_.steps = p.integer("steps");
    opts_.eta = p.number("eta");
    opts_.guidance = p.number("guidance");
    opts_.clip = p.boolean("clip");
    opts_.prediction = parse_prediction(model_.prediction);
    opts_.strength = p.number("strength");
    opts_.frames = p.integer("strip");
    KILN_CHECK(opts_.strength >= 0 && opts_.strength <= 1,
               "diffusion/generate: 'strength' must be between 0 and 1, got ", opts_.strength);
    KILN_CHECK(opts_.frames != 1,
               "diffusion/generate: 'strip' = 1 would show only the result; use 0 (no strip) or "
               "at least 2 frames");
    KILN_CHECK(opts_.steps <= model_.schedule.timesteps(),
               "diffusion/generate: 'steps' = ", opts_.steps, " is more than the ",
               model_.schedule.timesteps(), " timesteps of '", p.string("model"), "'");
    const std::int64_t classes = model_.net->config().num_classes;
    labels_ = p.integers("labels");
    for (std::int64_t l : labels_) {
      if (classes == 0) {
        KILN_CHECK(l == -1, "diffusion/generate: label ", l, " given, but '", p.string("model"),
                   "' is an unconditional model; leave 'labels' out (or use -1)");
      } else {
        KILN_CHECK(l >= -1 && l < classes, "diffusion/generate: label ", l, " is out of range: '",
                   p.string("model"), "' knows ", classes, " classes (0 to ", classes - 1,
                   "; -1 for no label)");
      }
    }
    if (p.has("init_image"))
      init_ = load_start_images(p.string("init_image"), model_.net->config());
    if (ctx.precision() == kiln::DType::bf16) model_.net->set_compute_dtype(kiln::DType::bf16);
  }

  std::int64_t default_count() const override { return 64; }

  std::vector<Artifact> generate(const kiln::SampleRequest& req) override {
    const UNetConfig& c = model_.net->config();
    const auto n = static_cast<std::int64_t>(req.indices.size());
    std::vector<std::int64_t> lab;
    Tensor labels;
    if (c.num_classes > 0) {
      for (std::int64_t i : req.indices) {
        std::int64_t l = labels_.empty() ? i % c.num_classes
                                         : labels_[static_cast<std::size_t>(i) % labels_.size()];
        lab.push_back(l < 0 ? c.num_classes : l);
      }
      labels = Tensor::from_ints(lab, {n});
    }
    Tensor init;
    if (init_.defined()) {
      std::vector<Tensor> rows;
      for (std::int64_t i : req.indices) {
        const std::int64_t k = i % init_.size(0);
        rows.push_back(init_.slice(0, k, k + 1));
      }
      init = ops::concat(rows, 0).contiguous();
    }
    std::vector<Tensor> frames;
    const Tensor x = sample(*model_.net, model_.schedule, opts_, req.indices, req.seed, labels,
                            init, opts_.frames >= 2 ? &frames : nullptr);
    const std::vector<kiln::Image> images = kiln::batch_to_images(x, -1.f, 1.f);
    std::vector<std::vector<kiln::Image>> frame_images;
    for (const Tensor& f : frames) frame_images.push_back(kiln::batch_to_images(f, -1.f, 1.f));
    std::vector<Artifact> out;
    for (std::int64_t r = 0; r < n; ++r) {
      kiln::Image im = images[static_cast<std::size_t>(r)];
      if (!frame_images.empty()) {
        std::vector<kiln::Image> strip;
        for (const auto& f : frame_images) strip.push_back(f[static_cast<std::size_t>(r)]);
        im = kiln::make_grid(strip, static_cast<int>(strip.size()), 2, 255);
      }
      Artifact a = Artifact::make_image(req.indices[static_cast<std::size_t>(r)], std::move(im));
      if (c.num_classes > 0) {
        const std::int64_t l = lab[static_cast<std::size_t>(r)];
        a.info["label"] = l == c.num_classes ? "-1" : std::to_string(l);
        if (l < c.num_classes && static_cast<std::size_t>(l) < model_.class_names.size()) {
          a.info["class"] = model_.class_names[static_cast<std::size_t>(l)];
        }
      }
      out.push_back(std::move(a));
    }
    return out;
  }

 private:
  LoadedModel model_;
  SamplerOptions opts_;
  std::vector<std::int64_t> labels_;
  Tensor init_;
};

}  // namespace

LoadedModel load_model(const std::string& file) {
  const kiln::Safetensors f = kiln::load_safetensors(file);
  const Params trained = kiln::checkpoint_params(f.metadata, kPluginName, train_params(), file);
  auto meta = [&](const std::string& key) -> std::string {
    auto it = f.metadata.find(key);
    KILN_CHECK(it != f.metadata.end(), "diffusion: '", file, "' lacks the metadata '", key,
               "'; it was not written by diffusion/train");
    return it->second;
  };
  LoadedModel m;
  m.class_names = split_lines(meta("diffusion.class_names"));
  const std::int64_t classes =
      trained.boolean("conditional") ? static_cast<std::int64_t>(m.class_names.size()) : 0;
  kiln::Generator gen(0);
  m.net = std::make_unique<UNet>(config_from(trained, std::stoll(meta("diffusion.in_channels")),
                                             std::stoll(meta("diffusion.image_size")), classes),
                                 gen);
  m.net->load_state_dict(f.tensors);
  m.net->eval();
  m.schedule = schedule_from(trained);
  m.prediction = trained.string("prediction");
  return m;
}

std::unique_ptr<kiln::Task> make_train_task(const Params& p, kiln::TaskContext& ctx) {
  return std::make_unique<TrainTask>(p, ctx);
}
std::unique_ptr<kiln::Task> make_generate_task(const Params& p, kiln::TaskContext& ctx) {
  return std::make_unique<GenerateTask>(p, ctx);
}

}  // namespace diffusion
