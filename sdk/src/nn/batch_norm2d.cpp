#include "kiln/nn/batch_norm2d.hpp"

#include <cmath>

#include "kiln/ops.hpp"

namespace kiln::nn {

BatchNorm2d::BatchNorm2d(std::int64_t num_features, float eps, float momentum, bool affine,
                         bool track_running_stats)
    : num_features_(num_features), eps_(eps), momentum_(momentum) {
  KILN_CHECK(num_features > 0, "nn::BatchNorm2d: num_features must be positive, got ",
             num_features);
  KILN_CHECK(eps >= 0.f && std::isfinite(eps),
             "nn::BatchNorm2d: eps must be finite and "
             "non-negative, got ",
             eps);
  KILN_CHECK(momentum >= 0.f && momentum <= 1.f,
             "nn::BatchNorm2d: momentum must be in [0, 1], "
             "got ",
             momentum);
  if (affine) {
    weight = register_parameter("weight", Tensor::ones({num_features}));
    bias = register_parameter("bias", Tensor::zeros({num_features}));
  }
  if (track_running_stats) {
    running_mean = register_buffer("running_mean", Tensor::zeros({num_features}));
    running_var = register_buffer("running_var", Tensor::ones({num_features}));
    num_batches_tracked = register_buffer("num_batches_tracked", Tensor::zeros({}, DType::s64));
  }
}

Tensor BatchNorm2d::forward(const Tensor& x) {
  KILN_CHECK(x.defined() && x.dim() == 4,
             "nn::BatchNorm2d: expected a 4-d input [N, C, H, W], "
             "got ",
             x.defined() ? shape_str(x.shape()) : std::string("an undefined tensor"));
  KILN_CHECK(x.size(1) == num_features_, "nn::BatchNorm2d: the layer has ", num_features_,
             " channels but x has ", x.size(1), " (shape ", shape_str(x.shape()), ")");
  const bool tracking = running_mean.defined();
  const bool use_batch_stats = is_training() || !tracking;
  Tensor y =
      ops::batch_norm(x, weight, bias, running_mean, running_var, use_batch_stats, momentum_, eps_);
  if (is_training() && tracking) {
    num_batches_tracked.data<std::int64_t>()[0] += 1;
    num_batches_tracked.bump_version();
  }
  return y;
}

}  // namespace kiln::nn
