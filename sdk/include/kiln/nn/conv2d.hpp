// nn::Conv2d — a 2-d convolution layer with PyTorch's parameter names, shapes and initialisation.
//
//   kiln::nn::Conv2d conv(3, 64, 3, {.padding = {1, 1}, .act = kiln::ops::Act::relu});
//   kiln::Tensor y = conv.forward(x);   // x [N, 3, H, W] -> y [N, 64, H, W], ReLU fused
//
// Parameters (the checkpoint keys of PyTorch's nn.Conv2d):
//   weight [out_channels, in_channels / groups, kh, kw]
//   bias   [out_channels]            (absent when constructed with bias = false)
// Output size per spatial dimension: (in + 2 * padding - dilation * (k - 1) - 1) / stride + 1.
// The maths and the optional fused activation are those of ops::conv2d.
//
// Initialisation as PyTorch (kaiming_uniform with a = sqrt(5)): weight and bias are drawn from
// U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = in_channels / groups * kh * kw, using `gen`.
#pragma once

#include <array>
#include <cstdint>

#include "kiln/export.hpp"
#include "kiln/nn/module.hpp"
#include "kiln/ops.hpp"
#include "kiln/random.hpp"

namespace kiln::nn {

class KILN_API Conv2d : public Module {
 public:
  Conv2d(std::int64_t in_channels, std::int64_t out_channels,
         std::array<std::int64_t, 2> kernel_size, const ops::Conv2dOptions& options = {},
         bool bias = true, Generator& gen = default_generator());
  // Square kernel kernel_size x kernel_size.
  Conv2d(std::int64_t in_channels, std::int64_t out_channels, std::int64_t kernel_size,
         const ops::Conv2dOptions& options = {}, bool bias = true,
         Generator& gen = default_generator());

  // x [N, in_channels, H, W] -> [N, out_channels, H_out, W_out].
  Tensor forward(const Tensor& x) const;
  // The same with the options' `precision` replaced (DType::bf16: bf16 compute from the f32
  // weights, see ops::Conv2dOptions::precision).
  Tensor forward(const Tensor& x, DType precision) const;

  std::int64_t in_channels() const { return in_channels_; }
  std::int64_t out_channels() const { return out_channels_; }
  const ops::Conv2dOptions& options() const { return options_; }

  Tensor weight;
  Tensor bias;  // undefined when constructed with bias = false

 private:
  std::int64_t in_channels_, out_channels_;
  ops::Conv2dOptions options_;
};

}  // namespace kiln::nn
