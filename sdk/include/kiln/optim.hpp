// Optimisers, gradient clipping and learning-rate schedules.
//
//   kiln::optim::Adam opt(model.named_parameters(), {.lr = 1e-3f});
//   kiln::optim::WarmupCosineLR sched(/*lr=*/1e-3f, /*warmup=*/100, /*total=*/10000);
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
//
// Parameters must be plain contiguous f32 or bf16 tensors. A bf16 parameter is updated through
// an f32 master copy kept in the slot "master" (saved as "master.<name>"): the update is computed
// in f32 on the master and the parameter receives its bf16 rounding, so small updates are not
// lost to bf16 rounding. Wherever the bf16 parameter no longer equals the rounded master (it was
// written from outside, e.g. by loading a checkpoint), the master takes the parameter's value.
// Gradients may be f32 or bf16 (converted to f32). A parameter without a gradient is skipped;
// the step count is global (PyTorch counts per parameter; they differ only for a parameter that
// misses gradients on some steps).
//
// Hyper-parameters are read as the decimals they were written as (0.999f is taken as 0.999) and
// scalars such as 1 - beta2 or lr / (1 - beta1^t) are formed in double, as PyTorch forms them
// from Python floats. Updates are elementwise loops over fixed chunks, so results are the same
// for any thread count.
#pragma once

#include <cstdint>
#include <functional>
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
  // Per-parameter state slot (created lazily, zero-initialised, f32, same shape as the
  // parameter). Slot names contain no '.'. Not thread-safe: create slots before apply_update.
  Tensor& slot(const std::string& slot_name, std::size_t param_index);
  bool has_slot(const std::string& slot_name, std::size_t param_index) const;
  // Declares a slot name so load_state_dict accepts it before the slot is first created.
  void declare_slot(const std::string& slot_name);
  // Runs kernel(i, w, g, begin, end) on elements [begin, end) of every parameter i that has a
  // gradient, in fixed chunks in parallel (TBB), under NoGradGuard. w is the parameter's f32
  // data (the master copy for bf16), g its f32 gradient. Afterwards bf16 parameters receive the
  // rounded master and every updated parameter's version is bumped. `kernel` must only touch
  // elements [begin, end) of parameter i and its slots.
  using UpdateKernel = std::function<void(std::size_t i, float* w, const float* g,
                                          std::int64_t begin, std::int64_t end)>;
  void apply_update(const UpdateKernel& kernel);
  // Throws unless the learning rate is finite and >= 0 (set_lr does not check).
  void check_lr(const char* who) const;
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

// Scales all gradients in place by max_norm / (norm + 1e-6) when that is below 1, so their global
// L2 norm is at most max_norm; returns the norm before clipping (as
// torch.nn.utils.clip_grad_norm_). Parameters without a gradient are skipped. A non-finite norm
// is returned and the gradients are left unchanged (PyTorch would fill them with NaN).
KILN_API float clip_grad_norm(const TensorList& params, float max_norm);
// Global L2 norm of the gradients (accumulated in double over fixed chunks; reproducible for any
// thread count). Infinite or NaN when some gradient element is.
KILN_API float grad_norm(const TensorList& params);

// Learning rate as a pure function of the step (so resume needs no schedule state). Steps count
// from 0 (the first optimiser step uses lr(0)); negative steps are treated as 0.
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
// lr * gamma^floor(step / step_size)   (torch.optim.lr_scheduler.StepLR)
class KILN_API StepLR : public Schedule {
 public:
  StepLR(float lr, std::int64_t step_size, float gamma);
  float lr(std::int64_t step) const override;

 private:
  float lr_;
  std::int64_t step_size_;
  float gamma_;
};
// min_lr + (lr - min_lr) * (1 + cos(pi * step / total)) / 2 for step < total, min_lr after
// (torch's CosineAnnealingLR with T_max = total, eta_min = min_lr, up to `total`).
class KILN_API CosineLR : public Schedule {
 public:
  CosineLR(float lr, std::int64_t total, float min_lr = 0.f);
  float lr(std::int64_t step) const override;

 private:
  float lr_, min_lr_;
  std::int64_t total_;
};
// lr * step / warmup for step < warmup (starting from 0, as Hugging Face's
// get_cosine_schedule_with_warmup), then cosine from lr to min_lr over [warmup, total], min_lr
// after. warmup = 0: plain cosine.
class KILN_API WarmupCosineLR : public Schedule {
 public:
  WarmupCosineLR(float lr, std::int64_t warmup, std::int64_t total, float min_lr = 0.f);
  float lr(std::int64_t step) const override;

 private:
  float lr_, min_lr_;
  std::int64_t warmup_, total_;
};
// lr * min(1, step / warmup).
class KILN_API WarmupLR : public Schedule {
 public:
  WarmupLR(float lr, std::int64_t warmup);
  float lr(std::int64_t step) const override;

 private:
  float lr_;
  std::int64_t warmup_;
};

// Builds a schedule by name: "constant", "step", "cosine", "warmup_cosine", "warmup"; each uses
// the arguments it needs. Unknown names and invalid arguments (lr < 0, total <= 0 for cosine,
// warmup > total, step_size <= 0, gamma <= 0) are a kiln::Error.
KILN_API std::unique_ptr<Schedule> make_schedule(const std::string& name, float lr,
                                                 std::int64_t total_steps, std::int64_t warmup,
                                                 std::int64_t step_size = 1, float gamma = 0.1f,
                                                 float min_lr = 0.f);

}  // namespace kiln::optim
