// Decoding: turning a model's next-token logits into tokens, shared by every text plugin (RNN,
// Transformer, ...), so that the same TOML keys mean the same thing everywhere.
//
//   // In a generate task's schema:        for (auto& p : kiln::decoding::param_specs(256)) ...
//   // When the task is created:           auto cfg = kiln::decoding::config_from(params);
//   kiln::decoding::Sampler sampler(cfg);
//   kiln::Philox rng = kiln::decoding::sample_rng(request.seed, index);   // sample `index`
//   kiln::decoding::TextStream out(cfg.stop);
//   for (std::int64_t n = 0; n < cfg.max_tokens && !out.stopped(); ++n) {
//     std::span<float> logits = ...;                       // this sequence's row, [vocab]
//     std::int64_t tok = sampler.next(logits, context, rng);  // context: prompt + generated ids
//     context.push_back(tok);
//     std::string ready = out.push(detokenize(tok));        // text safe to show now
//   }
//   std::string rest = out.finish();
//
// The chain. Before drawing, the logits go through the steps of `Config::order`, each skipped
// when its setting is neutral. Default order (as in Hugging Face transformers' generate):
//
//   repetition_penalty  for every distinct token t of the context window: l_t / r if l_t > 0,
//                       else l_t * r (CTRL, Keskar et al. 2019). r = 1: off.
//   frequency_penalty   l_t -= f * count_t  (count in the context window; OpenAI's definition)
//   presence_penalty    l_t -= p * [count_t > 0]
//   temperature         l /= T. T = 1: off. T = 0 means greedy.
//   top_k               keep the k largest logits (ties broken by the lower token id, so exactly
//                       k survive). k = 0: off.
//   top_p               nucleus: keep the most probable tokens whose cumulative probability
//                       (softmax of the current logits) first reaches p, at least one. p = 1: off.
//   min_p               keep tokens whose probability is at least m times the largest. m = 0: off.
//
// Removed tokens get -inf. Then the token is drawn from softmax(logits) by one uniform number
// u from the sample's Philox stream: the first token id whose cumulative probability (in token-id
// order, accumulated in double) exceeds u. Greedy (`greedy = true` or temperature 0) applies the
// penalties only and takes the argmax (lowest id on ties) without drawing, so top_k = 1 and greedy
// choose the same token. The context window for penalties is the last `penalty_window` tokens
// (0: the whole context, prompt included).
//
// Stop strings: generation ends when the decoded text contains one of `Config::stop`; the text
// returned ends just before it. TextStream holds back text that could still turn into a stop
// string and any incomplete UTF-8 sequence, so streamed output never shows either.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kiln/export.hpp"
#include "kiln/plugin.hpp"
#include "kiln/random.hpp"

namespace kiln::decoding {

enum class Step {
  repetition_penalty,
  frequency_penalty,
  presence_penalty,
  temperature,
  top_k,
  top_p,
  min_p,
};

// "repetition_penalty", ... as in TOML; parse_step returns nullopt for an unknown name.
KILN_API const char* step_name(Step s);
KILN_API std::optional<Step> parse_step(std::string_view name);
KILN_API std::vector<Step> default_order();

struct KILN_API Config {
  bool greedy = false;
  double temperature = 1.0;
  std::int64_t top_k = 0;
  double top_p = 1.0;
  double min_p = 0.0;
  double repetition_penalty = 1.0;
  double frequency_penalty = 0.0;
  double presence_penalty = 0.0;
  std::int64_t penalty_window = 0;
  std::vector<Step> order = default_order();
  std::vector<std::string> stop;
  std::int64_t max_tokens = 256;

  bool is_greedy() const { return greedy || temperature == 0.0; }
  // Throws kiln::Error naming the setting when a value is out of range or a step is listed twice.
  void validate() const;
};

// The generate-task parameters of the chain, with ranges and help (for a plugin's TaskSpec):
// greedy, temperature, top_k, top_p, min_p, repetition_penalty, frequency_penalty,
// presence_penalty, penalty_window, sampling_order, stop, max_tokens.
KILN_API std::vector<ParamSpec> param_specs(std::int64_t default_max_tokens);
// A Config from resolved parameters holding those keys (absent keys keep the defaults).
KILN_API Config config_from(const Params& params);

// Sample `index`'s decoding stream: Philox(seed, index, kSamplingStream).
inline constexpr std::uint64_t kSamplingStream = 2;
inline Philox sample_rng(std::uint64_t seed, std::uint64_t index) {
  return Philox(seed, index, kSamplingStream);
}

class KILN_API Sampler {
 public:
  explicit Sampler(Config cfg);  // validates
  const Config& config() const { return cfg_; }

  // Applies the chain to `logits` (one sequence's row, modified in place) given the token ids
  // seen so far, and returns the chosen token. Draws one uniform from `rng` unless greedy.
  // Thread-safe: distinct rows may be decoded concurrently. Token ids outside [0, vocab) in the
  // context are an error.
  std::int64_t next(std::span<float> logits, std::span<const std::int64_t> context,
                    Philox& rng) const;

  // The distribution next() draws from (after the whole chain): probabilities summing to 1,
  // zero for removed tokens; one-hot at the argmax when greedy. For tests and for tools.
  std::vector<double> distribution(std::span<const float> logits,
                                   std::span<const std::int64_t> context) const;

 private:
  void apply(std::span<float> logits, std::span<const std::int64_t> context) const;
  Config cfg_;
};

// Incremental text with stop strings and UTF-8 hold-back, for streaming output.
class KILN_API TextStream {
 public:
  explicit TextStream(std::vector<std::string> stop = {});
  // Appends decoded bytes; returns the text that is now final (never part of a stop string,
  // never an incomplete UTF-8 sequence). After a stop string is seen, returns "" and ignores
  // further input.
  std::string push(std::string_view bytes);
  // The remaining held-back text (at the end of generation). An incomplete trailing UTF-8
  // sequence is kept as it is (the bytes the model produced).
  std::string finish();
  bool stopped() const { return stopped_; }
  // Everything emitted so far plus what finish() would return: the sample's text.
  const std::string& text() const { return text_; }

 private:
  std::vector<std::string> stop_;
  std::string text_;          // all accepted text (up to a stop string)
  std::size_t emitted_ = 0;   // bytes of text_ already returned
  std::size_t max_stop_ = 0;  // longest stop string
  bool stopped_ = false;
};

}  // namespace kiln::decoding
