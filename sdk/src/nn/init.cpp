#include "kiln/nn/init.hpp"

#include <cmath>
#include <string>

#include "kiln/autograd.hpp"

namespace kiln::nn::init {
namespace {

void require_float(const Tensor& t, const char* fn) {
  KILN_CHECK(t.defined(), "init::", fn, ": the tensor is undefined");
  KILN_CHECK(is_floating(t.dtype()), "init::", fn, ": the tensor must be floating, got ",
             dtype_name(t.dtype()));
  KILN_CHECK(!t.is_blocked(), "init::", fn,
             ": the tensor has a blocked oneDNN layout; "
             "initialise the plain parameter instead");
}

// Fills t (row-major order) with values from `draw`, which fills a float buffer.
template <typename Draw>
Tensor fill_with(const Tensor& t, const char* fn, Draw draw) {
  require_float(t, fn);
  NoGradGuard ng;
  Tensor dst = t.detach();
  if (dst.dtype() == DType::f32 && dst.is_contiguous()) {
    draw(dst.data<float>(), dst.numel());
    dst.bump_version();
  } else {
    Tensor tmp = Tensor::empty(dst.shape(), DType::f32);
    draw(tmp.data<float>(), tmp.numel());
    dst.copy_(tmp);
  }
  return t;
}

float fan_for(const Tensor& t, FanMode mode, const char* fn) {
  const Fans f = calculate_fans(t.shape());
  const std::int64_t fan = mode == FanMode::fan_in ? f.fan_in : f.fan_out;
  KILN_CHECK(fan > 0, "init::", fn, ": the fan of shape ", shape_str(t.shape()), " is 0");
  return static_cast<float>(fan);
}

}  // namespace

Fans calculate_fans(const Shape& shape) {
  KILN_CHECK(shape.size() >= 2,
             "init: fan in and fan out need a tensor with at least 2 "
             "dimensions [out, in, ...], got shape ",
             shape_str(shape));
  std::int64_t receptive = 1;
  for (std::size_t i = 2; i < shape.size(); ++i) receptive *= shape[i];
  return {shape[1] * receptive, shape[0] * receptive};
}

float calculate_gain(Nonlinearity nl, float param) {
  switch (nl) {
    case Nonlinearity::linear:
    case Nonlinearity::conv:
    case Nonlinearity::sigmoid:
      return 1.f;
    case Nonlinearity::tanh:
      return 5.f / 3.f;
    case Nonlinearity::relu:
      return std::sqrt(2.f);
    case Nonlinearity::leaky_relu: {
      const float slope = param < 0.f ? 0.01f : param;
      return std::sqrt(2.f / (1.f + slope * slope));
    }
    case Nonlinearity::selu:
      return 0.75f;
  }
  throw Error("init::calculate_gain: unknown nonlinearity " + std::to_string(static_cast<int>(nl)));
}

Tensor kaiming_uniform_(const Tensor& t, Generator& gen, float a, FanMode mode, Nonlinearity nl) {
  require_float(t, "kaiming_uniform_");
  const float bound = calculate_gain(nl, a) * std::sqrt(3.f / fan_for(t, mode, "kaiming_uniform_"));
  return uniform_(t, gen, -bound, bound);
}

Tensor kaiming_normal_(const Tensor& t, Generator& gen, float a, FanMode mode, Nonlinearity nl) {
  require_float(t, "kaiming_normal_");
  const float std = calculate_gain(nl, a) / std::sqrt(fan_for(t, mode, "kaiming_normal_"));
  return normal_(t, gen, 0.f, std);
}

Tensor xavier_uniform_(const Tensor& t, Generator& gen, float gain) {
  require_float(t, "xavier_uniform_");
  const Fans f = calculate_fans(t.shape());
  KILN_CHECK(f.fan_in + f.fan_out > 0, "init::xavier_uniform_: shape ", shape_str(t.shape()),
             " has no fans");
  const float bound = gain * std::sqrt(6.f / static_cast<float>(f.fan_in + f.fan_out));
  return uniform_(t, gen, -bound, bound);
}

Tensor xavier_normal_(const Tensor& t, Generator& gen, float gain) {
  require_float(t, "xavier_normal_");
  const Fans f = calculate_fans(t.shape());
  KILN_CHECK(f.fan_in + f.fan_out > 0, "init::xavier_normal_: shape ", shape_str(t.shape()),
             " has no fans");
  return normal_(t, gen, 0.f, gain * std::sqrt(2.f / static_cast<float>(f.fan_in + f.fan_out)));
}

Tensor normal_(const Tensor& t, Generator& gen, float mean, float std) {
  KILN_CHECK(std >= 0.f, "init::normal_: std must be non-negative, got ", std);
  return fill_with(t, "normal_",
                   [&](float* p, std::int64_t n) { gen.philox().fill_normal(p, n, mean, std); });
}

Tensor uniform_(const Tensor& t, Generator& gen, float lo, float hi) {
  KILN_CHECK(lo <= hi, "init::uniform_: lower bound ", lo, " is above upper bound ", hi);
  return fill_with(t, "uniform_",
                   [&](float* p, std::int64_t n) { gen.philox().fill_uniform(p, n, lo, hi); });
}

Tensor constant_(const Tensor& t, float value) {
  require_float(t, "constant_");
  NoGradGuard ng;
  Tensor dst = t.detach();
  dst.fill_(value);
  return t;
}

Tensor zeros_(const Tensor& t) {
  return constant_(t, 0.f);
}
Tensor ones_(const Tensor& t) {
  return constant_(t, 1.f);
}

}  // namespace kiln::nn::init
