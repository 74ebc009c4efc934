#include "kiln/nn/avg_pool2d.hpp"

namespace kiln::nn {

AvgPool2d::AvgPool2d(const ops::Pool2dOptions& options) : options_(options) {
  KILN_CHECK(options.kernel[0] > 0 && options.kernel[1] > 0,
             "nn::AvgPool2d: kernel must be "
             "positive, got {",
             options.kernel[0], ", ", options.kernel[1], "}");
}

AvgPool2d::AvgPool2d(std::int64_t kernel_size)
    : AvgPool2d(ops::Pool2dOptions{.kernel = {kernel_size, kernel_size}}) {}

Tensor AvgPool2d::forward(const Tensor& x) const {
  return ops::avg_pool2d(x, options_);
}

}  // namespace kiln::nn
