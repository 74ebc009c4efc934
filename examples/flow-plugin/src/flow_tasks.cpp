#include "flow_tasks.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>

#include "flow_model.hpp"
#include "kiln/autograd.hpp"
#include "kiln/data.hpp"
#include "kiln/image.hpp"
#include "kiln/ops.hpp"
#include "kiln/optim.hpp"
#include "kiln/random.hpp"
#include "kiln/safetensors.hpp"
#include "kiln/tensor_map.hpp"

namespace flow {

using kiln::Artifact;
using kiln::Params;
using kiln::ParamSpec;
using kiln::Tensor;
using kiln::TensorMap;

std::vector<ParamSpec> train_params() {
  return {ParamSpec::path("data", "Folder with Fashion-MNIST (or MNIST) IDX files"),
          ParamSpec::integer("limit", 0, "Train on the first this many images (0: all 60,000)")
              .at_least(0),
          ParamSpec::integer("hidden", 32, "Channels inside each coupling network").range(1, 512),
          ParamSpec::integer("checker_layers", 4, "Checkerboard couplings at 28x28").range(1, 32),
          ParamSpec::integer("channel_layers", 4, "Channel couplings at 4x14x14").range(0, 32),
          ParamSpec::number("lr", 1e-3, "Adam learning rate").range(1e-6, 1.0),
          ParamSpec::number("clip", 100.0, "Clip the gradient norm to this (0: no clipping)")
              .at_least(0),
          ParamSpec::integer("val_images", 1000,
                             "Test images whose bits/dim evaluate() reports (0: none)")
              .at_least(0)};
}

std::vector<ParamSpec> sample_params() {
  return {ParamSpec::path("model", "A model trained by flow/train"),
          ParamSpec::number("temperature", 0.7,
                            "Standard deviation of the latent noise (1: the model's own)")
              .range(0.01, 2.0)};
}

std::vector<ParamSpec> evaluate_params() {
  return {ParamSpec::path("model", "A model trained by flow/train"),
          ParamSpec::path("data", "Folder with Fashion-MNIST (or MNIST) IDX files"),
          ParamSpec::choice("split", "test", {"test", "train"}, "Which images to score"),
          ParamSpec::integer("limit", 0, "Score the first this many images (0: all)").at_least(0),
          ParamSpec::integer("eval_batch", 250, "Images scored together").range(1, 10000)};
}

namespace {

FlowConfig config_from(const Params& p) {
  return {p.integer("hidden"), p.integer("checker_layers"), p.integer("channel_layers")};
}

std::shared_ptr<const kiln::data::ImageDataset> load_images(const Params& p,
                                                            const std::string& split) {
  auto images = kiln::data::load_fashion_mnist(p.string("data"), split);
  KILN_CHECK(images->channels() == 1 && images->height() == RealNVP::kSide &&
                 images->width() == RealNVP::kSide,
             "flow: the images in '", p.string("data"), "' are ", images->channels(), "x",
             images->height(), "x", images->width(), "; this flow models 1x28x28 images");
  return images;
}

std::shared_ptr<const kiln::data::Dataset> first(std::shared_ptr<const kiln::data::Dataset> d,
                                                 std::int64_t limit) {
  if (limit <= 0 || limit >= d->size()) return d;
  std::vector<std::int64_t> idx(static_cast<std::size_t>(limit));
  std::iota(idx.begin(), idx.end(), 0);
  return kiln::data::subset(d, std::move(idx));
}

// Mean bits/dim of `data` (no gradients), dequantised with example i's noise from
// Philox(seed, i, 1); per-class sums when `per_class` is given.
double score(const RealNVP& model, const kiln::data::Dataset& data, std::int64_t batch,
             std::uint64_t seed, kiln::TaskContext* ctx,
             std::vector<std::pair<double, std::int64_t>>* per_class = nullptr) {
  kiln::NoGradGuard no_grad;
  double total = 0;
  const std::int64_t n = data.size();
  for (std::int64_t start = 0; start < n; start += batch) {
    std::vector<std::int64_t> idx(static_cast<std::size_t>(std::min(batch, n - start)));
    std::iota(idx.begin(), idx.end(), start);
    const kiln::data::Batch b = data.get_batch(idx);
    const Tensor& images = b.at("image");
    const Tensor noise = dequantisation_noise(idx, seed, {1, RealNVP::kSide, RealNVP::kSide});
    const std::vector<float> bpd = model.bits_per_dim(dequantise(images, noise)).to_vector();
    const std::vector<std::int64_t> labels = b.at("label").to_int_vector();
    for (std::size_t r = 0; r < bpd.size(); ++r) {
      total += bpd[r];
      if (per_class) {
        const auto c = static_cast<std::size_t>(labels[r]);
        if (per_class->size() <= c) per_class->resize(c + 1);
        (*per_class)[c].first += bpd[r];
        (*per_class)[c].second += 1;
      }
    }
    if (ctx) {
      ctx->progress(start + static_cast<std::int64_t>(idx.size()), n, "image");
      if (ctx->cancelled()) return total / static_cast<double>(start + idx.size());
    }
  }
  return n > 0 ? total / static_cast<double>(n) : 0.0;
}

// The model's tensors: the file itself (train/model.safetensors), or the model part of a training
// checkpoint (train/checkpoints/step-<n>.safetensors, state() under "state."), so that any
// checkpoint can be sampled and scored.
TensorMap model_tensors(const TensorMap& file) {
  if (!file.count("state.optim.step")) return file;
  TensorMap model;
  for (const auto& [k, t] : file) {
    if (k.rfind("state.model.", 0) == 0) model[k.substr(12)] = t;
  }
  return model;
}

// A model written by flow/train's export_model(), rebuilt from the parameters it stores.
std::unique_ptr<RealNVP> load_model(const std::string& file) {
  const kiln::Safetensors f = kiln::load_safetensors(file);
  const Params trained = kiln::checkpoint_params(f.metadata, kPluginName, train_params(), file);
  auto model = std::make_unique<RealNVP>(config_from(trained), 0);
  model->load_state_dict(model_tensors(f.tensors));
  return model;
}

// ------------------------------------------------------------------------------ train

class TrainTask final : public kiln::TrainTask {
 public:
  TrainTask(const Params& p, kiln::TaskContext& ctx)
      : params_(p),
        ctx_(ctx),
        model_(config_from(p), ctx.seed()),
        optimizer_(model_.named_parameters(), {.lr = static_cast<float>(p.number("lr"))}) {
    train_ = first(load_images(p, "train"), p.integer("limit"));
    if (p.integer("val_images") > 0) val_ = first(load_images(p, "test"), p.integer("val_images"));
  }

