#include "kiln/nn/linear.hpp"

#include <cmath>

#include "kiln/nn/init.hpp"

namespace kiln::nn {

Linear::Linear(std::int64_t in_features, std::int64_t out_features, bool with_bias, Generator& gen)
    : in_features_(in_features), out_features_(out_features) {
  KILN_CHECK(in_features > 0 && out_features > 0,
             "Linear: in_features and out_features must be "
             "positive, got ",
             in_features, " and ", out_features);
  weight = register_parameter("weight", Tensor::empty({out_features, in_features}));
  init::kaiming_uniform_(weight, gen, std::sqrt(5.f));
  if (with_bias) {
    bias = register_parameter("bias", Tensor::empty({out_features}));
    const float bound = 1.f / std::sqrt(static_cast<float>(in_features));
    init::uniform_(bias, gen, -bound, bound);
  }
}

Tensor Linear::forward(const Tensor& x, const ops::LinearOptions& opts) const {
  KILN_CHECK(x.defined() && x.dim() >= 1 && x.size(-1) == in_features_, "Linear(", in_features_,
             " -> ", out_features_, "): input must be [..., ", in_features_, "], got ",
             x.defined() ? shape_str(x.shape()) : std::string("an undefined tensor"));
  return ops::linear(x, weight, bias, opts);
}

}  // namespace kiln::nn
