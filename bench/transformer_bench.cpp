// GPT-2 benchmark and data tool (the Kiln side of bench/peers/gpt2.py and
// bench/peers/gpt_train.py).
//
//   build/bench/bench_transformer_bench speed [--modes f32,bf16] [--reps 3] [--threads 2]
//                                             [--points prefill,decode_b1,decode_b8]
//       GPT-2 small shape (12 x 768, 12 heads, vocab 50257, context 1024, 124,439,808 params),
//       random weights N(0, 0.02) (c_proj N(0, 0.02/sqrt(24))), KV cache preallocated for 1024
//       positions: prefill of a 128-token prompt at batch 1 (logits of the last position only),
//       then 32 greedy decode steps at positions 128..159 at batch 1 and at batch 8 (8 different
//       prompts). Prints "kiln <mode> <metric> <median tok/s> [<worst>-<best>]" like the peer.
//       Interleaved with these, it measures the machine's limits in the same run, because a
//       shared VM's compute and bandwidth change from hour to hour (and from host to host): the
//       oneDNN GEMM peak (2048^3, packed weights, the mode's dtype, the same threads) before
//       the prefill, and a STREAM-like read of a 1 GiB array before each decode point. It then
//       prints the prefill's GFLOP/s as a share of that peak, and each decode rate as a share of
//       its bandwidth roofline (read GB/s / bytes streamed per step: every weight but wpe, with
//       wte read whole as the lm_head, plus the KV cache at the mean context 144.5), the
//       definitions of ../shared/peers/README.md.
//   build/bench/bench_transformer_bench tokens --data DIR --vocab 4096 --val 0.05 --out FILE
//       The training and validation token ids exactly as transformer/train makes them (corpus,
//       per-document split, BPE trained on the training text), as a safetensors file with
//       "train" and "val" (s32), for the PyTorch training reference.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <immintrin.h>
#include <omp.h>

#include "bench_common.hpp"
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

// FLOPs of a batch-1 prefill of t tokens that returns the last position's logits, counted as the
// peers README counts them: 2 per multiply-add in every linear layer, full (unmasked) T x T
// attention scores and weighted sums, and the lm_head for one row.
double prefill_flops(const kiln::gpt::GptConfig& c, std::int64_t t) {
  const double d = static_cast<double>(c.dim), tt = static_cast<double>(t);
  const double linear = 2.0 * tt * (d * 3 * d + d * d + 2 * d * 4 * d);
  const double attention = 2.0 * 2.0 * tt * tt * d;
  return static_cast<double>(c.layers) * (linear + attention) +
         2.0 * d * static_cast<double>(c.vocab);
}

// Bytes one decode step at batch b streams: every parameter but the position table in the
// decoder's dtype (wte is read whole as the lm_head), and K and V of every layer at the mean
// context of the benchmark's 32 steps from position 128 (144.5), per sequence.
double decode_bytes(const kiln::gpt::Gpt& m, const kiln::gpt::GptConfig& c, kiln::DType dt,
                    std::int64_t b) {
  const double elt = static_cast<double>(kiln::dtype_size(dt));
  const double weights = static_cast<double>(m.num_parameters() - c.context * c.dim) * elt;
  const double kv = static_cast<double>(c.layers) * 2.0 * 144.5 * static_cast<double>(c.dim) * elt;
  return weights + static_cast<double>(b) * kv;
}

// Sum of a[0, n): with AVX-512 when the CPU has it, four independent vector accumulators, so the
// loop is bound by the memory system rather than by the latency of one chain of adds.
__attribute__((target("avx512f"))) float sum_avx512(const float* a, std::size_t n) {
  __m512 s0 = _mm512_set1_ps(0.0f), s1 = s0, s2 = s0, s3 = s0;
  std::size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    s0 = _mm512_add_ps(s0, _mm512_loadu_ps(a + i));
    s1 = _mm512_add_ps(s1, _mm512_loadu_ps(a + i + 16));
    s2 = _mm512_add_ps(s2, _mm512_loadu_ps(a + i + 32));
    s3 = _mm512_add_ps(s3, _mm512_loadu_ps(a + i + 48));
  }
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, _mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
  float total = 0.0f;
  for (const float v : lanes) total += v;
  for (; i < n; ++i) total += a[i];
  return total;
}

float sum(const float* a, std::size_t n) {
  if (__builtin_cpu_supports("avx512f")) return sum_avx512(a, n);
  float acc[8] = {};
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) acc[j] += a[i + j];
  }
  for (; i < n; ++i) acc[0] += a[i];
  return acc[0] + acc[1] + acc[2] + acc[3] + acc[4] + acc[5] + acc[6] + acc[7];
}

// The machine's limits, sampled between the model's measurements: oneDNN's 2048^3 matmul (A
// row-major, B packed, C f32) in the mode's dtype, the peers' GEMM peak; and the read bandwidth
// of the threads, GB/s (1e9 B/s), from a sum over a 1 GiB float array first-touched in parallel,
// each thread summing its contiguous share (STREAM's "read", the access pattern of a weight
// stream). The array lies in 2 MiB-aligned huge pages, as the decoder's weights do
// (kiln::to_streaming_memory), so the limit is the fastest plain read of this machine: from
// 4 KiB pages the same sum reads 15-20% slower, and a weight stream from huge pages would then
// seem to beat the limit.
class Limits {
 public:
  // The array is a kiln tensor moved by kiln::to_streaming_memory, where the decoder's weights
  // live too.
  explicit Limits(int threads)
      : threads_(threads),
        n_((std::size_t{1} << 30) / sizeof(float)),
        buf_(kiln::Tensor::empty({static_cast<std::int64_t>(n_)})) {
    kiln::to_streaming_memory(buf_);
    a_ = buf_.data<float>();
#pragma omp parallel num_threads(threads_)
    {
      const auto [lo, hi] = share(omp_get_thread_num(), omp_get_num_threads());
      std::fill(a_ + lo, a_ + hi, 1.0f);
    }
    read_gb_s();  // warm-up
  }

