// Helpers shared by Kiln's benchmarks (header-only, so bench/CMakeLists.txt stays one glob).
//
//   BENCHMARK(BM_x)->Apply(kiln_bench::thread_args);   // runs at 2 and 1 threads: state.range(0)
//   kiln_bench::use_threads(state.range(0));            // Kiln's budget and this thread's OpenMP
//   kiln_bench::DirectMatmul d(m, k, n, dnnl::memory::data_type::f32, /*bias=*/true);
//   d.run();                                             // a bare oneDNN primitive call
//   KILN_BENCH_MAIN()                                    // main() that also prints ratios
//
// Naming: benchmarks are named "<case>/<impl>" (e.g. "linear_1x16/kiln_nograd"); the impl
// "direct" is the bare oneDNN baseline of its case. After the usual table, main() prints for each
// case and argument set every impl's median time and its ratio to "direct".
#pragma once

#include <omp.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <benchmark/benchmark.h>
#include <oneapi/dnnl/dnnl.hpp>

#include "kiln/context.hpp"
#include "kiln/dnnl_interop.hpp"
#include "kiln/random.hpp"
#include "kiln/tensor.hpp"

namespace kiln_bench {

// Sets Kiln's thread budget and the calling thread's OpenMP team to n (n <= 0: all cores), so
// Kiln's ops and direct oneDNN calls made from this thread use the same number of threads.
inline void use_threads(std::int64_t n) {
  kiln::set_num_threads(static_cast<int>(n));
  omp_set_num_threads(kiln::num_threads());
}

// Registers the thread counts every throughput benchmark runs at: 2 (the default budget on the
// development machine) and 1.
inline void thread_args(benchmark::internal::Benchmark* b) {
  b->ArgName("threads")->Arg(2)->Arg(1);
}

// Deterministic input data for benchmarks (values do not affect timings).
inline kiln::Tensor random_tensor(const kiln::Shape& shape, kiln::DType dtype = kiln::DType::f32,
                                  std::uint64_t seed = 1) {
  kiln::Generator gen(seed);
  kiln::Tensor t = kiln::Tensor::randn(shape, gen);
  return dtype == kiln::DType::f32 ? t : t.to(dtype);
}

// C[M,N] (f32) = A[M,K] B[K,N] (+ bias[1,N]) as one oneDNN matmul primitive with every memory
// object created up front: A row-major, B reordered once into the primitive's preferred layout
// (format_tag::any; or row-major when `packed` is false, as ops::matmul describes it), so run()
// is just execute + wait. This is the "bare oneDNN" baseline Kiln's ops are compared against.
// `weights` > 1 allocates that many distinct B matrices and run(i) uses B number i % weights
// (the "cold" ring of the peers' A1 workload). A and B have type `wdt`.
class DirectMatmul {
 public:
  using dt = dnnl::memory::data_type;
  using tag = dnnl::memory::format_tag;

  DirectMatmul(std::int64_t m, std::int64_t k, std::int64_t n, dt wdt, bool bias,
               std::int64_t weights = 1, bool packed = true)
      : eng_(dnnl::engine::kind::cpu, 0), strm_(eng_) {
    const dnnl::memory::desc a_md({m, k}, wdt, tag::ab);
    const dnnl::memory::desc b_any({k, n}, wdt, packed ? tag::any : tag::ab);
    const dnnl::memory::desc c_md({m, n}, dt::f32, tag::ab);
    const dnnl::memory::desc bias_md({1, n}, dt::f32, tag::ab);
    const dnnl::matmul::desc d = bias ? dnnl::matmul::desc(a_md, b_any, bias_md, c_md)
                                      : dnnl::matmul::desc(a_md, b_any, c_md);
    const dnnl::matmul::primitive_desc pd(d, eng_);
    impl_ = pd.impl_info_str();
    prim_ = dnnl::matmul(pd);
    a_ = dnnl::memory(a_md, eng_);
    c_ = dnnl::memory(c_md, eng_);
    fill(a_, 0.5f);
    // One user-layout (row-major) B, reordered into each packed copy.
    dnnl::memory b_user(dnnl::memory::desc({k, n}, wdt, tag::ab), eng_);
    fill(b_user, 0.25f);
    for (std::int64_t i = 0; i < weights; ++i) {
      dnnl::memory b(pd.weights_desc(), eng_);
      dnnl::reorder(b_user, b).execute(strm_, b_user, b);
      b_.push_back(b);
    }
    strm_.wait();
    args_ = {{DNNL_ARG_SRC, a_}, {DNNL_ARG_WEIGHTS, b_[0]}, {DNNL_ARG_DST, c_}};
    if (bias) {
      bias_ = dnnl::memory(bias_md, eng_);
      fill(bias_, 0.1f);
      args_[DNNL_ARG_BIAS] = bias_;
    }
    weight_bytes_ = pd.weights_desc().get_size();
  }

