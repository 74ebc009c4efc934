// Optimisers, gradient clipping and learning-rate schedules.
//
//   kiln::optim::Adam opt(model.named_parameters(), {.lr = 1e-3f});
//   kiln::optim::WarmupCosine sched(/*base_lr=*/1e-3f, /*warmup=*/100, /*total=*/10000);
//   for (int64_t step = 0; ...; ++step) {
//     opt.zero_grad();
//     loss.backward();
//     float norm = kiln::optim::clip_grad_norm(opt.params(), 1.0f);
//     opt.set_lr(sched.lr(step));
//     opt.step();
//   }
//   kiln::TensorMap s = opt.state_dict();   // "exp_avg.fc1.weight", ..., "step"
//
// Updates follow PyTorch's formulas exactly (torch.optim.SGD / Adam / AdamW, 1.13), so a model
// trained in both with the same initialisation and data follows the same trajectory up to
// floating-point rounding. step() writes parameters in place under no-grad and bumps their
// version (invalidating cached packed weights). state_dict() names every tensor by the
// parameter name it belongs to, so optimiser state survives checkpoint / resume exactly.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kiln/export.hpp"
#include "kiln/nn/module.hpp"
#include "kiln/tensor.hpp"

namespace kiln::optim {

class KILN_API Optimizer {
 public:
  explicit Optimizer(nn::NamedTensors params);
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  virtual void step() = 0;
  void zero_grad();
  float lr() const { return lr_; }
  void set_lr(float lr) { lr_ = lr; }
  TensorList params() const;
  const nn::NamedTensors& named_params() const { return params_; }
  std::int64_t steps() const { return steps_; }

  // Every state tensor, keyed "<slot>.<param name>", plus "step" (s64 scalar).
  virtual TensorMap state_dict() const;
  // Restores state saved by state_dict(); names and shapes must match (clear error otherwise).
  virtual void load_state_dict(const TensorMap& state);

 protected:
  // Per-parameter state slot (created lazily, zero-initialised, same shape as the parameter).
  Tensor& slot(const std::string& slot_name, std::size_t param_index);
  nn::NamedTensors params_;
  float lr_ = 1e-3f;
  std::int64_t steps_ = 0;
  std::vector<std::pair<std::string, std::vector<Tensor>>> slots_;
};

struct SgdOptions {
  float lr = 1e-2f;
  float momentum = 0.f;
  float dampening = 0.f;
  float weight_decay = 0.f;
  bool nesterov = false;
};
class KILN_API SGD : public Optimizer {
 public:
  SGD(nn::NamedTensors params, const SgdOptions& opts);
  void step() override;

 private:
  SgdOptions o_;
};

struct AdamOptions {
  float lr = 1e-3f;
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float eps = 1e-8f;
  float weight_decay = 0.f;  // L2 added to the gradient (Adam) or decoupled (AdamW)
};
class KILN_API Adam : public Optimizer {
 public:
  Adam(nn::NamedTensors params, const AdamOptions& opts, bool decoupled_weight_decay = false);
  void step() override;

 private:
  AdamOptions o_;
  bool decoupled_;
};
class KILN_API AdamW : public Adam {
 public:
  AdamW(nn::NamedTensors params, const AdamOptions& opts) : Adam(std::move(params), opts, true) {}
};

// Scales all gradients so their global L2 norm is at most max_norm; returns the norm before
// clipping (as torch.nn.utils.clip_grad_norm_). Parameters without a gradient are skipped.
KILN_API float clip_grad_norm(const TensorList& params, float max_norm);
// Global L2 norm of the gradients, and whether every gradient is finite.
KILN_API float grad_norm(const TensorList& params);

// Learning rate as a pure function of the step (so resume needs no schedule state).
class KILN_API Schedule {
 public:
  virtual ~Schedule() = default;
  virtual float lr(std::int64_t step) const = 0;
};
class KILN_API ConstantLR : public Schedule {
 public:
  explicit ConstantLR(float lr) : lr_(lr) {}
  float lr(std::int64_t) const override { return lr_; }

 private:
  float lr_;
};
// lr * gamma^(step / step_size)
class KILN_API StepLR : public Schedule {
 public:
  StepLR(float lr, std::int64_t step_size, float gamma);
  float lr(std::int64_t step) const override;

 private:
  float lr_;
  std::int64_t step_size_;
  float gamma_;
};
// Cosine from lr to min_lr over `total` steps (constant min_lr after).
class KILN_API CosineLR : public Schedule {
 public:
  CosineLR(float lr, std::int64_t total, float min_lr = 0.f);
  float lr(std::int64_t step) const override;

 private:
  float lr_, min_lr_;
  std::int64_t total_;
};
// Linear warm-up from 0 over `warmup` steps, then cosine to min_lr at `total`.
class KILN_API WarmupCosineLR : public Schedule {
 public:
  WarmupCosineLR(float lr, std::int64_t warmup, std::int64_t total, float min_lr = 0.f);
  float lr(std::int64_t step) const override;

 private:
  float lr_, min_lr_;
  std::int64_t warmup_, total_;
};
// Linear warm-up then constant.
class KILN_API WarmupLR : public Schedule {
 public:
  WarmupLR(float lr, std::int64_t warmup);
  float lr(std::int64_t step) const override;

 private:
  float lr_;
  std::int64_t warmup_;
};

// Builds a schedule by name: "constant", "step", "cosine", "warmup_cosine", "warmup";
// unknown names are a kiln::Error listing the choices.
KILN_API std::unique_ptr<Schedule> make_schedule(const std::string& name, float lr,
                                                 std::int64_t total_steps, std::int64_t warmup,
                                                 std::int64_t step_size = 1, float gamma = 0.1f,
                                                 float min_lr = 0.f);

}  // namespace kiln::optim
