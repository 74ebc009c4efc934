#include "losses.hpp"

#include <algorithm>
#include <cmath>

#include "kiln/autograd.hpp"
#include "kiln/error.hpp"
#include "kiln/ops.hpp"

namespace kiln::style {

Tensor gram(const Tensor& f) {
  KILN_CHECK(f.dim() == 4, "style_transfer: gram needs [N, C, h, w] activations, got ",
             shape_str(f.shape()));
  const std::int64_t n = f.size(0), c = f.size(1), hw = f.size(2) * f.size(3);
  const float scale = 1.f / static_cast<float>(hw);
  const Shape shape = f.shape();
  Tensor flat;
  Tensor g;
  {
    NoGradGuard ng;
    flat = f.contiguous().reshape({n, c, hw});
    g = ops::mul_scalar(ops::matmul(flat, flat.transpose(1, 2)), scale);
  }
  // One matmul backward instead of autograd's two (the operands are the same matrix):
  // dF = (dG + dG^T) F / hw.
  if (needs_grad({f})) {
    record("gram", {f}, {&g}, [flat = flat.detach(), scale, shape](const TensorList& grads) {
      const Tensor dg = grads[0];
      const Tensor sym = ops::add(dg, dg.transpose(1, 2));
      return TensorList{ops::mul_scalar(ops::matmul(sym, flat), scale).reshape(shape)};
    });
  }
  return g;
}

Tensor total_variation(const Tensor& x) {
  const std::int64_t h = x.size(2), w = x.size(3);
  Tensor tv = Tensor::scalar(0.f);
  if (h > 1) {
    tv = ops::add(tv, ops::mean(ops::square(ops::sub(x.slice(2, 1, h), x.slice(2, 0, h - 1)))));
  }
  if (w > 1) {
    tv = ops::add(tv, ops::mean(ops::square(ops::sub(x.slice(3, 1, w), x.slice(3, 0, w - 1)))));
  }
  return tv;
}

Losses::Losses(const FeatureNet& net, LossOptions opts) : net_(net), o_(std::move(opts)) {
  net_.check_layers(o_.content_layers, "content_layers");
  net_.check_layers(o_.style_layers, "style_layers");
  KILN_CHECK(!o_.style_layers.empty() || o_.style_weight == 0,
             "style_transfer: style_layers is empty but style_weight is ", o_.style_weight);
  if (o_.style_layer_weights.empty()) {
    o_.style_layer_weights.assign(
        o_.style_layers.size(),
        1.0 / static_cast<double>(std::max<std::size_t>(1, o_.style_layers.size())));
  }
  KILN_CHECK(o_.style_layer_weights.size() == o_.style_layers.size(),
             "style_transfer: style_layer_weights has ", o_.style_layer_weights.size(),
             " values for ", o_.style_layers.size(), " style_layers; give one per layer");
  all_layers_ = o_.content_layers;
  for (const auto& l : o_.style_layers) {
    if (std::find(all_layers_.begin(), all_layers_.end(), l) == all_layers_.end()) {
      all_layers_.push_back(l);
    }
  }
}

void Losses::set_style(const std::vector<Tensor>& styles, const std::vector<double>& blend) {
  KILN_CHECK(!styles.empty(), "style_transfer: no style image");
  KILN_CHECK(styles.size() == blend.size(), "style_transfer: ", styles.size(), " style images but ",
             blend.size(), " blend weights");
  double total = 0;
  for (double w : blend) {
    KILN_CHECK(w >= 0 && std::isfinite(w), "style_transfer: style weights must be >= 0, got ", w);
    total += w;
  }
  KILN_CHECK(total > 0, "style_transfer: the style weights are all 0; give at least one > 0");
  NoGradGuard ng;
  style_targets_.clear();
  for (std::size_t s = 0; s < styles.size(); ++s) {
    if (blend[s] == 0) continue;
    const FeatureMap f = net_.forward(styles[s], o_.style_layers);
    for (const auto& l : o_.style_layers) {
      Tensor g = ops::mul_scalar(gram(f.at(l)), static_cast<float>(blend[s] / total));
      auto it = style_targets_.find(l);
      style_targets_[l] = it == style_targets_.end() ? g : ops::add(it->second, g);
    }
  }
  for (const auto& l : o_.style_layers) {
    const double m = ops::mean(ops::square(style_targets_.at(l))).item();
    style_norm_[l] = 1.0 / std::max(m, 1e-12);
  }
}

FeatureMap Losses::content_features(const Tensor& content) const {
  NoGradGuard ng;
  FeatureMap f = net_.forward(content, o_.content_layers);
  for (auto& [k, t] : f) t = t.contiguous();
  return f;
}

LossTerms Losses::compute(const Tensor& x, const FeatureMap& content) const {
  KILN_CHECK(o_.style_weight == 0 || !style_targets_.empty(),
             "style_transfer: internal error, no style targets set");
  const bool need_content = o_.content_weight != 0 && !o_.content_layers.empty();
  std::vector<std::string> wanted;
  for (const auto& l : all_layers_) {
    const bool is_c =
        std::find(o_.content_layers.begin(), o_.content_layers.end(), l) != o_.content_layers.end();
    if ((is_c && need_content) || o_.style_weight != 0) wanted.push_back(l);
  }
  const FeatureMap f = net_.forward(x, wanted);
  LossTerms t;
  Tensor total = Tensor::scalar(0.f);
  if (need_content) {
    Tensor c = Tensor::scalar(0.f);
    for (const auto& l : o_.content_layers) {
      const Tensor& target = content.at(l);
      const double norm =
          1.0 / std::max(1e-12, static_cast<double>(ops::mean(ops::square(target)).item()));
      c = ops::add(c, ops::mul_scalar(ops::mean(ops::square(ops::sub(f.at(l), target))),
                                      static_cast<float>(norm / o_.content_layers.size())));
    }
    t.content = c.item();
    total = ops::add(total, ops::mul_scalar(c, static_cast<float>(o_.content_weight)));
  }
  if (o_.style_weight != 0) {
    Tensor s = Tensor::scalar(0.f);
    for (std::size_t i = 0; i < o_.style_layers.size(); ++i) {
      const std::string& l = o_.style_layers[i];
      const Tensor d = ops::sub(gram(f.at(l)), style_targets_.at(l));
      s = ops::add(
          s, ops::mul_scalar(ops::mean(ops::square(d)),
                             static_cast<float>(style_norm_.at(l) * o_.style_layer_weights[i])));
    }
    t.style = s.item();
    total = ops::add(total, ops::mul_scalar(s, static_cast<float>(o_.style_weight)));
  }
  if (o_.tv_weight != 0) {
    const Tensor tv = total_variation(x);
    t.tv = tv.item();
    total = ops::add(total, ops::mul_scalar(tv, static_cast<float>(o_.tv_weight)));
  }
  t.total = total;
  return t;
}

}  // namespace kiln::style
