// nn::Upsample — nearest-neighbour upsampling by an integer factor (no parameters), as PyTorch's
// nn.Upsample(scale_factor=s, mode="nearest").
//
//   kiln::nn::Upsample up(2);
//   kiln::Tensor y = up.forward(x);   // x [N, C, H, W] -> [N, C, 2H, 2W], y[.., i, j] = x[.., i/2,
//   j/2]
#pragma once

#include <cstdint>

#include "kiln/export.hpp"
#include "kiln/nn/module.hpp"

namespace kiln::nn {

class KILN_API Upsample : public Module {
 public:
  explicit Upsample(std::int64_t scale_factor);

  Tensor forward(const Tensor& x) const;
  std::int64_t scale_factor() const { return scale_; }

 private:
  std::int64_t scale_;
};

}  // namespace kiln::nn
