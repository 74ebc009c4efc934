// nn::Linear — a fully connected layer, y = x W^T + b, as torch.nn.Linear.
//
//   kiln::nn::Linear fc(784, 256);                       // weight [256, 784], bias [256]
//   kiln::Tensor h = fc.forward(x);                      // x [..., 784] -> [..., 256]
//   kiln::Tensor a = fc.forward(x, {.act = kiln::ops::Act::relu});   // ReLU fused in oneDNN
//   fc.named_parameters();                               // "weight", "bias"
//
// Shapes: x [..., in_features] -> y [..., out_features]; weight [out_features, in_features],
// bias [out_features] (absent when constructed with bias = false).
// Initialisation as PyTorch: weight ~ kaiming_uniform(a = sqrt(5)), i.e. U(-1/sqrt(in),
// 1/sqrt(in)), and bias ~ U(-1/sqrt(in), 1/sqrt(in)), drawn from `gen`.
#pragma once

#include <cstdint>

#include "kiln/export.hpp"
#include "kiln/nn/module.hpp"
#include "kiln/ops.hpp"
#include "kiln/random.hpp"

namespace kiln::nn {

class KILN_API Linear : public Module {
 public:
  Linear(std::int64_t in_features, std::int64_t out_features, bool bias = true,
         Generator& gen = default_generator());
  Linear(std::int64_t in_features, std::int64_t out_features, Generator& gen)
      : Linear(in_features, out_features, true, gen) {}

  // The activation in `opts` is fused into the matmul as a oneDNN post-op.
  Tensor forward(const Tensor& x, const ops::LinearOptions& opts = {}) const;

  std::int64_t in_features() const { return in_features_; }
  std::int64_t out_features() const { return out_features_; }

  Tensor weight;  // [out_features, in_features]
  Tensor bias;    // [out_features], or undefined

 private:
  std::int64_t in_features_, out_features_;
};

}  // namespace kiln::nn
