// The rnn plugin: character-level LSTM / GRU language models (see docs/models/rnn.md).
#include "kiln/plugin.hpp"

#include "kiln/error.hpp"
#include "model.hpp"
#include "tasks.hpp"

namespace kiln_rnn {
namespace {

class RnnPlugin final : public kiln::Plugin {
 public:
  kiln::PluginInfo info() const override {
    kiln::TaskSpec train = kiln::TaskSpec::train(
        "train", "Train a character-level LSTM/GRU with truncated BPTT; reports validation bpc");
    for (auto& p : train_param_specs()) train.param(p);
    train.batch(32).epochs(1);
    kiln::TaskSpec gen = kiln::TaskSpec::generate(
        "generate", "Sample text from a prompt, character by character, batched across samples");
    for (auto& p : generate_param_specs()) gen.param(p);
    gen.batch(32);
    kiln::TaskSpec eval =
        kiln::TaskSpec::run("evaluate", "Bits per character of a model on a text");
    for (auto& p : evaluate_param_specs()) eval.param(p);
    return {kPluginName,
            kPluginVersion,
            "rnn",
            "Character-level LSTM/GRU language models (oneDNN RNN primitives)",
            {train, gen, eval}};
  }

  std::unique_ptr<kiln::Task> create_task(const std::string& task, const kiln::Params& params,
                                          kiln::TaskContext& ctx) override {
    const kiln::PluginInfo i = info();
    const kiln::TaskSpec* spec = i.find(task);
    KILN_CHECK(spec != nullptr, "rnn: no task '", task, "' (tasks: train, generate, evaluate)");
    const kiln::Params p = kiln::Params::resolve(spec->params, params);
    if (task == "train") return make_train_task(p, ctx);
    if (task == "generate") return make_generate_task(p, ctx);
    return make_evaluate_task(p, ctx);
  }
};

}  // namespace
}  // namespace kiln_rnn

KILN_PLUGIN(kiln_rnn::RnnPlugin, "rnn")
KILN_PLUGIN_CONFORMANCE(R"({"train": {"data": "/usr/share/games/fortunes/goedel", "embed": 8,
                                      "hidden": 16, "layers": 2, "dropout": 0.1, "seq_len": 16,
                                      "streams": 4, "batch_size": 4, "shuffle": false,
                                      "max_steps": 3, "val_max_chars": 400},
                            "generate": {"model": "@train", "count": 3, "max_tokens": 24,
                                         "prompt": "The "},
                            "evaluate": {"model": "@train", "data": "/usr/share/games/fortunes/goedel",
                                         "streams": 4, "seq_len": 32}})")
