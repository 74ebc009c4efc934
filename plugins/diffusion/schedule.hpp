// Noise schedules of DDPM (Ho et al. 2020) and their derived quantities.
//
//   diffusion::Schedule s = diffusion::Schedule::make("linear", 1000);
//   s.alpha_bar(t)   // prod_{k <= t} (1 - beta_k)
//
// Timesteps t run from 0 to T - 1; x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps.
//   linear: beta_t = beta_start + (beta_end - beta_start) t / (T - 1)   (Ho et al.)
//   cosine: alpha_bar(t) = f(t + 1) / f(0), f(u) = cos^2((u / T + s) / (1 + s) pi / 2), s = 0.008,
//           beta_t = min(1 - alpha_bar_t / alpha_bar_{t-1}, 0.999)   (Nichol & Dhariwal 2021)
// Everything is held in double; the sampler converts to f32 at the point of use.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace diffusion {

class Schedule {
 public:
  // kind "linear" or "cosine"; beta_start / beta_end are used by "linear" only.
  static Schedule make(const std::string& kind, std::int64_t timesteps, double beta_start = 1e-4,
                       double beta_end = 0.02);

  std::int64_t timesteps() const { return static_cast<std::int64_t>(betas_.size()); }
  double beta(std::int64_t t) const { return betas_.at(static_cast<std::size_t>(t)); }
  double alpha(std::int64_t t) const { return 1.0 - beta(t); }
  double alpha_bar(std::int64_t t) const { return alpha_bars_.at(static_cast<std::size_t>(t)); }
  // alpha_bar of t - 1, with alpha_bar(-1) = 1.
  double alpha_bar_prev(std::int64_t t) const { return t <= 0 ? 1.0 : alpha_bar(t - 1); }
  const std::vector<double>& betas() const { return betas_; }
  const std::vector<double>& alpha_bars() const { return alpha_bars_; }

 private:
  std::vector<double> betas_, alpha_bars_;
};

// `steps` timesteps for sampling, descending from T - 1 and ending at 0, evenly spaced
// (round(i (T - 1) / (steps - 1)) for i = steps - 1 .. 0); steps = T gives every timestep.
std::vector<std::int64_t> sampling_timesteps(std::int64_t timesteps, std::int64_t steps);

}  // namespace diffusion
