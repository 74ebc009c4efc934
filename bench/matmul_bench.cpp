// GEMM throughput: Kiln's ops::linear and ops::matmul against the same oneDNN matmul primitive
// called directly, on the A1 workload of the peers README (../shared/peers/README.md):
//
//   build/bench/bench_matmul_bench --benchmark_repetitions=5 --benchmark_min_time=0.5
//
// C[M,N] = A[M,K] B[K,N] with C f32; f32 means A and B f32, bf16 means A and B bf16. Cases are
// named <op>_<M>x<N>x<K>_<dtype>[_cold]:
//   linear_*  ops::linear(x[M,K], W[N,K]) (no bias), whose weight Kiln packs once (reorder_cached)
//             into oneDNN's preferred layout; "direct" is the primitive with B packed the same
//             way, i.e. the peers' A1 oneDNN probe.
//   matmul_*  ops::matmul(A[M,K], B[K,N]) on plain row-major operands; "direct" is the primitive
//             on the same plain layouts.
//   *_cold    a ring of distinct weights totalling >= 1 GiB, used in turn, so every call streams
//             its weights from DRAM like a batch-1 decode step; GB/s counts the weight bytes.
// Each runs at 2 threads (the default budget here) and 1 (the `threads` argument). Acceptance
// (issue 2): Kiln >= 90% of direct, i.e. the ratio column <= 1.11.
#include <omp.h>

#include <cmath>
#include <vector>

#include "bench_common.hpp"
#include "kiln/autograd.hpp"
#include "kiln/ops.hpp"

namespace {

using dt = dnnl::memory::data_type;
using kiln::DType;
using kiln::Tensor;

constexpr std::int64_t kRingBytes = std::int64_t{1} << 30;

struct Gemm {
  std::int64_t m, n, k;
  DType dtype;
  bool cold;  // weights streamed from a >= 1 GiB ring
};

dt to_dt(DType t) {
  return t == DType::bf16 ? dt::bf16 : dt::f32;
}

std::int64_t ring_size(const Gemm& g) {
  if (!g.cold) return 1;
  const std::int64_t bytes = g.n * g.k * static_cast<std::int64_t>(kiln::dtype_size(g.dtype));
  return (kRingBytes + bytes - 1) / bytes;
}

void set_counters(benchmark::State& state, const Gemm& g) {
  const double flops = 2.0 * static_cast<double>(g.m) * g.n * g.k;
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  if (g.cold || g.m == 1) {
    const double bytes = static_cast<double>(g.n) * g.k * kiln::dtype_size(g.dtype);
    state.counters["weight GB/s"] =
        benchmark::Counter(bytes * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  }
}

void direct(benchmark::State& state, Gemm g, bool packed) {
  kiln_bench::use_threads(state.range(0));
  kiln_bench::DirectMatmul d(g.m, g.k, g.n, to_dt(g.dtype), /*bias=*/false, ring_size(g), packed);
  std::int64_t i = 0;
  d.run(i++);  // warm-up: first-touch of C, JIT caches
  for (auto _ : state) d.run(i++);
  set_counters(state, g);
  state.SetLabel(d.impl());
}

void kiln_linear(benchmark::State& state, Gemm g) {
  kiln_bench::use_threads(state.range(0));
  kiln::NoGradGuard ng;
  const Tensor x = kiln_bench::random_tensor({g.m, g.k}, g.dtype, 1);
  std::vector<Tensor> ws;
  for (std::int64_t r = 0; r < ring_size(g); ++r) {
    ws.push_back(kiln_bench::random_tensor({g.n, g.k}, g.dtype, 2 + static_cast<std::uint64_t>(r)));
  }
  // Warm-up, untimed: packs every weight once (the packed copies stay cached on the weights).
  for (const Tensor& w : ws) benchmark::DoNotOptimize(kiln::ops::linear(x, w).raw_data());
  std::size_t i = 0;
  for (auto _ : state) {
    Tensor y = kiln::ops::linear(x, ws[i++ % ws.size()]);
    benchmark::DoNotOptimize(y.raw_data());
  }
  set_counters(state, g);
}

void kiln_matmul(benchmark::State& state, Gemm g) {
  kiln_bench::use_threads(state.range(0));
  kiln::NoGradGuard ng;
  const Tensor a = kiln_bench::random_tensor({g.m, g.k}, g.dtype, 1);
  const Tensor b = kiln_bench::random_tensor({g.k, g.n}, g.dtype, 2);
  benchmark::DoNotOptimize(kiln::ops::matmul(a, b).raw_data());
  for (auto _ : state) {
    Tensor c = kiln::ops::matmul(a, b);
    benchmark::DoNotOptimize(c.raw_data());
  }
  set_counters(state, g);
}

std::string case_name(const char* op, const Gemm& g) {
  std::string s = std::string(op) + "_" + std::to_string(g.m) + "x" + std::to_string(g.n) + "x" +
                  std::to_string(g.k) + "_" + kiln::dtype_name(g.dtype);
  return g.cold ? s + "_cold" : s;
}

void register_all() {
  std::vector<Gemm> linear_cases;
  for (DType t : {DType::f32, DType::bf16}) {
    linear_cases.push_back({2048, 2048, 2048, t, false});
    linear_cases.push_back({64, 3072, 768, t, false});
    linear_cases.push_back({64, 768, 3072, t, false});
    linear_cases.push_back({1, 3072, 768, t, false});
    linear_cases.push_back({1, 3072, 768, t, true});
    // Decoding at batch 2, 4 and 8 (ops::linear streams the plain weight for M <= 8: gemv.cpp).
    linear_cases.push_back({2, 3072, 768, t, true});
    linear_cases.push_back({4, 3072, 768, t, true});
    linear_cases.push_back({8, 3072, 768, t, true});
  }
  for (const Gemm& g : linear_cases) {
    const std::string name = case_name("linear", g);
    benchmark::RegisterBenchmark((name + "/direct").c_str(), direct, g, true)
        ->Apply(kiln_bench::thread_args)
        ->UseRealTime()
        ->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark((name + "/kiln").c_str(), kiln_linear, g)
        ->Apply(kiln_bench::thread_args)
        ->UseRealTime()
        ->Unit(benchmark::kMicrosecond);
  }
  for (DType t : {DType::f32, DType::bf16}) {
    const Gemm g{2048, 2048, 2048, t, false};
    const std::string name = case_name("matmul", g);
    benchmark::RegisterBenchmark((name + "/direct").c_str(), direct, g, false)
        ->Apply(kiln_bench::thread_args)
        ->UseRealTime()
        ->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark((name + "/kiln").c_str(), kiln_matmul, g)
        ->Apply(kiln_bench::thread_args)
        ->UseRealTime()
        ->Unit(benchmark::kMicrosecond);
  }
}

}  // namespace

int main(int argc, char** argv) {
  register_all();
  return kiln_bench::run_main(argc, argv);
}
