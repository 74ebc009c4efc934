// End to end: a two-layer MLP learns a three-arm spiral with cross-entropy and plain SGD.
#include <gtest/gtest.h>

#include <cmath>
#include <numbers>

#include "kiln/nn.hpp"
#include "support/test_support.hpp"

namespace kiln {
namespace {

struct Mlp : nn::Module {
  explicit Mlp(Generator& gen)
      : fc1(register_module("fc1", std::make_shared<nn::Linear>(2, 64, true, gen))),
        fc2(register_module("fc2", std::make_shared<nn::Linear>(64, 3, true, gen))) {}
  Tensor forward(const Tensor& x) const {
    return fc2->forward(fc1->forward(x, {.act = ops::Act::relu}));
  }
  std::shared_ptr<nn::Linear> fc1, fc2;
};

// 3 arms x 100 points, as in CS231n's spiral example, with a little noise.
std::pair<Tensor, Tensor> spiral(Generator& gen) {
  const int per = 100, classes = 3;
  std::vector<float> xs;
  std::vector<std::int64_t> ys;
  for (int c = 0; c < classes; ++c) {
    for (int i = 0; i < per; ++i) {
      const float r = static_cast<float>(i) / per;
      const float t = static_cast<float>(c) * 4.f + 4.f * r + 0.2f * gen.normal();
      xs.push_back(r * std::sin(t));
      xs.push_back(r * std::cos(t));
      ys.push_back(c);
    }
  }
  return {Tensor::from_vector(xs, {per * classes, 2}), Tensor::from_ints(ys, {per * classes})};
}

TEST(SmallMlp, LearnsASpiralWithSgd) {
  Generator gen(2024);
  auto [x, y] = spiral(gen);
  Mlp model(gen);
  const float lr = 1.0f;
  float first = 0.f, last = 0.f;
  for (int step = 0; step < 400; ++step) {
    Tensor loss = ops::cross_entropy(model.forward(x), y);
    if (step == 0) first = loss.item();
    last = loss.item();
    model.zero_grad();
    loss.backward();
    NoGradGuard ng;
    for (Tensor p : model.parameters()) p.copy_(p - p.grad() * lr);
  }
  EXPECT_GT(first, 1.0f);  // chance level is log(3) = 1.10
  EXPECT_LT(last, 0.25f);
  NoGradGuard ng;
  const auto pred = ops::argmax(model.forward(x), 1).to_int_vector();
  const auto labels = y.to_int_vector();
  int correct = 0;
  for (std::size_t i = 0; i < pred.size(); ++i) correct += pred[i] == labels[i] ? 1 : 0;
  EXPECT_GT(correct, 270) << "accuracy " << correct << " / 300";
}

}  // namespace
}  // namespace kiln
