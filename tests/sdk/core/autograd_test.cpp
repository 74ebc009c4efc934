#include "kiln/autograd.hpp"

#include <gtest/gtest.h>

#include <cmath>

#include "kiln/ops.hpp"
#include "support/test_support.hpp"

namespace kiln {
namespace {

TEST(Autograd, ChainAndAccumulation) {
  Tensor x = Tensor::from_vector({1, 2, 3}, {3}).set_requires_grad();
  Tensor y = x * x + x * 2.f;  // dy/dx = 2x + 2
  ops::sum(y).backward();
  EXPECT_EQ(x.grad().to_vector(), (std::vector<float>{4, 6, 8}));
  // A second backward on a new graph accumulates.
  ops::sum(x).backward();
  EXPECT_EQ(x.grad().to_vector(), (std::vector<float>{5, 7, 9}));
  x.zero_grad();
  EXPECT_FALSE(x.grad().defined());
}

TEST(Autograd, NoGradRecordsNothing) {
  Tensor x = Tensor::ones({2}).set_requires_grad();
  Tensor y;
  {
    NoGradGuard ng;
    y = x * 3.f;
  }
  EXPECT_FALSE(y.requires_grad());
  EXPECT_THROW(ops::sum(y).backward(), Error);
}

TEST(Autograd, SecondBackwardThroughFreedGraphIsAnError) {
  Tensor x = Tensor::ones({2}).set_requires_grad();
  Tensor l = ops::sum(x * x);
  l.backward();
  EXPECT_THROW(l.backward(), Error);
}

TEST(Autograd, DiamondGraph) {
  Tensor x = Tensor::from_vector({0.5f, -1.f}, {2}).set_requires_grad();
  Tensor a = x * 3.f;
  Tensor b = ops::exp(a);
  Tensor c = a * b;  // c = 3x e^{3x}; dc/dx = 3 e^{3x} + 9x e^{3x}
  ops::sum(c).backward();
  const auto g = x.grad().to_vector();
  EXPECT_NEAR(g[0], 3 * std::exp(1.5) + 4.5 * std::exp(1.5), 1e-4);
  EXPECT_NEAR(g[1], 3 * std::exp(-3.0) - 9 * std::exp(-3.0), 1e-5);
}

TEST(Autograd, ViewGradients) {
  Tensor x = test::random_tensor({2, 3, 4}, 1).set_requires_grad();
  KILN_EXPECT_GRADCHECK(
      [](const TensorList& in) {
        return in[0].permute({2, 0, 1}).slice(0, 1, 4, 2).reshape({-1}).expand({3, 12});
      },
      {x});
  KILN_EXPECT_GRADCHECK([](const TensorList& in) { return in[0].select(1, 2).transpose(0, 1); },
                        {x});
}

}  // namespace
}  // namespace kiln
