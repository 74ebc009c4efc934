#include "gpt.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <set>

#include "kiln/autograd.hpp"
#include "kiln/ops.hpp"

namespace kiln::gpt {
namespace {

Tensor positions(std::int64_t t) {
  std::vector<std::int64_t> p(static_cast<std::size_t>(t));
  for (std::int64_t i = 0; i < t; ++i) p[static_cast<std::size_t>(i)] = i;
  return Tensor::from_ints(p, {t});
}

Tensor maybe_dropout(const Tensor& x, float p, Philox* rng) {
  if (p <= 0.f || rng == nullptr) return x;
  return ops::dropout(x, p, true, *rng);
}

// [B, T, D] (a view of qkv) -> [B, H, T, hd]
Tensor heads_view(const Tensor& x, std::int64_t heads) {
  const std::int64_t b = x.size(0), t = x.size(1), d = x.size(2);
  return x.reshape({b, t, heads, d / heads}).permute({0, 2, 1, 3});
}

// [B, H, T, hd] -> [B, T, D]
Tensor merge_heads(const Tensor& a) {
  const std::int64_t b = a.size(0), h = a.size(1), t = a.size(2), hd = a.size(3);
  return a.permute({0, 2, 1, 3}).reshape({b, t, h * hd});
}

}  // namespace

void GptConfig::validate() const {
  KILN_CHECK(vocab >= 1 && context >= 1 && layers >= 1 && heads >= 1 && dim >= 1,
             "GPT: vocab, context, layers, heads and dim must be positive, got ", describe());
  KILN_CHECK(dim % heads == 0, "GPT: dim ", dim, " must be a multiple of heads ", heads);
  KILN_CHECK(dropout >= 0.f && dropout < 1.f, "GPT: dropout must be in [0, 1), got ", dropout);
}

std::string GptConfig::describe() const {
  return "vocab " + std::to_string(vocab) + ", context " + std::to_string(context) + ", " +
         std::to_string(layers) + " layers, " + std::to_string(heads) + " heads, dim " +
         std::to_string(dim);
}

Gpt::Gpt(const GptConfig& cfg, Generator& gen) : cfg_(cfg) {
  cfg.validate();
  auto tr = register_module("transformer", std::make_shared<Container>());
  auto wte_m = tr->add("wte", std::make_shared<nn::Embedding>(cfg.vocab, cfg.dim, gen));
  auto wpe_m = tr->add("wpe", std::make_shared<nn::Embedding>(cfg.context, cfg.dim, gen));
  wte = wte_m->weight;
  wpe = wpe_m->weight;
  nn::init::normal_(wte, gen, 0.f, 0.02f);
  nn::init::normal_(wpe, gen, 0.f, 0.02f);
  auto h = tr->add("h", std::make_shared<Container>());
  const float proj_std = 0.02f / std::sqrt(2.f * static_cast<float>(cfg.layers));
  const std::int64_t d = cfg.dim;
  for (std::int64_t i = 0; i < cfg.layers; ++i) {
    auto blk = h->add(std::to_string(i), std::make_shared<Container>());
    Block b;
    b.ln_1 = blk->add("ln_1", std::make_shared<nn::LayerNorm>(Shape{d}, cfg.ln_eps));
    auto attn = blk->add("attn", std::make_shared<Container>());
    b.c_attn = attn->add("c_attn", std::make_shared<nn::Linear>(d, 3 * d, gen));
    b.attn_proj = attn->add("c_proj", std::make_shared<nn::Linear>(d, d, gen));
    b.ln_2 = blk->add("ln_2", std::make_shared<nn::LayerNorm>(Shape{d}, cfg.ln_eps));
    auto mlp = blk->add("mlp", std::make_shared<Container>());
    b.c_fc = mlp->add("c_fc", std::make_shared<nn::Linear>(d, 4 * d, gen));
    b.mlp_proj = mlp->add("c_proj", std::make_shared<nn::Linear>(4 * d, d, gen));
    for (auto* l : {b.c_attn.get(), b.c_fc.get()}) nn::init::normal_(l->weight, gen, 0.f, 0.02f);
    for (auto* l : {b.attn_proj.get(), b.mlp_proj.get()}) {
      nn::init::normal_(l->weight, gen, 0.f, proj_std);
    }
    for (auto* l : {b.c_attn.get(), b.attn_proj.get(), b.c_fc.get(), b.mlp_proj.get()}) {
      nn::init::zeros_(l->bias);
    }
    blocks.push_back(b);
  }
  ln_f = tr->add("ln_f", std::make_shared<nn::LayerNorm>(Shape{d}, cfg.ln_eps));
}

Tensor Gpt::forward(const Tensor& ids, Philox* rng) const {
  KILN_CHECK(ids.dim() == 2, "GPT: token ids must be [batch, time], got ", shape_str(ids.shape()));
  const std::int64_t t = ids.size(1), d = cfg_.dim;
  KILN_CHECK(t >= 1 && t <= cfg_.context, "GPT: ", t, " tokens do not fit the context of ",
             cfg_.context);
  const float p = is_training() ? cfg_.dropout : 0.f;
  Tensor x = ops::embedding(ids, wte) + ops::embedding(positions(t), wpe);
  x = maybe_dropout(x, p, rng);
  for (const Block& b : blocks) {
    const Tensor h = b.ln_1->forward(x);
    const Tensor qkv = b.c_attn->forward(h);
    const TensorList parts = ops::split(qkv, {d, d, d}, 2);
    const Tensor a = ops::scaled_dot_product_attention(heads_view(parts[0], cfg_.heads),
                                                       heads_view(parts[1], cfg_.heads),
                                                       heads_view(parts[2], cfg_.heads), true);
    x = x + maybe_dropout(b.attn_proj->forward(merge_heads(a)), p, rng);
    const Tensor m = b.c_fc->forward(b.ln_2->forward(x), {.act = ops::Act::gelu_tanh});
    x = x + maybe_dropout(b.mlp_proj->forward(m), p, rng);
  }
  return ops::linear(ln_f->forward(x), wte);
}

Tensor Gpt::loss(const Tensor& input, const Tensor& target, Philox* rng) const {
  const Tensor logits = forward(input, rng);
  return ops::cross_entropy(logits.reshape({-1, cfg_.vocab}), target.reshape({-1}));
}

// ------------------------------------------------------------------ Hugging Face import

bool is_hf_layout(const std::map<std::string, std::string>& metadata) {
  return metadata.find("kiln.plugin") == metadata.end();
}

TensorMap import_hf(const TensorMap& hf_in, std::int64_t heads, const std::string& file,
                    GptConfig& cfg) {
  TensorMap hf;
  for (const auto& [k, t] : hf_in) {
    const std::string key = k.rfind("transformer.", 0) == 0 ? k.substr(12) : k;
    if (key == "lm_head.weight") continue;  // tied to wte
    if (key.size() > 10 && (key.ends_with(".attn.bias") || key.ends_with(".attn.masked_bias"))) {
      continue;  // causal-mask buffers of older transformers versions
    }
    hf[key] = t;
  }
  auto get = [&](const std::string& key, const Shape& shape) {
    auto it = hf.find(key);
    KILN_CHECK(it != hf.end(), "'", file, "' is not a GPT-2 checkpoint: it has no tensor '", key,
               "' (nor 'transformer.", key, "')");
    KILN_CHECK(shape.empty() || it->second.shape() == shape, "'", file, "': tensor '", key,
               "' has shape ", shape_str(it->second.shape()), ", expected ", shape_str(shape));
    Tensor t = it->second;
    hf.erase(it);
    return t.dtype() == DType::f32 ? t : t.to(DType::f32);
  };
  const Tensor wte = get("wte.weight", {});
  KILN_CHECK(wte.dim() == 2, "'", file, "': wte.weight must be [vocab, dim], got ",
             shape_str(wte.shape()));
  cfg.vocab = wte.size(0);
  cfg.dim = wte.size(1);
  const Tensor wpe = get("wpe.weight", {});
  KILN_CHECK(wpe.dim() == 2 && wpe.size(1) == cfg.dim, "'", file,
             "': wpe.weight must be [context, ", cfg.dim, "], got ", shape_str(wpe.shape()));
  cfg.context = wpe.size(0);
  std::int64_t layers = 0;
  for (const auto& [k, t] : hf) {
    if (k.rfind("h.", 0) == 0) {
      const std::int64_t i = std::atoll(k.c_str() + 2);
      layers = std::max(layers, i + 1);
    }
  }
  KILN_CHECK(layers >= 1, "'", file, "' has no layers (tensors 'h.0.*')");
  cfg.layers = layers;
  cfg.heads = heads;
  KILN_CHECK(heads >= 1 && cfg.dim % heads == 0, "'", file, "': width ", cfg.dim,
             " is not divisible by heads = ", heads, "; set 'heads' to the model's head count");
  const std::int64_t d = cfg.dim;
  TensorMap out;
  out["transformer.wte.weight"] = wte;
  out["transformer.wpe.weight"] = wpe;
  out["transformer.ln_f.weight"] = get("ln_f.weight", {d});
  out["transformer.ln_f.bias"] = get("ln_f.bias", {d});
  auto conv1d = [&](const std::string& key, std::int64_t in, std::int64_t o) {
    return get(key, {in, o}).transpose(0, 1).contiguous();
  };
  for (std::int64_t i = 0; i < layers; ++i) {
    const std::string p = "h." + std::to_string(i) + ".";
    const std::string q = "transformer." + p;
    for (const char* ln : {"ln_1", "ln_2"}) {
      out[q + ln + ".weight"] = get(p + ln + ".weight", {d});
      out[q + ln + ".bias"] = get(p + ln + ".bias", {d});
    }
    out[q + "attn.c_attn.weight"] = conv1d(p + "attn.c_attn.weight", d, 3 * d);
    out[q + "attn.c_attn.bias"] = get(p + "attn.c_attn.bias", {3 * d});
    out[q + "attn.c_proj.weight"] = conv1d(p + "attn.c_proj.weight", d, d);
    out[q + "attn.c_proj.bias"] = get(p + "attn.c_proj.bias", {d});
    out[q + "mlp.c_fc.weight"] = conv1d(p + "mlp.c_fc.weight", d, 4 * d);
    out[q + "mlp.c_fc.bias"] = get(p + "mlp.c_fc.bias", {4 * d});
    out[q + "mlp.c_proj.weight"] = conv1d(p + "mlp.c_proj.weight", 4 * d, d);
    out[q + "mlp.c_proj.bias"] = get(p + "mlp.c_proj.bias", {d});
  }
  if (!hf.empty()) {
    std::string names;
    for (const auto& [k, t] : hf) names += (names.empty() ? "'" : ", '") + k + "'";
    throw Error("'" + file + "': unexpected tensors for a GPT-2 model: " + names);
  }
  return out;
}

// ------------------------------------------------------------------ cached inference

Decoder::Decoder(const Gpt& model, DType dtype, std::int64_t batch, std::int64_t max_len)
    : cfg_(model.config()), dtype_(dtype), batch_(batch), max_len_(max_len) {
  KILN_CHECK(dtype == DType::f32 || dtype == DType::bf16,
             "GPT decoder: weights must be f32 or bf16, got ", dtype_name(dtype));
  KILN_CHECK(batch >= 1 && max_len >= 1 && max_len <= cfg_.context, "GPT decoder: batch ", batch,
             " and length ", max_len, " must be positive, the length at most the context ",
             cfg_.context);
  NoGradGuard ng;
  // The weights every decoding step streams from memory go where a stream reads them fastest
  // (kiln::to_streaming_memory: 2 MiB-aligned huge pages). In f32 that moves the model's own
  // parameter memory, which the decoder shares; the values stay the same.
  auto w = [&](const Tensor& t) {
    Tensor r = dtype == DType::f32 ? t.detach() : t.detach().to(dtype);
    to_streaming_memory(r);
    return r;
  };
  wte_ = w(model.wte);
  wpe_ = model.wpe.detach();
  lnf_w_ = model.ln_f->weight.detach();
  lnf_b_ = model.ln_f->bias.detach();
  const std::int64_t hd = cfg_.dim / cfg_.heads;
  for (const Block& b : model.blocks) {
    Layer l;
    l.ln1_w = b.ln_1->weight.detach();
    l.ln1_b = b.ln_1->bias.detach();
    l.ln2_w = b.ln_2->weight.detach();
    l.ln2_b = b.ln_2->bias.detach();
    l.w_attn = w(b.c_attn->weight);
    l.b_attn = b.c_attn->bias.detach();
    l.w_aproj = w(b.attn_proj->weight);
    l.b_aproj = b.attn_proj->bias.detach();
    l.w_fc = w(b.c_fc->weight);
    l.b_fc = b.c_fc->bias.detach();
    l.w_mproj = w(b.mlp_proj->weight);
    l.b_mproj = b.mlp_proj->bias.detach();
    l.k = Tensor::zeros({batch, cfg_.heads, max_len, hd}, dtype);
    l.v = Tensor::zeros({batch, cfg_.heads, max_len, hd}, dtype);
    layers_.push_back(std::move(l));
  }
}

Tensor Decoder::embed(const std::vector<std::int64_t>& tokens, const std::vector<std::int64_t>& pos,
                      std::int64_t batch, std::int64_t t) const {
  const std::int64_t d = cfg_.dim;
  Tensor x = Tensor::empty({batch, t, d});
  float* px = x.data<float>();
  const float* pe = wpe_.data<float>();
  for (std::int64_t r = 0; r < batch * t; ++r) {
    const std::int64_t tok = tokens[static_cast<std::size_t>(r)];
    const std::int64_t p = pos[static_cast<std::size_t>(r)];
    KILN_CHECK(tok >= 0 && tok < cfg_.vocab, "GPT: token id ", tok,
               " is outside the vocabulary [0, ", cfg_.vocab, ")");
    float* o = px + r * d;
    const float* e = pe + p * d;
    if (wte_.dtype() == DType::f32) {
      const float* w = wte_.data<float>() + tok * d;
      for (std::int64_t c = 0; c < d; ++c) o[c] = w[c] + e[c];
    } else {
      const std::uint16_t* w = wte_.data<std::uint16_t>() + tok * d;
      for (std::int64_t c = 0; c < d; ++c) o[c] = bf16_to_f32(w[c]) + e[c];
    }
  }
  return x;
}

Tensor Decoder::head(const Tensor& x) const {
  return ops::linear(ops::layer_norm(x, 1, lnf_w_, lnf_b_, cfg_.ln_eps), wte_);
}

namespace {

// cache[b, h, p, :] = qkv[b, t, offset + h * hd : ...] for t in [0, T), p = start[b] + t.
void write_cache(Tensor& cache, const Tensor& qkv, std::int64_t offset, std::int64_t heads,
                 const std::vector<std::int64_t>& start) {
  const std::int64_t b_n = qkv.size(0), t_n = qkv.size(1), w = qkv.size(2);
  const std::int64_t max_len = cache.size(2), hd = cache.size(3);
  const float* src = qkv.data<float>();
  for (std::int64_t b = 0; b < b_n; ++b) {
    for (std::int64_t t = 0; t < t_n; ++t) {
      const std::int64_t p = start[static_cast<std::size_t>(b)] + t;
      for (std::int64_t h = 0; h < heads; ++h) {
        const float* s = src + (b * t_n + t) * w + offset + h * hd;
        const std::int64_t o = ((b * heads + h) * max_len + p) * hd;
        if (cache.dtype() == DType::f32) {
          std::memcpy(cache.data<float>() + o, s, static_cast<std::size_t>(hd) * sizeof(float));
        } else {
          std::uint16_t* dst = cache.data<std::uint16_t>() + o;
          for (std::int64_t c = 0; c < hd; ++c) dst[c] = f32_to_bf16(s[c]);
        }
      }
    }
  }
}

}  // namespace

Tensor Decoder::block(Layer& l, const Tensor& x, Mode mode) {
  const std::int64_t b = x.size(0), d = cfg_.dim, h = cfg_.heads;
  Tensor qkv =
      ops::linear(ops::layer_norm(x, 1, l.ln1_w, l.ln1_b, cfg_.ln_eps), l.w_attn, l.b_attn);
  if (!qkv.is_contiguous()) qkv = qkv.contiguous();
  Tensor a;
  if (mode != Mode::step) {
    if (mode == Mode::prefill) {
      const std::vector<std::int64_t> zero(static_cast<std::size_t>(b), 0);
      write_cache(l.k, qkv, d, h, zero);
      write_cache(l.v, qkv, 2 * d, h, zero);
    }
    const TensorList parts = ops::split(qkv, {d, d, d}, 2);
    a = ops::scaled_dot_product_attention(heads_view(parts[0], h), heads_view(parts[1], h),
                                          heads_view(parts[2], h), true);
  } else {
    write_cache(l.k, qkv, d, h, step_pos_);
    write_cache(l.v, qkv, 2 * d, h, step_pos_);
    const std::int64_t lk = *std::max_element(step_pos_.begin(), step_pos_.end()) + 1;
    const Tensor q = heads_view(ops::split(qkv, {d, 2 * d}, 2)[0], h);
    a = ops::scaled_dot_product_attention(q, l.k.slice(0, 0, b).slice(2, 0, lk),
                                          l.v.slice(0, 0, b).slice(2, 0, lk), false, mask_);
  }
  Tensor y = x + ops::linear(merge_heads(a), l.w_aproj, l.b_aproj);
  const Tensor m = ops::linear(ops::layer_norm(y, 1, l.ln2_w, l.ln2_b, cfg_.ln_eps), l.w_fc, l.b_fc,
                               {.act = ops::Act::gelu_tanh});
  return y + ops::linear(m, l.w_mproj, l.b_mproj);
}

Tensor Decoder::prefill(const std::vector<std::vector<std::int64_t>>& prompts) {
  NoGradGuard ng;
  const auto b = static_cast<std::int64_t>(prompts.size());
  KILN_CHECK(b >= 1 && b <= batch_, "GPT decoder: ", b, " prompts for a batch of ", batch_);
  std::int64_t t = 0;
  for (const auto& p : prompts) {
    KILN_CHECK(!p.empty(), "GPT decoder: a prompt has no tokens");
    KILN_CHECK(static_cast<std::int64_t>(p.size()) <= max_len_, "GPT decoder: a prompt of ",
               p.size(), " tokens does not fit in ", max_len_, " positions");
    t = std::max<std::int64_t>(t, static_cast<std::int64_t>(p.size()));
  }
  // Right-padded: the causal mask keeps each prompt's tokens from seeing the padding, and the
  // cache entries of padded positions are masked out (then overwritten) while decoding.
  std::vector<std::int64_t> tokens(static_cast<std::size_t>(b * t), 0), pos(tokens.size());
  for (std::int64_t r = 0; r < b; ++r) {
    const auto& p = prompts[static_cast<std::size_t>(r)];
    for (std::int64_t i = 0; i < t; ++i) {
      const auto k = static_cast<std::size_t>(r * t + i);
      tokens[k] = i < static_cast<std::int64_t>(p.size()) ? p[static_cast<std::size_t>(i)] : 0;
      pos[k] = i;
    }
  }
  Tensor x = embed(tokens, pos, b, t);
  for (Layer& l : layers_) x = block(l, x, Mode::prefill);
  Tensor last = Tensor::empty({b, cfg_.dim});
  pos_.assign(static_cast<std::size_t>(b), 0);
  for (std::int64_t r = 0; r < b; ++r) {
    const auto len = static_cast<std::int64_t>(prompts[static_cast<std::size_t>(r)].size());
    std::memcpy(last.data<float>() + r * cfg_.dim, x.data<float>() + (r * t + len - 1) * cfg_.dim,
                static_cast<std::size_t>(cfg_.dim) * sizeof(float));
    pos_[static_cast<std::size_t>(r)] = len;
  }
  return head(last);
}

Tensor Decoder::step(const std::vector<std::int64_t>& tokens_in) {
  NoGradGuard ng;
  const auto b = static_cast<std::int64_t>(tokens_in.size());
  KILN_CHECK(b == static_cast<std::int64_t>(pos_.size()) && b > 0, "GPT decoder: ", b,
             " tokens for ", pos_.size(), " rows (call prefill first)");
  // A row given a negative token is finished: it is computed at its last position (so the batch
  // keeps its shape) but neither advances nor matters.
  std::vector<std::int64_t> tokens = tokens_in;
  step_pos_ = pos_;
  for (std::size_t r = 0; r < tokens.size(); ++r) {
    if (tokens[r] < 0) {
      tokens[r] = 0;
      step_pos_[r] = std::min(step_pos_[r], max_len_ - 1);
    } else {
      KILN_CHECK(pos_[r] < max_len_, "GPT decoder: the cache of ", max_len_, " positions of row ",
                 r, " is full");
    }
  }
  const std::int64_t lk = *std::max_element(step_pos_.begin(), step_pos_.end()) + 1;
  const bool ragged =
      std::any_of(step_pos_.begin(), step_pos_.end(), [&](auto p) { return p != step_pos_[0]; });
  if (ragged) {
    mask_ = Tensor::zeros({b, 1, 1, lk});
    float* m = mask_.data<float>();
    for (std::int64_t r = 0; r < b; ++r) {
      for (std::int64_t j = step_pos_[static_cast<std::size_t>(r)] + 1; j < lk; ++j) {
        m[r * lk + j] = -std::numeric_limits<float>::infinity();
      }
    }
  } else {
    mask_ = Tensor();
  }
  Tensor x = embed(tokens, step_pos_, b, 1);
  for (Layer& l : layers_) x = block(l, x, Mode::step);
  for (std::size_t r = 0; r < tokens.size(); ++r) {
    if (tokens_in[r] >= 0) ++pos_[r];
  }
  return head(x.reshape({b, cfg_.dim}));
}

Tensor Decoder::full_logits(const Tensor& ids) {
  NoGradGuard ng;
  const std::int64_t b = ids.size(0), t = ids.size(1);
  KILN_CHECK(t <= cfg_.context, "GPT: ", t, " tokens do not fit the context of ", cfg_.context);
  std::vector<std::int64_t> tokens = ids.to_int_vector(), pos(tokens.size());
  for (std::size_t k = 0; k < pos.size(); ++k) pos[k] = static_cast<std::int64_t>(k) % t;
  Tensor x = embed(tokens, pos, b, t);
  for (Layer& l : layers_) x = block(l, x, Mode::full);
  return head(x.reshape({b * t, cfg_.dim})).reshape({b, t, cfg_.vocab});
}

}  // namespace kiln::gpt
