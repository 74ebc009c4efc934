// The character-level recurrent language model of the rnn plugin: embedding -> multi-layer LSTM
// or GRU (oneDNN RNN primitives, dropout between layers) -> dropout -> linear head over the
// character vocabulary. Parameter names follow PyTorch (embed.weight, rnn.weight_ih_l0, ...,
// head.weight, head.bias), so a state dict moves between this model and the PyTorch peer
// (bench/peers/char_lstm.py). The vocabulary travels in the checkpoint as the tensor "vocab".
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "kiln/nn.hpp"
#include "kiln/plugin.hpp"
#include "kiln/random.hpp"
#include "kiln/text.hpp"

namespace kiln_rnn {

inline constexpr const char* kPluginName = "rnn";
inline constexpr const char* kPluginVersion = "1.0.0";
inline constexpr const char* kVocabKey = "vocab";

// The architecture part of the train task's parameters.
struct ModelConfig {
  std::string cell = "lstm";  // "lstm" or "gru"
  std::int64_t vocab = 0;
  std::int64_t embed = 64;
  std::int64_t hidden = 512;
  std::int64_t layers = 2;
  float dropout = 0.f;
  static ModelConfig from(const kiln::Params& p, std::int64_t vocab);
};

// Recurrent state: h [L, N, H] and, for LSTM, c [L, N, H]; undefined tensors mean zeros.
struct RnnState {
  kiln::Tensor h, c;
};

class CharRnn : public kiln::nn::Module {
 public:
  CharRnn(const ModelConfig& cfg, kiln::Generator& gen);
  const ModelConfig& config() const { return cfg_; }
  bool is_lstm() const { return lstm_ != nullptr; }
  // The recurrent layers' compute precision: f32 (the default), or bf16 for inference
  // (ops::lstm / ops::gru with DType::bf16; the embedding and the head stay f32).
  void set_compute_dtype(kiln::DType dt) { compute_ = dt; }
  kiln::DType compute_dtype() const { return compute_; }
  // int8 inference (kiln::ops::Int8Lstm; LSTM models only): quantizes a snapshot of the
  // recurrent weights, with the first layer's input bounded by the embedding table's largest
  // magnitude (so no input saturates). Call it once the weights are final; the embedding and the
  // head stay f32, and it takes precedence over the compute dtype.
  void quantize_int8();

  // ids [T, N] (s64) -> logits [T * N, V] (time-major rows), and the final state. `rng` draws the
  // dropout masks in training mode (may be null otherwise).
  kiln::Tensor forward(const kiln::Tensor& ids_tn, const RnnState& state, RnnState& out,
                       kiln::Philox* rng) const;

  std::shared_ptr<kiln::nn::Embedding> embed;
  std::shared_ptr<kiln::nn::RnnBase> rnn;
  std::shared_ptr<kiln::nn::Linear> head;

 private:
  ModelConfig cfg_;
  kiln::DType compute_ = kiln::DType::f32;
  std::shared_ptr<const kiln::ops::Int8Lstm> int8_;
  kiln::nn::LSTM* lstm_ = nullptr;
  kiln::nn::GRU* gru_ = nullptr;
};

// A trained model: the network (in eval mode) and its vocabulary.
struct LoadedModel {
  std::unique_ptr<CharRnn> net;
  kiln::text::CharVocab vocab;
  kiln::Params train_params;
};
// Loads a checkpoint written by rnn/train; errors name the file.
LoadedModel load_model(const std::string& path);
// The checkpoint tensors of a model (state dict + "vocab").
kiln::TensorMap model_tensors(const CharRnn& net, const kiln::text::CharVocab& vocab);

// The `quantize` parameter of rnn/generate and rnn/evaluate, and applying it to a loaded model
// (`task` and the model's path name it in errors).
kiln::ParamSpec quantize_param_spec();
void apply_quantize(LoadedModel& m, const kiln::Params& p, const char* task);

// The train task's parameter schema (also used to rebuild a model from a checkpoint).
std::vector<kiln::ParamSpec> train_param_specs();

// Token ids as the model's [T, N] s64 input: ids[r][t0 + t] for t < T.
kiln::Tensor time_major(const std::vector<const std::int32_t*>& rows, std::int64_t T);

// Mean negative log-likelihood (nats per character) of `ids` under `net` (eval mode, no grad):
// the sequence is cut into `streams` contiguous parts read in chunks of seq_len with the state
// carried, so every character but the first of each part is predicted once. Returns
// {total nats, predicted characters}.
struct NllResult {
  double nats = 0;
  std::int64_t chars = 0;
};
NllResult sequence_nll(const CharRnn& net, const std::vector<std::int32_t>& ids,
                       std::int64_t streams, std::int64_t seq_len,
                       const std::function<bool()>& cancelled = {});

// Corpus sources from the data / include parameters: the folder or file, or folder/include.
std::vector<std::string> corpus_sources(const kiln::Params& p);
kiln::text::CorpusOptions corpus_options(const kiln::Params& p);

}  // namespace kiln_rnn
