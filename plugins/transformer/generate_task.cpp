// transformer/generate: text from a prompt with a KV cache (prefill + decode), the SDK decoding
// chain, stop strings and streaming.
#include <chrono>

#include "kiln/context.hpp"
#include "kiln/decoding.hpp"
#include "tasks.hpp"

namespace kiln::gpt {
namespace {

class GenerateGpt final : public GenerateTask {
 public:
  GenerateGpt(const Params& p, TaskContext& ctx)
      : ctx_(ctx), cfg_(decoding::config_from(p)), sampler_(cfg_) {
    loaded_ = load_model(p.string("model"), p.integer("heads"),
                         p.has("tokenizer") ? std::filesystem::path(p.string("tokenizer"))
                                            : std::filesystem::path());
    KILN_CHECK(loaded_.tokenizer.has_value(), "transformer/generate: '", p.string("model"),
               "' is a Hugging Face model and no vocab.json + merges.txt were found beside it; "
               "set 'tokenizer' to their folder");
    const std::string prec = p.string("precision");
    dtype_ = prec == "bf16"  ? DType::bf16
             : prec == "f32" ? DType::f32
                             : (ctx.precision() == DType::bf16 ? DType::bf16 : DType::f32);
    prompts_ = p.strings("prompts");
    if (prompts_.empty()) prompts_.push_back(p.string("prompt"));
    for (const std::string& s : prompts_) {
      std::vector<std::int64_t> ids = loaded_.tokenizer->encode(s.empty() ? "\n" : s);
      const std::int64_t ctx_len = loaded_.model->config().context;
      KILN_CHECK(static_cast<std::int64_t>(ids.size()) < ctx_len,
                 "transformer/generate: the "
                 "prompt '",
                 s.substr(0, 60), "' has ", ids.size(), " tokens; the model's ", "context is ",
                 ctx_len, ", so use a shorter prompt");
      prompt_ids_.push_back(std::move(ids));
    }
    if (auto eot = loaded_.tokenizer->find("<|endoftext|>")) eot_ = *eot;
    log_info("transformer/generate: ", loaded_.model->config().describe(), ", ", dtype_name(dtype_),
             " weights", loaded_.hugging_face ? " (Hugging Face file)" : "");
  }

  std::int64_t default_count() const override { return 4; }

