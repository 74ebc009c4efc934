// Transposed convolution as a matrix product and a col2im scatter (as PyTorch computes it), for
// the decoder's last layer: oneDNN 2.6 pads its single output channel to 16 and runs far below
// its convolution speed there, while a GEMM W^T [Cout*k*k, Cin] x X [Cin, N*H*W] followed by
// an add-scatter made decoding 1.5x faster (docs/models/vae.md, "Speed"). For the 64->32 layer
// oneDNN was faster.
#pragma once

#include <cstdint>

#include "kiln/tensor.hpp"

namespace kiln::vae {

// cols [C, k, k, N, H, W] -> [N, C, OH, OW] with OH = (H - 1) * stride - 2 * padding + k:
// out[n, c, y*s - p + i, x*s - p + j] += cols[c, i, j, n, y, x]. Differentiable in cols (its
// backward is the matching gather, im2col).
Tensor col2im(const Tensor& cols, std::int64_t stride, std::int64_t padding);

// As ops::conv_transpose2d(x, w, b, {stride, padding}) for x [N, Cin, H, W], w [Cin, Cout, k, k]
// (PyTorch's layout), b [Cout] or undefined; differentiable in x, w and b.
Tensor conv_transpose2d_gemm(const Tensor& x, const Tensor& w, const Tensor& b, std::int64_t stride,
                             std::int64_t padding);

}  // namespace kiln::vae
