#include "flow_model.hpp"

#include <cmath>
#include <string>

#include "kiln/autograd.hpp"
#include "kiln/error.hpp"
#include "kiln/ops.hpp"

namespace flow {

namespace ops = kiln::ops;
using kiln::Tensor;

namespace {
constexpr float kAlpha = 0.05f;  // logit(alpha + (1 - 2 alpha) x) keeps away from 0 and 1
constexpr double kLn2 = 0.69314718055994530942;
constexpr double kLog2Pi = 1.83787706640934548356;

// [1, 1, H, W]: 1 where the checkerboard passes x through ((row + col) % 2 == parity), else 0.
Tensor checkerboard(std::int64_t h, std::int64_t w, int parity) {
  Tensor m = Tensor::empty({1, 1, h, w});
  float* p = m.data<float>();
  for (std::int64_t r = 0; r < h; ++r) {
    for (std::int64_t c = 0; c < w; ++c) p[r * w + c] = ((r + c) % 2 == parity) ? 1.f : 0.f;
  }
  return m;
}
}  // namespace

// ------------------------------------------------------------------------------ CouplingNet

CouplingNet::CouplingNet(std::int64_t in, std::int64_t hidden, std::int64_t out,
                         kiln::Generator& gen)
    : conv_in_(register_module(
          "conv_in", std::make_shared<kiln::nn::Conv2d>(
                         in, hidden, 3,
                         ops::Conv2dOptions{.padding = {1, 1}, .act = ops::Act::relu}, true, gen))),
      conv_mid_(register_module(
          "conv_mid",
          std::make_shared<kiln::nn::Conv2d>(
              hidden, hidden, 1, ops::Conv2dOptions{.act = ops::Act::relu}, true, gen))),
      conv_out_(register_module(
          "conv_out", std::make_shared<kiln::nn::Conv2d>(
                          hidden, out, 3, ops::Conv2dOptions{.padding = {1, 1}}, true, gen))) {
  conv_out_->weight.zero_();  // the flow starts as the identity
  conv_out_->bias.zero_();
}

Tensor CouplingNet::forward(const Tensor& x) const {
  return conv_out_->forward(conv_mid_->forward(conv_in_->forward(x))).contiguous();
}

// ------------------------------------------------------------------------------ Coupling

Coupling::Coupling(Mask mask, int parity, std::int64_t channels, std::int64_t hidden,
                   kiln::Generator& gen)
    : mask_(mask), parity_(parity), channels_(channels) {
  if (mask == Mask::checkerboard) {
    // Input: the passed-through pixels and the mask itself (so the network knows which zeros
    // are masked); output: log-scale and shift for every channel.
    scale_ = register_parameter("scale", Tensor::ones({1, channels, 1, 1}));
    net_ = register_module("net",
                           std::make_shared<CouplingNet>(channels + 1, hidden, 2 * channels, gen));
  } else {
    KILN_CHECK(channels % 2 == 0, "flow: a channel coupling needs an even channel count, got ",
               channels);
    scale_ = register_parameter("scale", Tensor::ones({1, channels / 2, 1, 1}));
    net_ =
        register_module("net", std::make_shared<CouplingNet>(channels / 2, hidden, channels, gen));
  }
}

Tensor Coupling::forward(const Tensor& x, Tensor& logdet) const {
  if (mask_ == Mask::checkerboard) {
    auto [s, t] = scale_shift(x);
    logdet = logdet + ops::sum(s, {1, 2, 3});
    return x * ops::exp(s) + t;  // s = t = 0 where x passes through
  }
  const std::int64_t half = channels_ / 2;
  kiln::TensorList parts = ops::split(x, {half, half}, 1);
  const Tensor& cond = parts[parity_];
  auto [s, t] = scale_shift(cond);
  logdet = logdet + ops::sum(s, {1, 2, 3});
  Tensor changed = parts[1 - parity_] * ops::exp(s) + t;
  return parity_ == 0 ? ops::concat({cond, changed}, 1) : ops::concat({changed, cond}, 1);
}

Tensor Coupling::inverse(const Tensor& y) const {
  if (mask_ == Mask::checkerboard) {
    auto [s, t] = scale_shift(y);  // y equals x on the passed-through pixels
    return (y - t) * ops::exp(-s);
  }
  const std::int64_t half = channels_ / 2;
  kiln::TensorList parts = ops::split(y, {half, half}, 1);
  const Tensor& cond = parts[parity_];
  auto [s, t] = scale_shift(cond);
  Tensor changed = (parts[1 - parity_] - t) * ops::exp(-s);
  return parity_ == 0 ? ops::concat({cond, changed}, 1) : ops::concat({changed, cond}, 1);
}

std::pair<Tensor, Tensor> Coupling::scale_shift(const Tensor& x) const {
  if (mask_ == Mask::checkerboard) {
    const Tensor keep = checkerboard(x.size(2), x.size(3), parity_);
    const Tensor change = 1.f - keep;
    const Tensor kept = x * keep;
    const Tensor in =
        ops::concat({kept, keep.expand({x.size(0), 1, x.size(2), x.size(3)}).contiguous()}, 1);
    const Tensor h = net_->forward(in);
    const Tensor s = ops::tanh(h.slice(1, 0, channels_)) * scale_ * change;
    const Tensor t = h.slice(1, channels_, 2 * channels_) * change;
    return {s, t};
  }
  const std::int64_t half = channels_ / 2;
  const Tensor h = net_->forward(x.contiguous());
  return {ops::tanh(h.slice(1, 0, half)) * scale_, h.slice(1, half, 2 * half)};
}

// ------------------------------------------------------------------------------ data

Dequantised dequantise(const Tensor& images, const Tensor& noise) {
  KILN_CHECK(images.shape() == noise.shape(), "flow: images ", kiln::shape_str(images.shape()),
             " and noise ", kiln::shape_str(noise.shape()), " differ in shape");
  const Tensor img = images.contiguous();
  const Tensor u = noise.contiguous();
  const std::int64_t n = img.size(0);
  const std::int64_t d = img.numel() / n;
  Tensor y = Tensor::empty(img.shape());
  std::vector<float> logdet(static_cast<std::size_t>(n));
  const float* pi = img.data<float>();
  const float* pu = u.data<float>();
  float* py = y.data<float>();
  const double log_range = std::log(1.0 - 2.0 * kAlpha);
  for (std::int64_t i = 0; i < n; ++i) {
    double ld = 0;
    for (std::int64_t j = i * d; j < (i + 1) * d; ++j) {
      const double level = std::round(static_cast<double>(pi[j]) * 255.0);  // 0 .. 255
      const double x = (level + pu[j]) / 256.0;
      const double p = kAlpha + (1.0 - 2.0 * kAlpha) * x;
      py[j] = static_cast<float>(std::log(p) - std::log1p(-p));
      ld += log_range - std::log(p) - std::log1p(-p);  // log dy/dx
    }
    logdet[static_cast<std::size_t>(i)] = static_cast<float>(ld);
  }
  return {y, Tensor::from_vector(logdet, {n})};
}

Tensor dequantisation_noise(const std::vector<std::int64_t>& indices, std::uint64_t seed,
                            const kiln::Shape& image_shape) {
  kiln::Shape shape = {static_cast<std::int64_t>(indices.size())};
  shape.insert(shape.end(), image_shape.begin(), image_shape.end());
  Tensor u = Tensor::empty(shape);
  const std::int64_t d = kiln::shape_numel(image_shape);
  for (std::size_t r = 0; r < indices.size(); ++r) {
    kiln::Philox rng(seed, static_cast<std::uint64_t>(indices[r]), /*stream=*/1);
    rng.fill_uniform(u.data<float>() + static_cast<std::int64_t>(r) * d, d);
  }
  return u;
}

// ------------------------------------------------------------------------------ RealNVP

Tensor squeeze2x2(const Tensor& x) {
  const std::int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  return x.reshape({n, c, h / 2, 2, w / 2, 2})
      .permute({0, 1, 3, 5, 2, 4})
      .reshape({n, c * 4, h / 2, w / 2});
}

Tensor unsqueeze2x2(const Tensor& x) {
  const std::int64_t n = x.size(0), c = x.size(1) / 4, h = x.size(2), w = x.size(3);
  return x.reshape({n, c, 2, 2, h, w}).permute({0, 1, 4, 2, 5, 3}).reshape({n, c, h * 2, w * 2});
}

RealNVP::RealNVP(const FlowConfig& config, std::uint64_t init_seed) : config_(config) {
  kiln::Generator gen(init_seed);
  for (std::int64_t i = 0; i < config.checker_layers; ++i) {
    checker_.push_back(register_module(
        "checker" + std::to_string(i),
        std::make_shared<Coupling>(Coupling::Mask::checkerboard, static_cast<int>(i % 2), 1,
                                   config.hidden, gen)));
  }
  for (std::int64_t i = 0; i < config.channel_layers; ++i) {
    channel_.push_back(
        register_module("channel" + std::to_string(i),
                        std::make_shared<Coupling>(Coupling::Mask::channel, static_cast<int>(i % 2),
                                                   4, config.hidden, gen)));
  }
}

Tensor RealNVP::forward(const Tensor& x, Tensor& logdet) const {
  KILN_CHECK(x.dim() == 4 && x.size(1) == 1 && x.size(2) == kSide && x.size(3) == kSide,
             "flow: expects [N, 1, 28, 28] images, got ", kiln::shape_str(x.shape()));
  Tensor y = x;
  for (const auto& c : checker_) y = c->forward(y, logdet);
  y = squeeze2x2(y);
  for (const auto& c : channel_) y = c->forward(y, logdet);
  return y;
}

Tensor RealNVP::bits_per_dim(const Dequantised& batch) const {
  const Tensor& x = batch.y;
  Tensor logdet = batch.logdet;
  const Tensor z = forward(x, logdet);
  const double dims = static_cast<double>(x.numel() / x.size(0));
  const Tensor log_pz =
      ops::sum(ops::square(z), {1, 2, 3}) * -0.5f - static_cast<float>(0.5 * dims * kLog2Pi);
  return (log_pz + logdet) * static_cast<float>(-1.0 / (dims * kLn2)) + 8.f;
}

Tensor RealNVP::sample(const Tensor& z) const {
  Tensor y = z;
  for (auto it = channel_.rbegin(); it != channel_.rend(); ++it) y = (*it)->inverse(y);
  y = unsqueeze2x2(y);
  for (auto it = checker_.rbegin(); it != checker_.rend(); ++it) y = (*it)->inverse(y);
  const Tensor x = (ops::sigmoid(y) - kAlpha) * (1.f / (1.f - 2.f * kAlpha));
  return ops::clamp(x, 0.f, 1.f);
}

}  // namespace flow
