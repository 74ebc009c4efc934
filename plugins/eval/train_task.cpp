// eval/train: the classifier on Fashion-MNIST with Adam, a cosine learning-rate decay, random
// flips and shifts, and dropout; evaluate() measures test-set accuracy.
#include <algorithm>
#include <cmath>

#include "classifier.hpp"
#include "kiln/autograd.hpp"
#include "kiln/data.hpp"
#include "kiln/ops.hpp"
#include "kiln/optim.hpp"
#include "kiln/tensor_map.hpp"
#include "tasks.hpp"

namespace kiln_eval {

using kiln::Params;
using kiln::ParamSpec;
using kiln::Tensor;
using kiln::TensorMap;
namespace ops = kiln::ops;

std::vector<ParamSpec> train_params() {
  return {
      ParamSpec::path("data", "/usr/share/datasets/fashion-mnist",
                      "Fashion-MNIST folder (train and t10k IDX files)"),
      ParamSpec::integers("channels", {32, 64, 128}, "Widths of the three conv layers")
          .range(1, 1024),
      ParamSpec::integer("hidden", 128, "Width of the penultimate layer (the feature size)")
          .range(2, 4096),
      ParamSpec::number("dropout", 0.3, "Dropout before the last layer").range(0, 0.9),
      ParamSpec::number("lr", 2e-3, "Adam learning rate").range(1e-6, 1),
      ParamSpec::number("lr_min", 1e-5, "Learning rate at the end of the cosine decay").range(0, 1),
      ParamSpec::integer("cosine_steps", 0,
                         "Steps of the cosine decay from lr to lr_min (0: constant lr)")
          .at_least(0),
      ParamSpec::number("weight_decay", 1e-4, "AdamW weight decay").range(0, 1),
      ParamSpec::choice("augment", "flip", {"none", "flip", "flip_shift"},
                        "Random horizontal flips, optionally shifts of up to 2 pixels"),
      ParamSpec::integer("train_count", 0, "Training images used (0: all 60000)").at_least(0),
      ParamSpec::integer("val_count", 10000, "Test images evaluated after each epoch (0: none)")
          .range(0, 10000)};
}

namespace {

// Flips (and shifts) each image of the batch, from Philox(seed, step, 1 + row).
Tensor augment(const Tensor& images, std::uint64_t seed, std::int64_t step, bool shift) {
  const Tensor x = images.contiguous();
  const std::int64_t n = x.size(0);
  Tensor out = Tensor::zeros(x.shape());
  const float* src = x.data<float>();
  float* dst = out.data<float>();
  for (std::int64_t r = 0; r < n; ++r) {
    kiln::Philox rng(seed, static_cast<std::uint64_t>(step), static_cast<std::uint64_t>(1 + r));
    const bool flip = rng.below(2) == 1;
    const std::int64_t dx = shift ? static_cast<std::int64_t>(rng.below(5)) - 2 : 0;
    const std::int64_t dy = shift ? static_cast<std::int64_t>(rng.below(5)) - 2 : 0;
    for (std::int64_t y = 0; y < 28; ++y) {
      const std::int64_t sy = y - dy;
      if (sy < 0 || sy >= 28) continue;
      for (std::int64_t xx = 0; xx < 28; ++xx) {
        std::int64_t sx = xx - dx;
        if (sx < 0 || sx >= 28) continue;
        if (flip) sx = 27 - sx;
        dst[r * 784 + y * 28 + xx] = src[r * 784 + sy * 28 + sx];
      }
    }
  }
  return out;
}

class TrainClassifier final : public kiln::TrainTask {
 public:
  TrainClassifier(const Params& p, kiln::TaskContext& ctx) : p_(p), ctx_(ctx), gen_(ctx.seed()) {
    model_ = std::make_unique<Classifier>(p.integers("channels"), p.integer("hidden"),
                                          static_cast<float>(p.number("dropout")), 10, gen_);
    opt_ = std::make_unique<kiln::optim::AdamW>(
        model_->named_parameters(),
        kiln::optim::AdamOptions{.lr = static_cast<float>(p.number("lr")),
                                 .weight_decay = static_cast<float>(p.number("weight_decay"))});
    const std::int64_t cos = p.integer("cosine_steps");
    schedule_ =
        cos > 0 ? kiln::optim::make_schedule("cosine", static_cast<float>(p.number("lr")), cos, 0,
                                             1, 0.1f, static_cast<float>(p.number("lr_min")))
                : kiln::optim::make_schedule("constant", static_cast<float>(p.number("lr")), 1, 0);
    auto train = kiln::data::load_fashion_mnist(p.string("data"), "train");
    if (p.integer("train_count") > 0 && p.integer("train_count") < train->size()) {
      std::vector<std::int64_t> idx(static_cast<std::size_t>(p.integer("train_count")));
      for (std::size_t i = 0; i < idx.size(); ++i) idx[i] = static_cast<std::int64_t>(i);
      train_ = kiln::data::subset(train, idx);
    } else {
      train_ = train;
    }
  }

