// nn::BatchNorm2d — batch normalisation over the channels of [N, C, H, W], as PyTorch's
// nn.BatchNorm2d.
//
//   kiln::nn::BatchNorm2d bn(64);
//   kiln::Tensor y = bn.forward(x);   // training: batch statistics, running statistics updated
//   bn.eval();
//   kiln::Tensor z = bn.forward(x);   // evaluation: running statistics
//
//   y = (x - mean_c) / sqrt(var_c + eps) * weight_c + bias_c
//
// In training mode mean/var are the batch statistics over (N, H, W) (biased variance) and the
// running statistics move towards them: running = (1 - momentum) * running + momentum * batch,
// the variance unbiased (times count / (count - 1)); num_batches_tracked counts the updates.
// In evaluation mode mean/var are the running statistics. With track_running_stats = false
// there are no buffers and batch statistics are used in both modes.
//
// Parameters: weight [C] (ones), bias [C] (zeros), absent with affine = false.
// Buffers: running_mean [C] (zeros), running_var [C] (ones), num_batches_tracked [] (s64, 0).
// The names are PyTorch's, so state dicts load in both directions.
#pragma once

#include <cstdint>

#include "kiln/export.hpp"
#include "kiln/nn/module.hpp"

namespace kiln::nn {

class KILN_API BatchNorm2d : public Module {
 public:
  explicit BatchNorm2d(std::int64_t num_features, float eps = 1e-5f, float momentum = 0.1f,
                       bool affine = true, bool track_running_stats = true);

  // x [N, num_features, H, W] -> same shape (and the same memory layout).
  Tensor forward(const Tensor& x);

  std::int64_t num_features() const { return num_features_; }
  float eps() const { return eps_; }
  float momentum() const { return momentum_; }

  Tensor weight, bias;                                    // undefined when !affine
  Tensor running_mean, running_var, num_batches_tracked;  // undefined when !track_running_stats

 private:
  std::int64_t num_features_;
  float eps_, momentum_;
};

}  // namespace kiln::nn
