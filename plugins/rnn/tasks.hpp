// The rnn plugin's tasks: train (TrainTask), generate (GenerateTask), evaluate (RunTask).
#pragma once

#include <memory>
#include <vector>

#include "kiln/plugin.hpp"

namespace kiln_rnn {

std::unique_ptr<kiln::Task> make_train_task(const kiln::Params& p, kiln::TaskContext& ctx);
std::unique_ptr<kiln::Task> make_generate_task(const kiln::Params& p, kiln::TaskContext& ctx);
std::unique_ptr<kiln::Task> make_evaluate_task(const kiln::Params& p, kiln::TaskContext& ctx);

std::vector<kiln::ParamSpec> generate_param_specs();
std::vector<kiln::ParamSpec> evaluate_param_specs();

}  // namespace kiln_rnn
