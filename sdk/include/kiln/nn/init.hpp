// Weight initialisation, as torch.nn.init: the same fan and gain formulas, drawing from a
// kiln::Generator (so the values differ from PyTorch's, the distributions do not).
//
//   namespace init = kiln::nn::init;
//   kiln::Generator gen(42);
//   kiln::Tensor w = kiln::Tensor::empty({128, 64});
//   init::kaiming_uniform_(w, gen, std::sqrt(5.f));      // U(-1/sqrt(64), 1/sqrt(64))
//   init::xavier_uniform_(w, gen, init::calculate_gain(init::Nonlinearity::tanh));
//   kiln::Tensor b = kiln::Tensor::empty({128});
//   init::zeros_(b);
//
// Fans of a weight of shape [out, in, k...]: fan_in = in * prod(k), fan_out = out * prod(k)
// (at least 2 dimensions). Gains: linear / conv / sigmoid 1, tanh 5/3, relu sqrt(2),
// leaky_relu(a) sqrt(2 / (1 + a^2)), selu 3/4.
//   kaiming_uniform_: U(-b, b), b = gain * sqrt(3 / fan)      (fan = fan_in or fan_out)
//   kaiming_normal_:  N(0, std^2), std = gain / sqrt(fan)
//   xavier_uniform_:  U(-b, b), b = gain * sqrt(6 / (fan_in + fan_out))
//   xavier_normal_:   N(0, std^2), std = gain * sqrt(2 / (fan_in + fan_out))
// Every function writes the tensor in place (any floating dtype, any plain layout), never
// records autograd history, bumps the tensor's version, and returns the same handle.
#pragma once

#include <cstdint>

#include "kiln/export.hpp"
#include "kiln/random.hpp"
#include "kiln/tensor.hpp"

namespace kiln::nn::init {

enum class FanMode : std::uint8_t { fan_in = 0, fan_out = 1 };
enum class Nonlinearity : std::uint8_t {
  linear = 0,
  conv = 1,  // any convolution or transposed convolution: gain 1
  sigmoid = 2,
  tanh = 3,
  relu = 4,
  leaky_relu = 5,
  selu = 6,
};

struct Fans {
  std::int64_t fan_in = 0;
  std::int64_t fan_out = 0;
};
// Throws kiln::Error for fewer than 2 dimensions.
KILN_API Fans calculate_fans(const Shape& shape);
// `param` is leaky_relu's negative slope; a negative value means PyTorch's default 0.01.
KILN_API float calculate_gain(Nonlinearity nl, float param = -1.f);

KILN_API Tensor kaiming_uniform_(const Tensor& t, Generator& gen, float a = 0.f,
                                 FanMode mode = FanMode::fan_in,
                                 Nonlinearity nl = Nonlinearity::leaky_relu);
KILN_API Tensor kaiming_normal_(const Tensor& t, Generator& gen, float a = 0.f,
                                FanMode mode = FanMode::fan_in,
                                Nonlinearity nl = Nonlinearity::leaky_relu);
KILN_API Tensor xavier_uniform_(const Tensor& t, Generator& gen, float gain = 1.f);
KILN_API Tensor xavier_normal_(const Tensor& t, Generator& gen, float gain = 1.f);
KILN_API Tensor normal_(const Tensor& t, Generator& gen, float mean = 0.f, float std = 1.f);
KILN_API Tensor uniform_(const Tensor& t, Generator& gen, float lo = 0.f, float hi = 1.f);
KILN_API Tensor constant_(const Tensor& t, float value);
KILN_API Tensor zeros_(const Tensor& t);
KILN_API Tensor ones_(const Tensor& t);

}  // namespace kiln::nn::init
