// The eval plugin: a Fashion-MNIST classifier trained by Kiln, and the sample-quality metrics
// (FID, KID, k-NN precision/recall, classifier score, label agreement) computed on its features.
#include "kiln/plugin.hpp"

#include "tasks.hpp"

namespace {

class EvalPlugin final : public kiln::Plugin {
 public:
  kiln::PluginInfo info() const override {
    using kiln::TaskSpec;
    TaskSpec train =
        TaskSpec::train("train", "Train the evaluation classifier (a small CNN) on Fashion-MNIST");
    for (auto& p : kiln_eval::train_params()) train.param(p);
    train.batch(128).epochs(8);
    TaskSpec classify = TaskSpec::run(
        "classify", "Classify images (a folder, a generate stage, a manifest or an IDX file)");
    for (auto& p : kiln_eval::classify_params()) classify.param(p);
    TaskSpec evaluate = TaskSpec::run(
        "evaluate",
        "FID, KID, k-NN precision/recall, classifier score and label agreement of generated "
        "images against Fashion-MNIST, on the classifier's features");
    for (auto& p : kiln_eval::evaluate_params()) evaluate.param(p);
    return {kiln_eval::kPluginName,
            kiln_eval::kPluginVersion,
            "eval",
            "Fashion-MNIST classifier and sample-quality metrics (FID, KID, precision/recall)",
            {train, classify, evaluate}};
  }

  std::unique_ptr<kiln::Task> create_task(const std::string& task, const kiln::Params& params,
                                          kiln::TaskContext& ctx) override {
    const kiln::PluginInfo i = info();
    const kiln::TaskSpec* spec = i.find(task);
    KILN_CHECK(spec != nullptr, "eval: no task '", task,
               "'; the tasks are train, classify and evaluate");
    const kiln::Params p = kiln::Params::resolve(spec->params, params);
    if (task == "train") return kiln_eval::make_train_task(p, ctx);
    if (task == "classify") return kiln_eval::make_classify_task(p, ctx);
    return kiln_eval::make_evaluate_task(p, ctx);
  }
};

}  // namespace

KILN_PLUGIN(EvalPlugin, "eval")
KILN_PLUGIN_CONFORMANCE(R"({
  "train": {"train_count": 64, "val_count": 32, "channels": [4, 4, 4], "hidden": 8,
            "batch_size": 16, "max_steps": 2},
  "classify": {"model": "@train", "max_images": 24,
               "images": "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"},
  "evaluate": {"model": "@train", "max_images": 40, "min_samples": 20, "reference_count": 40,
               "kid_subsets": 2, "kid_subset_size": 20,
               "images": "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"}})")
