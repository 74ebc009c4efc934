// A RealNVP-style normalising flow for 28x28 grey images (Dinh et al., "Density estimation using
// Real NVP", 2017), small enough to train on a CPU in a minute or two.
//
//   pixels --dequantise, logit--> y [N,1,28,28]
//     --checkerboard affine couplings (alternating parity)-->  [N,1,28,28]
//     --squeeze-->  [N,4,14,14]
//     --channel affine couplings (alternating halves)-->  z ~ N(0, I)
//
// Every step is invertible with a triangular Jacobian, so log p(x) is exact:
//   log p(x) = log N(z; 0, I) + sum of the couplings' log|det| + the logit's log|det|,
// and sampling runs the same layers backwards from z ~ N(0, T^2 I).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "kiln/nn.hpp"
#include "kiln/random.hpp"
#include "kiln/tensor.hpp"

namespace flow {

struct FlowConfig {
  std::int64_t hidden = 32;         // channels inside each coupling's network
  std::int64_t checker_layers = 4;  // checkerboard couplings at 1 x 28 x 28
  std::int64_t channel_layers = 4;  // channel couplings at 4 x 14 x 14 (after the squeeze)
};

// The network of one coupling: conv3x3 -> ReLU -> conv1x1 -> ReLU -> conv3x3, whose output
// holds log-scale and shift for the transformed part. The last convolution starts at zero, so an
// untrained flow is the identity.
class CouplingNet : public kiln::nn::Module {
 public:
  CouplingNet(std::int64_t in, std::int64_t hidden, std::int64_t out, kiln::Generator& gen);
  kiln::Tensor forward(const kiln::Tensor& x) const;

 private:
  std::shared_ptr<kiln::nn::Conv2d> conv_in_, conv_mid_, conv_out_;
};

// y = x * exp(s) + t on one part of x, with s, t computed from the other part.
class Coupling : public kiln::nn::Module {
 public:
  enum class Mask { checkerboard, channel };
  Coupling(Mask mask, int parity, std::int64_t channels, std::int64_t hidden, kiln::Generator& gen);
  // x -> y; adds log|det dy/dx| per example to `logdet` ([N]).
  kiln::Tensor forward(const kiln::Tensor& x, kiln::Tensor& logdet) const;
  kiln::Tensor inverse(const kiln::Tensor& y) const;

 private:
  // (s, t) for input x, zero on the part that passes through unchanged.
  std::pair<kiln::Tensor, kiln::Tensor> scale_shift(const kiln::Tensor& x) const;

  Mask mask_;
  int parity_;
  std::int64_t channels_;
  kiln::Tensor scale_;  // s = scale * tanh(raw): bounded log-scales keep training stable
  std::shared_ptr<CouplingNet> net_;
};

// Logit-space images and the log|det| of that transform.
struct Dequantised {
  kiln::Tensor y;       // [N, 1, 28, 28]
  kiln::Tensor logdet;  // [N]
};

// `images` [N, 1, H, W] in [0, 1] holding k / 255 for pixel values k; `noise` [N, 1, H, W] uniform
// in [0, 1). x = (k + noise) / 256, y = logit(alpha + (1 - 2 alpha) x).
Dequantised dequantise(const kiln::Tensor& images, const kiln::Tensor& noise);
// Uniform noise for examples `indices`: example i's from Philox(seed, i, stream) alone.
kiln::Tensor dequantisation_noise(const std::vector<std::int64_t>& indices, std::uint64_t seed,
                                  const kiln::Shape& image_shape);

class RealNVP : public kiln::nn::Module {
 public:
  RealNVP(const FlowConfig& config, std::uint64_t init_seed);

  // Logit-space images y [N, 1, 28, 28] -> latents z [N, 4, 14, 14]; adds log|det dz/dy| per
  // example to `logdet` ([N]).
  kiln::Tensor forward(const kiln::Tensor& y, kiln::Tensor& logdet) const;
  // Negative log-likelihood of each example in bits per dimension of the 8-bit image, [N]:
  // -log2 p(x) / D + 8 (the 8 bits turn the density of x in [0, 1) into one over 256 levels).
  kiln::Tensor bits_per_dim(const Dequantised& batch) const;
  // Images [N, 1, 28, 28] in [0, 1] from latents z [N, 4, 14, 14].
  kiln::Tensor sample(const kiln::Tensor& z) const;

  const FlowConfig& config() const { return config_; }
  static constexpr std::int64_t kSide = 28;

 private:
  FlowConfig config_;
  std::vector<std::shared_ptr<Coupling>> checker_, channel_;
};

// [N, C, H, W] -> [N, 4C, H/2, W/2] and back.
kiln::Tensor squeeze2x2(const kiln::Tensor& x);
kiln::Tensor unsqueeze2x2(const kiln::Tensor& x);

}  // namespace flow
