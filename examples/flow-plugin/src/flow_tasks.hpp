// The flow plugin's tasks and their parameters.
#pragma once

#include <memory>
#include <vector>

#include "kiln/plugin.hpp"

namespace flow {

inline constexpr const char* kPluginName = "flow";
inline constexpr const char* kPluginVersion = "0.1.0";

std::vector<kiln::ParamSpec> train_params();
std::vector<kiln::ParamSpec> sample_params();
std::vector<kiln::ParamSpec> evaluate_params();

std::unique_ptr<kiln::Task> make_train_task(const kiln::Params& p, kiln::TaskContext& ctx);
std::unique_ptr<kiln::Task> make_sample_task(const kiln::Params& p, kiln::TaskContext& ctx);
std::unique_ptr<kiln::Task> make_evaluate_task(const kiln::Params& p, kiln::TaskContext& ctx);

}  // namespace flow
