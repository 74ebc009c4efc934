// linear for one or two rows (decoding): y[M, N] = x[M, K] W[N, K]^T + b, streaming the weight
// row by row from where the caller holds it.
//
// At M = 1 a linear layer reads each weight once and does two flops per weight, so its speed is
// the memory bandwidth the kernel reaches. oneDNN 2.6's matmul read its packed layout at about
// 16 GB/s on one core here (GPT-2's 3072x768 at M = 1, ONEDNN_VERBOSE); walking each row of the
// [N, K] weight front to back keeps the hardware prefetcher on one stream and reached 26-27 GB/s
// (docs/benchmarks.md, "Decoding GEMV"). Each thread takes a contiguous run of rows.
//
// bf16 weights: x is rounded to bf16 first, as the matmul primitive does (both operands bf16,
// f32 accumulation), so the result does not depend on which path ran. Where the CPU has
// AVX512-BF16 (Zen 4 and later, Cooper Lake, Sapphire Rapids) the bf16 kernel multiplies with
// vdpbf16ps; it streamed GPT-2 small's decoding weights 6-19% faster than widening each weight
// to f32 (8 alternating rounds in one process, 2 threads, 23-28 against 26-31.5 GB/s).
#include "ops/gemv.hpp"

#include <algorithm>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#define KILN_GEMV_X86 1
#define KILN_AVX2 __attribute__((target("avx2,fma")))
#define KILN_AVX512BF16 __attribute__((target("avx2,fma,avx512f,avx512vl,avx512bf16")))
#endif

#include "kiln/dtype.hpp"
#include "ops/op_util.hpp"

namespace kiln::ops::detail {
namespace {

#if KILN_GEMV_X86

KILN_AVX2 inline float hsum(__m256 v) {
  __m128 lo = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
  return _mm_cvtss_f32(lo);
}

// 8 weights at w (f32, or bf16 widened to f32).
KILN_AVX2 inline __m256 load8(const float* w) {
  return _mm256_loadu_ps(w);
}
KILN_AVX2 inline __m256 load8(const std::uint16_t* w) {
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
inline float load1(const float* w) {
  return *w;
}
inline float load1(const std::uint16_t* w) {
  return bf16_to_f32(*w);
}

// G (1 or 2) dot products of one weight row wr[k] with rows of x (row-major, k apart), plus bias,
// into y[0] and y[ldy]: each weight vector is loaded once and multiplied into G sets of four
// accumulators (four independent chains keep enough loads in flight for two cores to reach
// 48-50 GB/s together; two chains reached 35). Both G sum in the same order, so a row's result
// does not depend on whether another row came with it.
template <int G, typename W>
KILN_AVX2 void dot_rows(const float* x, const W* wr, float bias, float* y, std::int64_t k,
                        std::int64_t ldy) {
  const std::int64_t k32 = k - k % 32, k8 = k - k % 8;
  __m256 a[G][4];
  for (int r = 0; r < G; ++r) a[r][0] = a[r][1] = a[r][2] = a[r][3] = _mm256_setzero_ps();
  std::int64_t i = 0;
  for (; i < k32; i += 32) {
    const __m256 w0 = load8(wr + i), w1 = load8(wr + i + 8), w2 = load8(wr + i + 16),
                 w3 = load8(wr + i + 24);
    for (int r = 0; r < G; ++r) {
      const float* xr = x + r * k + i;
      a[r][0] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(xr), a[r][0]);
      a[r][1] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(xr + 8), a[r][1]);
      a[r][2] = _mm256_fmadd_ps(w2, _mm256_loadu_ps(xr + 16), a[r][2]);
      a[r][3] = _mm256_fmadd_ps(w3, _mm256_loadu_ps(xr + 24), a[r][3]);
    }
  }
  for (; i < k8; i += 8) {
    const __m256 w0 = load8(wr + i);
    for (int r = 0; r < G; ++r)
      a[r][0] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + r * k + i), a[r][0]);
  }
  for (int r = 0; r < G; ++r) {
    float s = hsum(_mm256_add_ps(_mm256_add_ps(a[r][0], a[r][1]), _mm256_add_ps(a[r][2], a[r][3])));
    for (std::int64_t j = i; j < k; ++j) s += load1(wr + j) * x[r * k + j];
    y[r * ldy] = s + bias;
  }
}

