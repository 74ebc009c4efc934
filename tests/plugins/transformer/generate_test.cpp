// transformer/generate on a small random model with a trained tokenizer: samples independent of
// their batch (prompts of different lengths), stop strings, streaming, max_tokens.
#include <gtest/gtest.h>

#include <filesystem>

#include "kiln/safetensors.hpp"
#include "tasks.hpp"

namespace kiln::gpt {
namespace {

class FakeContext final : public TaskContext {
 public:
  std::string stage_id() const override { return "gen"; }
  std::filesystem::path work_dir() const override { return std::filesystem::temp_directory_path(); }
  std::uint64_t seed() const override { return 5; }
  DType precision() const override { return DType::f32; }
  void progress(std::int64_t, std::int64_t, const std::string&) override {}
  bool cancelled() const override { return false; }
  void stream_text(std::string_view chunk) override { streamed += chunk; }
  std::string streamed;
};

const char* kText =
    "the quick brown fox jumps over the lazy dog. a stitch in time saves nine. all that glitters "
    "is not gold. the early bird catches the worm. the pen is mightier than the sword.\n";

std::filesystem::path make_model() {
  static const std::filesystem::path file = [] {
    const auto dir = std::filesystem::temp_directory_path() / "kiln_gpt_generate_test";
    std::filesystem::create_directories(dir);
    const text::BpeTokenizer tok = text::BpeTokenizer::train(kText, {.vocab_size = 300});
    Params p = Params::resolve(train_params(), Params({{"data", std::string("/tmp")},
                                                       {"context", std::int64_t{48}},
                                                       {"layers", std::int64_t{2}},
                                                       {"heads", std::int64_t{2}},
                                                       {"dim", std::int64_t{32}}}));
    Generator gen(11);
    Gpt model(config_from(p, tok.vocab_size()), gen);
    // Larger weights than GPT-2's init so that the logits are far from uniform.
    for (auto& [name, t] : model.named_parameters()) {
      if (t.dim() == 2) nn::init::normal_(t, gen, 0.f, 0.3f);
    }
    auto meta = checkpoint_metadata(kPluginName, kPluginVersion, "train", p);
    meta[kVocabKey] = tok.vocab_json();
    meta[kMergesKey] = tok.merges_txt();
    save_safetensors(dir / "model.safetensors", model.state_dict(), meta);
    return dir / "model.safetensors";
  }();
  return file;
}

std::vector<Artifact> generate(std::map<std::string, ParamValue> given,
                               const std::vector<std::int64_t>& indices, FakeContext& ctx) {
  given["model"] = make_model().string();
  const Params p = Params::resolve(generate_params(), Params(given));
  auto task = make_generate_task(p, ctx);
  return task->as_generate()->generate({indices, 77});
}

TEST(GptGenerate, SamplesDoNotDependOnTheirBatch) {
  FakeContext ctx;
  const std::map<std::string, ParamValue> g = {
      {"prompts", std::vector<std::string>{"the", "a stitch in time", "all that glitters is"}},
      {"max_tokens", std::int64_t{12}},
      {"temperature", 0.9}};
  const auto batch = generate(g, {0, 1, 2}, ctx);
  ASSERT_EQ(batch.size(), 3u);
  for (std::int64_t i = 0; i < 3; ++i) {
    FakeContext one;
    const auto alone = generate(g, {i}, one);
    EXPECT_EQ(alone[0].text, batch[static_cast<std::size_t>(i)].text) << "sample " << i;
    EXPECT_EQ(alone[0].index, i);
  }
  EXPECT_EQ(batch[1].text.rfind("a stitch in time", 0), 0u);
  EXPECT_EQ(batch[1].info.at("prompt"), "a stitch in time");
  EXPECT_LE(std::stoll(batch[1].info.at("tokens")), 12);
  // Streaming shows the texts, each followed by a line break.
  EXPECT_EQ(ctx.streamed, batch[0].text + "\n" + batch[1].text + "\n" + batch[2].text + "\n");
  // A different sample index gives a different text (seeded per index).
  FakeContext other;
  const auto shifted = generate(g, {3}, other);  // prompt 0 again, index 3
  EXPECT_EQ(shifted[0].text.rfind("the", 0), 0u);
  EXPECT_NE(shifted[0].text, batch[0].text);
}

TEST(GptGenerate, StopStringEndsTheText) {
  FakeContext ctx;
  std::map<std::string, ParamValue> g = {
      {"prompt", std::string("the pen")}, {"greedy", true}, {"max_tokens", std::int64_t{30}}};
  const std::string full = generate(g, {0}, ctx)[0].text;
  const std::string completion = full.substr(7);
  ASSERT_GE(completion.size(), 6u) << full;
  const std::string stop = completion.substr(3, 2);
  g["stop"] = std::vector<std::string>{stop};
  FakeContext ctx2;
  const std::string cut = generate(g, {0}, ctx2)[0].text;
  EXPECT_EQ(cut, "the pen" + completion.substr(0, completion.find(stop)));
  EXPECT_EQ(ctx2.streamed, cut + "\n");
}

TEST(GptGenerate, PromptLongerThanTheContextIsAnError) {
  FakeContext ctx;
  std::string long_prompt;
  for (int i = 0; i < 40; ++i) long_prompt += "glitters ";
  try {
    generate({{"prompt", long_prompt}}, {0}, ctx);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("context is 48"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace kiln::gpt
