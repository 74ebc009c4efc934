// The SIMD kernels of ops/vec_math.hpp against the C library in double precision.
#include "ops/vec_math.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

namespace kiln::ops::detail {
namespace {

// |got - want| in units of the float spacing at want.
double ulps(float got, double want) {
  const double spacing =
      std::nextafter(static_cast<float>(want), std::numeric_limits<float>::max()) -
      static_cast<float>(want);
  return std::fabs(static_cast<double>(got) - want) / spacing;
}

TEST(VecMath, Log1pOnTheUnitIntervalIsWithinTwoUlps) {
  std::vector<float> us = {0.f,   1e-38f,  1e-30f,      1e-12f,      5.9e-8f, 6e-8f,     1e-7f,
                           1e-4f, 0.4142f, 0.41421354f, 0.41421357f, 0.5f,    0.999999f, 1.f};
  for (int i = 0; i <= 100000; ++i) us.push_back(static_cast<float>(i) / 100000.f);
  for (int k = -126; k <= 0; ++k)
    us.push_back(std::ldexp(1.3f, k) > 1.f ? 1.f : std::ldexp(1.3f, k));
  double worst = 0.0;
  float worst_u = 0.f;
  for (const float u : us) {
    const float got = vlog1p_unit(vsplat(u))[0];
    const double want = std::log1p(static_cast<double>(u));
    if (u == 0.f) {
      EXPECT_EQ(got, 0.f);
      continue;
    }
    const double e = ulps(got, want);
    if (e > worst) worst = e, worst_u = u;
  }
  EXPECT_LE(worst, 2.0) << "at u = " << worst_u;
  EXPECT_TRUE(std::isnan(vlog1p_unit(vsplat(std::numeric_limits<float>::quiet_NaN()))[0]));
}

TEST(VecMath, ExpIsWithinTwoUlpsAndSaturates) {
  double worst = 0.0;
  float worst_x = 0.f;
  for (int i = -87000; i <= 88000; i += 3) {
    const float x = static_cast<float>(i) / 1000.f + 1e-4f;
    const double e = ulps(vexp(vsplat(x))[0], std::exp(static_cast<double>(x)));
    if (e > worst) worst = e, worst_x = x;
  }
  EXPECT_LE(worst, 2.0) << "at x = " << worst_x;
  EXPECT_EQ(vexp(vsplat(-std::numeric_limits<float>::infinity()))[0], 0.f);
  EXPECT_EQ(vexp(vsplat(-100.f))[0], 0.f);
  EXPECT_TRUE(std::isnan(vexp(vsplat(std::numeric_limits<float>::quiet_NaN()))[0]));
}

}  // namespace
}  // namespace kiln::ops::detail
