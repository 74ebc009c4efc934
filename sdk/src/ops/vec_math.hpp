// Small SIMD kernels for the softmax-like row kernels of attention and cross-entropy (internal).
//
// GCC will not vectorise std::exp (no -ffast-math) nor if-convert float selects under its default
// -ftrapping-math, so these use GCC's generic vector extension: 8 float lanes when the target has
// AVX (Release builds target x86-64-v3), 4 otherwise. The exp is Cephes' expf polynomial built
// from arithmetic and bit operations (within 2 ulp of std::exp for x <= 88; e^x = 0 below
// ln(FLT_MIN), so e^-inf = 0; NaN stays NaN). Reductions keep independent lane accumulators and
// combine them in a fixed order, so results depend only on the input, never on threads.
#pragma once

#include <cstdint>
#include <cstring>
#include <limits>

namespace kiln::ops::detail {

#if defined(__AVX__)
constexpr int kVec = 8;
#else
constexpr int kVec = 4;  // SSE width: no ABI change for vector arguments without AVX
#endif
using VecF = float __attribute__((vector_size(kVec * sizeof(float))));
using VecU = std::uint32_t __attribute__((vector_size(kVec * sizeof(float))));
using VecH = std::uint16_t __attribute__((vector_size(kVec * sizeof(std::uint16_t))));

inline VecF vload(const float* p) {
  VecF v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void vstore(float* p, VecF v) {
  std::memcpy(p, &v, sizeof v);
}
inline VecF vsplat(float x) {
  return VecF{} + x;
}
// kVec bf16 values widened to f32 (bf16 is the top half of an f32).
inline VecF vload_bf16(const std::uint16_t* p) {
  VecH h;
  std::memcpy(&h, p, sizeof h);
  return reinterpret_cast<VecF>(__builtin_convertvector(h, VecU) << 16);
}

inline VecF vexp(VecF x) {
  const VecF lo = vsplat(-87.33654f), hi = vsplat(88.f);
  VecF xc = x < lo ? lo : x;
  xc = xc > hi ? hi : xc;
  // k = round(x / ln 2) through the 1.5 * 2^23 trick; its bits give 2^k without conversions.
  const VecF shifted = xc * 1.44269504088896341f + 12582912.f;
  const VecF kf = shifted - 12582912.f;
  VecF r = xc - kf * 0.693359375f;
  r = r - kf * -2.12194440e-4f;
  VecF p = vsplat(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const VecF y = p * r * r + r + 1.f;
  const VecU biased = (reinterpret_cast<VecU>(shifted) - 0x4B400000u + 127u) << 23;
  const VecF result = y * reinterpret_cast<VecF>(biased);
  return x < lo ? vsplat(0.f) : result;
}

// ln(1 + u) for u in [0, 1] (e.g. u = e^-|x| in softplus): Cephes' logf polynomial on y = 1 + u,
// reduced to [sqrt(1/2), sqrt(2)), then the first-order correction for the rounding of 1 + u,
// ln(1 + u) = ln(y) - ((y - 1) - u) / y, which keeps tiny u exact (y = 1 gives u). Within 2 ulp of
// std::log1p on [0, 1]. Lanes outside [0, 1] are not meaningful; NaN stays NaN.
inline VecF vlog1p_unit(VecF u) {
  const VecF y = u + 1.f;
  const auto upper = y >= 1.41421356237f;  // reduce: y = 2^e * m, m in [sqrt(1/2), sqrt(2))
  const VecF e = upper ? vsplat(1.f) : vsplat(0.f);
  const VecF x = (upper ? y * 0.5f : y) - 1.f;
  const VecF z = x * x;
  VecF p = vsplat(7.0376836292e-2f);
  p = p * x - 1.1514610310e-1f;
  p = p * x + 1.1676998740e-1f;
  p = p * x - 1.2420140846e-1f;
  p = p * x + 1.4249322787e-1f;
  p = p * x - 1.6668057665e-1f;
  p = p * x + 2.0000714765e-1f;
  p = p * x - 2.4999993993e-1f;
  p = p * x + 3.3333331174e-1f;
  VecF r = p * x * z;
  r = r + e * -2.12194440e-4f;
  r = r - 0.5f * z;
  const VecF log_y = x + r + e * 0.693359375f;
  return log_y - ((y - 1.f) - u) / y;
}

// Scalar e^x with exactly the vector kernel's rounding (used for loop tails).
inline float exp_small(float x) {
  return vexp(vsplat(x))[0];
}

inline float hsum(VecF v) {
  float s = 0.f;
  for (int l = 0; l < kVec; ++l) s += v[l];
  return s;
}

// sum a[i] * b[i]
inline float dot(const float* a, const float* b, std::int64_t n) {
  VecF acc0{}, acc1{};
  std::int64_t i = 0;
  for (; i + 2 * kVec <= n; i += 2 * kVec) {
    acc0 += vload(a + i) * vload(b + i);
    acc1 += vload(a + i + kVec) * vload(b + i + kVec);
  }
  for (; i + kVec <= n; i += kVec) acc0 += vload(a + i) * vload(b + i);
  float tail = 0.f;
  for (; i < n; ++i) tail += a[i] * b[i];
  return hsum(acc0 + acc1) + tail;
}

// sum a[i] * bf16(b[i])
inline float dot_bf16(const float* a, const std::uint16_t* b, std::int64_t n) {
  VecF acc0{}, acc1{};
  std::int64_t i = 0;
  for (; i + 2 * kVec <= n; i += 2 * kVec) {
    acc0 += vload(a + i) * vload_bf16(b + i);
    acc1 += vload(a + i + kVec) * vload_bf16(b + i + kVec);
  }
  for (; i + kVec <= n; i += kVec) acc0 += vload(a + i) * vload_bf16(b + i);
  float tail = 0.f;
  for (; i < n; ++i) {
    std::uint32_t u = static_cast<std::uint32_t>(b[i]) << 16;
    float f;
    std::memcpy(&f, &u, sizeof f);
    tail += a[i] * f;
  }
  return hsum(acc0 + acc1) + tail;
}

// max(p[0..n)), -inf for n == 0 (NaNs are skipped; callers propagate them through exp).
inline float max_of(const float* p, std::int64_t n) {
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  VecF acc = vsplat(kNegInf);
  std::int64_t i = 0;
  for (; i + kVec <= n; i += kVec) {
    const VecF v = vload(p + i);
    acc = v > acc ? v : acc;
  }
  float m = kNegInf;
  for (; i < n; ++i) m = p[i] > m ? p[i] : m;
  for (int l = 0; l < kVec; ++l) m = acc[l] > m ? acc[l] : m;
  return m;
}

// p[i] = e^(p[i] - shift) in place; returns the sum of the results.
inline float exp_shift_sum(float* p, std::int64_t n, float shift) {
  const VecF s = vsplat(shift);
  VecF acc{};
  std::int64_t i = 0;
  for (; i + kVec <= n; i += kVec) {
    const VecF e = vexp(vload(p + i) - s);
    vstore(p + i, e);
    acc += e;
  }
  float tail = 0.f;
  for (; i < n; ++i) {
    p[i] = exp_small(p[i] - shift);
    tail += p[i];
  }
  return hsum(acc) + tail;
}

// Sum of e^(p[i] - shift), p unchanged.
inline float exp_shift_total(const float* p, std::int64_t n, float shift) {
  const VecF s = vsplat(shift);
  VecF acc{};
  std::int64_t i = 0;
  for (; i + kVec <= n; i += kVec) acc += vexp(vload(p + i) - s);
  float tail = 0.f;
  for (; i < n; ++i) tail += exp_small(p[i] - shift);
  return hsum(acc) + tail;
}

// out[i] = e^(x[i] - shift[i])
inline void exp_sub(const float* x, const float* shift, float* out, std::int64_t n) {
  std::int64_t i = 0;
  for (; i + kVec <= n; i += kVec) vstore(out + i, vexp(vload(x + i) - vload(shift + i)));
  for (; i < n; ++i) out[i] = exp_small(x[i] - shift[i]);
}

// out[i] = e^(x[i] - shift)
inline void exp_sub_scalar(const float* x, float shift, float* out, std::int64_t n) {
  const VecF s = vsplat(shift);
  std::int64_t i = 0;
  for (; i + kVec <= n; i += kVec) vstore(out + i, vexp(vload(x + i) - s));
  for (; i < n; ++i) out[i] = exp_small(x[i] - shift);
}

}  // namespace kiln::ops::detail
