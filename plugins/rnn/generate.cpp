// rnn/generate: text sampled character by character from a trained model.
//
// The prompt is run once (batch 1) and its final state is copied to every sequence of the batch;
// then all sequences advance in lock-step, one character per step, each through the SDK's
// decoding chain (kiln::decoding) with its own Philox(seed, index) stream, until it reaches a
// stop string or max_tokens. Sequences that have finished keep being computed (their rows are
// ignored) so the batch shape never changes. An empty prompt primes the model with a newline
// (or the first vocabulary character when the text had no newline); the primer is not part of
// the output. With [compute] precision = "bf16" the recurrent layers compute in bf16
// (ops::lstm / ops::gru with DType::bf16), and with quantize = "int8" an LSTM's layers run in
// int8 (ops::Int8Lstm); the embedding, the head and the sampling stay f32.
#include <algorithm>

#include "kiln/autograd.hpp"
#include "kiln/decoding.hpp"
#include "kiln/error.hpp"
#include "model.hpp"
#include "tasks.hpp"

namespace kiln_rnn {

namespace {

using kiln::Params;
using kiln::ParamSpec;
using kiln::Tensor;

// [L, 1, H] -> [L, N, H] (each row a copy).
Tensor repeat_rows(const Tensor& s, std::int64_t N) {
  if (!s.defined()) return s;
  const Tensor src = s.contiguous();
  const std::int64_t L = src.size(0), H = src.size(2);
  Tensor out = Tensor::empty({L, N, H});
  const float* a = src.data<float>();
  float* b = out.data<float>();
  for (std::int64_t l = 0; l < L; ++l) {
    for (std::int64_t n = 0; n < N; ++n) std::copy_n(a + l * H, H, b + (l * N + n) * H);
  }
  return out;
}

class GenerateTask final : public kiln::GenerateTask {
 public:
  GenerateTask(const Params& p, kiln::TaskContext& ctx)
      : params_(p),
        ctx_(ctx),
        model_(load_model(p.string("model"))),
        sampler_(kiln::decoding::config_from(p)) {
    model_.net->set_compute_dtype(ctx.precision());
    apply_quantize(model_, p, "rnn/generate");
    const kiln::text::Unknown unknown = kiln::text::parse_unknown(p.string("unknown"));
    prompt_text_ = p.string("prompt");
    try {
      prompt_ = model_.vocab.encode(prompt_text_, unknown);
    } catch (const kiln::Error& e) {
      throw kiln::Error(std::string("rnn/generate: prompt: ") + e.what());
    }
    if (unknown != kiln::text::Unknown::error) prompt_text_ = model_.vocab.decode(prompt_);
    primer_ = prompt_;
    if (primer_.empty()) {
      const std::int64_t nl = model_.vocab.id_of(U'\n');
      primer_.push_back(static_cast<std::int32_t>(nl >= 0 ? nl : 0));
    }
    // The prompt's state and next-character logits, computed once (batch 1).
    kiln::NoGradGuard no_grad;
    RnnState zero;
    const Tensor logits =
        model_.net->forward(time_major({primer_.data()}, static_cast<std::int64_t>(primer_.size())),
                            zero, prompt_state_, nullptr);
    const std::int64_t V = model_.vocab.size();
    const std::vector<float> all = logits.to_vector();
    prompt_logits_.assign(all.end() - V, all.end());
  }