  std::shared_ptr<const kiln::data::Dataset> train_data() override { return train_; }

  kiln::Metrics train_step(const kiln::data::Batch& batch, const kiln::StepInfo& info) override {
    // Fresh dequantisation noise at every step: example i at step s draws from
    // Philox(mix(seed, s), i, 1), so the step is reproducible and resumes exactly.
    const Tensor& images = batch.at("image");
    const Tensor noise =
        dequantisation_noise(batch.at("index").to_int_vector(),
                             kiln::mix_seed(info.seed, static_cast<std::uint64_t>(info.step)),
                             {1, RealNVP::kSide, RealNVP::kSide});
    optimizer_.zero_grad();
    const Tensor loss = kiln::ops::mean(model_.bits_per_dim(dequantise(images, noise)));
    loss.backward();
    const float clip = static_cast<float>(params_.number("clip"));
    const float norm = clip > 0 ? kiln::optim::clip_grad_norm(optimizer_.params(), clip)
                                : kiln::optim::grad_norm(optimizer_.params());
    if (std::isfinite(norm)) optimizer_.step();  // the host's NaN guard reports the loss
    const double bpd = loss.item();
    return {{"loss", bpd}, {"bits_per_dim", bpd}, {"grad_norm", norm}};
  }

  kiln::Metrics evaluate() override {
    if (!val_) return {};
    return {{"test_bits_per_dim", score(model_, *val_, 250, ctx_.seed(), nullptr)}};
  }

  TensorMap state() const override {
    TensorMap s;
    kiln::add_prefixed(s, "model.", model_.state_dict());
    kiln::add_prefixed(s, "optim.", optimizer_.state_dict());
    return s;
  }

