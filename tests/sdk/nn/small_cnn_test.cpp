// A small CNN (conv-relu-pool-conv-relu-linear) built from the conv modules learns a fixed
// synthetic task: classify 8x8 images by the orientation of the bar they contain (horizontal,
// vertical, diagonal, anti-diagonal) at a random position, with noise. Trained with a
// hand-written SGD-with-momentum loop so the test depends on nothing but the ops.
#include <gtest/gtest.h>

#include <cmath>

#include "kiln/nn/conv2d.hpp"
#include "kiln/nn/max_pool2d.hpp"
#include "kiln/ops.hpp"
#include "kiln/random.hpp"
#include "support/test_support.hpp"

namespace kiln {
namespace {

constexpr std::int64_t kSide = 8, kClasses = 4;

// n images [n, 1, 8, 8] and one-hot targets [n, 4]; labels cycle through the classes.
std::pair<Tensor, Tensor> make_bars(std::int64_t n, std::uint64_t seed,
                                    std::vector<std::int64_t>& labels) {
  Philox rng(seed);
  std::vector<float> img(static_cast<std::size_t>(n * kSide * kSide));
  std::vector<float> onehot(static_cast<std::size_t>(n * kClasses), 0.f);
  labels.clear();
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int64_t label = i % kClasses;
    labels.push_back(label);
    onehot[static_cast<std::size_t>(i * kClasses + label)] = 1.f;
    float* p = img.data() + i * kSide * kSide;
    for (std::int64_t k = 0; k < kSide * kSide; ++k) p[k] = 0.3f * (rng.uniform() - 0.5f);
    const auto pos = static_cast<std::int64_t>(rng.below(kSide));
    const auto len = 4 + static_cast<std::int64_t>(rng.below(3));  // a bar of 4..6 pixels
    const auto start =
        static_cast<std::int64_t>(rng.below(static_cast<std::uint64_t>(kSide - len + 1)));
    for (std::int64_t t = start; t < start + len; ++t) {
      std::int64_t r = 0, c = 0;
      switch (label) {
        case 0:
          r = pos, c = t;
          break;  // horizontal
        case 1:
          r = t, c = pos;
          break;  // vertical
        case 2:
          r = t, c = t;
          break;  // diagonal
        default:
          r = t, c = kSide - 1 - t;
          break;  // anti-diagonal
      }
      p[r * kSide + c] += 1.f;
    }
  }
  return {Tensor::from_vector(img, {n, 1, kSide, kSide}),
          Tensor::from_vector(onehot, {n, kClasses})};
}

struct SmallCnn {
  explicit SmallCnn(Generator& gen)
      : conv1(1, 8, 3, {.padding = {1, 1}, .act = ops::Act::relu}, true, gen),
        conv2(8, 16, 3, {.padding = {1, 1}, .act = ops::Act::relu}, true, gen),
        pool(2) {
    const float bound = 1.f / std::sqrt(256.f);
    fc_w = Tensor::rand({kClasses, 256}, gen, -bound, bound).set_requires_grad();
    fc_b = Tensor::rand({kClasses}, gen, -bound, bound).set_requires_grad();
  }
  Tensor forward(const Tensor& x) {
    Tensor h = conv2.forward(pool.forward(conv1.forward(x)));  // [N, 16, 4, 4]
    return ops::linear(h.flatten(1), fc_w, fc_b);
  }
  TensorList parameters() {
    TensorList p = conv1.parameters();
    for (const Tensor& t : conv2.parameters()) p.push_back(t);
    p.push_back(fc_w);
    p.push_back(fc_b);
    return p;
  }
  nn::Conv2d conv1, conv2;
  nn::MaxPool2d pool;
  Tensor fc_w, fc_b;
};

double accuracy(const Tensor& logits, const std::vector<std::int64_t>& labels) {
  const std::vector<std::int64_t> pred = ops::argmax(logits, 1).to_int_vector();
  std::int64_t right = 0;
  for (std::size_t i = 0; i < labels.size(); ++i) right += pred[i] == labels[i] ? 1 : 0;
  return static_cast<double>(right) / static_cast<double>(labels.size());
}

TEST(SmallCnn, LearnsBarOrientation) {
  std::vector<std::int64_t> train_labels, test_labels;
  auto [x, y] = make_bars(128, 1, train_labels);
  auto [xt, yt] = make_bars(64, 2, test_labels);
  Generator gen(5);
  SmallCnn net(gen);
  TensorList params = net.parameters();
  TensorList velocity;
  for (const Tensor& p : params) velocity.push_back(Tensor::zeros(p.shape()));
  const float lr = 0.05f, momentum = 0.9f;
  float first_loss = 0.f, loss_value = 0.f;
  for (int step = 0; step < 150; ++step) {
    for (Tensor& p : params) p.zero_grad();
    Tensor loss = ops::mse_loss(net.forward(x), y);
    loss.backward();
    loss_value = loss.item();
    if (step == 0) first_loss = loss_value;
    NoGradGuard ng;
    for (std::size_t i = 0; i < params.size(); ++i) {
      velocity[i] = ops::add(ops::mul_scalar(velocity[i], momentum), params[i].grad());
      params[i].copy_(ops::sub(params[i], ops::mul_scalar(velocity[i], lr)));
    }
  }
  EXPECT_GT(first_loss, 0.2f);
  EXPECT_LT(loss_value, 0.03f) << "started at " << first_loss;
  NoGradGuard ng;
  EXPECT_EQ(accuracy(net.forward(x), train_labels), 1.0);
  EXPECT_GE(accuracy(net.forward(xt), test_labels), 0.9);
}

}  // namespace
}  // namespace kiln
