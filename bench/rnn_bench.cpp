// B4 char-LSTM (workload definition in /work/shared/peers/README.md):
//   Embedding(96, 64) -> LSTM(64 -> 512, 2 layers) -> Linear(512 -> 96), 3.34 M parameters.
//
//   CharLstm/train_step   batch 32, sequence 128, zero initial state, mean cross-entropy,
//                         backward, then a plain SGD update (PyTorch's peer uses Adam; the
//                         optimiser is < 1% of the step either way). Reported as step/s.
//   CharLstm/sample/B     prime with one character, then 256 steps of one LSTM call per
//                         character with the state carried, multinomial over softmax(logits),
//                         B sequences in lock-step. Reported as chars/s (B * 256 / time).
//   LstmLayer/decode/B/H  one ops::lstm call (T = 1, 2 layers, 64 inputs) alone: the per-call
//                         cost (H = 16 shows the fixed overhead).
//
// PyTorch 1.13 on this machine (best configuration): 1.5 step/s; 1,442 (B = 1) and
// 17,731 (B = 32) chars/s.
//
//   build/bench/bench_rnn_bench [--benchmark_filter=sample]   (threads: KILN_THREADS, default all)
//
// The embedding in the training step is a one-hot matmul and the cross-entropy is built from
// elementwise ops and reductions, so this file needs nothing beyond ops::matmul / linear / lstm.
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "kiln/autograd.hpp"
#include "kiln/context.hpp"
#include "kiln/nn/rnn.hpp"
#include "kiln/ops.hpp"
#include "kiln/random.hpp"

namespace {

using kiln::Tensor;
namespace ops = kiln::ops;

constexpr std::int64_t kVocab = 96, kEmbed = 64, kHidden = 512, kLayers = 2;

void setup_threads() {
  const char* env = std::getenv("KILN_THREADS");
  kiln::set_num_threads(env ? std::atoi(env) : 0);
}

struct CharLstm {
  explicit CharLstm(kiln::Generator& g)
      : embed(Tensor::randn({kVocab, kEmbed}, g).set_requires_grad()),
        lstm(kEmbed, kHidden, kLayers, 0.f, g),
        w_out(Tensor::rand({kVocab, kHidden}, g, -0.044f, 0.044f).set_requires_grad()),
        b_out(Tensor::rand({kVocab}, g, -0.044f, 0.044f).set_requires_grad()) {}

  kiln::TensorList parameters() const {
    kiln::TensorList p = lstm.parameters();
    p.push_back(embed);
    p.push_back(w_out);
    p.push_back(b_out);
    return p;
  }

