// Layout helpers shared by the convolution, pooling and normalisation ops (internal).
//
// These ops let oneDNN choose blocked layouts (format `any`) and pass them on to the next
// primitive, so they need: descriptor bytes in primitive-cache keys, a cached reorder into the
// layout a primitive wants (a no-op when the tensor already has it), and a reorder into an
// existing tensor (gradients written back into the caller's plain layout).
#pragma once

#include <bit>
#include <cstdint>

#include "ops/op_util.hpp"

namespace kiln::ops::detail {

// Appends the bytes of `md` (dims, data type and layout) to a primitive-cache key.
void add_md(PrimitiveKey& key, const dnnl::memory::desc& md);

// The bit pattern of a float, for cache keys (exact, unlike scaling and rounding).
inline std::int64_t float_key(float f) {
  return std::bit_cast<std::int32_t>(f);
}

// `t` laid out as `md` (data type and layout): `t` itself when it already is, otherwise a new
// tensor written by a (cached) reorder primitive. Plain strided views are made dense first.
// Not differentiable: use it on detached tensors inside ops.
Tensor to_desc(const Tensor& t, const dnnl::memory::desc& md);

// Reorders `src` (described by src_md) into the memory at `dst` described by dst_md.
void reorder_into(const dnnl::memory::desc& src_md, void* src, const dnnl::memory::desc& dst_md,
                  void* dst);

// `t` unchanged when blocked or dense; a dense copy of a strided plain view otherwise.
inline Tensor dense_or_blocked(const Tensor& t) {
  return t.is_blocked() || t.is_contiguous() ? t : t.contiguous();
}

// An [N, C, *] tensor viewed as [N][CB][S][B]: CB channel blocks of B lanes, channel c = block * B
// + lane. Plain NC... is CB = C, B = 1; nChw16c is CB = C/16 (rounded up), B = 16; channels-last
// (NHWC) is CB = 1, B = C.
struct ChannelLayout {
  std::int64_t n = 0, c = 0, cb = 0, blk = 1, s = 1;
  float* at(float* base, std::int64_t ni, std::int64_t b) const {
    return base + (ni * cb + b) * s * blk;
  }
  const float* at(const float* base, std::int64_t ni, std::int64_t b) const {
    return base + (ni * cb + b) * s * blk;
  }
};

// Recognises (filling l) oneDNN layouts whose innermost elements are channels: one inner block over
// the channel dimension (nCw8c, nChw16c, ...) or channels-last. Outer dimensions must be dense in
// the order n, channel block, spatial.
bool channel_inner_layout(const Tensor& x, ChannelLayout& l);

// A plain f32 [n] vector of a defined tensor with n elements (converted and made dense).
Tensor f32_vector(const Tensor& t);

}  // namespace kiln::ops::detail
