// nn::ConvTranspose2d — a 2-d transposed convolution layer with PyTorch's parameter names, shapes
// and initialisation.
//
//   kiln::nn::ConvTranspose2d up(128, 64, 4, {.stride = {2, 2}, .padding = {1, 1}});
//   kiln::Tensor y = up.forward(x);   // x [N, 128, 14, 14] -> y [N, 64, 28, 28]
//
// Parameters (the checkpoint keys of PyTorch's nn.ConvTranspose2d):
//   weight [in_channels, out_channels / groups, kh, kw]
//   bias   [out_channels]            (absent when constructed with bias = false)
// Output size per spatial dimension:
//   (in - 1) * stride - 2 * padding + dilation * (k - 1) + output_padding + 1.
// The maths and the optional fused activation are those of ops::conv_transpose2d.
//
// Initialisation as PyTorch: weight and bias from U(-1/sqrt(fan_in), 1/sqrt(fan_in)) where, as
// PyTorch computes it from the weight tensor, fan_in = out_channels / groups * kh * kw.
#pragma once

#include <array>
#include <cstdint>

#include "kiln/export.hpp"
#include "kiln/nn/module.hpp"
#include "kiln/ops.hpp"
#include "kiln/random.hpp"

namespace kiln::nn {

class KILN_API ConvTranspose2d : public Module {
 public:
  ConvTranspose2d(std::int64_t in_channels, std::int64_t out_channels,
                  std::array<std::int64_t, 2> kernel_size,
                  const ops::ConvTranspose2dOptions& options = {}, bool bias = true,
                  Generator& gen = default_generator());
  // Square kernel kernel_size x kernel_size.
  ConvTranspose2d(std::int64_t in_channels, std::int64_t out_channels, std::int64_t kernel_size,
                  const ops::ConvTranspose2dOptions& options = {}, bool bias = true,
                  Generator& gen = default_generator());

  // x [N, in_channels, H, W] -> [N, out_channels, H_out, W_out].
  Tensor forward(const Tensor& x) const;
  // The same with the options' `precision` replaced (see ops::Conv2dOptions::precision).
  Tensor forward(const Tensor& x, DType precision) const;

  std::int64_t in_channels() const { return in_channels_; }
  std::int64_t out_channels() const { return out_channels_; }
  const ops::ConvTranspose2dOptions& options() const { return options_; }

  Tensor weight;
  Tensor bias;  // undefined when constructed with bias = false

 private:
  std::int64_t in_channels_, out_channels_;
  ops::ConvTranspose2dOptions options_;
};

}  // namespace kiln::nn
