#include "model.hpp"

#include <algorithm>
#include <cmath>

#include "kiln/autograd.hpp"
#include "kiln/error.hpp"
#include "kiln/ops.hpp"
#include "kiln/safetensors.hpp"

namespace kiln_rnn {

using kiln::Params;
using kiln::ParamSpec;
using kiln::Tensor;

std::vector<ParamSpec> train_param_specs() {
  return {
      ParamSpec::path("data", "A text file or a folder of text files (UTF-8)"),
      ParamSpec::string("include", "",
                        "Only files of the folder whose names match this glob (e.g. \"*.txt\"); "
                        "empty: every file"),
      ParamSpec::strings("exclude", {"*.dat"},
                         "File-name globs left out of folders (default: fortune indices)"),
      ParamSpec::number("val_fraction", 0.05,
                        "Share of each file (its last lines) held out for validation")
          .range(0.0, 0.5),
      ParamSpec::choice("cell", "lstm", {"lstm", "gru"}, "Recurrent cell"),
      ParamSpec::integer("embed", 64, "Character embedding size").range(1, 4096),
      ParamSpec::integer("hidden", 512, "Hidden size of each recurrent layer").range(1, 8192),
      ParamSpec::integer("layers", 2, "Recurrent layers").range(1, 16),
      ParamSpec::number("dropout", 0.0,
                        "Dropout between recurrent layers and before the output layer")
          .range(0.0, 0.95),
      ParamSpec::integer("seq_len", 128, "Characters per truncated-BPTT chunk").range(1, 100000),
      ParamSpec::integer("streams", 32,
                         "Contiguous text streams; with batch_size = streams and shuffle = false "
                         "the state is carried from one batch to the next")
          .range(1, 100000),
      ParamSpec::number("lr", 2e-3, "Adam learning rate").range(0.0, 10.0),
      ParamSpec::integer("decay_steps", 0,
                         "Cosine decay of the learning rate from lr to lr_min over this many "
                         "steps, then lr_min (0: constant lr)")
          .at_least(0),
      ParamSpec::number("lr_min", 0.0, "Learning rate at the end of the decay").range(0.0, 10.0),
      ParamSpec::number("clip", 5.0, "Clip the gradients' global L2 norm to this (0: off)")
          .range(0.0, 1e6),
      ParamSpec::integer("val_max_chars", 0,
                         "Validate on at most this many characters (0: the whole split)")
          .at_least(0),
  };
}

ModelConfig ModelConfig::from(const Params& p, std::int64_t vocab) {
  ModelConfig c;
  c.cell = p.string("cell");
  c.vocab = vocab;
  c.embed = p.integer("embed");
  c.hidden = p.integer("hidden");
  c.layers = p.integer("layers");
  c.dropout = static_cast<float>(p.number("dropout"));
  return c;
}

CharRnn::CharRnn(const ModelConfig& cfg, kiln::Generator& gen) : cfg_(cfg) {
  KILN_CHECK(cfg.vocab >= 1, "rnn: the vocabulary is empty");
  embed =
      register_module("embed", std::make_shared<kiln::nn::Embedding>(cfg.vocab, cfg.embed, gen));
  if (cfg.cell == "gru") {
    auto g = std::make_shared<kiln::nn::GRU>(cfg.embed, cfg.hidden, cfg.layers, cfg.dropout, gen);
    gru_ = g.get();
    rnn = register_module("rnn", std::shared_ptr<kiln::nn::RnnBase>(g));
  } else {
    KILN_CHECK(cfg.cell == "lstm", "rnn: cell must be \"lstm\" or \"gru\", got \"", cfg.cell, "\"");
    auto l = std::make_shared<kiln::nn::LSTM>(cfg.embed, cfg.hidden, cfg.layers, cfg.dropout, gen);
    lstm_ = l.get();
    rnn = register_module("rnn", std::shared_ptr<kiln::nn::RnnBase>(l));
  }
  head = register_module("head", std::make_shared<kiln::nn::Linear>(cfg.hidden, cfg.vocab, gen));
}

Tensor CharRnn::forward(const Tensor& ids_tn, const RnnState& state, RnnState& out,
                        kiln::Philox* rng) const {
  const std::int64_t T = ids_tn.size(0), N = ids_tn.size(1);
  const bool train = is_training() && cfg_.dropout > 0.f;
  KILN_CHECK(!train || rng != nullptr, "rnn: dropout in training needs a generator");
  Tensor x = embed->forward(ids_tn);  // [T, N, E]
  kiln::ops::RnnOutput o =
      int8_ != nullptr ? int8_->forward(x, state.h, state.c)
      : lstm_ != nullptr
          ? kiln::ops::lstm(x, state.h, state.c, rnn->weights(), compute_, cfg_.dropout, train, rng)
          : kiln::ops::gru(x, state.h, rnn->weights(), compute_, cfg_.dropout, train, rng);
  out.h = o.h;
  out.c = o.c;
  Tensor y = o.y.reshape({T * N, cfg_.hidden});
  if (train) y = kiln::ops::dropout(y, cfg_.dropout, true, *rng);
  return head->forward(y);
}

void CharRnn::quantize_int8() {
  KILN_CHECK(lstm_ != nullptr, "rnn: int8 needs an LSTM model; this one is a ", cfg_.cell);
  const Tensor table = embed->weight.detach().contiguous();
  const float* e = table.data<float>();
  float bound = 0.f;
  for (std::int64_t i = 0; i < table.numel(); ++i) bound = std::max(bound, std::abs(e[i]));
  KILN_CHECK(std::isfinite(bound), "rnn: the embedding table holds a non-finite value");
  int8_ = std::make_shared<const kiln::ops::Int8Lstm>(rnn->weights(), bound > 0.f ? bound : 1.f);
}

kiln::ParamSpec quantize_param_spec() {
  return kiln::ParamSpec::choice("quantize", "none", {"none", "int8"},
                                 "\"int8\": the LSTM layers run on u8/s8 oneDNN primitives "
                                 "(LSTM models only; docs/models/rnn.md)");
}

void apply_quantize(LoadedModel& m, const kiln::Params& p, const char* task) {
  if (p.string("quantize") != "int8") return;
  KILN_CHECK(m.net->is_lstm(), task, ": quantize = \"int8\" needs an LSTM model, but '",
             p.string("model"), "' is a ", m.net->config().cell,
             " (int8 covers the LSTM cell only; use quantize = \"none\")");
  m.net->quantize_int8();
}

kiln::TensorMap model_tensors(const CharRnn& net, const kiln::text::CharVocab& vocab) {
  kiln::TensorMap t;
  for (auto& [k, v] : net.state_dict()) t[k] = v.detach().clone();
  t[kVocabKey] = vocab.to_tensor();
  return t;
}

LoadedModel load_model(const std::string& path) {
  kiln::Safetensors file = kiln::load_safetensors(path);
  LoadedModel m;
  m.train_params = kiln::checkpoint_params(file.metadata, kPluginName, train_param_specs(), path);
  auto vit = file.tensors.find(kVocabKey);
  KILN_CHECK(vit != file.tensors.end(), "'", path,
             "' holds no character vocabulary (tensor \"vocab\"); was it written by rnn/train?");
  m.vocab = kiln::text::CharVocab::from_tensor(vit->second, path + ": vocab");
  file.tensors.erase(vit);
  kiln::Generator gen(0);
  m.net = std::make_unique<CharRnn>(ModelConfig::from(m.train_params, m.vocab.size()), gen);
  try {
    m.net->load_state_dict(file.tensors);
  } catch (const kiln::Error& e) {
    throw kiln::Error("'" + path +
                      "' does not match the architecture its parameters describe: " + e.what());
  }
  m.net->eval();
  return m;
}

Tensor time_major(const std::vector<const std::int32_t*>& rows, std::int64_t T) {
  const auto N = static_cast<std::int64_t>(rows.size());
  Tensor ids = Tensor::empty({T, N}, kiln::DType::s64);
  auto* d = ids.data<std::int64_t>();
  for (std::int64_t t = 0; t < T; ++t) {
    for (std::int64_t n = 0; n < N; ++n) d[t * N + n] = rows[static_cast<std::size_t>(n)][t];
  }
  return ids;
}

NllResult sequence_nll(const CharRnn& net, const std::vector<std::int32_t>& ids,
                       std::int64_t streams, std::int64_t seq_len,
                       const std::function<bool()>& cancelled) {
  NllResult r;
  const auto n = static_cast<std::int64_t>(ids.size());
  if (n < 2) return r;
  const std::int64_t S = std::max<std::int64_t>(1, std::min(streams, (n - 1)));
  const std::int64_t L = (n - 1) / S;  // predictions per stream
  kiln::NoGradGuard no_grad;
  RnnState state;
  for (std::int64_t t0 = 0; t0 < L; t0 += seq_len) {
    if (cancelled && cancelled()) break;
    const std::int64_t T = std::min(seq_len, L - t0);
    std::vector<const std::int32_t*> in, tg;
    for (std::int64_t s = 0; s < S; ++s) {
      in.push_back(ids.data() + s * L + t0);
      tg.push_back(ids.data() + s * L + t0 + 1);
    }
    RnnState next;
    Tensor logits = net.forward(time_major(in, T), state, next, nullptr);
    Tensor target = time_major(tg, T).reshape({T * S});
    r.nats += kiln::ops::cross_entropy(logits, target, kiln::ops::Reduction::sum).item();
    r.chars += T * S;
    state = next;
  }
  return r;
}

std::vector<std::string> corpus_sources(const Params& p) {
  std::string src = p.string("data");
  if (p.has("include") && !p.string("include").empty()) {
    src = (std::filesystem::path(src) / p.string("include")).string();
  }
  return {src};
}

kiln::text::CorpusOptions corpus_options(const Params& p) {
  kiln::text::CorpusOptions o;
  if (p.has("exclude")) o.exclude = p.strings("exclude");
  return o;
}

}  // namespace kiln_rnn
