// The keys a stage table may hold besides the plugin's parameters: what the host itself owns
// (epochs, batching, checkpoints, sample counts, seeds). Declared once here as ParamSpecs, so
// validation, defaults, `kiln inspect` and the docs all read the same declaration.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kiln/plugin.hpp"

namespace kiln::host {

// Keys every stage has that are not parameters: they say what the stage is.
inline const std::vector<std::string> kStageStructureKeys = {"id", "plugin", "task"};

// The host-owned keys of a task of `spec.kind`, with defaults (batch sizes and epochs from the
// TaskSpec, the seed from the pipeline).
std::vector<ParamSpec> host_key_specs(const TaskSpec& spec, std::int64_t pipeline_seed);

// Defaults the host uses when a key is absent.
inline constexpr std::int64_t kDefaultCheckpointEvery = 500;
inline constexpr std::int64_t kDefaultKeepCheckpoints = 2;
inline constexpr std::int64_t kDefaultLogEvery = 50;

}  // namespace kiln::host
