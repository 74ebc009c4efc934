// Inverted dropout. The mask is a pure function of one 64-bit value drawn from the caller's
// Philox and of the element index: element i belongs to chunk i / kChunk, whose bits come from
// Philox(drawn, chunk). Chunks are fixed, so the mask does not depend on the thread count, and
// the same Philox state always gives the same mask.
#include <cstring>

#include "kiln/random.hpp"
#include "ops/op_util.hpp"

namespace kiln::ops {
namespace {

constexpr std::int64_t kChunk = 4096;

// out[i] = keep[i] ? in[i] * scale : 0, for the whole tensor.
Tensor apply_mask(const Tensor& in, const Tensor& keep, float scale) {
  Tensor out = Tensor::empty(in.shape(), DType::f32);
  const float* pi = in.data<float>();
  const std::uint8_t* pk = keep.data<std::uint8_t>();
  float* po = out.data<float>();
  detail::parallel_range(in.numel(), 1 << 15, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t i = b; i < e; ++i) po[i] = pk[i] ? pi[i] * scale : 0.f;
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
  const std::uint64_t seed = rng.next_u64();
  // Keep an element when its 32 random bits are >= p * 2^32, i.e. with probability 1 - p.
  const auto threshold = static_cast<std::uint64_t>(static_cast<double>(p) * 4294967296.0);
  const std::int64_t n = x.numel();
  Tensor keep = Tensor::empty(x.shape(), DType::u8);
  std::uint8_t* pk = keep.data<std::uint8_t>();
  const std::int64_t chunks = (n + kChunk - 1) / kChunk;
  detail::parallel_range(chunks, 4, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t c = b; c < e; ++c) {
      Philox bits(seed, static_cast<std::uint64_t>(c), 0);
      const std::int64_t lo = c * kChunk, hi = std::min(n, lo + kChunk);
      for (std::int64_t i = lo; i < hi; ++i) {
        pk[i] = static_cast<std::uint64_t>(bits.next_u32()) >= threshold ? 1 : 0;
      }
    }
  });
  const float scale = 1.f / (1.f - p);
  out = apply_mask(x, keep, scale);
  if (needs_grad({x_in})) {
    record("dropout", {x_in}, {&out}, [keep, scale, dt = x_in.dtype()](const TensorList& g) {
      Tensor gx = apply_mask(g[0].to(DType::f32).contiguous(), keep, scale);
      return TensorList{dt == DType::f32 ? gx : gx.to(dt)};
    });
  }
  return out;
}

}  // namespace kiln::ops
