#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "kiln/ops.hpp"
#include "support/test_support.hpp"

namespace kiln {
namespace {

TEST(Elementwise, BroadcastingValues) {
  Tensor a = Tensor::from_vector({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor row = Tensor::from_vector({10, 20, 30}, {3});
  Tensor col = Tensor::from_vector({100, 200}, {2, 1});
  EXPECT_EQ((a + row).to_vector(), (std::vector<float>{11, 22, 33, 14, 25, 36}));
  EXPECT_EQ((a * col).to_vector(), (std::vector<float>{100, 200, 300, 800, 1000, 1200}));
  EXPECT_EQ((row - col).shape(), (Shape{2, 3}));
  EXPECT_EQ((col / row).to_vector()[5], 200.f / 30.f);
  EXPECT_THROW(a + Tensor::zeros({2}), Error);
}

TEST(Elementwise, GradientsOnOddShapes) {
  Tensor a = test::random_tensor({3, 1, 5}, 1).set_requires_grad();
  Tensor b = test::random_tensor({4, 1}, 2, 0.5f, 2.f).set_requires_grad();
  for (auto fn : std::vector<std::function<Tensor(const TensorList&)>>{
           [](const TensorList& in) { return ops::add(in[0], in[1]); },
           [](const TensorList& in) { return ops::sub(in[0], in[1]); },
           [](const TensorList& in) { return ops::mul(in[0], in[1]); },
           [](const TensorList& in) { return ops::div(in[0], in[1]); },
           [](const TensorList& in) { return ops::maximum(in[0], in[1]); },
           [](const TensorList& in) { return ops::minimum(in[0], in[1]); },
       }) {
    KILN_EXPECT_GRADCHECK(fn, {a, b});
  }
}

TEST(Elementwise, UnaryGradients) {
  Tensor x = test::random_tensor({3, 7}, 3, 0.2f, 2.f).set_requires_grad();
  for (auto fn : std::vector<std::function<Tensor(const TensorList&)>>{
           [](const TensorList& in) { return ops::exp(in[0]); },
           [](const TensorList& in) { return ops::log(in[0]); },
           [](const TensorList& in) { return ops::sqrt(in[0]); },
           [](const TensorList& in) { return ops::square(in[0]); },
           [](const TensorList& in) { return ops::pow(in[0], 2.5f); },
           [](const TensorList& in) { return ops::clamp(in[0], 0.5f, 1.5f); },
           [](const TensorList& in) { return ops::abs(in[0] - 1.1f); },
           [](const TensorList& in) { return 2.f - in[0] * 3.f / 4.f; },
       }) {
    KILN_EXPECT_GRADCHECK(fn, {x});
  }
}

TEST(Elementwise, WhereSelectsWithoutNaN) {
  Tensor c = Tensor::from_vector({1, 0, 1}, {3});
  Tensor a = Tensor::from_vector({1, 2, 3}, {3}).set_requires_grad();
  Tensor b = Tensor::full({3}, std::numeric_limits<float>::infinity());
  Tensor y = ops::where(c, a, b);
  EXPECT_EQ(y.to_vector()[0], 1.f);
  EXPECT_TRUE(std::isinf(y.to_vector()[1]));
  ops::sum(ops::where(c, a, Tensor::zeros({3}))).backward();
  EXPECT_EQ(a.grad().to_vector(), (std::vector<float>{1, 0, 1}));
}

TEST(Activation, GradientsAndValues) {
  Tensor x = test::random_tensor({2, 3, 5}, 4, -2.f, 2.f).set_requires_grad();
  for (ops::Act act : {ops::Act::relu, ops::Act::leaky_relu, ops::Act::tanh, ops::Act::sigmoid,
                       ops::Act::gelu, ops::Act::gelu_tanh, ops::Act::silu}) {
    KILN_EXPECT_GRADCHECK([act](const TensorList& in) { return ops::activation(in[0], act, 0.2f); },
                          {x});
  }
  KILN_EXPECT_GRADCHECK([](const TensorList& in) { return ops::softplus(in[0]); }, {x});
  Tensor v = Tensor::from_vector({-1, 0, 2}, {3});
  EXPECT_EQ(ops::relu(v).to_vector(), (std::vector<float>{0, 0, 2}));
  EXPECT_NEAR(ops::sigmoid(v).to_vector()[2], 1.f / (1.f + std::exp(-2.f)), 1e-6);
  EXPECT_NEAR(ops::leaky_relu(v, 0.1f).to_vector()[0], -0.1f, 1e-7);
}

TEST(Reduce, SumMeanAmax) {
  Tensor x = Tensor::arange(24).reshape({2, 3, 4});
  EXPECT_FLOAT_EQ(ops::sum(x).item(), 276.f);
  EXPECT_EQ(ops::sum(x, {0, 2}).to_vector(), (std::vector<float>{60, 92, 124}));
  EXPECT_EQ(ops::sum(x, {1}, true).shape(), (Shape{2, 1, 4}));
  EXPECT_EQ(ops::mean(x, {-1}).to_vector()[0], 1.5f);
  EXPECT_EQ(ops::amax(x, 1).to_vector()[0], 8.f);
  EXPECT_EQ(ops::argmax(x, 2).to_int_vector()[3], 3);
  Tensor y = test::random_tensor({3, 4, 5}, 5).set_requires_grad();
  KILN_EXPECT_GRADCHECK([](const TensorList& in) { return ops::sum(in[0], {0, 2}); }, {y});
  KILN_EXPECT_GRADCHECK([](const TensorList& in) { return ops::mean(in[0], {1}, true); }, {y});
  KILN_EXPECT_GRADCHECK([](const TensorList& in) { return ops::amax(in[0], -1); }, {y});
  // A long reduction stays accurate.
  Tensor big = Tensor::full({1 << 22}, 0.1f);
  EXPECT_NEAR(ops::sum(big).item(), 0.1 * (1 << 22), 1.0);
}

}  // namespace
}  // namespace kiln
