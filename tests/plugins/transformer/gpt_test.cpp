// GPT: Hugging Face GPT-2 parity (a PyTorch fixture with HF names and Conv1D layout), KV-cache
// decoding equal to full-sequence logits (ragged batches, f32 and bf16), loader errors, and a few
// training steps that fit a batch.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <functional>

#include "gpt.hpp"
#include "kiln/autograd.hpp"
#include "kiln/optim.hpp"
#include "kiln/safetensors.hpp"
#include "support/test_support.hpp"
#include "tasks.hpp"

namespace kiln::gpt {
namespace {

std::filesystem::path hf_dir() {
  return test::fixture_path("gpt2_hf");
}

std::string expect_error(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "no kiln::Error thrown";
  return "";
}

float max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  float m = 0;
  for (std::size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    m = std::max(m, std::abs(a[i] - b[i]));
  }
  return m;
}

TEST(Gpt, HuggingFaceLogitsMatchPyTorch) {
  LoadedModel m = load_model(hf_dir() / "model.safetensors", 0, "");
  EXPECT_TRUE(m.hugging_face);
  const GptConfig& c = m.model->config();
  EXPECT_EQ(c.vocab, 300);
  EXPECT_EQ(c.context, 32);
  EXPECT_EQ(c.layers, 2);
  EXPECT_EQ(c.heads, 4);  // from config.json
  EXPECT_EQ(c.dim, 32);
  const Safetensors ref = load_safetensors(hf_dir() / "logits.safetensors");
  const Tensor ids = ref.tensors.at("ids");
  NoGradGuard ng;
  const Tensor logits = m.model->forward(ids);
  EXPECT_EQ(logits.shape(), ref.tensors.at("logits").shape());
  EXPECT_LT(max_abs_diff(logits.to_vector(), ref.tensors.at("logits").to_vector()), 1e-4f);
  // The cached decoder computes the same.
  Decoder dec(*m.model, DType::f32, 2, c.context);
  EXPECT_LT(max_abs_diff(dec.full_logits(ids).to_vector(), ref.tensors.at("logits").to_vector()),
            1e-4f);
}

// Prefill rows of different lengths, then feed each row the rest of its sequence one token at a
// time: every step's logits equal the full-sequence logits at that position.
void check_cache(const Gpt& model, DType dtype, float tol) {
  const Safetensors ref = load_safetensors(hf_dir() / "logits.safetensors");
  const Tensor ids = ref.tensors.at("ids");
  const std::int64_t t = ids.size(1), v = model.config().vocab;
  NoGradGuard ng;
  const std::vector<float> full = model.forward(ids).to_vector();
  const std::vector<std::int64_t> all = ids.to_int_vector();
  const std::vector<std::int64_t> len = {3, 7};
  Decoder dec(model, dtype, 2, t);
  std::vector<std::vector<std::int64_t>> prompts;
  for (std::int64_t r = 0; r < 2; ++r) {
    prompts.emplace_back(all.begin() + r * t,
                         all.begin() + r * t + len[static_cast<std::size_t>(r)]);
  }
  auto check_row = [&](const Tensor& logits, std::int64_t r, std::int64_t pos) {
    const std::vector<float> got = logits.to_vector();
    std::vector<float> row(got.begin() + r * v, got.begin() + (r + 1) * v);
    std::vector<float> want(full.begin() + (r * t + pos) * v, full.begin() + (r * t + pos + 1) * v);
    EXPECT_LT(max_abs_diff(row, want), tol) << "row " << r << " position " << pos;
  };
  Tensor logits = dec.prefill(prompts);
  for (std::int64_t r = 0; r < 2; ++r) check_row(logits, r, len[static_cast<std::size_t>(r)] - 1);
  std::vector<std::int64_t> pos = len;
  while (pos[0] < t || pos[1] < t) {
    std::vector<std::int64_t> next(2, -1);
    for (std::size_t r = 0; r < 2; ++r) {
      if (pos[r] < t)
        next[r] = all[r * static_cast<std::size_t>(t) + static_cast<std::size_t>(pos[r])];
    }
    logits = dec.step(next);
    for (std::size_t r = 0; r < 2; ++r) {
      if (next[r] < 0) continue;
      EXPECT_EQ(dec.position(static_cast<std::int64_t>(r)), pos[r] + 1);
      check_row(logits, static_cast<std::int64_t>(r), pos[r]);
      ++pos[r];
    }
  }
  EXPECT_NE(expect_error([&] { dec.step({1, 1}); }).find("full"), std::string::npos);
}

TEST(Gpt, KvCacheDecodeEqualsFullSequenceLogits) {
  LoadedModel m = load_model(hf_dir() / "model.safetensors", 0, "");
  check_cache(*m.model, DType::f32, 1e-4f);
}

TEST(Gpt, Bf16DecodeIsCloseToF32) {
  // bf16 weights and cache against the f32 full-sequence logits (|logits| ~ 1-4).
  LoadedModel m = load_model(hf_dir() / "model.safetensors", 0, "");
  check_cache(*m.model, DType::bf16, 0.15f);
}

TEST(Gpt, HuggingFaceImportErrorsNameTheProblem) {
  const Safetensors st = load_safetensors(hf_dir() / "model.safetensors");
  GptConfig cfg;
  TensorMap missing = st.tensors;
  missing.erase("transformer.h.1.mlp.c_fc.bias");
  EXPECT_NE(expect_error([&] {
              import_hf(missing, 4, "m.st", cfg);
            }).find("no tensor 'h.1.mlp.c_fc.bias'"),
            std::string::npos);
  TensorMap wrong = st.tensors;
  wrong["transformer.h.0.attn.c_proj.weight"] = Tensor::zeros({32, 16});
  EXPECT_NE(expect_error([&] { import_hf(wrong, 4, "m.st", cfg); }).find("has shape [32, 16]"),
            std::string::npos);
  EXPECT_NE(expect_error([&] { import_hf(st.tensors, 5, "m.st", cfg); }).find("heads = 5"),
            std::string::npos);
  TensorMap extra = st.tensors;
  extra["transformer.h.0.attn.q_proj.weight"] = Tensor::zeros({2});
  EXPECT_NE(expect_error([&] { import_hf(extra, 4, "m.st", cfg); }).find("unexpected tensors"),
            std::string::npos);
  // Without the "transformer." prefix (as the original GPT-2 upload) it loads the same.
  TensorMap bare;
  for (const auto& [k, v] : st.tensors) bare[k.substr(12)] = v;
  const TensorMap a = import_hf(st.tensors, 4, "a", cfg), b = import_hf(bare, 4, "b", cfg);
  ASSERT_EQ(a.size(), b.size());
  // Conv1D [in, out] becomes [out, in].
  EXPECT_EQ(a.at("transformer.h.0.mlp.c_fc.weight").shape(), (Shape{128, 32}));
}

TEST(Gpt, KilnCheckpointOfAnotherPluginIsRefused) {
  const auto dir = std::filesystem::temp_directory_path() / "kiln_gpt_test";
  std::filesystem::create_directories(dir);
  save_safetensors(dir / "other.safetensors", {{"w", Tensor::zeros({2})}},
                   {{"kiln.plugin", "vae"}, {"kiln.params", "{}"}});
  EXPECT_NE(expect_error([&] {
              load_model(dir / "other.safetensors", 0, "");
            }).find("made by the 'vae' plugin"),
            std::string::npos);
  std::filesystem::remove_all(dir);
}

TEST(Gpt, TrainingFitsABatch) {
  Generator gen(3);
  GptConfig cfg{.vocab = 40, .context = 16, .layers = 2, .heads = 2, .dim = 16};
  Gpt model(cfg, gen);
  std::vector<std::int64_t> seq;
  for (int i = 0; i < 34; ++i) seq.push_back((i * 7) % 40);
  const Tensor input =
      Tensor::from_ints(std::vector<std::int64_t>(seq.begin(), seq.begin() + 32), {2, 16});
  const Tensor target =
      Tensor::from_ints(std::vector<std::int64_t>(seq.begin() + 1, seq.begin() + 33), {2, 16});
  optim::AdamW opt(model.named_parameters(), {.lr = 1e-2f});
  float first = 0, last = 0;
  for (int s = 0; s < 30; ++s) {
    opt.zero_grad();
    const Tensor loss = model.loss(input, target);
    loss.backward();
    optim::clip_grad_norm(opt.params(), 1.f);
    opt.step();
    (s == 0 ? first : last) = loss.item();
  }
  EXPECT_NEAR(first, std::log(40.f), 0.2f);
  EXPECT_LT(last, 0.5f);
}

}  // namespace
}  // namespace kiln::gpt
