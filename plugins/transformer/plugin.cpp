// The transformer plugin: GPT-2 language models with a byte-level BPE tokenizer.
//   train     next-token pre-training on a text corpus (tokenizer trained or loaded)
//   generate  text with a KV cache, from Kiln checkpoints or Hugging Face GPT-2 files
#include "kiln/plugin.hpp"
#include "tasks.hpp"

namespace {

class TransformerPlugin final : public kiln::Plugin {
 public:
  kiln::PluginInfo info() const override {
    kiln::TaskSpec train = kiln::TaskSpec::train(
        "train", "Pre-train a GPT on next-token prediction over a BPE-tokenized corpus");
    for (auto& p : kiln::gpt::train_params()) train.param(p);
    train.batch(32).epochs(1);
    kiln::TaskSpec gen = kiln::TaskSpec::generate(
        "generate", "Continue prompts with a GPT (KV cache, sampling chain, stop strings)");
    for (auto& p : kiln::gpt::generate_params()) gen.param(p);
    gen.batch(8);
    return {
        kiln::gpt::kPluginName,
        kiln::gpt::kPluginVersion,
        "transformer",
        "GPT-2 language models: BPE tokenizer, training, cached generation, Hugging Face import",
        {train, gen}};
  }

  std::unique_ptr<kiln::Task> create_task(const std::string& task, const kiln::Params& params,
                                          kiln::TaskContext& ctx) override {
    const kiln::PluginInfo i = info();
    const kiln::TaskSpec* spec = i.find(task);
    KILN_CHECK(spec != nullptr, "transformer: no task '", task, "' (tasks: train, generate)");
    const kiln::Params p = kiln::Params::resolve(spec->params, params);
    if (task == "train") return kiln::gpt::make_train_task(p, ctx);
    return kiln::gpt::make_generate_task(p, ctx);
  }
};

}  // namespace

KILN_PLUGIN(TransformerPlugin, "transformer")
KILN_PLUGIN_CONFORMANCE(R"({"train": {"data": "/usr/share/games/fortunes/goedel",
                                      "vocab_size": 300, "context": 16, "layers": 1, "heads": 2,
                                      "dim": 16, "batch_size": 4, "val_windows": 4},
                            "generate": {"model": "@train", "count": 3, "max_tokens": 8,
                                         "prompts": ["The ", "A longer prompt: "]}})")