  void load_state(const TensorMap& state) override {
    const auto parts = kiln::split_prefixed(state, {"model.", "optim."}, "flow/train");
    const TensorMap &model = parts[0], &optim = parts[1];
    for (const auto& [k, t] : model_.state_dict()) {
      KILN_CHECK(model.count(k), "flow/train: the training state lacks 'model.", k,
                 "'; was it written by another configuration of flow/train?");
    }
    KILN_CHECK(optim.count("step"), "flow/train: the training state lacks 'optim.step'");
    model_.load_state_dict(model);
    optimizer_.load_state_dict(optim);
  }

  kiln::Checkpoint export_model() const override {
    TensorMap weights;
    for (const auto& [k, t] : model_.state_dict()) weights[k] = t.clone();
    return {weights, kiln::checkpoint_metadata(kPluginName, kPluginVersion, "train", params_)};
  }

 private:
  Params params_;
  kiln::TaskContext& ctx_;
  RealNVP model_;
  kiln::optim::Adam optimizer_;
  std::shared_ptr<const kiln::data::Dataset> train_, val_;
};

// ------------------------------------------------------------------------------ sample

class SampleTask final : public kiln::GenerateTask {
 public:
  SampleTask(const Params& p, kiln::TaskContext&)
      : model_(load_model(p.string("model"))),
        temperature_(static_cast<float>(p.number("temperature"))) {}

  std::int64_t default_count() const override { return 64; }

  std::vector<Artifact> generate(const kiln::SampleRequest& request) override {
    kiln::NoGradGuard no_grad;
    // Sample i's latent comes from Philox(seed, i, 0) alone.
    const Tensor z =
        kiln::randn_for_samples(request.indices, {4, 14, 14}, request.seed) * temperature_;
    const std::vector<kiln::Image> images = kiln::batch_to_images(model_->sample(z), 0.f, 1.f);
    std::vector<Artifact> out;
    for (std::size_t r = 0; r < images.size(); ++r) {
      out.push_back(Artifact::make_image(request.indices[r], images[r]));
    }
    return out;
  }

 private:
  std::unique_ptr<RealNVP> model_;
  float temperature_;
};

// ------------------------------------------------------------------------------ evaluate

class EvaluateTask final : public kiln::RunTask {
 public:
  EvaluateTask(const Params& p, kiln::TaskContext& ctx)
      : params_(p), ctx_(ctx), model_(load_model(p.string("model"))) {}

  std::vector<Artifact> run() override {
    auto images = load_images(params_, params_.string("split"));
    auto data = first(images, params_.integer("limit"));
    std::vector<std::pair<double, std::int64_t>> per_class;
    const double bpd =
        score(*model_, *data, params_.integer("eval_batch"), ctx_.seed(), &ctx_, &per_class);
    kiln::Table table{{"class", "images", "bits_per_dim"}, {}};
    const auto& names = images->class_names();
    for (std::size_t c = 0; c < per_class.size(); ++c) {
      if (per_class[c].second == 0) continue;
      char value[32];
      std::snprintf(value, sizeof value, "%.4f", per_class[c].first / per_class[c].second);
      table.rows.push_back({c < names.size() ? names[c] : std::to_string(c),
                            std::to_string(per_class[c].second), value});
    }
    return {Artifact::make_metrics(
                {{"bits_per_dim", bpd}, {"images", static_cast<double>(data->size())}}),
            Artifact::make_table("bits_per_dim_by_class", std::move(table))};
  }

 private:
  Params params_;
  kiln::TaskContext& ctx_;
  std::unique_ptr<RealNVP> model_;
};

}  // namespace

std::unique_ptr<kiln::Task> make_train_task(const Params& p, kiln::TaskContext& ctx) {
  return std::make_unique<TrainTask>(p, ctx);
}
std::unique_ptr<kiln::Task> make_sample_task(const Params& p, kiln::TaskContext& ctx) {
  return std::make_unique<SampleTask>(p, ctx);
}
std::unique_ptr<kiln::Task> make_evaluate_task(const Params& p, kiln::TaskContext& ctx) {
  return std::make_unique<EvaluateTask>(p, ctx);
}

}  // namespace flow
