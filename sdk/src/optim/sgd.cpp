// SGD with momentum, dampening, weight decay and Nesterov momentum: torch.optim.SGD (1.13).
//
//   d = g + weight_decay * w
//   first step of a parameter:  buf = d
//   later steps:                buf = momentum * buf + (1 - dampening) * d
//   d = nesterov ? d + momentum * buf : buf          (when momentum != 0)
//   w = w - lr * d
#include <cmath>

#include "kiln/optim.hpp"
#include "optim/internal.hpp"

namespace kiln::optim {

namespace {
constexpr const char* kMomentum = "momentum_buffer";

struct SgdConsts {
  float neg_lr, wd, momentum, one_minus_dampening;
};

// The update on [b, e); template flags keep the inner loops branch-free (and vectorised).
template <bool kDecay, bool kMomentum, bool kFirst, bool kNesterov>
void sgd_loop(float* __restrict w, const float* __restrict g, float* __restrict buf, std::int64_t b,
              std::int64_t e, const SgdConsts& k) {
  for (std::int64_t j = b; j < e; ++j) {
    float d = g[j];
    if constexpr (kDecay) d = d + k.wd * w[j];
    if constexpr (kMomentum) {
      float m;
      if constexpr (kFirst) {
        m = d;
      } else {
        m = buf[j] * k.momentum;
        m = m + k.one_minus_dampening * d;
      }
      buf[j] = m;
      if constexpr (kNesterov) {
        d = d + k.momentum * m;
      } else {
        d = m;
      }
    }
    w[j] = w[j] + k.neg_lr * d;
  }
}

template <bool kDecay, bool kMomentum, bool kFirst>
void sgd_dispatch_nesterov(bool nesterov, float* w, const float* g, float* buf, std::int64_t b,
                           std::int64_t e, const SgdConsts& k) {
  if (nesterov) {
    sgd_loop<kDecay, kMomentum, kFirst, true>(w, g, buf, b, e, k);
  } else {
    sgd_loop<kDecay, kMomentum, kFirst, false>(w, g, buf, b, e, k);
  }
}

template <bool kDecay>
void sgd_dispatch(bool momentum, bool first, bool nesterov, float* w, const float* g, float* buf,
                  std::int64_t b, std::int64_t e, const SgdConsts& k) {
  if (!momentum) {
    sgd_loop<kDecay, false, false, false>(w, g, buf, b, e, k);
  } else if (first) {
    sgd_dispatch_nesterov<kDecay, true, true>(nesterov, w, g, buf, b, e, k);
  } else {
    sgd_dispatch_nesterov<kDecay, true, false>(nesterov, w, g, buf, b, e, k);
  }
}
}  // namespace

SGD::SGD(nn::NamedTensors params, const SgdOptions& opts) : Optimizer(std::move(params)), o_(opts) {
  KILN_CHECK(std::isfinite(o_.lr) && o_.lr >= 0.f, "SGD: lr must be finite and >= 0, got ", o_.lr);
  KILN_CHECK(std::isfinite(o_.momentum) && o_.momentum >= 0.f, "SGD: momentum must be >= 0, got ",
             o_.momentum);
  KILN_CHECK(std::isfinite(o_.dampening), "SGD: dampening must be finite, got ", o_.dampening);
  KILN_CHECK(std::isfinite(o_.weight_decay) && o_.weight_decay >= 0.f,
             "SGD: weight_decay must be >= 0, got ", o_.weight_decay);
  KILN_CHECK(!o_.nesterov || (o_.momentum > 0.f && o_.dampening == 0.f),
             "SGD: Nesterov momentum needs momentum > 0 and dampening = 0, got momentum ",
             o_.momentum, " and dampening ", o_.dampening);
  lr_ = o_.lr;
  if (o_.momentum != 0.f) declare_slot(kMomentum);
}

void SGD::step() {
  check_lr("SGD");
  const bool momentum = o_.momentum != 0.f;
  const std::size_t n = params_.size();
  std::vector<float*> bufs(n, nullptr);
  std::vector<char> first(n, 0);
  if (momentum) {
    for (std::size_t i = 0; i < n; ++i) {
      if (!params_[i].second.grad().defined()) continue;
      first[i] = !has_slot(kMomentum, i);
      bufs[i] = slot(kMomentum, i).data<float>();
    }
  }
  // Scalars formed as PyTorch forms them from its Python-float arguments.
  const SgdConsts k{static_cast<float>(-detail::decimal(lr_)), o_.weight_decay, o_.momentum,
                    static_cast<float>(1.0 - detail::decimal(o_.dampening))};
  const bool decay = o_.weight_decay != 0.f;
  const bool nesterov = o_.nesterov;
  ++steps_;
  apply_update([&](std::size_t i, float* w, const float* g, std::int64_t b, std::int64_t e) {
    if (decay) {
      sgd_dispatch<true>(momentum, first[i] != 0, nesterov, w, g, bufs[i], b, e, k);
    } else {
      sgd_dispatch<false>(momentum, first[i] != 0, nesterov, w, g, bufs[i], b, e, k);
    }
  });
}

}  // namespace kiln::optim
