// Noise schedules against a PyTorch fixture and their closed forms; sampling timesteps.
#include <gtest/gtest.h>

#include <cmath>

#include "schedule.hpp"
#include "support/test_support.hpp"

namespace diffusion {
namespace {

void expect_matches(const Schedule& s, const std::string& kind) {
  const kiln::Safetensors f = kiln::test::load_fixture("diffusion.safetensors");
  const std::vector<float> betas = f.tensors.at("schedule." + kind + ".betas").to_vector();
  const std::vector<float> abars = f.tensors.at("schedule." + kind + ".alpha_bars").to_vector();
  ASSERT_EQ(s.timesteps(), static_cast<std::int64_t>(betas.size()));
  for (std::int64_t t = 0; t < s.timesteps(); ++t) {
    EXPECT_NEAR(s.beta(t), betas[static_cast<std::size_t>(t)],
                1e-6 * betas[static_cast<std::size_t>(t)] + 1e-9)
        << kind << " t=" << t;
    EXPECT_NEAR(s.alpha_bar(t), abars[static_cast<std::size_t>(t)],
                1e-6 * abars[static_cast<std::size_t>(t)] + 1e-9)
        << kind << " t=" << t;
  }
}

TEST(Schedule, LinearMatchesPyTorch) {
  expect_matches(Schedule::make("linear", 1000), "linear");
}
TEST(Schedule, CosineMatchesPyTorch) {
  expect_matches(Schedule::make("cosine", 1000), "cosine");
}

TEST(Schedule, ClosedForms) {
  const Schedule lin = Schedule::make("linear", 10, 0.1, 0.5);
  EXPECT_DOUBLE_EQ(lin.beta(0), 0.1);
  EXPECT_DOUBLE_EQ(lin.beta(9), 0.5);
  double prod = 1;
  for (std::int64_t t = 0; t < 10; ++t) {
    prod *= 1 - lin.beta(t);
    EXPECT_NEAR(lin.alpha_bar(t), prod, 1e-15);
    EXPECT_DOUBLE_EQ(lin.alpha(t), 1 - lin.beta(t));
  }
  EXPECT_DOUBLE_EQ(lin.alpha_bar_prev(0), 1.0);
  EXPECT_DOUBLE_EQ(lin.alpha_bar_prev(3), lin.alpha_bar(2));
  // Cosine: alpha_bar(t) = f(t + 1) / f(0) while no beta is clipped.
  const Schedule cos = Schedule::make("cosine", 100);
  const auto f = [](double u) {
    const double c = std::cos((u / 100 + 0.008) / 1.008 * M_PI / 2);
    return c * c;
  };
  for (std::int64_t t : {0, 10, 50, 90}) EXPECT_NEAR(cos.alpha_bar(t), f(t + 1) / f(0), 1e-12);
  EXPECT_LE(cos.beta(99), 0.999);
}

TEST(Schedule, BadSettingsAreErrors) {
  EXPECT_THROW(Schedule::make("quadratic", 10), kiln::Error);
  EXPECT_THROW(Schedule::make("linear", 1), kiln::Error);
  EXPECT_THROW(Schedule::make("linear", 10, 0.5, 0.1), kiln::Error);
}

TEST(Schedule, SamplingTimesteps) {
  EXPECT_EQ(sampling_timesteps(10, 10), (std::vector<std::int64_t>{9, 8, 7, 6, 5, 4, 3, 2, 1, 0}));
  EXPECT_EQ(sampling_timesteps(1000, 4), (std::vector<std::int64_t>{999, 666, 333, 0}));
  EXPECT_EQ(sampling_timesteps(1000, 1), (std::vector<std::int64_t>{999}));
  EXPECT_THROW(sampling_timesteps(10, 11), kiln::Error);
  EXPECT_THROW(sampling_timesteps(10, 0), kiln::Error);
}

}  // namespace
}  // namespace diffusion
