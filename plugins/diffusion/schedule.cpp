#include "schedule.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "kiln/error.hpp"

namespace diffusion {

Schedule Schedule::make(const std::string& kind, std::int64_t timesteps, double beta_start,
                        double beta_end) {
  KILN_CHECK(timesteps >= 2 && timesteps <= 100000,
             "diffusion: 'timesteps' must be in [2, 100000], got ", timesteps);
  Schedule s;
  const auto n = static_cast<std::size_t>(timesteps);
  s.betas_.resize(n);
  if (kind == "linear") {
    KILN_CHECK(beta_start > 0 && beta_end < 1 && beta_start <= beta_end,
               "diffusion: linear betas need 0 < beta_start <= beta_end < 1, got ", beta_start,
               " and ", beta_end);
    for (std::size_t t = 0; t < n; ++t) {
      s.betas_[t] = beta_start +
                    (beta_end - beta_start) * static_cast<double>(t) / static_cast<double>(n - 1);
    }
  } else if (kind == "cosine") {
    constexpr double offset = 0.008;
    const auto f = [&](double u) {
      const double c =
          std::cos((u / static_cast<double>(n) + offset) / (1 + offset) * std::numbers::pi / 2);
      return c * c;
    };
    for (std::size_t t = 0; t < n; ++t) {
      s.betas_[t] =
          std::min(1.0 - f(static_cast<double>(t + 1)) / f(static_cast<double>(t)), 0.999);
    }
  } else {
    throw kiln::Error("diffusion: unknown schedule '" + kind + "' (use \"linear\" or \"cosine\")");
  }
  s.alpha_bars_.resize(n);
  double prod = 1.0;
  for (std::size_t t = 0; t < n; ++t) {
    prod *= 1.0 - s.betas_[t];
    s.alpha_bars_[t] = prod;
  }
  return s;
}

std::vector<std::int64_t> sampling_timesteps(std::int64_t timesteps, std::int64_t steps) {
  KILN_CHECK(steps >= 1 && steps <= timesteps,
             "diffusion: 'steps' must be between 1 and the model's ", timesteps, " timesteps, got ",
             steps);
  std::vector<std::int64_t> out;
  if (steps == 1) return {timesteps - 1};
  for (std::int64_t i = steps - 1; i >= 0; --i) {
    out.push_back(static_cast<std::int64_t>(
        std::llround(static_cast<double>(i) * static_cast<double>(timesteps - 1) /
                     static_cast<double>(steps - 1))));
  }
  return out;
}

}  // namespace diffusion
