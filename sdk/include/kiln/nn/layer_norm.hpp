// nn::LayerNorm — layer normalisation over the trailing dimensions, as PyTorch's nn.LayerNorm.
//
//   kiln::nn::LayerNorm ln({768});
//   kiln::Tensor y = ln.forward(x);   // x [B, T, 768] -> same shape
//
//   y = (x - mean) / sqrt(var + eps) * weight + bias
// with mean and (biased) var over the last normalized_shape.size() dimensions of x, which must
// equal normalized_shape.
//
// Parameters: weight (ones) and bias (zeros) of shape normalized_shape; absent with
// elementwise_affine = false.
#pragma once

#include "kiln/export.hpp"
#include "kiln/nn/module.hpp"

namespace kiln::nn {

class KILN_API LayerNorm : public Module {
 public:
  explicit LayerNorm(Shape normalized_shape, float eps = 1e-5f, bool elementwise_affine = true);

  Tensor forward(const Tensor& x) const;

  const Shape& normalized_shape() const { return normalized_shape_; }
  float eps() const { return eps_; }

  Tensor weight, bias;  // undefined when !elementwise_affine

 private:
  Shape normalized_shape_;
  float eps_;
};

}  // namespace kiln::nn
