#include "kiln/nn/layer_norm.hpp"

#include <cmath>

#include "kiln/ops.hpp"

namespace kiln::nn {

LayerNorm::LayerNorm(Shape normalized_shape, float eps, bool elementwise_affine)
    : normalized_shape_(std::move(normalized_shape)), eps_(eps) {
  KILN_CHECK(!normalized_shape_.empty() && shape_numel(normalized_shape_) > 0,
             "nn::LayerNorm: normalized_shape must be non-empty with positive sizes, got ",
             shape_str(normalized_shape_));
  KILN_CHECK(eps >= 0.f && std::isfinite(eps),
             "nn::LayerNorm: eps must be finite and "
             "non-negative, got ",
             eps);
  if (elementwise_affine) {
    weight = register_parameter("weight", Tensor::ones(normalized_shape_));
    bias = register_parameter("bias", Tensor::zeros(normalized_shape_));
  }
}

Tensor LayerNorm::forward(const Tensor& x) const {
  const auto k = static_cast<std::int64_t>(normalized_shape_.size());
  KILN_CHECK(x.defined() && x.dim() >= k &&
                 Shape(x.shape().end() - k, x.shape().end()) == normalized_shape_,
             "nn::LayerNorm: the last dimensions of x must be ", shape_str(normalized_shape_),
             ", got x of shape ", x.defined() ? shape_str(x.shape()) : std::string("(undefined)"));
  return ops::layer_norm(x, k, weight, bias, eps_);
}

}  // namespace kiln::nn
