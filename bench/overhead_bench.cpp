// Per-op overhead on tiny shapes: Kiln's ops against the bare oneDNN primitive they wrap.
//
//   build/bench/bench_overhead_bench --benchmark_repetitions=5 --benchmark_min_time=0.2
//
// linear_1x16: y[1,16] = x[1,16] W[16,16]^T + b. "direct" is one oneDNN matmul primitive with
// every memory object created up front and W prepacked, so a call is execute + wait; Kiln's
// ops::linear also validates, allocates y, finds its cached primitive and packed weight, and (with
// grad) records a node. Acceptance (issue 2): kiln_nograd <= 2x direct.
// relu_1x16 (oneDNN eltwise in Kiln) and add_1x16 (Kiln's hand-written loop) show the per-op cost
// of the two kinds of op paths; add's "direct" is the same oneDNN binary primitive, pre-created.
#include <omp.h>

#include "bench_common.hpp"
#include "kiln/autograd.hpp"
#include "kiln/ops.hpp"

namespace {

using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;
constexpr std::int64_t kWidth = 16;

void BM_linear_direct(benchmark::State& state) {
  kiln_bench::use_threads(state.range(0));
  kiln_bench::DirectMatmul d(1, kWidth, kWidth, dt::f32, /*bias=*/true);
  for (auto _ : state) d.run();
  state.SetLabel(d.impl());
}

void linear_kiln(benchmark::State& state, bool grad) {
  kiln_bench::use_threads(state.range(0));
  const kiln::Tensor x = kiln_bench::random_tensor({1, kWidth}, kiln::DType::f32, 1);
  kiln::Tensor w = kiln_bench::random_tensor({kWidth, kWidth}, kiln::DType::f32, 2);
  kiln::Tensor b = kiln_bench::random_tensor({kWidth}, kiln::DType::f32, 3);
  w.set_requires_grad(grad);
  b.set_requires_grad(grad);
  std::unique_ptr<kiln::NoGradGuard> ng;
  if (!grad) ng = std::make_unique<kiln::NoGradGuard>();
  for (auto _ : state) {
    kiln::Tensor y = kiln::ops::linear(x, w, b);
    benchmark::DoNotOptimize(y.raw_data());
  }
}
void BM_linear_kiln_nograd(benchmark::State& state) {
  linear_kiln(state, false);
}
void BM_linear_kiln_grad(benchmark::State& state) {
  linear_kiln(state, true);
}

// A pre-created eltwise relu or binary add on [1,16] f32, run from this thread.
struct DirectSmall {
  dnnl::engine eng{dnnl::engine::kind::cpu, 0};
  dnnl::stream strm{eng};
  dnnl::primitive prim;
  std::unordered_map<int, dnnl::memory> args;
  void run() {
    prim.execute(strm, args);
    strm.wait();
  }
};

void BM_relu_direct(benchmark::State& state) {
  kiln_bench::use_threads(state.range(0));
  DirectSmall d;
  const dnnl::memory::desc md({1, kWidth}, dt::f32, tag::ab);
  dnnl::eltwise_forward::desc desc(dnnl::prop_kind::forward_inference,
                                   dnnl::algorithm::eltwise_relu, md, 0.f, 0.f);
  d.prim = dnnl::eltwise_forward(dnnl::eltwise_forward::primitive_desc(desc, d.eng));
  d.args = {{DNNL_ARG_SRC, dnnl::memory(md, d.eng)}, {DNNL_ARG_DST, dnnl::memory(md, d.eng)}};
  for (auto _ : state) d.run();
}

void BM_relu_kiln(benchmark::State& state) {
  kiln_bench::use_threads(state.range(0));
  const kiln::Tensor x = kiln_bench::random_tensor({1, kWidth});
  kiln::NoGradGuard ng;
  for (auto _ : state) {
    kiln::Tensor y = kiln::ops::relu(x);
    benchmark::DoNotOptimize(y.raw_data());
  }
}

void BM_add_direct(benchmark::State& state) {
  kiln_bench::use_threads(state.range(0));
  DirectSmall d;
  const dnnl::memory::desc md({1, kWidth}, dt::f32, tag::ab);
  dnnl::binary::desc desc(dnnl::algorithm::binary_add, md, md, md);
  d.prim = dnnl::binary(dnnl::binary::primitive_desc(desc, d.eng));
  d.args = {{DNNL_ARG_SRC_0, dnnl::memory(md, d.eng)},
            {DNNL_ARG_SRC_1, dnnl::memory(md, d.eng)},
            {DNNL_ARG_DST, dnnl::memory(md, d.eng)}};
  for (auto _ : state) d.run();
}

void BM_add_kiln(benchmark::State& state) {
  kiln_bench::use_threads(state.range(0));
  const kiln::Tensor a = kiln_bench::random_tensor({1, kWidth}, kiln::DType::f32, 1);
  const kiln::Tensor b = kiln_bench::random_tensor({1, kWidth}, kiln::DType::f32, 2);
  kiln::NoGradGuard ng;
  for (auto _ : state) {
    kiln::Tensor y = kiln::ops::add(a, b);
    benchmark::DoNotOptimize(y.raw_data());
  }
}

// The floor under every op that returns a new tensor: allocating a [1,16] f32 tensor.
void BM_empty_kiln(benchmark::State& state) {
  for (auto _ : state) {
    kiln::Tensor y = kiln::Tensor::empty({1, kWidth});
    benchmark::DoNotOptimize(y.raw_data());
  }
}

BENCHMARK(BM_linear_direct)->Name("linear_1x16/direct")->Apply(kiln_bench::thread_args);
BENCHMARK(BM_linear_kiln_nograd)->Name("linear_1x16/kiln_nograd")->Apply(kiln_bench::thread_args);
BENCHMARK(BM_linear_kiln_grad)->Name("linear_1x16/kiln_grad")->Apply(kiln_bench::thread_args);
BENCHMARK(BM_relu_direct)->Name("relu_1x16/direct")->Apply(kiln_bench::thread_args);
BENCHMARK(BM_relu_kiln)->Name("relu_1x16/kiln")->Apply(kiln_bench::thread_args);
BENCHMARK(BM_add_direct)->Name("add_1x16/direct")->Apply(kiln_bench::thread_args);
BENCHMARK(BM_add_kiln)->Name("add_1x16/kiln")->Apply(kiln_bench::thread_args);
BENCHMARK(BM_empty_kiln)->Name("empty_1x16");

}  // namespace

KILN_BENCH_MAIN()
