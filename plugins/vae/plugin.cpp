// The vae plugin: a convolutional VAE (and plain / denoising autoencoders) for small images.
#include "kiln/plugin.hpp"

#include "tasks.hpp"

namespace kiln::vae {
namespace {

TaskSpec with(TaskSpec t, const std::vector<ParamSpec>& params) {
  for (const ParamSpec& p : params) t.param(p);
  return t;
}

class VaePlugin final : public Plugin {
 public:
  PluginInfo info() const override {
    return {
        kPluginName,
        kPluginVersion,
        "vae",
        "Convolutional VAE, plain and denoising autoencoders for small images (Fashion-MNIST)",
        {with(TaskSpec::train("train", "Train on IDX files or a folder of images"), train_params())
             .batch(128)
             .epochs(10),
         with(TaskSpec::generate("generate", "Decode samples of the prior N(0, I)"),
              generate_params())
             .batch(256),
         with(TaskSpec::generate("reconstruct", "Encode and decode images of a dataset"),
              reconstruct_params())
             .batch(256),
         with(TaskSpec::generate("denoise",
                                 "Corrupt images of a dataset (or take noisy ones) and "
                                 "reconstruct them"),
              denoise_params())
             .batch(256),
         with(TaskSpec::run("encode", "Latent codes of a dataset's images, to safetensors"),
              encode_params()),
         with(TaskSpec::run("interpolate",
                            "Decode a path between two codes (two images or two seeds) as "
                            "a grid"),
              interpolate_params()),
         with(TaskSpec::run("score",
                            "Anomaly score (negative ELBO) per image to CSV, with the AUROC "
                            "of a held-out class"),
              score_params())}};
  }

  std::unique_ptr<Task> create_task(const std::string& task, const Params& params,
                                    TaskContext& ctx) override {
    const PluginInfo i = info();
    const TaskSpec* spec = i.find(task);
    KILN_CHECK(spec != nullptr, "vae: no task '", task,
               "'; the tasks are train, generate, reconstruct, denoise, encode, interpolate, "
               "score");
    const Params p = Params::resolve(spec->params, params);
    if (task == "train") return make_train(p, ctx);
    if (task == "generate") return make_generate(p, ctx);
    if (task == "reconstruct") return make_reconstruct(p, ctx);
    if (task == "denoise") return make_denoise(p, ctx);
    if (task == "encode") return make_encode(p, ctx);
    if (task == "interpolate") return make_interpolate(p, ctx);
    return make_score(p, ctx);
  }
};

}  // namespace
}  // namespace kiln::vae

KILN_PLUGIN(kiln::vae::VaePlugin, "vae")
KILN_PLUGIN_CONFORMANCE(R"({
  "train": {"data": "/usr/share/datasets/fashion-mnist", "split": "test", "limit": 16,
            "latent": 4, "channels": [4, 8], "batch_size": 8, "max_steps": 2},
  "generate": {"model": "@train", "count": 3},
  "reconstruct": {"model": "@train", "data": "/usr/share/datasets/fashion-mnist", "limit": 4,
                  "count": 3},
  "denoise": {"model": "@train", "data": "/usr/share/datasets/fashion-mnist", "limit": 4,
              "count": 3},
  "encode": {"model": "@train", "data": "/usr/share/datasets/fashion-mnist", "limit": 5},
  "interpolate": {"model": "@train", "steps": 3, "rows": 2},
  "score": {"model": "@train", "data": "/usr/share/datasets/fashion-mnist", "limit": 40,
            "anomaly_class": 9}
})")