  std::vector<Artifact> generate(const SampleRequest& req) override {
    const auto b = static_cast<std::int64_t>(req.indices.size());
    const GptConfig& mc = loaded_.model->config();
    std::vector<std::vector<std::int64_t>> prompts, context;
    std::vector<std::string> prompt_text;
    std::int64_t longest = 0;
    for (std::int64_t i : req.indices) {
      const std::size_t k = static_cast<std::size_t>(i) % prompts_.size();
      prompts.push_back(prompt_ids_[k]);
      prompt_text.push_back(prompts_[k]);
      longest = std::max<std::int64_t>(longest, static_cast<std::int64_t>(prompt_ids_[k].size()));
    }
    context = prompts;
    const std::int64_t max_len = std::min(mc.context, longest + cfg_.max_tokens);
    // Rows stop at their own prompt length + max_tokens, or at the model's context.
    if (!decoder_ || decoder_->max_len() < max_len || batch_ < b) {
      decoder_.reset();
      decoder_ = std::make_unique<Decoder>(*loaded_.model, dtype_, b, max_len);
      batch_ = b;
    }
    std::vector<decoding::TextStream> streams;
    std::vector<Philox> rngs;
    for (std::int64_t i : req.indices) {
      streams.emplace_back(cfg_.stop);
      rngs.push_back(decoding::sample_rng(req.seed, static_cast<std::uint64_t>(i)));
    }
    std::vector<bool> done(static_cast<std::size_t>(b), false);
    std::vector<std::int64_t> generated(static_cast<std::size_t>(b), 0);
    std::string live = prompt_text[0];

    const auto t0 = std::chrono::steady_clock::now();
    Tensor logits = decoder_->prefill(prompts);
    const auto t1 = std::chrono::steady_clock::now();
    if (!live.empty()) ctx_.stream_text(live);
    std::int64_t steps = 0;
    std::vector<std::int64_t> next(static_cast<std::size_t>(b), 0);
    for (std::int64_t n = 0; n < cfg_.max_tokens; ++n) {
      const std::int64_t v = logits.size(1);
      for (std::int64_t r = 0; r < b; ++r) {
        const auto ur = static_cast<std::size_t>(r);
        if (done[ur]) continue;
        std::span<float> row(logits.data<float>() + r * v, static_cast<std::size_t>(v));
        const std::int64_t tok = sampler_.next(row, context[ur], rngs[ur]);
        next[ur] = tok;
        context[ur].push_back(tok);
        ++generated[ur];
        if (tok == eot_) {
          done[ur] = true;
          continue;
        }
        const std::string ready = streams[ur].push(loaded_.tokenizer->token_bytes(tok));
        if (r == 0 && !ready.empty()) ctx_.stream_text(ready);
        if (streams[ur].stopped()) done[ur] = true;
      }
      if (std::all_of(done.begin(), done.end(), [](bool d) { return d; })) break;
      if (ctx_.cancelled()) break;
      // A row whose context is full ends there (its own limit, whatever the batch).
      bool any = false;
      for (std::int64_t r = 0; r < b; ++r) {
        const auto ur = static_cast<std::size_t>(r);
        if (!done[ur] && decoder_->position(r) >= mc.context) done[ur] = true;
        if (done[ur]) next[ur] = -1;
        any = any || !done[ur];
      }
      if (!any) break;
      logits = decoder_->step(next);
      ++steps;
    }
    const auto t2 = std::chrono::steady_clock::now();
    const double prefill_s = std::chrono::duration<double>(t1 - t0).count();
    const double decode_s = std::chrono::duration<double>(t2 - t1).count();
    std::int64_t prompt_tokens = 0, total = 0;
    for (std::int64_t r = 0; r < b; ++r) {
      prompt_tokens += static_cast<std::int64_t>(prompts[static_cast<std::size_t>(r)].size());
      total += generated[static_cast<std::size_t>(r)];
    }
    log_info("transformer/generate: ", b, " samples: prefill ", prompt_tokens, " tokens in ",
             prefill_s * 1e3, " ms (", static_cast<double>(prompt_tokens) / prefill_s,
             " tok/s), decode ", total, " tokens in ", steps, " steps, ", decode_s, " s (",
             static_cast<double>(total) / std::max(decode_s, 1e-9), " tok/s)");

    std::vector<Artifact> out;
    for (std::int64_t r = 0; r < b; ++r) {
      const auto ur = static_cast<std::size_t>(r);
      const std::string tail = streams[ur].finish();
      if (r == 0) {
        ctx_.stream_text(tail + "\n");
      } else {
        ctx_.stream_text(prompt_text[ur] + streams[ur].text() + "\n");
      }
      Artifact a = Artifact::make_text(req.indices[ur], prompt_text[ur] + streams[ur].text());
      a.info = {{"prompt", prompt_text[ur]},
                {"tokens", std::to_string(generated[ur])},
                {"precision", dtype_name(dtype_)}};
      out.push_back(std::move(a));
    }
    return out;
  }

 private:
  TaskContext& ctx_;
  decoding::Config cfg_;
  decoding::Sampler sampler_;
  LoadedModel loaded_;
  DType dtype_ = DType::f32;
  std::vector<std::string> prompts_;
  std::vector<std::vector<std::int64_t>> prompt_ids_;
  std::int64_t eot_ = -1;
  std::unique_ptr<Decoder> decoder_;
  std::int64_t batch_ = 0;
};

}  // namespace

std::unique_ptr<Task> make_generate_task(const Params& p, TaskContext& ctx) {
  return std::make_unique<GenerateGpt>(p, ctx);
}

}  // namespace kiln::gpt
