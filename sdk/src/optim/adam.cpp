// Adam and AdamW: torch.optim.Adam / AdamW (1.13, amsgrad off), with t the step count:
//
//   Adam:   g = g + weight_decay * w            (L2 penalty folded into the gradient)
//   AdamW:  w = w * (1 - lr * weight_decay)      (decoupled decay)
//   m = beta1 * m + (1 - beta1) * g
//   v = beta2 * v + (1 - beta2) * g * g
//   denom = sqrt(v) / sqrt(1 - beta2^t) + eps    (eps outside the bias-corrected root)
//   w = w - (lr / (1 - beta1^t)) * m / denom
#include <cmath>

#include "kiln/optim.hpp"
#include "optim/internal.hpp"

namespace kiln::optim {

namespace {
constexpr const char* kExpAvg = "exp_avg";
constexpr const char* kExpAvgSq = "exp_avg_sq";

struct AdamConsts {
  float wd, decay_factor, beta1, one_minus_beta1, beta2, one_minus_beta2, bc2_sqrt, eps,
      neg_step_size;
};

template <bool kL2, bool kDecoupled>
void adam_loop(float* __restrict w, const float* __restrict g, float* __restrict m,
               float* __restrict v, std::int64_t b, std::int64_t e, const AdamConsts& k) {
  for (std::int64_t j = b; j < e; ++j) {
    float grad = g[j];
    float wj = w[j];
    if constexpr (kL2) grad = grad + k.wd * wj;
    if constexpr (kDecoupled) wj = wj * k.decay_factor;
    float mj = m[j] * k.beta1;
    mj = mj + k.one_minus_beta1 * grad;
    float vj = v[j] * k.beta2;
    vj = vj + k.one_minus_beta2 * grad * grad;
    const float denom = std::sqrt(vj) / k.bc2_sqrt + k.eps;
    m[j] = mj;
    v[j] = vj;
    w[j] = wj + k.neg_step_size * mj / denom;
  }
}
}  // namespace

Adam::Adam(nn::NamedTensors params, const AdamOptions& opts, bool decoupled_weight_decay)
    : Optimizer(std::move(params)), o_(opts), decoupled_(decoupled_weight_decay) {
  const char* who = decoupled_ ? "AdamW" : "Adam";
  KILN_CHECK(std::isfinite(o_.lr) && o_.lr >= 0.f, who, ": lr must be finite and >= 0, got ",
             o_.lr);
  KILN_CHECK(o_.beta1 >= 0.f && o_.beta1 < 1.f, who, ": beta1 must be in [0, 1), got ", o_.beta1);
  KILN_CHECK(o_.beta2 >= 0.f && o_.beta2 < 1.f, who, ": beta2 must be in [0, 1), got ", o_.beta2);
  KILN_CHECK(std::isfinite(o_.eps) && o_.eps >= 0.f, who, ": eps must be >= 0, got ", o_.eps);
  KILN_CHECK(std::isfinite(o_.weight_decay) && o_.weight_decay >= 0.f, who,
             ": weight_decay must be >= 0, got ", o_.weight_decay);
  lr_ = o_.lr;
  declare_slot(kExpAvg);
  declare_slot(kExpAvgSq);
}

void Adam::step() {
  check_lr(decoupled_ ? "AdamW" : "Adam");
  const std::size_t n = params_.size();
  std::vector<float*> ms(n, nullptr), vs(n, nullptr);
  for (std::size_t i = 0; i < n; ++i) {
    if (!params_[i].second.grad().defined()) continue;
    ms[i] = slot(kExpAvg, i).data<float>();
    vs[i] = slot(kExpAvgSq, i).data<float>();
  }
  ++steps_;
  // Scalars formed in double from the decimal hyper-parameters and rounded to f32, as PyTorch
  // does with its Python floats.
  using detail::decimal;
  const double t = static_cast<double>(steps_);
  const double lr = decimal(lr_), wd = decimal(o_.weight_decay);
  const double beta1 = decimal(o_.beta1), beta2 = decimal(o_.beta2);
  const double bc1 = 1.0 - std::pow(beta1, t);
  const double bc2 = 1.0 - std::pow(beta2, t);
  const AdamConsts k{static_cast<float>(wd),
                     static_cast<float>(1.0 - lr * wd),
                     static_cast<float>(beta1),
                     static_cast<float>(1.0 - beta1),
                     static_cast<float>(beta2),
                     static_cast<float>(1.0 - beta2),
                     static_cast<float>(std::sqrt(bc2)),
                     o_.eps,
                     static_cast<float>(-(lr / bc1))};
  const bool l2 = !decoupled_ && o_.weight_decay != 0.f;
  const bool decoupled = decoupled_ && o_.weight_decay != 0.f;
  apply_update([&](std::size_t i, float* w, const float* g, std::int64_t b, std::int64_t e) {
    if (l2) {
      adam_loop<true, false>(w, g, ms[i], vs[i], b, e, k);
    } else if (decoupled) {
      adam_loop<false, true>(w, g, ms[i], vs[i], b, e, k);
    } else {
      adam_loop<false, false>(w, g, ms[i], vs[i], b, e, k);
    }
  });
}

}  // namespace kiln::optim