  double gemm_gflops(kiln::DType dt) {
    constexpr std::int64_t n = 2048;
    auto& mm = dt == kiln::DType::bf16 ? bf16_ : f32_;
    if (!mm) {
      mm = std::make_unique<kiln_bench::DirectMatmul>(n, n, n, kiln::to_dnnl(dt), false);
      mm->run();  // warm-up
    }
    const auto t0 = std::chrono::steady_clock::now();
    mm->run();
    return 2.0 * n * n * n / seconds_since(t0) * 1e-9;
  }

  double read_gb_s() {
    const auto t0 = std::chrono::steady_clock::now();
    float total = 0.0f;
#pragma omp parallel num_threads(threads_) reduction(+ : total)
    {
      const auto [lo, hi] = share(omp_get_thread_num(), omp_get_num_threads());
      total += sum(a_ + lo, hi - lo);
    }
    const double s = seconds_since(t0);
    sink_ = total;
    return static_cast<double>(n_ * sizeof(float)) / s * 1e-9;
  }

 private:
  std::pair<std::size_t, std::size_t> share(int t, int nt) const {
    const std::size_t n = n_;
    return {n * static_cast<std::size_t>(t) / static_cast<std::size_t>(nt),
            n * static_cast<std::size_t>(t + 1) / static_cast<std::size_t>(nt)};
  }

  int threads_;
  std::size_t n_;
  kiln::Tensor buf_;
  float* a_ = nullptr;
  std::unique_ptr<kiln_bench::DirectMatmul> f32_, bf16_;
  volatile float sink_ = 0.0f;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

int speed(int argc, char** argv) {
  const int reps = std::stoi(arg(argc, argv, "reps", "3"));
  kiln::set_num_threads(std::stoi(arg(argc, argv, "threads", "2")));
  std::string modes = arg(argc, argv, "modes", "f32,bf16");
  const std::string points = "," + arg(argc, argv, "points", "prefill,decode_b1,decode_b8") + ",";
  const auto wanted = [&](const std::string& p) {
    return points.find("," + p + ",") != std::string::npos;
  };
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
  Limits machine(kiln::num_threads());
  std::size_t start = 0;
  while (start < modes.size()) {
    std::size_t end = modes.find(',', start);
    if (end == std::string::npos) end = modes.size();
    const std::string mode = modes.substr(start, end - start);
    start = end + 1;
    const kiln::DType dt = kiln::parse_dtype(mode);
    kiln::gpt::Decoder dec(model, dt, 8, cfg.context);
    const std::vector<std::vector<std::int64_t>> one(prompts.begin(), prompts.begin() + 1);
    // Each repetition samples the limit right before the measurement and keeps the pair, so a
    // share is computed from figures taken seconds apart; the shares' median is printed.
    dec.prefill(one);  // warm-up
    std::vector<double> rates, limits, shares;
    for (int r = 0; r < reps && wanted("prefill"); ++r) {
      limits.push_back(machine.gemm_gflops(dt));
      const auto t = std::chrono::steady_clock::now();
      dec.prefill(one);
      rates.push_back(128.0 / seconds_since(t));
      shares.push_back(prefill_flops(cfg, 128) / (128.0 / rates.back()) * 1e-9 / limits.back());
    }
    if (wanted("prefill")) {
      report(mode, "prefill_b1_t128", rates);
      std::printf("limit %s gemm_2048_gflops %.1f; prefill %.1f GFLOP/s = %.0f%% of it\n",
                  mode.c_str(), median(limits),
                  prefill_flops(cfg, 128) / (128.0 / median(rates)) * 1e-9, 100.0 * median(shares));
    }
    for (std::int64_t b : {1, 8}) {
      if (!wanted("decode_b" + std::to_string(b))) continue;
      const double step_bytes = decode_bytes(model, cfg, dt, b);
      const std::vector<std::vector<std::int64_t>> ps(prompts.begin(), prompts.begin() + b);
      rates.clear();
      limits.clear();
      shares.clear();
      for (int r = 0; r < reps + 1; ++r) {
        std::vector<std::int64_t> tok = argmax_rows(dec.prefill(ps));
        const double bw = machine.read_gb_s();
        const auto t = std::chrono::steady_clock::now();
        for (int s = 0; s < 32; ++s) tok = argmax_rows(dec.step(tok));
        if (r == 0) continue;  // warm-up
        rates.push_back(static_cast<double>(b) * 32.0 / seconds_since(t));
        limits.push_back(bw);
        shares.push_back(rates.back() / (static_cast<double>(b) * bw * 1e9 / step_bytes));
      }
      report(mode, "decode_b" + std::to_string(b), rates);
      std::printf(
          "limit %s read_gb_s %.1f; %.1f MB per step, roofline %.1f tok/s; decode_b%lld at %.0f%% "
          "of it\n",
          mode.c_str(), median(limits), step_bytes * 1e-6,
          static_cast<double>(b) * median(limits) * 1e9 / step_bytes, static_cast<long long>(b),
          100.0 * median(shares));
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
