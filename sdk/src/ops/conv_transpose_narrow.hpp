// conv_transpose2d with few output channels as a GEMM and a col2im scatter (internal; see
// conv_transpose_narrow.cpp).
#pragma once

#include <cstdint>

#include "kiln/ops.hpp"

namespace kiln::ops::detail {

// The most output channels the GEMM route takes. oneDNN's deconvolution vectorises over output
// channels (16 per AVX-512 register), so below one register's worth most of its work is padding.
inline constexpr std::int64_t kNarrowTransposeChannels = 4;

struct NarrowTransposeGeom {
  std::int64_t groups = 1, oc = 0;
  bool f32 = false;  // x, w (and b) f32: bf16 stays on oneDNN
  std::int64_t oh = 0, ow = 0, sh = 1, sw = 1, ph = 0, pw = 0, dh = 1, dw = 1;
};

bool narrow_transpose_applies(const NarrowTransposeGeom& g);

// act(conv_transpose2d(x, w, b)) for x [N, Cin, H, W] (any layout), w [Cin, Cout, kh, kw], b
// [Cout] or undefined, output [N, Cout, oh, ow] plain f32; differentiable in x, w and b.
Tensor conv_transpose2d_narrow(const Tensor& x, const Tensor& w, const Tensor& b,
                               const NarrowTransposeGeom& g, Act act, float alpha);

}  // namespace kiln::ops::detail