  std::vector<kiln::Artifact> generate(const kiln::SampleRequest& req) override {
    kiln::NoGradGuard no_grad;
    const auto N = static_cast<std::int64_t>(req.indices.size());
    const std::int64_t V = model_.vocab.size();
    const kiln::decoding::Config& cfg = sampler_.config();
    const bool live = N == 1;  // stream characters as they come only for a single sequence
    const bool with_prompt = params_.boolean("include_prompt");

    std::vector<kiln::Philox> rngs;
    std::vector<kiln::decoding::TextStream> texts;
    std::vector<std::vector<std::int64_t>> context(static_cast<std::size_t>(N));
    std::vector<std::int64_t> produced(static_cast<std::size_t>(N), 0);
    std::vector<bool> active(static_cast<std::size_t>(N), true);
    for (std::int64_t i = 0; i < N; ++i) {
      rngs.push_back(
          kiln::decoding::sample_rng(req.seed, static_cast<std::uint64_t>(req.indices[i])));
      texts.emplace_back(cfg.stop);
      context[static_cast<std::size_t>(i)].assign(prompt_.begin(), prompt_.end());
    }
    if (live && with_prompt) ctx_.stream_text(prompt_text_);

    RnnState state{repeat_rows(prompt_state_.h, N), repeat_rows(prompt_state_.c, N)};
    std::vector<float> logits(static_cast<std::size_t>(N * V));
    for (std::int64_t n = 0; n < N; ++n) {
      std::copy(prompt_logits_.begin(), prompt_logits_.end(), logits.begin() + n * V);
    }
    std::vector<std::int32_t> next(static_cast<std::size_t>(N), 0);
    std::int64_t remaining = N;
    for (std::int64_t step = 0; remaining > 0; ++step) {
      if (ctx_.cancelled()) break;
      for (std::int64_t i = 0; i < N; ++i) {
        const auto u = static_cast<std::size_t>(i);
        if (!active[u]) continue;
        const std::int64_t tok =
            sampler_.next(std::span<float>(logits.data() + i * V, static_cast<std::size_t>(V)),
                          context[u], rngs[u]);
        context[u].push_back(tok);
        next[u] = static_cast<std::int32_t>(tok);
        ++produced[u];
        const std::string ready = texts[u].push(model_.vocab.token_text(tok));
        if (live && !ready.empty()) ctx_.stream_text(ready);
        if (texts[u].stopped() || produced[u] >= cfg.max_tokens) {
          active[u] = false;
          --remaining;
        }
      }
      if (remaining == 0) break;
      RnnState out;
      Tensor ids = Tensor::empty({1, N}, kiln::DType::s64);
      for (std::int64_t i = 0; i < N; ++i)
        ids.data<std::int64_t>()[i] = next[static_cast<std::size_t>(i)];
      const Tensor l = model_.net->forward(ids, state, out, nullptr);
      state = out;
      const Tensor lc = l.contiguous();
      std::copy_n(lc.data<float>(), N * V, logits.data());
    }

    std::vector<kiln::Artifact> out;
    for (std::int64_t i = 0; i < N; ++i) {
      const auto u = static_cast<std::size_t>(i);
      const std::string rest = texts[u].finish();
      if (live && !rest.empty()) ctx_.stream_text(rest);
      std::string text = (with_prompt ? prompt_text_ : std::string()) + texts[u].text();
      if (!live) ctx_.stream_text(text + (text.empty() || text.back() != '\n' ? "\n" : ""));
      kiln::Artifact a = kiln::Artifact::make_text(req.indices[u], std::move(text));
      a.info = {{"prompt", prompt_text_},
                {"chars", std::to_string(produced[u])},
                {"end", texts[u].stopped() ? "stop" : "max_tokens"}};
      out.push_back(std::move(a));
    }
    if (live) ctx_.stream_text("\n");
    return out;
  }

 private:
  Params params_;
  kiln::TaskContext& ctx_;
  LoadedModel model_;
  kiln::decoding::Sampler sampler_;
  std::string prompt_text_;
  std::vector<std::int32_t> prompt_, primer_;
  RnnState prompt_state_;
  std::vector<float> prompt_logits_;
};

}  // namespace

std::vector<ParamSpec> generate_param_specs() {
  std::vector<ParamSpec> s = {
      ParamSpec::path("model", "A model written by rnn/train (or \"@train\")"),
      ParamSpec::string("prompt", "", "Text the samples start from (empty: a newline primes it)"),
      ParamSpec::choice("unknown", "error", {"error", "skip", "replace"},
                        "Prompt characters the model never saw: an error, left out, or replaced "
                        "by U+FFFD / '?' / ' ' (the first in the vocabulary)"),
      ParamSpec::boolean("include_prompt", true, "Each sample's text starts with the prompt"),
      quantize_param_spec(),
  };
  for (ParamSpec& d : kiln::decoding::param_specs(400)) s.push_back(std::move(d));
  return s;
}

std::unique_ptr<kiln::Task> make_generate_task(const Params& p, kiln::TaskContext& ctx) {
  return std::make_unique<GenerateTask>(p, ctx);
}

}  // namespace kiln_rnn
