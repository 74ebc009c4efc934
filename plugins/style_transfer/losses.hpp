// The losses of neural style transfer (Gatys et al. 2016), shared by `stylize` and `train-fast`.
//
//   Losses losses(net, {.content_layers = {"s2_2"}, .style_layers = {"s0_1", ...}});
//   losses.set_style({style_a, style_b}, {0.7, 0.3});        // [1, 3, h, w] in [0, 1]
//   FeatureMap c = losses.content_features(content);          // no grad
//   LossTerms t = losses.compute(x, c);                       // t.total is differentiable in x
//
// Gram matrix of a layer with activations F [N, C, h, w]: G = F F^T / (h w), [N, C, C], computed
// with the SDK's batched matmul so gradients flow through it. The style target of a layer is the
// blend sum_s w_s G(style_s) / sum_s w_s (each style image at its own size).
// Every term is relative, so the weights mean the same for any feature net, layer width and
// image size:
//   content = mean over content layers of  mean((F - F_c)^2) / mean(F_c^2)
//   style   = sum over style layers of  lw_l * mean((G - A)^2) / mean(A^2)   (lw default 1 / L)
//   tv      = mean of squared differences of horizontally and vertically adjacent pixels
//   total   = content_weight * content + style_weight * style + tv_weight * tv
#pragma once

#include <string>
#include <vector>

#include "features.hpp"

namespace kiln::style {

struct LossOptions {
  std::vector<std::string> content_layers;
  std::vector<std::string> style_layers;
  std::vector<double> style_layer_weights;  // empty: 1 / number of style layers each
  double content_weight = 1.0;
  double style_weight = 1.0;
  double tv_weight = 0.0;
};

struct LossTerms {
  Tensor total;  // differentiable scalar
  double content = 0, style = 0, tv = 0;
};

// G = F F^T / (h w) for F [N, C, h, w] -> [N, C, C].
Tensor gram(const Tensor& f);
// Mean of squared differences between neighbouring pixels of x [N, C, H, W].
Tensor total_variation(const Tensor& x);

class Losses {
 public:
  Losses(const FeatureNet& net, LossOptions opts);
  // Style images [1, 3, h, w] with blend weights (>= 0, not all 0; same count).
  void set_style(const std::vector<Tensor>& styles, const std::vector<double>& blend);
  // Content-layer activations of `content` [N, 3, H, W], computed without recording.
  FeatureMap content_features(const Tensor& content) const;
  // The loss of x [N, 3, H, W] against content features of the same batch size (or 1).
  LossTerms compute(const Tensor& x, const FeatureMap& content) const;
  const LossOptions& options() const { return o_; }

 private:
  const FeatureNet& net_;
  LossOptions o_;
  std::vector<std::string> all_layers_;
  FeatureMap style_targets_;                  // [1, C, C]
  std::map<std::string, double> style_norm_;  // 1 / mean(A^2)
};

}  // namespace kiln::style
