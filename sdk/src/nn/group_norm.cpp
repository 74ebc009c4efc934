#include "kiln/nn/group_norm.hpp"

#include <cmath>

#include "kiln/ops.hpp"

namespace kiln::nn {

GroupNorm::GroupNorm(std::int64_t num_groups, std::int64_t num_channels, float eps, bool affine)
    : num_groups_(num_groups), num_channels_(num_channels), eps_(eps) {
  KILN_CHECK(num_groups > 0 && num_channels > 0 && num_channels % num_groups == 0,
             "nn::GroupNorm: num_groups (", num_groups,
             ") must be positive and divide "
             "num_channels (",
             num_channels, ")");
  KILN_CHECK(eps >= 0.f && std::isfinite(eps),
             "nn::GroupNorm: eps must be finite and "
             "non-negative, got ",
             eps);
  if (affine) {
    weight = register_parameter("weight", Tensor::ones({num_channels}));
    bias = register_parameter("bias", Tensor::zeros({num_channels}));
  }
}

Tensor GroupNorm::forward(const Tensor& x) const {
  KILN_CHECK(x.defined() && x.dim() >= 2 && x.size(1) == num_channels_,
             "nn::GroupNorm: expected "
             "x [N, ",
             num_channels_, ", ...], got ",
             x.defined() ? shape_str(x.shape()) : std::string("an undefined tensor"));
  return ops::group_norm(x, num_groups_, weight, bias, eps_);
}

}  // namespace kiln::nn
