// nn::MaxPool2d — 2-d max pooling (no parameters), as PyTorch's nn.MaxPool2d in floor mode.
//
//   kiln::nn::MaxPool2d pool(2);                                   // 2x2 windows, stride 2
//   kiln::nn::MaxPool2d pool3({.kernel = {3, 3}, .stride = {2, 2}, .padding = {1, 1}});
//   kiln::Tensor y = pool.forward(x);   // x [N, C, H, W] -> [N, C, H_out, W_out]
//
// H_out = (H + 2 * padding - kernel) / stride + 1 (stride 0 means the kernel size); padded
// positions never win. See ops::max_pool2d.
#pragma once

#include <cstdint>

#include "kiln/export.hpp"
#include "kiln/nn/module.hpp"
#include "kiln/ops.hpp"

namespace kiln::nn {

class KILN_API MaxPool2d : public Module {
 public:
  explicit MaxPool2d(const ops::Pool2dOptions& options);
  // Square kernel_size windows with stride kernel_size and no padding.
  explicit MaxPool2d(std::int64_t kernel_size);

  Tensor forward(const Tensor& x) const;
  const ops::Pool2dOptions& options() const { return options_; }

 private:
  ops::Pool2dOptions options_;
};

}  // namespace kiln::nn
