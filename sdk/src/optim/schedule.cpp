// Learning-rate schedules: pure functions of the step.
#include <cmath>
#include <numbers>

#include "kiln/optim.hpp"

namespace kiln::optim {

namespace {
void check_lr_value(float lr, const char* who, const char* what) {
  KILN_CHECK(std::isfinite(lr) && lr >= 0.f, who, ": ", what, " must be finite and >= 0, got ", lr);
}

// min_lr + (lr - min_lr) * (1 + cos(pi * progress)) / 2, progress in [0, 1].
float cosine(double lr, double min_lr, double progress) {
  return static_cast<float>(min_lr +
                            (lr - min_lr) * 0.5 * (1.0 + std::cos(std::numbers::pi * progress)));
}
}  // namespace

StepLR::StepLR(float lr, std::int64_t step_size, float gamma)
    : lr_(lr), step_size_(step_size), gamma_(gamma) {
  check_lr_value(lr, "StepLR", "lr");
  KILN_CHECK(step_size > 0, "StepLR: step_size must be > 0, got ", step_size);
  KILN_CHECK(std::isfinite(gamma) && gamma > 0.f, "StepLR: gamma must be > 0, got ", gamma);
}

float StepLR::lr(std::int64_t step) const {
  if (step < 0) step = 0;
  return static_cast<float>(
      static_cast<double>(lr_) *
      std::pow(static_cast<double>(gamma_), static_cast<double>(step / step_size_)));
}

CosineLR::CosineLR(float lr, std::int64_t total, float min_lr)
    : lr_(lr), min_lr_(min_lr), total_(total) {
  check_lr_value(lr, "CosineLR", "lr");
  check_lr_value(min_lr, "CosineLR", "min_lr");
  KILN_CHECK(total > 0, "CosineLR: total steps must be > 0, got ", total);
}

float CosineLR::lr(std::int64_t step) const {
  if (step >= total_) return min_lr_;
  if (step < 0) step = 0;
  return cosine(lr_, min_lr_, static_cast<double>(step) / static_cast<double>(total_));
}

WarmupCosineLR::WarmupCosineLR(float lr, std::int64_t warmup, std::int64_t total, float min_lr)
    : lr_(lr), min_lr_(min_lr), warmup_(warmup), total_(total) {
  check_lr_value(lr, "WarmupCosineLR", "lr");
  check_lr_value(min_lr, "WarmupCosineLR", "min_lr");
  KILN_CHECK(warmup >= 0, "WarmupCosineLR: warmup must be >= 0, got ", warmup);
  KILN_CHECK(total > 0 && total >= warmup,
             "WarmupCosineLR: total steps must be > 0 and >= warmup (", warmup, "), got ", total);
}

float WarmupCosineLR::lr(std::int64_t step) const {
  if (step < 0) step = 0;
  if (step < warmup_) {
    return static_cast<float>(static_cast<double>(lr_) * static_cast<double>(step) /
                              static_cast<double>(warmup_));
  }
  if (step >= total_) return min_lr_;
  const double span = static_cast<double>(total_ - warmup_);
  return cosine(lr_, min_lr_, static_cast<double>(step - warmup_) / span);
}

WarmupLR::WarmupLR(float lr, std::int64_t warmup) : lr_(lr), warmup_(warmup) {
  check_lr_value(lr, "WarmupLR", "lr");
  KILN_CHECK(warmup >= 0, "WarmupLR: warmup must be >= 0, got ", warmup);
}

float WarmupLR::lr(std::int64_t step) const {
  if (step < 0) step = 0;
  if (step >= warmup_) return lr_;
  return static_cast<float>(static_cast<double>(lr_) * static_cast<double>(step) /
                            static_cast<double>(warmup_));
}

std::unique_ptr<Schedule> make_schedule(const std::string& name, float lr, std::int64_t total_steps,
                                        std::int64_t warmup, std::int64_t step_size, float gamma,
                                        float min_lr) {
  if (name == "constant") {
    check_lr_value(lr, "ConstantLR", "lr");
    return std::make_unique<ConstantLR>(lr);
  }
  if (name == "step") return std::make_unique<StepLR>(lr, step_size, gamma);
  if (name == "cosine") return std::make_unique<CosineLR>(lr, total_steps, min_lr);
  if (name == "warmup_cosine") {
    return std::make_unique<WarmupCosineLR>(lr, warmup, total_steps, min_lr);
  }
  if (name == "warmup") return std::make_unique<WarmupLR>(lr, warmup);
  throw Error("learning-rate schedule: unknown name '" + name +
              "'; choose one of constant, step, cosine, warmup_cosine, warmup");
}

}  // namespace kiln::optim
