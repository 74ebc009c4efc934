// Inverted dropout. The mask is counter-based: the call draws one 64-bit key from the caller's
// Philox, and element i's 32 random bits are word (i % 32) / 8 of the Philox4x32-10 block whose
// counter is i / 32 * 8 + i % 8 (the key being the drawn value). So the mask is a pure function
// of (drawn key, i): the same Philox state always gives the same mask, whatever the thread
// count or how the work is split. Eight blocks (32 elements) are computed at once on GCC vector
// lanes, fused with applying the mask.
#include <cstring>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include "kiln/random.hpp"
#include "ops/op_util.hpp"

namespace kiln::ops {
namespace {

constexpr std::int64_t kGroup = 32;  // elements per group of 8 Philox blocks

using U32x8 = std::uint32_t __attribute__((vector_size(32)));

// Per 32-bit lane: lo/hi halves of the 64-bit product a * m.
inline void mulhilo(const U32x8& a, std::uint32_t m, U32x8& lo, U32x8& hi) {
#if defined(__AVX2__)
  const __m256i va = reinterpret_cast<__m256i>(a);
  const __m256i vm = _mm256_set1_epi32(static_cast<int>(m));
  const __m256i even = _mm256_mul_epu32(va, vm);                        // lanes 0, 2, 4, 6
  const __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(va, 32), vm);  // lanes 1, 3, 5, 7
  lo = reinterpret_cast<U32x8>(_mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA));
  hi = reinterpret_cast<U32x8>(_mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA));
#else
  using U64x8 = std::uint64_t __attribute__((vector_size(64)));
  const U64x8 p = __builtin_convertvector(a, U64x8) * std::uint64_t{m};
  lo = __builtin_convertvector(p, U32x8);
  hi = __builtin_convertvector(p >> 32, U32x8);
#endif
}

// The 8 Philox4x32-10 blocks with counters {8 g + j, 0, 0} (j = 0..7) under the key (k0, k1),
// stored so that bits[w * 8 + j] is word w of block j.
inline void philox_group(std::uint64_t g, std::uint32_t k0, std::uint32_t k1,
                         std::uint32_t bits[kGroup]) {
  const std::uint64_t base = g * 8;
  U32x8 c0, c1, c2{}, c3{};
  for (int j = 0; j < 8; ++j) {
    c0[j] = static_cast<std::uint32_t>(base + static_cast<std::uint64_t>(j));
    c1[j] = static_cast<std::uint32_t>((base + static_cast<std::uint64_t>(j)) >> 32);
  }
  for (int round = 0; round < 10; ++round) {
    U32x8 lo0, hi0, lo1, hi1;
    mulhilo(c0, 0xD2511F53u, lo0, hi0);
    mulhilo(c2, 0xCD9E8D57u, lo1, hi1);
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  std::memcpy(bits, &c0, 32);
  std::memcpy(bits + 8, &c1, 32);
  std::memcpy(bits + 16, &c2, 32);
  std::memcpy(bits + 24, &c3, 32);
}

// out[i] = in[i] * (keep[i] ? scale : 0), for the whole tensor (as PyTorch, a dropped inf or
// NaN gives NaN).
Tensor apply_mask(const Tensor& in, const Tensor& keep, float scale) {
  Tensor out = Tensor::empty(in.shape(), DType::f32);
  const float* pi = in.data<float>();
  const std::uint8_t* pk = keep.data<std::uint8_t>();
  float* po = out.data<float>();
  detail::parallel_range(in.numel(), 1 << 15, [pi, pk, po, scale](std::int64_t b, std::int64_t e) {
    for (std::int64_t i = b; i < e; ++i) po[i] = pi[i] * (static_cast<float>(pk[i]) * scale);
  });
  return out;
}

}  // namespace

Tensor dropout(const Tensor& x_in, float p, bool training, Philox& rng) {
  detail::require_defined(x_in, "dropout", "x");
  KILN_CHECK(p >= 0.f && p <= 1.f, "dropout: probability p must be in [0, 1], got ", p);
  if (!training || p == 0.f) return x_in;
  Tensor x = detail::as_f32(x_in, "dropout", "x");
  Tensor out;
  if (p == 1.f) {
    out = Tensor::zeros(x.shape());
    if (needs_grad({x_in})) {
      record("dropout", {x_in}, {&out}, [shape = x.shape(), dt = x_in.dtype()](const TensorList&) {
        return TensorList{Tensor::zeros(shape, dt)};
      });
    }
    return out;
  }
  const std::uint64_t key = rng.next_u64();
  const auto k0 = static_cast<std::uint32_t>(key), k1 = static_cast<std::uint32_t>(key >> 32);
  // Keep an element when its 32 random bits are >= p * 2^32, i.e. with probability 1 - p
  // (p < 1 here, so the threshold fits 32 bits).
  const auto threshold = static_cast<std::uint32_t>(static_cast<double>(p) * 4294967296.0);
  const float scale = 1.f / (1.f - p);
  const std::int64_t n = x.numel();
  Tensor keep = Tensor::empty(x.shape(), DType::u8);
  out = Tensor::empty(x.shape(), DType::f32);
  const float* px = x.data<float>();
  std::uint8_t* pk = keep.data<std::uint8_t>();
  float* po = out.data<float>();
  const std::int64_t groups = (n + kGroup - 1) / kGroup;
  detail::parallel_range(groups, 1024, [=](std::int64_t b, std::int64_t e) {
    alignas(32) std::uint32_t bits[kGroup];
    for (std::int64_t g = b; g < e; ++g) {
      philox_group(static_cast<std::uint64_t>(g), k0, k1, bits);
      const std::int64_t lo = g * kGroup, m = std::min(kGroup, n - lo);
      const float* xs = px + lo;
      float* os = po + lo;
      std::uint8_t* ks = pk + lo;
      for (std::int64_t i = 0; i < m; ++i) {
        const std::uint32_t k = bits[i] >= threshold ? 1u : 0u;
        ks[i] = static_cast<std::uint8_t>(k);
        os[i] = xs[i] * (static_cast<float>(k) * scale);
      }
    }
  });
  if (needs_grad({x_in})) {
    record("dropout", {x_in}, {&out}, [keep, scale, dt = x_in.dtype()](const TensorList& g) {
      Tensor gx = apply_mask(g[0].to(DType::f32).contiguous(), keep, scale);
      return TensorList{dt == DType::f32 ? gx : gx.to(dt)};
    });
  }
  return out;
}

}  // namespace kiln::ops
