// Global gradient norm and clipping (torch.nn.utils.clip_grad_norm_ with the L2 norm).
#include <cmath>

#include "kiln/autograd.hpp"
#include "kiln/optim.hpp"
#include "ops/op_util.hpp"
#include "optim/internal.hpp"

namespace kiln::optim {

namespace {
// Gradients of `params` that exist, as plain contiguous tensors (f32 ones as they are).
TensorList collect_grads(const TensorList& params, const char* who, TensorList* originals) {
  TensorList out;
  for (std::size_t i = 0; i < params.size(); ++i) {
    KILN_CHECK(params[i].defined(), who, ": parameter ", i, " is undefined");
    Tensor g = params[i].grad();
    if (!g.defined()) continue;
    if (originals != nullptr) originals->push_back(g);
    out.push_back(
        g.dtype() == DType::f32 && g.is_contiguous() ? g : ops::detail::as_f32(g, who, "gradient"));
  }
  return out;
}

float norm_of(const TensorList& grads) {
  std::vector<std::int64_t> sizes;
  for (const Tensor& g : grads) sizes.push_back(g.numel());
  const std::vector<detail::Chunk> chunks = detail::make_chunks(sizes);
  std::vector<double> partial(chunks.size(), 0.0);
  detail::run_chunks(chunks, [&](std::size_t c, const detail::Chunk& ch) {
    const float* p = grads[ch.item].data<float>();
    constexpr int kLanes = 8;
    double acc[kLanes] = {};
    std::int64_t j = ch.begin;
    for (; j + kLanes <= ch.end; j += kLanes) {
      for (int l = 0; l < kLanes; ++l) {
        const double x = p[j + l];
        acc[l] += x * x;
      }
    }
    double tail = 0.0;
    for (; j < ch.end; ++j) tail += static_cast<double>(p[j]) * p[j];
    for (int w = kLanes / 2; w >= 1; w /= 2) {
      for (int l = 0; l < w; ++l) acc[l] += acc[l + w];
    }
    partial[c] = acc[0] + tail;
  });
  double total = 0.0;
  for (double s : partial) total += s;  // fixed chunk order: reproducible for any thread count
  return static_cast<float>(std::sqrt(total));
}
}  // namespace

float grad_norm(const TensorList& params) {
  NoGradGuard no_grad;
  return norm_of(collect_grads(params, "grad_norm", nullptr));
}

float clip_grad_norm(const TensorList& params, float max_norm) {
  KILN_CHECK(max_norm > 0.f, "clip_grad_norm: max_norm must be > 0, got ", max_norm);
  NoGradGuard no_grad;
  TensorList originals;
  const TensorList grads = collect_grads(params, "clip_grad_norm", &originals);
  const float norm = norm_of(grads);
  // As PyTorch: coef = max_norm / (norm + 1e-6), applied when below 1. A non-finite norm leaves
  // the gradients as they are (PyTorch would turn them into NaN); the caller sees the norm and
  // decides (the host's divergence guard).
  const float coef = max_norm / (norm + 1e-6f);
  if (!std::isfinite(norm) || !(coef < 1.f)) return norm;
  std::vector<std::int64_t> sizes;
  for (const Tensor& g : grads) sizes.push_back(g.numel());
  const std::vector<detail::Chunk> chunks = detail::make_chunks(sizes);
  detail::run_chunks(chunks, [&](std::size_t, const detail::Chunk& ch) {
    float* __restrict p = grads[ch.item].data<float>();
    for (std::int64_t j = ch.begin; j < ch.end; ++j) p[j] = p[j] * coef;
  });
  for (std::size_t k = 0; k < grads.size(); ++k) {
    if (grads[k].same(originals[k])) {
      originals[k].bump_version();
    } else {
      originals[k].copy_(grads[k]);  // bf16 or strided gradient: write the scaled values back
    }
  }
  return norm;
}

}  // namespace kiln::optim
