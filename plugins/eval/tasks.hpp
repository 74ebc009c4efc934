// The eval plugin's tasks: train (the classifier), classify and evaluate.
#pragma once

#include <memory>
#include <vector>

#include "kiln/plugin.hpp"

namespace kiln_eval {

inline constexpr const char* kPluginName = "eval";
inline constexpr const char* kPluginVersion = "1.0.0";

std::vector<kiln::ParamSpec> train_params();
std::vector<kiln::ParamSpec> classify_params();
std::vector<kiln::ParamSpec> evaluate_params();

std::unique_ptr<kiln::Task> make_train_task(const kiln::Params& p, kiln::TaskContext& ctx);
std::unique_ptr<kiln::Task> make_classify_task(const kiln::Params& p, kiln::TaskContext& ctx);
std::unique_ptr<kiln::Task> make_evaluate_task(const kiln::Params& p, kiln::TaskContext& ctx);

}  // namespace kiln_eval