  void run() {
    prim_.execute(strm_, args_);
    strm_.wait();
  }
  void run(std::int64_t i) {
    args_[DNNL_ARG_WEIGHTS] = b_[static_cast<std::size_t>(i) % b_.size()];
    run();
  }
  const std::string& impl() const { return impl_; }
  std::size_t weight_bytes() const { return weight_bytes_; }  // one packed B

 private:
  static void fill(dnnl::memory& mem, float v) {
    const dnnl::memory::desc md = mem.get_desc();
    const std::size_t bytes = md.get_size();
    if (md.data_type() == dt::f32) {
      auto* p = static_cast<float*>(mem.get_data_handle());
      for (std::size_t i = 0; i < bytes / sizeof(float); ++i) p[i] = v;
    } else {  // bf16: the upper half of the f32 bit pattern
      auto* p = static_cast<std::uint16_t*>(mem.get_data_handle());
      const std::uint16_t h = kiln::f32_to_bf16(v);
      for (std::size_t i = 0; i < bytes / sizeof(std::uint16_t); ++i) p[i] = h;
    }
  }

  dnnl::engine eng_;
  dnnl::stream strm_;
  dnnl::matmul prim_;
  dnnl::memory a_, c_, bias_;
  std::vector<dnnl::memory> b_;
  std::unordered_map<int, dnnl::memory> args_;
  std::string impl_;
  std::size_t weight_bytes_ = 0;
};

// Console output plus, at the end, each "<case>/<impl>" benchmark's time relative to
// "<case>/direct" with the same arguments. Uses the median aggregate when repetitions are on.
class RatioReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& r : runs) {
      if (r.error_occurred) continue;
      const bool single = r.run_type == Run::RT_Iteration && r.repetitions <= 1;
      const bool median = r.run_type == Run::RT_Aggregate && r.aggregate_name == "median";
      if (!single && !median) continue;
      const std::string& fn = r.run_name.function_name;
      const std::size_t slash = fn.rfind('/');
      if (slash == std::string::npos) continue;
      Entry& e = cases_[{fn.substr(0, slash), r.run_name.args}][fn.substr(slash + 1)];
      e.time = r.GetAdjustedRealTime();
      e.cpu = r.GetAdjustedCPUTime();
      e.unit = benchmark::GetTimeUnitString(r.time_unit);
      for (const auto& [name, counter] : r.counters) e.counters[name] = counter.value;
    }
  }
  void Finalize() override {
    std::FILE* out = stdout;
    bool header = false;
    for (const auto& [key, impls] : cases_) {
      auto base = impls.find("direct");
      if (base == impls.end() || impls.size() < 2) continue;
      if (!header) {
        std::fprintf(out,
                     "\nKiln vs direct oneDNN (medians when repeated; ratio = time / direct's; "
                     "speed = direct's time / time)\n");
        std::fprintf(out, "%-26s %-11s %-14s %13s %7s %7s %13s %7s\n", "case", "args", "impl",
                     "real time", "ratio", "speed", "CPU time", "ratio");
        header = true;
      }
      for (const auto& [impl, e] : impls) {
        const double ratio = e.time / base->second.time;
        const double cpu_ratio = e.cpu / base->second.cpu;
        std::fprintf(out, "%-26s %-11s %-14s %10.3f %-2s %7.3f %6.1f%% %10.3f %-2s %7.3f\n",
                     key.first.c_str(), key.second.c_str(), impl.c_str(), e.time, e.unit.c_str(),
                     ratio, 100.0 / ratio, e.cpu, e.unit.c_str(), cpu_ratio);
      }
    }
    std::fflush(out);
  }

 private:
  struct Entry {
    double time = 0;  // real
    double cpu = 0;
    std::string unit;
    std::map<std::string, double> counters;
  };
  std::map<std::pair<std::string, std::string>, std::map<std::string, Entry>> cases_;
};

// Runs the registered benchmarks; with the default console format, prints the ratio table too.
inline int run_main(int argc, char** argv) {
  bool console = true;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--benchmark_format=", 19) == 0) {
      console = std::strcmp(argv[i] + 19, "console") == 0;
    }
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  if (console) {
    RatioReporter reporter;
    benchmark::RunSpecifiedBenchmarks(&reporter);
  } else {
    benchmark::RunSpecifiedBenchmarks();
  }
  benchmark::Shutdown();
  return 0;
}

}  // namespace kiln_bench

#define KILN_BENCH_MAIN()                    \
  int main(int argc, char** argv) {          \
    return kiln_bench::run_main(argc, argv); \
  }
