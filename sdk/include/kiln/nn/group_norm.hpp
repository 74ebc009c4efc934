// nn::GroupNorm — group normalisation, as PyTorch's nn.GroupNorm.
//
//   kiln::nn::GroupNorm gn(32, 128);
//   kiln::Tensor y = gn.forward(x);   // x [N, 128, H, W] -> same shape (and layout)
//
// The C channels are split into num_groups groups of C / num_groups; each (sample, group) is
// normalised over its channels and all positions, then each channel is scaled and shifted:
//   y = (x - mean_ng) / sqrt(var_ng + eps) * weight_c + bias_c      (biased variance)
//
// Parameters: weight [C] (ones) and bias [C] (zeros); absent with affine = false.
#pragma once

#include <cstdint>

#include "kiln/export.hpp"
#include "kiln/nn/module.hpp"

namespace kiln::nn {

class KILN_API GroupNorm : public Module {
 public:
  GroupNorm(std::int64_t num_groups, std::int64_t num_channels, float eps = 1e-5f,
            bool affine = true);

  // x [N, num_channels, ...] -> same shape.
  Tensor forward(const Tensor& x) const;

  std::int64_t num_groups() const { return num_groups_; }
  std::int64_t num_channels() const { return num_channels_; }
  float eps() const { return eps_; }

  Tensor weight, bias;  // undefined when !affine

 private:
  std::int64_t num_groups_, num_channels_;
  float eps_;
};

}  // namespace kiln::nn
