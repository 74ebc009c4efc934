// How Kiln's hand-written kernels and oneDNN's OpenMP primitives share the cores.
//
//   build/bench/bench_threading_bench --benchmark_repetitions=5 --benchmark_min_time=0.3
//   build/bench/bench_threading_bench --omp_wait_policy=passive ...   # re-runs itself with
//                                                                      # OMP_WAIT_POLICY=passive
//
// Debian's oneDNN parallelises each primitive with OpenMP (libgomp), whose worker threads keep
// spinning for a while after a parallel region ends; Kiln's element-wise kernels used TBB. The
// workload is a realistic alternation, four layers of
//     h = linear(x, W, b)  ->  h = h + r  ->  x = relu(h)          (x, h, r: [batch, width])
// where linear and relu are oneDNN primitives called through Kiln and the add is the variable:
//   kiln    ops::add as the SDK runs it (detail::parallel_range)
//   serial  one plain loop on the calling thread
//   tbb     tbb::parallel_for over chunks of >= kGrain elements (what parallel_range used to do)
//   omp     an OpenMP parallel for over the same chunks (the team oneDNN's primitives use)
// Each case is timed per step (12 ops) at 2 threads and 1 (the `threads` argument), and the
// "direct" impl of each case is the same sequence with the add left out, so the add's
// effective cost is (impl - direct). Two more measurements explain the results: fork_join (an
// empty OpenMP parallel region) and relu_size (a bare oneDNN relu on 16 to 1M floats).
// --omp_wait_policy / --gomp_spincount set the libgomp environment variables and re-execute the
// program, since libgomp reads them when it loads.
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <oneapi/tbb/parallel_for.h>

#include "bench_common.hpp"
#include "kiln/autograd.hpp"
#include "kiln/ops.hpp"

