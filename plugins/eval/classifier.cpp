#include "classifier.hpp"

#include <algorithm>

#include "kiln/autograd.hpp"
#include "kiln/ops.hpp"
#include "kiln/safetensors.hpp"
#include "tasks.hpp"

namespace kiln_eval {

namespace nn = kiln::nn;
namespace ops = kiln::ops;
using kiln::Tensor;

namespace {
constexpr float kMean = 0.2860f;  // Fashion-MNIST training pixels
constexpr float kStd = 0.3530f;
}  // namespace

Classifier::Classifier(const std::vector<std::int64_t>& ch, std::int64_t hidden, float dropout,
                       std::int64_t classes, kiln::Generator& gen)
    : hidden_(hidden), classes_(classes) {
  KILN_CHECK(ch.size() == 3, "eval: 'channels' must list 3 widths, got ", ch.size());
  const ops::Conv2dOptions same{.padding = {1, 1}};
  conv1_ = register_module("conv1", std::make_shared<nn::Conv2d>(1, ch[0], 3, same, false, gen));
  bn1_ = register_module("bn1", std::make_shared<nn::BatchNorm2d>(ch[0]));
  conv2_ =
      register_module("conv2", std::make_shared<nn::Conv2d>(ch[0], ch[1], 3, same, false, gen));
  bn2_ = register_module("bn2", std::make_shared<nn::BatchNorm2d>(ch[1]));
  conv3_ =
      register_module("conv3", std::make_shared<nn::Conv2d>(ch[1], ch[2], 3, same, false, gen));
  bn3_ = register_module("bn3", std::make_shared<nn::BatchNorm2d>(ch[2]));
  fc1_ = register_module("fc1", std::make_shared<nn::Linear>(ch[2] * 9, hidden, true, gen));
  drop_ = register_module("drop", std::make_shared<nn::Dropout>(dropout));
  fc2_ = register_module("fc2", std::make_shared<nn::Linear>(hidden, classes, true, gen));
}

ClassifierOutput Classifier::forward(const Tensor& x, kiln::Philox* rng) {
  KILN_CHECK(x.dim() == 4 && x.size(1) == 1 && x.size(2) == 28 && x.size(3) == 28,
             "eval: the classifier takes [N, 1, 28, 28] images, got ", kiln::shape_str(x.shape()));
  const ops::Pool2dOptions pool{.kernel = {2, 2}};
  Tensor h = ops::mul_scalar(ops::add_scalar(x, -kMean), 1.f / kStd);
  h = ops::max_pool2d(ops::relu(bn1_->forward(conv1_->forward(h))), pool);
  h = ops::max_pool2d(ops::relu(bn2_->forward(conv2_->forward(h))), pool);
  h = ops::max_pool2d(ops::relu(bn3_->forward(conv3_->forward(h))), pool);
  ClassifierOutput out;
  out.features = fc1_->forward(h.contiguous().flatten(1), {.act = ops::Act::relu});
  Tensor d = out.features;
  if (is_training() && drop_->p() > 0.f) {
    KILN_CHECK(rng != nullptr, "eval: dropout in training needs a random generator");
    d = drop_->forward(d, *rng);
  }
  out.logits = fc2_->forward(d);
  return out;
}

std::int64_t Predictions::argmax(std::int64_t i) const {
  const float* p = probs.data() + i * classes;
  return std::max_element(p, p + classes) - p;
}

Predictions predict(Classifier& model, const Tensor& images, std::int64_t batch) {
  kiln::NoGradGuard ng;
  const bool was_training = model.is_training();
  model.eval();
  Predictions out;
  out.n = images.size(0);
  out.hidden = model.hidden();
  out.classes = model.classes();
  out.features.resize(static_cast<std::size_t>(out.n * out.hidden));
  out.probs.resize(static_cast<std::size_t>(out.n * out.classes));
  for (std::int64_t b0 = 0; b0 < out.n; b0 += batch) {
    const std::int64_t b1 = std::min(out.n, b0 + batch);
    ClassifierOutput o = model.forward(images.slice(0, b0, b1).contiguous(), nullptr);
    const Tensor f = o.features.contiguous();
    const Tensor p = ops::softmax(o.logits, -1).contiguous();
    std::copy_n(f.data<float>(), (b1 - b0) * out.hidden, out.features.data() + b0 * out.hidden);
    std::copy_n(p.data<float>(), (b1 - b0) * out.classes, out.probs.data() + b0 * out.classes);
  }
  model.train(was_training);
  return out;
}

std::unique_ptr<Classifier> load_classifier(const std::filesystem::path& file) {
  kiln::Safetensors st = kiln::load_safetensors(file);
  const kiln::Params p =
      kiln::checkpoint_params(st.metadata, kPluginName, train_params(), file.string());
  kiln::Generator gen(0);
  auto m = std::make_unique<Classifier>(p.integers("channels"), p.integer("hidden"),
                                        static_cast<float>(p.number("dropout")), 10, gen);
  m->load_state_dict(st.tensors);
  m->eval();
  return m;
}

}  // namespace kiln_eval
