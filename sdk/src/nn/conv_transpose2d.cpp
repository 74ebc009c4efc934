#include "kiln/nn/conv_transpose2d.hpp"

#include <cmath>

namespace kiln::nn {
namespace {

// U(-bound, bound), bound = 1 / sqrt(fan_in): PyTorch's kaiming_uniform(a = sqrt(5)) for conv
// weights and its default bias initialisation.
Tensor fan_in_uniform(const Shape& shape, std::int64_t fan_in, Generator& gen) {
  const float bound = 1.f / std::sqrt(static_cast<float>(fan_in));
  return Tensor::rand(shape, gen, -bound, bound);
}

}  // namespace

ConvTranspose2d::ConvTranspose2d(std::int64_t in_channels, std::int64_t out_channels,
                                 std::array<std::int64_t, 2> kernel_size,
                                 const ops::ConvTranspose2dOptions& options, bool bias_on,
                                 Generator& gen)
    : in_channels_(in_channels), out_channels_(out_channels), options_(options) {
  KILN_CHECK(in_channels > 0 && out_channels > 0,
             "nn::ConvTranspose2d: channel counts must be "
             "positive, got in_channels ",
             in_channels, " and out_channels ", out_channels);
  KILN_CHECK(kernel_size[0] > 0 && kernel_size[1] > 0,
             "nn::ConvTranspose2d: kernel_size must be "
             "positive, got {",
             kernel_size[0], ", ", kernel_size[1], "}");
  KILN_CHECK(options.groups >= 1 && in_channels % options.groups == 0 &&
                 out_channels % options.groups == 0,
             "nn::ConvTranspose2d: groups (", options.groups, ") must divide in_channels (",
             in_channels, ") and out_channels (", out_channels, ")");
  // PyTorch derives fan_in from dim 1 of the weight, which for a transposed conv is
  // out_channels / groups.
  const std::int64_t fan_in = out_channels / options.groups * kernel_size[0] * kernel_size[1];
  weight = register_parameter("weight", fan_in_uniform({in_channels, out_channels / options.groups,
                                                        kernel_size[0], kernel_size[1]},
                                                       fan_in, gen));
  if (bias_on) bias = register_parameter("bias", fan_in_uniform({out_channels}, fan_in, gen));
}

ConvTranspose2d::ConvTranspose2d(std::int64_t in_channels, std::int64_t out_channels,
                                 std::int64_t kernel_size,
                                 const ops::ConvTranspose2dOptions& options, bool bias_on,
                                 Generator& gen)
    : ConvTranspose2d(in_channels, out_channels, {kernel_size, kernel_size}, options, bias_on,
                      gen) {}

Tensor ConvTranspose2d::forward(const Tensor& x) const {
  return ops::conv_transpose2d(x, weight, bias, options_);
}

Tensor ConvTranspose2d::forward(const Tensor& x, DType precision) const {
  ops::ConvTranspose2dOptions o = options_;
  o.precision = precision;
  return ops::conv_transpose2d(x, weight, bias, o);
}

}  // namespace kiln::nn
