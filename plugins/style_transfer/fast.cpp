// Tasks `train-fast` (train a feed-forward style network on a folder of content images with the
// losses of `stylize`) and `stylize-fast` (apply it to every image of a folder, in batches).
#include <algorithm>
#include <cmath>
#include <map>

#include "common.hpp"
#include "imaging.hpp"
#include "kiln/autograd.hpp"
#include "kiln/data.hpp"
#include "kiln/error.hpp"
#include "kiln/ops.hpp"
#include "kiln/optim.hpp"
#include "kiln/safetensors.hpp"
#include "kiln/tensor_map.hpp"
#include "transformer_net.hpp"

namespace kiln::style {
namespace {

std::vector<ParamSpec> train_fast_params() {
  std::vector<ParamSpec> ps = {
      ParamSpec::path("data", "Folder of content images (PNG/JPEG) to train on"),
      ParamSpec::integer("image_size", 128,
                         "Training images are resized to image_size x image_size (multiple of 4)")
          .range(8, 2048),
      ParamSpec::integer("width", 16, "Channels of the first layer of the style network")
          .range(1, 256),
      ParamSpec::integer("residual_blocks", 5, "Residual blocks").range(0, 32),
      ParamSpec::choice("norm", "instance", {"instance", "group"}, "Normalisation layers"),
      ParamSpec::number("lr", 1e-3, "Adam learning rate").range(1e-7, 1),
  };
  append(ps, style_params());
  append(ps, net_params());
  append(ps, loss_params(1e3, 0.0));
  return ps;
}

std::unique_ptr<TransformerNet> build_net(const Params& p, Generator& gen) {
  return std::make_unique<TransformerNet>(p.integer("width"), p.integer("residual_blocks"),
                                          p.string("norm") == "instance", gen);
}

class TrainFastTask final : public TrainTask {
 public:
  TrainFastTask(const Params& p, TaskContext& ctx) : p_(p) {
    KILN_CHECK(p.integer("image_size") % 4 == 0,
               "style_transfer/train-fast: image_size must be a "
               "multiple of 4 (the network downsamples twice), got ",
               p.integer("image_size"));
    const int s = static_cast<int>(p.integer("image_size"));
    data_ = data::load_image_folder(p.string("data"), 3, s, s);
    features_ = make_net(p);
    losses_ = std::make_unique<Losses>(*features_, loss_options(p, *features_));
    const StyleImages styles = load_styles(
        p, std::max<std::int64_t>(8, std::lround(s * p.number("style_scale"))), kMaxDecodePixels);
    losses_->set_style(styles.images, styles.weights);
    Generator gen(ctx.seed());
    net_ = build_net(p, gen);
    adam_ = std::make_unique<optim::Adam>(
        net_->named_parameters(), optim::AdamOptions{.lr = static_cast<float>(p.number("lr"))});
  }

  std::shared_ptr<const data::Dataset> train_data() override { return data_; }

  Metrics train_step(const data::Batch& batch, const StepInfo&) override {
    const Tensor& x = batch.at("image");
    const FeatureMap cf = losses_->content_features(x);
    adam_->zero_grad();
    const Tensor y = net_->forward(x);
    const LossTerms t = losses_->compute(y, cf);
    const double loss = t.total.item();
    t.total.backward();
    adam_->step();
    return {
        {"loss", loss}, {"content_loss", t.content}, {"style_loss", t.style}, {"tv_loss", t.tv}};
  }

  TensorMap state() const override {
    TensorMap s = net_->state_dict();
    kiln::add_prefixed(s, "optim.", adam_->state_dict());
    return s;
  }

  void load_state(const TensorMap& state) override {
    // The network's names carry no prefix: "" takes every name that is not "optim.*".
    const auto parts = kiln::split_prefixed(state, {"", "optim."}, "style_transfer/train-fast");
    const TensorMap &net = parts[0], &opt = parts[1];
    KILN_CHECK(opt.count("step") == 1,
               "style_transfer/train-fast: the state has no optimiser step ('optim.step')");
    net_->load_state_dict(net, true);
    adam_->load_state_dict(opt);
  }

  Checkpoint export_model() const override {
    TensorMap t;
    for (const auto& [k, v] : net_->state_dict()) t[k] = v.clone();
    return {t, checkpoint_metadata(kPluginName, kPluginVersion, "train-fast", p_)};
  }

