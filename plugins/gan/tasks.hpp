// The gan plugin's tasks: train, generate and interpolate.
#pragma once

#include <filesystem>
#include <memory>
#include <vector>

#include "kiln/plugin.hpp"
#include "model.hpp"

namespace kiln_gan {

inline constexpr const char* kPluginName = "gan";
inline constexpr const char* kPluginVersion = "1.0.0";

std::vector<kiln::ParamSpec> train_params();
std::vector<kiln::ParamSpec> generate_params();
std::vector<kiln::ParamSpec> interpolate_params();

std::unique_ptr<kiln::Task> make_train_task(const kiln::Params& p, kiln::TaskContext& ctx);
std::unique_ptr<kiln::Task> make_generate_task(const kiln::Params& p, kiln::TaskContext& ctx);
std::unique_ptr<kiln::Task> make_interpolate_task(const kiln::Params& p, kiln::TaskContext& ctx);

GanSizes sizes_of(const kiln::Params& train);

// A generator exported by gan/train, rebuilt from the parameters stored in the file, in
// evaluation mode.
std::unique_ptr<Generator> load_generator(const std::filesystem::path& file);

// Latent vector of sample `index`: N(0, 1) from Philox(seed, index, 0); with truncation psi > 0
// every component outside [-psi, psi] is redrawn from the same stream until it falls inside.
void sample_latent(std::uint64_t seed, std::int64_t index, double truncation, float* out,
                   std::int64_t nz);

}  // namespace kiln_gan