  std::shared_ptr<const kiln::data::Dataset> train_data() override { return train_; }

  kiln::Metrics train_step(const kiln::data::Batch& batch, const kiln::StepInfo& info) override {
    model_->train();
    Tensor x = batch.at("image");
    if (p_.string("augment") != "none")
      x = augment(x, info.seed, info.step, p_.string("augment") == "flip_shift");
    const Tensor& y = batch.at("label");
    kiln::Philox drop(info.seed, static_cast<std::uint64_t>(info.step), 0);
    opt_->zero_grad();
    ClassifierOutput o = model_->forward(x, &drop);
    Tensor loss = ops::cross_entropy(o.logits, y);
    loss.backward();
    const float lr = schedule_->lr(info.step);
    opt_->set_lr(lr);
    opt_->step();
    const std::vector<std::int64_t> pred = ops::argmax(o.logits.detach(), 1).to_int_vector();
    const std::vector<std::int64_t> truth = y.to_int_vector();
    std::int64_t right = 0;
    for (std::size_t i = 0; i < pred.size(); ++i) right += pred[i] == truth[i];
    return {{"loss", loss.item()},
            {"accuracy", static_cast<double>(right) / static_cast<double>(pred.size())},
            {"lr", lr}};
  }

  kiln::Metrics evaluate() override {
    const std::int64_t n = p_.integer("val_count");
    if (n == 0) return {};
    if (!test_) test_ = kiln::data::load_fashion_mnist(p_.string("data"), "test");
    std::vector<std::int64_t> idx(static_cast<std::size_t>(std::min(n, test_->size())));
    for (std::size_t i = 0; i < idx.size(); ++i) idx[i] = static_cast<std::int64_t>(i);
    kiln::data::Batch b = test_->get_batch(idx);
    const Predictions pr = predict(*model_, b.at("image"), 500);
    const std::vector<std::int64_t> truth = b.at("label").to_int_vector();
    double nll = 0;
    std::int64_t right = 0;
    for (std::int64_t i = 0; i < pr.n; ++i) {
      right += pr.argmax(i) == truth[i];
      nll -= std::log(std::max(1e-30f, pr.probs[i * pr.classes + truth[i]]));
    }
    last_accuracy_ = static_cast<double>(right) / static_cast<double>(pr.n);
    return {{"val_loss", nll / static_cast<double>(pr.n)}, {"val_accuracy", last_accuracy_}};
  }

  TensorMap state() const override {
    TensorMap s;
    kiln::add_prefixed(s, "model.", model_->state_dict());
    kiln::add_prefixed(s, "optim.", opt_->state_dict());
    return s;
  }

  void load_state(const TensorMap& state) override {
    const auto parts = kiln::split_prefixed(state, {"model.", "optim."}, "eval/train");
    const TensorMap &model = parts[0], &optim = parts[1];
    for (const auto& [k, v] : model_->state_dict()) {
      KILN_CHECK(model.count(k) == 1, "eval/train: the training state lacks 'model.", k,
                 "'; it was not written by this task");
    }
    model_->load_state_dict(model);
    opt_->load_state_dict(optim);
  }

  kiln::Checkpoint export_model() const override {
    kiln::Checkpoint c;
    for (const auto& [k, v] : model_->state_dict()) c.tensors[k] = v.detach().clone();
    c.metadata = kiln::checkpoint_metadata(kPluginName, kPluginVersion, "train", p_);
    if (last_accuracy_ >= 0) c.metadata["eval.test_accuracy"] = std::to_string(last_accuracy_);
    return c;
  }

 private:
  Params p_;
  kiln::TaskContext& ctx_;
  kiln::Generator gen_;
  std::unique_ptr<Classifier> model_;
  std::unique_ptr<kiln::optim::AdamW> opt_;
  std::unique_ptr<kiln::optim::Schedule> schedule_;
  std::shared_ptr<const kiln::data::Dataset> train_;
  std::shared_ptr<kiln::data::ImageDataset> test_;
  double last_accuracy_ = -1;
};

}  // namespace

std::unique_ptr<kiln::Task> make_train_task(const Params& p, kiln::TaskContext& ctx) {
  return std::make_unique<TrainClassifier>(p, ctx);
}

}  // namespace kiln_eval
