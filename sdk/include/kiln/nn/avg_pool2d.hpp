// nn::AvgPool2d — 2-d average pooling (no parameters), as PyTorch's nn.AvgPool2d in floor mode.
//
//   kiln::nn::AvgPool2d pool(2);                                   // 2x2 windows, stride 2
//   kiln::nn::AvgPool2d pool3({.kernel = {3, 3}, .stride = {1, 1}, .padding = {1, 1},
//                              .count_include_pad = false});
//   kiln::Tensor y = pool.forward(x);   // x [N, C, H, W] -> [N, C, H_out, W_out]
//
// Each output is the mean of its window; with count_include_pad the divisor is kernel_h *
// kernel_w, otherwise the number of window positions inside the input. See ops::avg_pool2d.
#pragma once

#include <cstdint>

#include "kiln/export.hpp"
#include "kiln/nn/module.hpp"
#include "kiln/ops.hpp"

namespace kiln::nn {

class KILN_API AvgPool2d : public Module {
 public:
  explicit AvgPool2d(const ops::Pool2dOptions& options);
  // Square kernel_size windows with stride kernel_size and no padding.
  explicit AvgPool2d(std::int64_t kernel_size);

  Tensor forward(const Tensor& x) const;
  const ops::Pool2dOptions& options() const { return options_; }

 private:
  ops::Pool2dOptions options_;
};

}  // namespace kiln::nn