namespace {

using kiln::Tensor;

constexpr int kLayers = 4;
constexpr std::int64_t kGrain = 8192;  // elements per chunk for the tbb and omp adds

enum class AddKind { none, kiln, serial, tbb, omp };

Tensor add_with(AddKind kind, const Tensor& a, const Tensor& b) {
  if (kind == AddKind::kiln) return kiln::ops::add(a, b);
  Tensor out = Tensor::empty(a.shape());
  const float* pa = a.data<float>();
  const float* pb = b.data<float>();
  float* po = out.data<float>();
  const std::int64_t n = a.numel();
  const auto body = [&](std::int64_t s, std::int64_t e) {
    for (std::int64_t i = s; i < e; ++i) po[i] = pa[i] + pb[i];
  };
  const std::int64_t chunks = (n + kGrain - 1) / kGrain;
  if (kind == AddKind::serial || chunks <= 1) {
    body(0, n);
  } else if (kind == AddKind::tbb) {
    oneapi::tbb::parallel_for(
        oneapi::tbb::blocked_range<std::int64_t>(0, n, kGrain),
        [&](const oneapi::tbb::blocked_range<std::int64_t>& r) { body(r.begin(), r.end()); });
  } else {
#pragma omp parallel for schedule(static)
    for (std::int64_t c = 0; c < chunks; ++c) body(c * kGrain, std::min(n, (c + 1) * kGrain));
  }
  return out;
}

void sequence(benchmark::State& state, std::int64_t batch, std::int64_t width, AddKind kind) {
  kiln_bench::use_threads(state.range(0));
  kiln::NoGradGuard ng;
  std::vector<Tensor> ws, bs;
  for (int l = 0; l < kLayers; ++l) {
    ws.push_back(kiln_bench::random_tensor({width, width}, kiln::DType::f32, 10 + l) *
                 (1.f / static_cast<float>(width)));
    bs.push_back(kiln_bench::random_tensor({width}, kiln::DType::f32, 20 + l));
  }
  const Tensor x0 = kiln_bench::random_tensor({batch, width}, kiln::DType::f32, 1);
  const Tensor r = kiln_bench::random_tensor({batch, width}, kiln::DType::f32, 2);
  const auto step = [&] {
    Tensor x = x0;
    for (int l = 0; l < kLayers; ++l) {
      Tensor h =
          kiln::ops::linear(x, ws[static_cast<std::size_t>(l)], bs[static_cast<std::size_t>(l)]);
      if (kind != AddKind::none) h = add_with(kind, h, r);
      x = kiln::ops::relu(h);
    }
    return x;
  };
  benchmark::DoNotOptimize(step().raw_data());
  for (auto _ : state) benchmark::DoNotOptimize(step().raw_data());
  state.counters["ops"] = kLayers * (kind == AddKind::none ? 2 : 3);
}

// The cost of one OpenMP fork/join on this machine: an empty parallel region on the team.
void BM_fork_join(benchmark::State& state) {
  kiln_bench::use_threads(state.range(0));
  const int threads = static_cast<int>(state.range(0));
  int sink = 0;
  for (auto _ : state) {
#pragma omp parallel num_threads(threads)
    {
#pragma omp atomic
      sink++;
    }
  }
  benchmark::DoNotOptimize(sink);
}

// A bare oneDNN relu on n floats, called directly (oneDNN opens a parallel region for it at any
// size): where 2 threads start to pay for their fork/join.
void BM_relu_size(benchmark::State& state) {
  kiln_bench::use_threads(state.range(0));
  const dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  dnnl::stream strm(eng);
  const dnnl::memory::desc md({state.range(1)}, dnnl::memory::data_type::f32,
                              dnnl::memory::format_tag::a);
  const dnnl::eltwise_forward prim(dnnl::eltwise_forward::primitive_desc(
      dnnl::eltwise_forward::desc(dnnl::prop_kind::forward_inference, dnnl::algorithm::eltwise_relu,
                                  md, 0.f, 0.f),
      eng));
  dnnl::memory src(md, eng), dst(md, eng);
  std::memset(src.get_data_handle(), 0, md.get_size());
  const std::unordered_map<int, dnnl::memory> args{{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, dst}};
  for (auto _ : state) {
    prim.execute(strm, args);
    strm.wait();
  }
}

void register_all() {
  benchmark::RegisterBenchmark("fork_join", BM_fork_join)
      ->ArgName("threads")
      ->Arg(2)
      ->Arg(1)
      ->UseRealTime();
  benchmark::RegisterBenchmark("relu_size", BM_relu_size)
      ->ArgNames({"threads", "floats"})
      ->ArgsProduct({{2, 1}, {16, 4096, 65536, 131072, 262144, 1048576}})
      ->UseRealTime();
  struct Size {
    std::int64_t batch, width;
  };
  const struct {
    const char* name;
    AddKind kind;
  } impls[] = {{"direct", AddKind::none},
               {"kiln", AddKind::kiln},
               {"serial", AddKind::serial},
               {"tbb", AddKind::tbb},
               {"omp", AddKind::omp}};
  for (Size s : {Size{1, 512}, Size{64, 512}, Size{256, 1024}, Size{1024, 1024}}) {
    for (const auto& impl : impls) {
      const std::string name =
          "seq_b" + std::to_string(s.batch) + "_w" + std::to_string(s.width) + "/" + impl.name;
      benchmark::RegisterBenchmark(name.c_str(), sequence, s.batch, s.width, impl.kind)
          ->Apply(kiln_bench::thread_args)
          ->UseRealTime()
          ->Unit(benchmark::kMicrosecond);
    }
  }
}

// --omp_wait_policy=X / --gomp_spincount=N: sets the variable and re-executes this program (once:
// the second run finds it set) so that libgomp, which reads its environment when it is loaded,
// sees it.
void apply_libgomp_flags(int argc, char** argv) {
  bool reexec = false;
  for (int i = 1; i < argc; ++i) {
    for (const auto& [flag, var] :
         {std::pair<const char*, const char*>{"--omp_wait_policy=", "OMP_WAIT_POLICY"},
          {"--gomp_spincount=", "GOMP_SPINCOUNT"}}) {
      const std::size_t len = std::strlen(flag);
      if (std::strncmp(argv[i], flag, len) != 0) continue;
      const char* want = argv[i] + len;
      const char* have = std::getenv(var);
      if (have == nullptr || std::strcmp(have, want) != 0) {
        setenv(var, want, 1);
        reexec = true;
      }
      benchmark::AddCustomContext(var, want);
    }
  }
  if (reexec) {
    execv("/proc/self/exe", argv);
    std::perror("threading_bench: re-executing with the libgomp settings failed");
    std::exit(1);
  }
}

}  // namespace

int main(int argc, char** argv) {
  apply_libgomp_flags(argc, argv);
  // The libgomp flags are ours: hide them from Google Benchmark's parser.
  std::vector<char*> args;
  for (int i = 0; i < argc; ++i) {
    if (std::strncmp(argv[i], "--omp_wait_policy=", 18) != 0 &&
        std::strncmp(argv[i], "--gomp_spincount=", 17) != 0) {
      args.push_back(argv[i]);
    }
  }
  int n = static_cast<int>(args.size());
  args.push_back(nullptr);
  register_all();
  return kiln_bench::run_main(n, args.data());
}