// The same for bf16 weights with AVX512-BF16: xb is x already rounded to bf16 (m rows, k apart),
// and vdpbf16ps multiplies 16 weight / x pairs exactly and adds them into 8 f32 lanes, one rounding
// per product (two per lane and instruction), so one instruction does the work of four in
// dot_rows (widen, shift, FMA per 8 weights). 256-bit registers: Zen 4 splits 512-bit ones.
// Four chains per row, both G in the same order as in dot_rows.
template <int G>
KILN_AVX512BF16 void dot_rows(const std::uint16_t* xb, const std::uint16_t* wr, float bias,
                              float* y, std::int64_t k, std::int64_t ldy) {
  const std::int64_t k64 = k - k % 64, k16 = k - k % 16;
  __m256 a[G][4];
  for (int r = 0; r < G; ++r) a[r][0] = a[r][1] = a[r][2] = a[r][3] = _mm256_setzero_ps();
  auto ld = [](const std::uint16_t* p) {
    return (__m256bh)_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  };
  std::int64_t i = 0;
  for (; i < k64; i += 64) {
    const __m256bh w0 = ld(wr + i), w1 = ld(wr + i + 16), w2 = ld(wr + i + 32),
                   w3 = ld(wr + i + 48);
    for (int r = 0; r < G; ++r) {
      const std::uint16_t* xr = xb + r * k + i;
      a[r][0] = _mm256_dpbf16_ps(a[r][0], w0, ld(xr));
      a[r][1] = _mm256_dpbf16_ps(a[r][1], w1, ld(xr + 16));
      a[r][2] = _mm256_dpbf16_ps(a[r][2], w2, ld(xr + 32));
      a[r][3] = _mm256_dpbf16_ps(a[r][3], w3, ld(xr + 48));
    }
  }
  for (; i < k16; i += 16) {
    const __m256bh w0 = ld(wr + i);
    for (int r = 0; r < G; ++r) a[r][0] = _mm256_dpbf16_ps(a[r][0], w0, ld(xb + r * k + i));
  }
  for (int r = 0; r < G; ++r) {
    float s = hsum(_mm256_add_ps(_mm256_add_ps(a[r][0], a[r][1]), _mm256_add_ps(a[r][2], a[r][3])));
    for (std::int64_t j = i; j < k; ++j) s += bf16_to_f32(wr[j]) * bf16_to_f32(xb[r * k + j]);
    y[r * ldy] = s + bias;
  }
}

// Rows [n0, n1) of y [m, ldy] = x [m, k] w^T + bias (m = 1 or 2), one weight row at a time, front
// to back, so the hardware prefetcher sees one stream per thread. X is float (x as given, or
// rounded to bf16 and widened) or std::uint16_t (x in bf16 for the vdpbf16ps kernel).
template <typename X, typename W>
void rows(int m, const X* x, const W* w, const float* bias, float* y, std::int64_t k,
          std::int64_t ldy, std::int64_t n0, std::int64_t n1) {
  for (std::int64_t n = n0; n < n1; ++n) {
    const W* wr = w + n * k;
    const float b = bias ? bias[n] : 0.f;
    if (m == 1) {
      dot_rows<1>(x, wr, b, y + n, k, ldy);
    } else {
      dot_rows<2>(x, wr, b, y + n, k, ldy);
    }
  }
}

bool cpu_has_avx512bf16() {
  static const bool ok = __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512vl");
  return ok;
}

bool cpu_has_avx2_fma() {
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return ok;
}

#endif

}  // namespace

bool small_m_linear_applies(std::int64_t m, const TensorImpl& w) {
#if KILN_GEMV_X86
  return m >= 1 && m <= kSmallLinearRows && !w.blocked && w.shape.size() == 2 &&
         w.strides[1] == 1 && w.strides[0] == w.shape[1] &&
         (w.dtype == DType::f32 || w.dtype == DType::bf16) && cpu_has_avx2_fma();
#else
  (void)m;
  (void)w;
  return false;
#endif
}

void small_m_linear(const float* x, std::int64_t m, std::int64_t k, const TensorImpl& w,
                    const float* bias, float* y) {
#if KILN_GEMV_X86
  const std::int64_t n = w.shape[0];
  const bool bf16 = w.dtype == DType::bf16;
  const bool dpbf16 = bf16 && cpu_has_avx512bf16();
  // x rounded to bf16 for bf16 weights (the matmul primitive's semantics): as bf16 for the
  // vdpbf16ps kernel, widened back to f32 for the other.
  thread_local std::vector<float> xr;
  thread_local std::vector<std::uint16_t> xb;
  if (dpbf16) {
    xb.resize(static_cast<std::size_t>(m * k));
    for (std::int64_t i = 0; i < m * k; ++i) xb[static_cast<std::size_t>(i)] = f32_to_bf16(x[i]);
  } else if (bf16) {
    xr.resize(static_cast<std::size_t>(m * k));
    for (std::int64_t i = 0; i < m * k; ++i) {
      xr[static_cast<std::size_t>(i)] = bf16_to_f32(f32_to_bf16(x[i]));
    }
    x = xr.data();
  }
  // Pieces of at least 64 KiB of weights, so a thread's share is worth waking it for.
  const std::int64_t row_bytes = k * (bf16 ? 2 : 4);
  const std::int64_t grain =
      std::max<std::int64_t>(1, (64 << 10) / std::max<std::int64_t>(row_bytes, 1));
  const int mi = static_cast<int>(m);
  if (dpbf16) {
    const auto* wp = static_cast<const std::uint16_t*>(w.data());
    const std::uint16_t* xp = xb.data();
    parallel_range(n, grain, [&](std::int64_t n0, std::int64_t n1) {
      rows(mi, xp, wp, bias, y, k, n, n0, n1);
    });
  } else if (bf16) {
    const auto* wp = static_cast<const std::uint16_t*>(w.data());
    parallel_range(n, grain, [&](std::int64_t n0, std::int64_t n1) {
      rows(mi, x, wp, bias, y, k, n, n0, n1);
    });
  } else {
    const auto* wp = static_cast<const float*>(w.data());
    parallel_range(n, grain, [&](std::int64_t n0, std::int64_t n1) {
      rows(mi, x, wp, bias, y, k, n, n0, n1);
    });
  }
#else
  (void)x;
  (void)m;
  (void)k;
  (void)w;
  (void)bias;
  (void)y;
  throw Error("small_m_linear: not available on this CPU");
#endif
}

}  // namespace kiln::ops::detail
