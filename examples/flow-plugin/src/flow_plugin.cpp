// The plugin's entry point: what it declares (tasks and their parameters), how the host creates
// its tasks, and tiny settings for `kiln check-plugin`.
#include "flow_tasks.hpp"
#include "kiln/plugin.hpp"

namespace {

class FlowPlugin final : public kiln::Plugin {
 public:
  kiln::PluginInfo info() const override {
    auto train = kiln::TaskSpec::train("train", "Fit the flow by maximum likelihood");
    for (const auto& p : flow::train_params()) train.param(p);
    train.batch(64).epochs(1);

    auto sample = kiln::TaskSpec::generate("sample", "Draw images from a trained flow");
    for (const auto& p : flow::sample_params()) sample.param(p);
    sample.batch(64);

    auto evaluate = kiln::TaskSpec::run("evaluate", "Bits per dimension on a set of images");
    for (const auto& p : flow::evaluate_params()) evaluate.param(p);

    return {flow::kPluginName,
            flow::kPluginVersion,
            "flow",
            "RealNVP normalising flow for 28x28 grey images (exact bits/dim)",
            {train, sample, evaluate}};
  }

  std::unique_ptr<kiln::Task> create_task(const std::string& task, const kiln::Params& params,
                                          kiln::TaskContext& ctx) override {
    if (task == "train") return flow::make_train_task(params, ctx);
    if (task == "sample") return flow::make_sample_task(params, ctx);
    if (task == "evaluate") return flow::make_evaluate_task(params, ctx);
    throw kiln::Error("flow: no task '" + task + "' (tasks: train, sample, evaluate)");
  }
};

}  // namespace

KILN_PLUGIN(FlowPlugin, "flow")

KILN_PLUGIN_CONFORMANCE(R"({
  "train": {"data": "/usr/share/datasets/fashion-mnist", "limit": 16, "val_images": 8,
            "hidden": 4, "checker_layers": 2, "channel_layers": 2, "batch_size": 8},
  "sample": {"model": "@train", "count": 3},
  "evaluate": {"model": "@train", "data": "/usr/share/datasets/fashion-mnist", "limit": 8}
})")