 private:
  Params p_;
  std::shared_ptr<data::ImageDataset> data_;
  std::unique_ptr<FeatureNet> features_;
  std::unique_ptr<Losses> losses_;
  std::unique_ptr<TransformerNet> net_;
  std::unique_ptr<optim::Adam> adam_;
};

// Pads [1, 3, h, w] to multiples of 4 by repeating the last row / column.
Tensor pad_to_4(const Tensor& x) {
  const std::int64_t h = x.size(2), w = x.size(3);
  const std::int64_t H = (h + 3) / 4 * 4, W = (w + 3) / 4 * 4;
  if (H == h && W == w) return x;
  Tensor y = Tensor::empty({x.size(0), 3, H, W});
  const Tensor xc = x.contiguous();
  for (std::int64_t p = 0; p < x.size(0) * 3; ++p) {
    const float* s = xc.data<float>() + p * h * w;
    float* d = y.data<float>() + p * H * W;
    for (std::int64_t i = 0; i < H; ++i) {
      for (std::int64_t j = 0; j < W; ++j)
        d[i * W + j] = s[std::min(i, h - 1) * w + std::min(j, w - 1)];
    }
  }
  return y;
}

class StylizeFastTask final : public GenerateTask {
 public:
  StylizeFastTask(const Params& p, TaskContext&) : p_(p) {
    const std::string file = p.string("model");
    Safetensors m = load_safetensors(file);
    std::vector<ParamSpec> spec = train_fast_params();
    const Params tp = checkpoint_params(m.metadata, kPluginName, spec, file);
    auto task = m.metadata.find("kiln.task");
    KILN_CHECK(task != m.metadata.end() && task->second == "train-fast",
               "style_transfer/stylize-fast: '", file,
               "' is not a model trained by style_transfer/train-fast (kiln.task = '",
               task == m.metadata.end() ? std::string("none") : task->second, "')");
    Generator gen(0);
    net_ = build_net(tp, gen);
    net_->load_state_dict(m.tensors, true);
    net_->eval();
    files_ = list_images(p.string("input"), "input");
  }

  std::int64_t default_count() const override { return static_cast<std::int64_t>(files_.size()); }

  std::vector<Artifact> generate(const SampleRequest& req) override {
    // Load, then run images of equal size together (one batch per size).
    std::map<std::pair<std::int64_t, std::int64_t>, std::vector<std::size_t>> groups;
    std::vector<Tensor> inputs(req.indices.size());
    std::vector<std::pair<int, int>> sizes(req.indices.size());
    for (std::size_t r = 0; r < req.indices.size(); ++r) {
      const std::int64_t i = req.indices[r];
      KILN_CHECK(i >= 0 && i < static_cast<std::int64_t>(files_.size()),
                 "style_transfer/stylize-fast: sample ", i, " asked for, but 'input' holds ",
                 files_.size(), " image(s); set count <= ", files_.size());
      const Image img = load_rgb(files_[static_cast<std::size_t>(i)], "input", kMaxDecodePixels);
      const auto [w, h] = fit_long_side(img.width, img.height, p_.integer("size"));
      sizes[r] = {w, h};
      inputs[r] = image_batch(img, w, h);
      groups[{h, w}].push_back(r);
    }
    std::vector<Tensor> outputs(req.indices.size());
    NoGradGuard ng;
    for (const auto& [hw, rows] : groups) {
      TensorList xs;
      for (std::size_t r : rows) xs.push_back(pad_to_4(inputs[r]));
      const Tensor y = net_->forward(ops::concat(xs, 0)).contiguous();
      for (std::size_t k = 0; k < rows.size(); ++k) {
        outputs[rows[k]] =
            y.slice(0, static_cast<std::int64_t>(k), static_cast<std::int64_t>(k) + 1)
                .slice(2, 0, hw.first)
                .slice(3, 0, hw.second)
                .contiguous();
      }
    }
    std::vector<Artifact> out;
    for (std::size_t r = 0; r < req.indices.size(); ++r) {
      Tensor y = outputs[r];
      if (p_.boolean("preserve_colors")) y = transfer_luminance(y, inputs[r]);
      out.push_back(Artifact::make_image(req.indices[r], batch_image(y)));
      out.back().info = {
          {"source", files_[static_cast<std::size_t>(req.indices[r])].filename().string()}};
    }
    return out;
  }

 private:
  Params p_;
  std::unique_ptr<TransformerNet> net_;
  std::vector<std::filesystem::path> files_;
};

}  // namespace

TaskSpec train_fast_spec() {
  TaskSpec t = TaskSpec::train(
      "train-fast",
      "Train a feed-forward style network (Johnson et al.) on a folder of content images");
  for (auto& p : train_fast_params()) t.param(p);
  t.batch(4).epochs(2);
  return t;
}

std::unique_ptr<Task> make_train_fast(const Params& p, TaskContext& ctx) {
  return std::make_unique<TrainFastTask>(p, ctx);
}

TaskSpec stylize_fast_spec() {
  TaskSpec t = TaskSpec::generate("stylize-fast",
                                  "Stylise every image of a folder with a network from train-fast");
  t.param(ParamSpec::path("model", "A model trained by style_transfer/train-fast"));
  t.param(ParamSpec::path("input", "An image, or a folder of PNG/JPEG images (file-name order)"));
  t.param(ParamSpec::integer("size", 0, "Longer side of the outputs (0: each input's own)")
              .range(0, 16384));
  t.param(ParamSpec::boolean("preserve_colors", false,
                             "Keep each input's colours (luminance-only transfer)"));
  t.batch(4);
  return t;
}

std::unique_ptr<Task> make_stylize_fast(const Params& p, TaskContext& ctx) {
  return std::make_unique<StylizeFastTask>(p, ctx);
}

}  // namespace kiln::style
