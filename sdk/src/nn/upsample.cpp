#include "kiln/nn/upsample.hpp"

#include "kiln/ops.hpp"

namespace kiln::nn {

Upsample::Upsample(std::int64_t scale_factor) : scale_(scale_factor) {
  KILN_CHECK(scale_factor >= 1, "nn::Upsample: scale_factor must be a positive integer, got ",
             scale_factor);
}

Tensor Upsample::forward(const Tensor& x) const {
  return ops::upsample_nearest2d(x, scale_);
}

}  // namespace kiln::nn
