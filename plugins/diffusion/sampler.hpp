// DDPM ancestral and DDIM sampling with classifier-free guidance, from noise or from an image.
//
// Sample i's randomness comes from Philox(seed, i) alone: its starting noise from stream 0, the
// noise of every ancestral / stochastic DDIM step from stream 1, drawn in step order. So a sample
// is the same whatever batch it is computed in.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kiln/tensor.hpp"
#include "schedule.hpp"
#include "unet.hpp"

namespace diffusion {

enum class Prediction { eps, v };
Prediction parse_prediction(const std::string& s);

struct SamplerOptions {
  std::string method = "ddim";  // "ddim" or "ddpm"
  std::int64_t steps = 50;      // sampling steps (a subsequence of the model's timesteps)
  double eta = 0.0;             // DDIM: 0 deterministic, 1 ancestral-like
  double guidance = 1.0;        // classifier-free guidance scale (1: plain conditional)
  bool clip = true;             // clip the predicted x_0 to [-1, 1]
  Prediction prediction = Prediction::eps;
  double strength = 1.0;    // image-to-image: share of the steps run from `init`
  std::int64_t frames = 0;  // >= 2: record this many intermediate x_t (first = start)
};

// The model's prediction turned into (eps, x0) at timestep t for x_t, with guidance.
struct Denoised {
  kiln::Tensor eps, x0;
};
Denoised denoise(const UNet& net, const Schedule& schedule, const SamplerOptions& o,
                 const kiln::Tensor& x, std::int64_t t, const kiln::Tensor& labels);

// Samples for `indices` ([N, C, S, S] in [-1, 1]). `labels` s64 [N] (num_classes = no label) or
// undefined for an unconditional model. `init` [N, C, S, S] in [-1, 1] starts image-to-image at
// `o.strength`; undefined starts from pure noise. With o.frames >= 2, `frames` receives that
// many [N, C, S, S] tensors (x_t along the way; the last is the result).
kiln::Tensor sample(const UNet& net, const Schedule& schedule, const SamplerOptions& o,
                    const std::vector<std::int64_t>& indices, std::uint64_t seed,
                    const kiln::Tensor& labels, const kiln::Tensor& init,
                    std::vector<kiln::Tensor>* frames = nullptr);

// Per-row scaling: x [N, ...] times coefficient c[r] for row r.
kiln::Tensor scale_rows(const kiln::Tensor& x, const std::vector<float>& c);

}  // namespace diffusion
