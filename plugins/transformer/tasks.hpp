// The transformer plugin's tasks and the helpers they share (also used by the tests and the
// benchmark, which compile these sources directly).
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "gpt.hpp"
#include "kiln/bpe.hpp"
#include "kiln/plugin.hpp"

namespace kiln::gpt {

inline constexpr const char* kPluginName = "transformer";
inline constexpr const char* kPluginVersion = "1.0.0";

std::vector<ParamSpec> train_params();
std::vector<ParamSpec> generate_params();
// The architecture stored in a train task's parameters.
GptConfig config_from(const Params& p, std::int64_t vocab);

std::unique_ptr<Task> make_train_task(const Params& p, TaskContext& ctx);
std::unique_ptr<Task> make_generate_task(const Params& p, TaskContext& ctx);

// A model ready for inference: a Kiln checkpoint of transformer/train (architecture and tokenizer
// from its metadata) or a Hugging Face GPT-2 safetensors file (head count from `heads`, or from
// config.json beside the file when heads = 0; tokenizer from `tokenizer_dir`, or vocab.json and
// merges.txt beside the file).
struct LoadedModel {
  std::shared_ptr<Gpt> model;
  std::optional<text::BpeTokenizer> tokenizer;
  bool hugging_face = false;
};
LoadedModel load_model(const std::filesystem::path& file, std::int64_t heads,
                       const std::filesystem::path& tokenizer_dir);

// Metadata keys of the tokenizer inside a Kiln checkpoint.
inline constexpr const char* kVocabKey = "kiln.tokenizer.vocab_json";
inline constexpr const char* kMergesKey = "kiln.tokenizer.merges_txt";

}  // namespace kiln::gpt
