// Small inline kernels that the compiler vectorises (internal): an exp built from arithmetic
// only (std::exp does not vectorise without -ffast-math), and reductions with independent lane
// accumulators (a single float accumulator would not vectorise, since reassociation changes
// rounding). Used by the softmax-like row kernels of attention and cross-entropy.
#pragma once

#include <bit>
#include <cstdint>
#include <limits>

namespace kiln::ops::detail {

// e^x for x <= 88 (Cephes' expf polynomial, within 2 ulp of std::exp on that range); inputs
// below ln(FLT_MIN) give exactly 0 (so e^-inf = 0), NaN gives NaN.
inline float exp_small(float x) {
  constexpr float kLo = -87.33654f, kHi = 88.f;
  float xc = x < kLo ? kLo : x;
  xc = xc > kHi ? kHi : xc;
  // k = round(x / ln 2) through the 1.5 * 2^23 trick (no float-to-int conversion).
  const float shifted = xc * 1.44269504088896341f + 12582912.f;
  const float kf = shifted - 12582912.f;
  float r = xc - kf * 0.693359375f;
  r = r - kf * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float y = p * r * r + r + 1.f;
  // 2^k: the biased exponent k + 127 in the exponent field (unsigned arithmetic, no overflow).
  const std::uint32_t biased = std::bit_cast<std::uint32_t>(shifted) - 0x4B400000u + 127u;
  const float scale = std::bit_cast<float>(biased << 23);
  const float result = y * scale;
  return x < kLo ? 0.f : result;
}

constexpr int kLanes = 16;

inline float dot(const float* a, const float* b, std::int64_t n) {
  float acc[kLanes] = {};
  std::int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) acc[l] += a[i + l] * b[i + l];
  }
  float tail = 0.f;
  for (; i < n; ++i) tail += a[i] * b[i];
  for (int w = kLanes / 2; w >= 1; w /= 2) {
    for (int l = 0; l < w; ++l) acc[l] += acc[l + w];
  }
  return acc[0] + tail;
}

// max(p[0..n)), -inf for n == 0 (NaNs are skipped; callers propagate them through exp).
inline float max_of(const float* p, std::int64_t n) {
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  float acc[kLanes];
  for (float& a : acc) a = kNegInf;
  std::int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) acc[l] = p[i + l] > acc[l] ? p[i + l] : acc[l];
  }
  float m = kNegInf;
  for (; i < n; ++i) m = p[i] > m ? p[i] : m;
  for (int l = 0; l < kLanes; ++l) m = acc[l] > m ? acc[l] : m;
  return m;
}

// p[i] = e^(p[i] - shift) in place; returns the sum of the results.
inline float exp_shift_sum(float* p, std::int64_t n, float shift) {
  float acc[kLanes] = {};
  std::int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) {
      const float e = exp_small(p[i + l] - shift);
      p[i + l] = e;
      acc[l] += e;
    }
  }
  float tail = 0.f;
  for (; i < n; ++i) {
    p[i] = exp_small(p[i] - shift);
    tail += p[i];
  }
  for (int w = kLanes / 2; w >= 1; w /= 2) {
    for (int l = 0; l < w; ++l) acc[l] += acc[l + w];
  }
  return acc[0] + tail;
}

// Sum of e^(p[i] - shift), p unchanged.
inline float exp_shift_total(const float* p, std::int64_t n, float shift) {
  float acc[kLanes] = {};
  std::int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) acc[l] += exp_small(p[i + l] - shift);
  }
  float tail = 0.f;
  for (; i < n; ++i) tail += exp_small(p[i] - shift);
  for (int w = kLanes / 2; w >= 1; w /= 2) {
    for (int l = 0; l < w; ++l) acc[l] += acc[l + w];
  }
  return acc[0] + tail;
}

}  // namespace kiln::ops::detail
