#include <gtest/gtest.h>

#include <cmath>

#include "kiln/nn/init.hpp"
#include "support/test_support.hpp"

namespace kiln {
namespace {

namespace init = nn::init;

struct Stats {
  double mean = 0, std = 0, min = 1e30, max = -1e30;
};
Stats stats(const Tensor& t) {
  const auto v = t.to_vector();
  Stats s;
  for (float x : v) {
    s.mean += x;
    s.min = std::min<double>(s.min, x);
    s.max = std::max<double>(s.max, x);
  }
  s.mean /= static_cast<double>(v.size());
  for (float x : v) s.std += (x - s.mean) * (x - s.mean);
  s.std = std::sqrt(s.std / static_cast<double>(v.size()));
  return s;
}

TEST(Init, FansAndGainsAsPyTorch) {
  EXPECT_EQ(init::calculate_fans({64, 32}).fan_in, 32);
  EXPECT_EQ(init::calculate_fans({64, 32}).fan_out, 64);
  const auto conv = init::calculate_fans({16, 8, 3, 5});  // [out, in, kh, kw]
  EXPECT_EQ(conv.fan_in, 8 * 15);
  EXPECT_EQ(conv.fan_out, 16 * 15);
  EXPECT_THROW(init::calculate_fans({5}), Error);
  // torch.nn.init.calculate_gain values.
  EXPECT_FLOAT_EQ(init::calculate_gain(init::Nonlinearity::linear), 1.f);
  EXPECT_FLOAT_EQ(init::calculate_gain(init::Nonlinearity::sigmoid), 1.f);
  EXPECT_FLOAT_EQ(init::calculate_gain(init::Nonlinearity::tanh), 5.f / 3.f);
  EXPECT_FLOAT_EQ(init::calculate_gain(init::Nonlinearity::relu), std::sqrt(2.f));
  EXPECT_FLOAT_EQ(init::calculate_gain(init::Nonlinearity::leaky_relu), 1.4141428f);
  EXPECT_FLOAT_EQ(init::calculate_gain(init::Nonlinearity::leaky_relu, 0.2f), 1.3867505f);
  EXPECT_FLOAT_EQ(init::calculate_gain(init::Nonlinearity::selu), 0.75f);
}

TEST(Init, DistributionsFollowTheFormulas) {
  Generator gen(1);
  Tensor w = Tensor::empty({256, 400});
  // kaiming_uniform with a = sqrt(5) (nn.Linear's default): U(-1/sqrt(in), 1/sqrt(in)).
  init::kaiming_uniform_(w, gen, std::sqrt(5.f));
  Stats s = stats(w);
  EXPECT_LE(s.max, 1.0 / 20.0);
  EXPECT_GE(s.min, -1.0 / 20.0);
  EXPECT_NEAR(s.std, (1.0 / 20.0) / std::sqrt(3.0), 5e-4);
  // kaiming_normal, relu, fan_out: std = sqrt(2) / sqrt(256).
  init::kaiming_normal_(w, gen, 0.f, init::FanMode::fan_out, init::Nonlinearity::relu);
  s = stats(w);
  EXPECT_NEAR(s.mean, 0.0, 1e-3);
  EXPECT_NEAR(s.std, std::sqrt(2.0 / 256.0), 1e-3);
  // xavier_uniform: bound = gain * sqrt(6 / (in + out)).
  init::xavier_uniform_(w, gen, 2.f);
  s = stats(w);
  const double bound = 2.0 * std::sqrt(6.0 / 656.0);
  EXPECT_LE(s.max, bound);
  EXPECT_NEAR(s.std, bound / std::sqrt(3.0), 1e-3);
  init::xavier_normal_(w, gen);
  EXPECT_NEAR(stats(w).std, std::sqrt(2.0 / 656.0), 1e-3);
  init::normal_(w, gen, 3.f, 0.5f);
  s = stats(w);
  EXPECT_NEAR(s.mean, 3.0, 5e-3);
  EXPECT_NEAR(s.std, 0.5, 5e-3);
  init::uniform_(w, gen, -2.f, 6.f);
  s = stats(w);
  EXPECT_GE(s.min, -2.0);
  EXPECT_LT(s.max, 6.0);
  EXPECT_NEAR(s.mean, 2.0, 2e-2);
  init::zeros_(w);
  EXPECT_EQ(stats(w).max, 0.0);
  init::ones_(w);
  EXPECT_EQ(stats(w).min, 1.0);
  init::constant_(w, 0.25f);
  EXPECT_EQ(stats(w).mean, 0.25);
}

TEST(Init, DeterministicInPlaceAndVersioned) {
  Generator g1(5), g2(5);
  Tensor a = Tensor::empty({8, 3}), b = Tensor::empty({8, 3});
  init::kaiming_normal_(a, g1);
  init::kaiming_normal_(b, g2);
  EXPECT_EQ(a.to_vector(), b.to_vector());
  // A parameter that requires grad is written without recording history.
  Tensor p = Tensor::zeros({4, 4}).set_requires_grad();
  const std::uint64_t v = p.version();
  init::uniform_(p, g1, -1.f, 1.f);
  EXPECT_GT(p.version(), v);
  EXPECT_TRUE(p.is_leaf());
  // Non-contiguous views and bf16 tensors are filled too.
  Tensor big = Tensor::zeros({4, 6});
  init::ones_(big.slice(1, 0, 6, 2));
  EXPECT_EQ(big.to_vector()[2], 1.f);
  EXPECT_EQ(big.to_vector()[1], 0.f);
  Tensor h = Tensor::zeros({3, 3}, DType::bf16);
  init::normal_(h, g1, 10.f, 0.f);
  EXPECT_EQ(h.to_vector()[4], 10.f);
}

TEST(Init, RejectsBadArguments) {
  Generator gen(1);
  EXPECT_THROW(init::kaiming_uniform_(Tensor::empty({5}), gen), Error);
  EXPECT_THROW(init::xavier_normal_(Tensor::empty({5}), gen), Error);
  EXPECT_THROW(init::normal_(Tensor::empty({5}, DType::s32), gen), Error);
  EXPECT_THROW(init::normal_(Tensor::empty({5}), gen, 0.f, -1.f), Error);
  EXPECT_THROW(init::uniform_(Tensor::empty({5}), gen, 1.f, 0.f), Error);
  EXPECT_THROW(init::zeros_(Tensor()), Error);
  EXPECT_THROW(init::kaiming_uniform_(Tensor::empty({0, 3}), gen, 0.f, init::FanMode::fan_out),
               Error);
}

}  // namespace
}  // namespace kiln
