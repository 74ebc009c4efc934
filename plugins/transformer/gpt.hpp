// GPT-2: token and learned position embeddings, pre-LN blocks of causal multi-head attention and
// a GELU (tanh) MLP, a final layer norm, and the language-model head tied to the token embedding.
//
// Parameter names are Hugging Face's GPT2LMHeadModel names (transformer.wte.weight,
// transformer.h.N.attn.c_attn.weight, ...), with the weights of the four projections in PyTorch's
// nn.Linear layout [out, in]. Hugging Face stores them as Conv1D, [in, out]: import_hf() reads
// such a file (with or without the "transformer." prefix) and transposes.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "kiln/nn.hpp"
#include "kiln/random.hpp"
#include "kiln/tensor.hpp"

namespace kiln::gpt {

struct GptConfig {
  std::int64_t vocab = 50257;
  std::int64_t context = 1024;
  std::int64_t layers = 12;
  std::int64_t heads = 12;
  std::int64_t dim = 768;
  float ln_eps = 1e-5f;
  float dropout = 0.f;  // on the embeddings and on each residual branch, in training
  void validate() const;
  std::string describe() const;
};

// A sub-module holding other modules under given names ("transformer", "h", "attn", ...).
class Container : public nn::Module {
 public:
  template <typename M>
  std::shared_ptr<M> add(const std::string& name, std::shared_ptr<M> m) {
    return register_module(name, std::move(m));
  }
};

struct Block {
  std::shared_ptr<nn::LayerNorm> ln_1, ln_2;
  std::shared_ptr<nn::Linear> c_attn, attn_proj, c_fc, mlp_proj;
};

class Gpt : public nn::Module {
 public:
  // GPT-2 initialisation from `gen`: weights N(0, 0.02), the residual projections (attn.c_proj,
  // mlp.c_proj) N(0, 0.02 / sqrt(2 layers)), biases 0, layer norms 1 / 0.
  Gpt(const GptConfig& cfg, Generator& gen);

  // ids [B, T] (T <= context) -> logits [B, T, vocab]. Dropout (when training and cfg.dropout >
  // 0) draws from `rng`.
  Tensor forward(const Tensor& ids, Philox* rng = nullptr) const;
  // Mean next-token cross-entropy of forward(input) against target [B, T].
  Tensor loss(const Tensor& input, const Tensor& target, Philox* rng = nullptr) const;

  const GptConfig& config() const { return cfg_; }
  Tensor wte, wpe;
  std::vector<Block> blocks;
  std::shared_ptr<nn::LayerNorm> ln_f;

 private:
  GptConfig cfg_;
};

// Reads Hugging Face GPT-2 tensors (names with or without "transformer."; Conv1D [in, out]
// weights; lm_head.weight and the attention-mask buffers ignored) into Kiln's layout. The
// architecture follows from the shapes except the head count, given as `heads`. Errors name the
// file and the missing or mis-shaped tensor.
TensorMap import_hf(const TensorMap& hf, std::int64_t heads, const std::string& file,
                    GptConfig& cfg);
// True when the tensors look like a Hugging Face GPT-2 file (Conv1D layout), not a Kiln one.
bool is_hf_layout(const std::map<std::string, std::string>& metadata);

// Inference with a key/value cache: prefill a batch of prompts of different lengths at once, then
// decode one token per row per step. Weights are used as they are (f32) or converted once to bf16
// (`dtype`); the cache has the same dtype.
class Decoder {
 public:
  Decoder(const Gpt& model, DType dtype, std::int64_t batch, std::int64_t max_len);

  // prompts[b] (1 <= length <= max_len) -> logits [B, vocab] f32 of each prompt's last token.
  Tensor prefill(const std::vector<std::vector<std::int64_t>>& prompts);
  // One new token per row (at each row's next position) -> logits [B, vocab]. A negative token
  // marks a finished row: it does not advance (its logits are meaningless).
  Tensor step(const std::vector<std::int64_t>& tokens);
  // Logits of every position of `ids` [B, T] from scratch (no cache): for tests.
  Tensor full_logits(const Tensor& ids);

  std::int64_t position(std::int64_t row) const { return pos_[static_cast<std::size_t>(row)]; }
  std::int64_t max_len() const { return max_len_; }

 private:
  struct Layer {
    Tensor ln1_w, ln1_b, ln2_w, ln2_b, w_attn, b_attn, w_aproj, b_aproj, w_fc, b_fc, w_mproj,
        b_mproj;
    Tensor k, v;  // [B, H, max_len, hd]
  };
  Tensor embed(const std::vector<std::int64_t>& tokens, const std::vector<std::int64_t>& pos,
               std::int64_t batch, std::int64_t t) const;
  Tensor head(const Tensor& x) const;  // [N, D] -> [N, vocab]
  enum class Mode { prefill, step, full };
  Tensor block(Layer& l, const Tensor& x, Mode mode);

  GptConfig cfg_;
  DType dtype_;
  std::int64_t batch_, max_len_;
  Tensor wte_, wpe_, lnf_w_, lnf_b_;
  std::vector<Layer> layers_;
  std::vector<std::int64_t> pos_;       // tokens cached per row of the current batch
  std::vector<std::int64_t> step_pos_;  // where each row's token of the current step goes
  Tensor mask_;                         // [B, 1, 1, Lk] for steps with rows at different positions
};

}  // namespace kiln::gpt
