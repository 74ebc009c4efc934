#include "kiln/nn/max_pool2d.hpp"

namespace kiln::nn {

MaxPool2d::MaxPool2d(const ops::Pool2dOptions& options) : options_(options) {
  KILN_CHECK(options.kernel[0] > 0 && options.kernel[1] > 0,
             "nn::MaxPool2d: kernel must be "
             "positive, got {",
             options.kernel[0], ", ", options.kernel[1], "}");
}

MaxPool2d::MaxPool2d(std::int64_t kernel_size)
    : MaxPool2d(ops::Pool2dOptions{.kernel = {kernel_size, kernel_size}}) {}

Tensor MaxPool2d::forward(const Tensor& x) const {
  return ops::max_pool2d(x, options_);
}

}  // namespace kiln::nn
