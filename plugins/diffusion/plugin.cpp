// The plugin's entry point: what it declares, how the host creates its tasks, and tiny settings
// for `kiln check-plugin` (a 2-level U-Net of 8 channels, 10 timesteps, 2 sampling steps).
#include "kiln/plugin.hpp"
#include "tasks.hpp"

namespace {

class DiffusionPlugin final : public kiln::Plugin {
 public:
  kiln::PluginInfo info() const override {
    auto train = kiln::TaskSpec::train(
        "train",
        "Train a DDPM U-Net on Fashion-MNIST (or MNIST) IDX files, optionally class-conditional");
    for (const auto& p : diffusion::train_params()) train.param(p);
    train.batch(64).epochs(10);
    auto generate = kiln::TaskSpec::generate(
        "generate", "Sample images with DDPM or DDIM, guidance, labels, image-to-image");
    for (const auto& p : diffusion::generate_params()) generate.param(p);
    generate.batch(64);
    return {diffusion::kPluginName,
            diffusion::kPluginVersion,
            "diffusion",
            "Denoising diffusion (DDPM / DDIM) with a U-Net and classifier-free guidance",
            {train, generate}};
  }

  std::unique_ptr<kiln::Task> create_task(const std::string& task, const kiln::Params& params,
                                          kiln::TaskContext& ctx) override {
    if (task == "train") return diffusion::make_train_task(params, ctx);
    if (task == "generate") return diffusion::make_generate_task(params, ctx);
    throw kiln::Error("diffusion: no task '" + task + "' (tasks: train, generate)");
  }
};

}  // namespace

KILN_PLUGIN(DiffusionPlugin, "diffusion")

KILN_PLUGIN_CONFORMANCE(R"({
  "train": {"data": "/usr/share/datasets/fashion-mnist", "limit": 16, "val_images": 0,
            "channels": 8, "channel_mult": [1, 2], "res_blocks": 1, "groups": 4,
            "timesteps": 10, "batch_size": 8, "max_steps": 2},
  "generate": {"model": "@train", "count": 3, "steps": 2, "guidance": 2.0}
})")
