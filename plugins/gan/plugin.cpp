// The gan plugin: DCGAN (unconditional or class-conditional) with BCE or hinge losses, separate
// Adam optimisers and an EMA of the generator; generation with labels and truncation, latent
// interpolation grids.
#include "kiln/plugin.hpp"

#include "tasks.hpp"

namespace {

class GanPlugin final : public kiln::Plugin {
 public:
  kiln::PluginInfo info() const override {
    using kiln::TaskSpec;
    TaskSpec train =
        TaskSpec::train("train", "Train a DCGAN (optionally class-conditional) on Fashion-MNIST");
    for (auto& p : kiln_gan::train_params()) train.param(p);
    train.batch(64).epochs(5);
    TaskSpec generate = TaskSpec::generate(
        "generate", "Sample images from a trained generator (labels, truncation)");
    for (auto& p : kiln_gan::generate_params()) generate.param(p);
    generate.batch(64);
    TaskSpec interpolate =
        TaskSpec::run("interpolate", "A grid of latent walks: one row per pair of latent points");
    for (auto& p : kiln_gan::interpolate_params()) interpolate.param(p);
    return {kiln_gan::kPluginName,
            kiln_gan::kPluginVersion,
            "gan",
            "DCGAN with BCE/hinge losses, class conditioning, generator EMA",
            {train, generate, interpolate}};
  }

  std::unique_ptr<kiln::Task> create_task(const std::string& task, const kiln::Params& params,
                                          kiln::TaskContext& ctx) override {
    const kiln::PluginInfo i = info();
    const kiln::TaskSpec* spec = i.find(task);
    KILN_CHECK(spec != nullptr, "gan: no task '", task,
               "'; the tasks are train, generate and interpolate");
    const kiln::Params p = kiln::Params::resolve(spec->params, params);
    if (task == "train") return kiln_gan::make_train_task(p, ctx);
    if (task == "generate") return kiln_gan::make_generate_task(p, ctx);
    return kiln_gan::make_interpolate_task(p, ctx);
  }
};

}  // namespace

KILN_PLUGIN(GanPlugin, "gan")
KILN_PLUGIN_CONFORMANCE(R"({
  "train": {"nz": 8, "ngf": 4, "ndf": 4, "train_count": 32, "conditional": true, "embed": 4,
            "batch_size": 8, "max_steps": 2},
  "generate": {"model": "@train", "count": 3, "truncation": 1.5},
  "interpolate": {"model": "@train", "rows": 2, "steps": 3}})")
