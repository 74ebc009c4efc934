// rnn/evaluate: bits per character of a trained model on a text (a file, a folder or a glob).
//
// The text is encoded with the model's vocabulary; characters it does not contain are left out,
// replaced or an error (`unknown`), and counted in `skipped_chars`. The text is read as `streams`
// contiguous parts, each in chunks of seq_len characters with the state carried; the first
// character of each part is not predicted. streams = 1 scores the text exactly as one sequence.
// With [compute] precision = "bf16" the recurrent layers compute in bf16, and with
// quantize = "int8" in int8 (CharRnn), which is how the cost of bf16 or int8 sampling in bits per
// character is measured.
#include <cmath>

#include "kiln/error.hpp"
#include "model.hpp"
#include "tasks.hpp"

namespace kiln_rnn {

namespace {

using kiln::Params;
using kiln::ParamSpec;

class EvaluateTask final : public kiln::RunTask {
 public:
  EvaluateTask(const Params& p, kiln::TaskContext& ctx)
      : params_(p), ctx_(ctx), model_(load_model(p.string("model"))) {
    model_.net->set_compute_dtype(ctx.precision());
    apply_quantize(model_, p, "rnn/evaluate");
  }

  std::vector<kiln::Artifact> run() override {
    const kiln::text::Corpus corpus =
        kiln::text::load_corpus(corpus_sources(params_), corpus_options(params_));
    std::int64_t skipped = 0;
    std::vector<std::int32_t> ids;
    try {
      ids = model_.vocab.encode(corpus.text, kiln::text::parse_unknown(params_.string("unknown")),
                                &skipped);
    } catch (const kiln::Error& e) {
      throw kiln::Error("rnn/evaluate: '" + params_.string("data") + "': " + e.what());
    }
    KILN_CHECK(ids.size() >= 2, "rnn/evaluate: '", params_.string("data"),
               "' has fewer than 2 characters the model knows; nothing to score");
    const NllResult r =
        sequence_nll(*model_.net, ids, params_.integer("streams"), params_.integer("seq_len"),
                     [this] { return ctx_.cancelled(); });
    KILN_CHECK(r.chars > 0, "rnn/evaluate: no character was scored");
    const double nats = r.nats / static_cast<double>(r.chars);
    kiln::Metrics m = {{"bpc", nats / std::log(2.0)},
                       {"nats_per_char", nats},
                       {"chars", static_cast<double>(r.chars)},
                       {"skipped_chars", static_cast<double>(skipped)},
                       {"files", static_cast<double>(corpus.documents.size())}};
    return {kiln::Artifact::make_metrics(m)};
  }

 private:
  Params params_;
  kiln::TaskContext& ctx_;
  LoadedModel model_;
};

}  // namespace

std::vector<ParamSpec> evaluate_param_specs() {
  return {
      ParamSpec::path("model", "A model written by rnn/train (or \"@train\")"),
      ParamSpec::path("data", "A text file or a folder of text files (UTF-8)"),
      ParamSpec::string("include", "", "Only files of the folder whose names match this glob"),
      ParamSpec::strings("exclude", {"*.dat"}, "File-name globs left out of folders"),
      ParamSpec::choice("unknown", "skip", {"error", "skip", "replace"},
                        "Characters the model never saw: an error, left out (counted in "
                        "skipped_chars), or replaced by U+FFFD / '?' / ' '"),
      ParamSpec::integer("streams", 32,
                         "Score the text as this many contiguous parts in parallel (1: exact, "
                         "one sequence)")
          .range(1, 100000),
      ParamSpec::integer("seq_len", 128, "Characters per forward call").range(1, 100000),
      quantize_param_spec(),
  };
}

std::unique_ptr<kiln::Task> make_evaluate_task(const Params& p, kiln::TaskContext& ctx) {
  return std::make_unique<EvaluateTask>(p, ctx);
}

}  // namespace kiln_rnn