  Tensor embed;
  kiln::nn::LSTM lstm;
  Tensor w_out, b_out;
};

Tensor one_hot(const std::vector<std::int64_t>& ids) {
  const std::int64_t n = static_cast<std::int64_t>(ids.size());
  Tensor t = Tensor::zeros({n, kVocab});
  float* p = t.data<float>();
  for (std::int64_t i = 0; i < n; ++i) p[i * kVocab + ids[static_cast<std::size_t>(i)]] = 1.f;
  return t;
}

// mean over rows of logsumexp(logits) - logits[target], targets given one-hot.
Tensor cross_entropy_mean(const Tensor& logits, const Tensor& targets_one_hot) {
  Tensor z = logits - ops::amax(logits.detach(), 1, true);
  Tensor lse = ops::log(ops::sum(ops::exp(z), {1}));
  Tensor picked = ops::sum(z * targets_one_hot, {1});
  return ops::mean(lse - picked);
}

void sgd_step(const kiln::TensorList& params, float lr) {
  kiln::NoGradGuard ng;
  for (const Tensor& p : params) {
    const Tensor g = p.grad();
    if (!g.defined()) continue;
    float* w = p.data<float>();
    const float* d = g.data<float>();
    for (std::int64_t i = 0; i < p.numel(); ++i) w[i] -= lr * d[i];
    p.bump_version();
    p.zero_grad();
  }
}

void BM_TrainStep(benchmark::State& state) {
  setup_threads();
  constexpr std::int64_t T = 128, N = 32;
  kiln::Generator g(1);
  CharLstm m(g);
  kiln::Philox data(42);
  std::vector<std::int64_t> in(T * N), target(T * N);
  for (std::size_t i = 0; i < in.size(); ++i) {
    in[i] = static_cast<std::int64_t>(data.below(kVocab));
    target[i] = static_cast<std::int64_t>(data.below(kVocab));
  }
  const Tensor x_one_hot = one_hot(in), y_one_hot = one_hot(target);
  const kiln::TensorList params = m.parameters();
  float loss_value = 0.f;
  for (auto _ : state) {
    Tensor x = ops::matmul(x_one_hot, m.embed).reshape({T, N, kEmbed});
    ops::RnnOutput o = m.lstm.forward(x);
    Tensor logits = ops::linear(o.y.reshape({T * N, kHidden}), m.w_out, m.b_out);
    Tensor loss = cross_entropy_mean(logits, y_one_hot);
    loss.backward();
    sgd_step(params, 2e-3f);
    loss_value = loss.item();
    benchmark::DoNotOptimize(loss_value);
  }
  state.counters["step/s"] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["loss"] = loss_value;
}

// Draws one id per row of probs [B, V] (softmax of logits) with each row's own generator.
void sample_rows(const Tensor& logits, std::vector<kiln::Philox>& rngs,
                 std::vector<std::int64_t>& ids) {
  const std::int64_t B = logits.size(0);
  const float* l = logits.data<float>();
  std::vector<float> p(kVocab);
  for (std::int64_t b = 0; b < B; ++b) {
    const float* row = l + b * kVocab;
    float mx = row[0];
    for (std::int64_t v = 1; v < kVocab; ++v) mx = std::max(mx, row[v]);
    float total = 0.f;
    for (std::int64_t v = 0; v < kVocab; ++v)
      total += p[static_cast<std::size_t>(v)] = std::exp(row[v] - mx);
    const float u = rngs[static_cast<std::size_t>(b)].uniform() * total;
    float acc = 0.f;
    std::int64_t pick = kVocab - 1;
    for (std::int64_t v = 0; v < kVocab; ++v) {
      acc += p[static_cast<std::size_t>(v)];
      if (u < acc) {
        pick = v;
        break;
      }
    }
    ids[static_cast<std::size_t>(b)] = pick;
  }
}

void BM_Sample(benchmark::State& state) {
  setup_threads();
  const std::int64_t B = state.range(0);
  constexpr int kSteps = 256;
  kiln::Generator g(1);
  CharLstm m(g);
  kiln::NoGradGuard ng;
  const float* embed = m.embed.data<float>();
  std::int64_t chars = 0;
  for (auto _ : state) {
    std::vector<kiln::Philox> rngs;
    for (std::int64_t b = 0; b < B; ++b) rngs.emplace_back(7, static_cast<std::uint64_t>(b), 2);
    std::vector<std::int64_t> ids(static_cast<std::size_t>(B));
    for (std::int64_t b = 0; b < B; ++b) ids[static_cast<std::size_t>(b)] = b % kVocab;  // prime
    Tensor h, c;
    for (int s = 0; s < kSteps; ++s) {
      Tensor x = Tensor::empty({1, B, kEmbed});
      float* xp = x.data<float>();
      for (std::int64_t b = 0; b < B; ++b) {
        std::memcpy(xp + b * kEmbed, embed + ids[static_cast<std::size_t>(b)] * kEmbed,
                    kEmbed * sizeof(float));
      }
      ops::RnnOutput o = m.lstm.forward(x, h, c);
      h = o.h;
      c = o.c;
      Tensor logits = ops::linear(o.y.view({B, kHidden}), m.w_out, m.b_out);
      sample_rows(logits, rngs, ids);
    }
    benchmark::DoNotOptimize(ids.data());
    chars += B * kSteps;
  }
  state.counters["chars/s"] =
      benchmark::Counter(static_cast<double>(chars), benchmark::Counter::kIsRate);
}

void BM_DecodeCall(benchmark::State& state) {
  setup_threads();
  const std::int64_t B = state.range(0), H = state.range(1);
  kiln::Generator g(1);
  kiln::nn::LSTM lstm(kEmbed, H, kLayers, 0.f, g);
  kiln::NoGradGuard ng;
  Tensor x = Tensor::randn({1, B, kEmbed}, g);
  Tensor h = Tensor::zeros({kLayers, B, H}), c = Tensor::zeros({kLayers, B, H});
  for (auto _ : state) {
    ops::RnnOutput o = lstm.forward(x, h, c);
    h = o.h;
    c = o.c;
  }
  state.counters["calls/s"] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

BENCHMARK(BM_TrainStep)
    ->Name("CharLstm/train_step")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MinTime(3.0);
BENCHMARK(BM_Sample)
    ->Name("CharLstm/sample")
    ->Arg(1)
    ->Arg(32)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
// {B, H}: the B4 shapes, and a tiny H that shows the fixed cost of a call.
BENCHMARK(BM_DecodeCall)
    ->Name("LstmLayer/decode")
    ->Args({1, kHidden})
    ->Args({32, kHidden})
    ->Args({1, 16})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
