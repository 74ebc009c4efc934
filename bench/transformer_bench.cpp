// GPT-2 benchmark and data tool (the Kiln side of bench/peers/gpt2.py and
// bench/peers/gpt_train.py).
//
//   build/bench/bench_transformer_bench speed [--modes f32,bf16] [--reps 3] [--threads 2]
//       GPT-2 small shape (12 x 768, 12 heads, vocab 50257, context 1024, 124,439,808 params),
//       random weights N(0, 0.02) (c_proj N(0, 0.02/sqrt(24))), KV cache preallocated for 1024
//       positions: prefill of a 128-token prompt at batch 1 (logits of the last position only),
//       then 32 greedy decode steps at positions 128..159 at batch 1 and at batch 8 (8 different
//       prompts). Prints "kiln <mode> <metric> <median tok/s> [<worst>-<best>]" like the peer.
//   build/bench/bench_transformer_bench tokens --data DIR --vocab 4096 --val 0.05 --out FILE
//       The training and validation token ids exactly as transformer/train makes them (corpus,
//       per-document split, BPE trained on the training text), as a safetensors file with
//       "train" and "val" (s32), for the PyTorch training reference.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "gpt.hpp"
#include "kiln/bpe.hpp"
#include "kiln/context.hpp"
#include "kiln/safetensors.hpp"
#include "kiln/text.hpp"

namespace {

using kiln::Tensor;

std::string arg(int argc, char** argv, const std::string& name, const std::string& def) {
  for (int i = 2; i + 1 < argc; ++i) {
    if (argv[i] == "--" + name) return argv[i + 1];
  }
  return def;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void report(const std::string& mode, const std::string& metric, std::vector<double> rates) {
  std::sort(rates.begin(), rates.end());
  std::printf("kiln %s %s %.1f [%.1f-%.1f]\n", mode.c_str(), metric.c_str(),
              rates[rates.size() / 2], rates.front(), rates.back());
  std::fflush(stdout);
}

int speed(int argc, char** argv) {
  const int reps = std::stoi(arg(argc, argv, "reps", "3"));
  kiln::set_num_threads(std::stoi(arg(argc, argv, "threads", "2")));
  std::string modes = arg(argc, argv, "modes", "f32,bf16");
  kiln::Generator gen(0);
  kiln::gpt::GptConfig cfg;  // GPT-2 small
  const auto t0 = std::chrono::steady_clock::now();
  kiln::gpt::Gpt model(cfg, gen);
  model.eval();
  std::printf("GPT-2 small: %lld parameters, initialised in %.1f s\n",
              static_cast<long long>(model.num_parameters()), seconds_since(t0));
  kiln::Philox rng(1, 0, 0);
  std::vector<std::vector<std::int64_t>> prompts(8, std::vector<std::int64_t>(128));
  for (auto& p : prompts) {
    for (auto& t : p)
      t = static_cast<std::int64_t>(rng.below(static_cast<std::uint64_t>(cfg.vocab)));
  }
  auto argmax_rows = [&](const Tensor& logits) {
    std::vector<std::int64_t> out;
    const std::int64_t v = logits.size(1);
    const float* p = logits.data<float>();
    for (std::int64_t r = 0; r < logits.size(0); ++r) {
      out.push_back(std::max_element(p + r * v, p + (r + 1) * v) - (p + r * v));
    }
    return out;
  };
  std::size_t start = 0;
  while (start < modes.size()) {
    std::size_t end = modes.find(',', start);
    if (end == std::string::npos) end = modes.size();
    const std::string mode = modes.substr(start, end - start);
    start = end + 1;
    const kiln::DType dt = kiln::parse_dtype(mode);
    kiln::gpt::Decoder dec(model, dt, 8, cfg.context);
    const std::vector<std::vector<std::int64_t>> one(prompts.begin(), prompts.begin() + 1);
    dec.prefill(one);  // warm-up
    std::vector<double> rates;
    for (int r = 0; r < reps; ++r) {
      const auto t = std::chrono::steady_clock::now();
      dec.prefill(one);
      rates.push_back(128.0 / seconds_since(t));
    }
    report(mode, "prefill_b1_t128", rates);
    for (std::int64_t b : {1, 8}) {
      const std::vector<std::vector<std::int64_t>> ps(prompts.begin(), prompts.begin() + b);
      rates.clear();
      for (int r = 0; r < reps + 1; ++r) {
        std::vector<std::int64_t> tok = argmax_rows(dec.prefill(ps));
        const auto t = std::chrono::steady_clock::now();
        for (int s = 0; s < 32; ++s) tok = argmax_rows(dec.step(tok));
        if (r > 0)
          rates.push_back(static_cast<double>(b) * 32.0 / seconds_since(t));  // r 0: warm-up
      }
      report(mode, "decode_b" + std::to_string(b), rates);
    }
  }
  return 0;
}

int tokens(int argc, char** argv) {
  const std::string data = arg(argc, argv, "data", "/usr/share/games/fortunes");
  const std::int64_t vocab = std::stoll(arg(argc, argv, "vocab", "4096"));
  const double val = std::stod(arg(argc, argv, "val", "0.05"));
  const std::string out = arg(argc, argv, "out", "tokens.safetensors");
  const kiln::text::Corpus corpus = kiln::text::load_corpus({data});
  const kiln::text::TextSplit split = kiln::text::split_text(corpus, val);
  const kiln::text::BpeTokenizer tok =
      kiln::text::BpeTokenizer::train(split.train, {.vocab_size = vocab});
  auto to_tensor = [](const std::vector<std::int64_t>& ids) {
    return Tensor::from_ints(ids, {static_cast<std::int64_t>(ids.size())}, kiln::DType::s32);
  };
  const auto tr = tok.encode(split.train), va = tok.encode(split.validation);
  kiln::save_safetensors(out, {{"train", to_tensor(tr)}, {"val", to_tensor(va)}},
                         {{"vocab_size", std::to_string(tok.vocab_size())}});
  std::printf("%zu training and %zu validation tokens, vocabulary %lld -> %s\n", tr.size(),
              va.size(), static_cast<long long>(tok.vocab_size()), out.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const std::string cmd = argc > 1 ? argv[1] : "";
    if (cmd == "speed") return speed(argc, argv);
    if (cmd == "tokens") return tokens(argc, argv);
    std::fprintf(stderr, "usage: %s speed|tokens [options] (see the file's header)\n", argv[0]);
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
