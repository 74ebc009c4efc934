// The vae plugin's tasks and the helpers they share.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data.hpp"
#include "kiln/plugin.hpp"
#include "model.hpp"

namespace kiln::vae {

// ---------------------------------------------------------------- parameter schemas
std::vector<ParamSpec> train_params();
std::vector<ParamSpec> generate_params();
std::vector<ParamSpec> reconstruct_params();
std::vector<ParamSpec> encode_params();
std::vector<ParamSpec> interpolate_params();
std::vector<ParamSpec> score_params();
std::vector<ParamSpec> denoise_params();

// ---------------------------------------------------------------- tasks
std::unique_ptr<Task> make_train(const Params& p, TaskContext& ctx);
std::unique_ptr<Task> make_generate(const Params& p, TaskContext& ctx);
std::unique_ptr<Task> make_reconstruct(const Params& p, TaskContext& ctx);
std::unique_ptr<Task> make_encode(const Params& p, TaskContext& ctx);
std::unique_ptr<Task> make_interpolate(const Params& p, TaskContext& ctx);
std::unique_ptr<Task> make_score(const Params& p, TaskContext& ctx);
std::unique_ptr<Task> make_denoise(const Params& p, TaskContext& ctx);

// ---------------------------------------------------------------- shared helpers
enum class Noise { gaussian, masking, salt_pepper };
Noise noise_from(const std::string& name);
ParamSpec noise_kind_param();

// Corrupts a batch [B, C, H, W] of images in [0, 1]: row r's noise comes from
// Philox(seed, keys[r], stream) alone. gaussian: x + level * N(0, 1), clamped to [0, 1];
// masking: each pixel set to 0 with probability level; salt_pepper: each pixel set to 0 or 1
// (even odds) with probability level.
Tensor corrupt(const Tensor& x, const std::vector<std::int64_t>& keys, std::uint64_t seed,
               std::uint64_t stream, Noise kind, float level);

// Per-example scores of a batch: negative ELBO (or reconstruction error for autoencoders),
// reconstruction term and KL term, in nats per image. `eps` rows come from
// Philox(seed, keys[r], kEvalStream); with `posterior_mean` the code is mu (no sampling).
struct Scores {
  std::vector<float> nelbo, recon, kl;
};
Scores score_batch(const Model& m, const Tensor& x, const std::vector<std::int64_t>& keys,
                   std::uint64_t seed, bool posterior_mean);

// Area under the ROC curve of `scores` for telling positives (true) from negatives (higher score
// = more positive), with ties counted half (Mann-Whitney U). NaN when a class is empty.
double auroc(const std::vector<double>& scores, const std::vector<bool>& positive);

// The image [C, H, W] in [0, 1] of one row of a batch.
Image row_image(const Tensor& batch, std::int64_t row);
// Images side by side (equal heights), separated by `gap` columns of black.
Image hstack(const std::vector<Image>& images, int gap = 2);

// Stream numbers of the plugin's Philox draws.
inline constexpr std::uint64_t kLatentStream = 0;
inline constexpr std::uint64_t kPixelStream = 1;
inline constexpr std::uint64_t kNoiseStream = 2;
inline constexpr std::uint64_t kEvalStream = 3;

}  // namespace kiln::vae
