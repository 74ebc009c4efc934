// Weight streaming from transparent huge pages against 4 KiB pages, in one process.
//
// GPT-2 small's decoding linears at batch 1 (12 layers of qkv 2304x768, proj 768x768,
// fc 3072x768 and fc2 768x3072, then the 50257x768 lm_head: 124 M weights) are allocated twice,
// once with KILN_HUGE_PAGES=0 (the SDK's Storage leaves them on 4 KiB pages) and once without
// (it advises them into huge pages, docs/pipelines.md "Memory"). The two sets are then run in
// turns, so that the machine's changing memory bandwidth affects both alike; each line is the
// mean of 5 passes over each set, in GB/s of weights read (1e9 B/s). Then, per weight shape (24
// weights of each layer shape, 2 of the lm_head, 3 passes), the rate of weights advised where
// malloc put them and of weights moved by kiln::to_streaming_memory (2 MiB-aligned): a short
// weight streams as fast as the long lm_head only when it starts on a page boundary.
//
//   OMP_NUM_THREADS=2 build/bench/bench_huge_pages_bench [--rounds 6] [--threads 2]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "kiln/autograd.hpp"
#include "kiln/context.hpp"
#include "kiln/ops.hpp"

namespace {

using kiln::DType;
using kiln::Tensor;

std::vector<Tensor> decode_weights(DType dt) {
  std::vector<Tensor> w;
  for (int l = 0; l < 12; ++l) {
    for (const auto& [n, k] : {std::pair{2304, 768}, {768, 768}, {3072, 768}, {768, 3072}}) {
      w.push_back(Tensor::full({n, k}, 1e-3f, dt));
    }
  }
  w.push_back(Tensor::full({50257, 768}, 1e-3f, dt));
  return w;
}

// One pass: every weight once against a single row of x. Returns GB/s of weights.
double pass(const std::vector<Tensor>& ws) {
  kiln::NoGradGuard no_grad;
  static const Tensor x768 = Tensor::full({1, 768}, 1.f), x3072 = Tensor::full({1, 3072}, 1.f);
  double bytes = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (const Tensor& w : ws) {
    const Tensor y = kiln::ops::linear(w.size(1) == 768 ? x768 : x3072, w);
    bytes += static_cast<double>(w.numel()) * (w.dtype() == DType::bf16 ? 2.0 : 4.0);
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return bytes / s * 1e-9;
}

// GB/s of 3 passes over `ws` (one shape), after one untimed pass.
double shape_rate(const std::vector<Tensor>& ws) {
  pass(ws);
  return (pass(ws) + pass(ws) + pass(ws)) / 3;
}

}  // namespace

int main(int argc, char** argv) {
  int rounds = 6, threads = 2;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--rounds") rounds = std::atoi(argv[i + 1]);
    if (a == "--threads") threads = std::atoi(argv[i + 1]);
  }
  kiln::set_num_threads(threads);
  // Every set stays allocated to the end: a freed set's heap memory keeps the page size it was
  // first touched with, and a later set placed there would measure that instead of its own.
  std::vector<std::vector<Tensor>> keep;
  for (const DType dt : {DType::f32, DType::bf16}) {
    setenv("KILN_HUGE_PAGES", "0", 1);
    const std::vector<Tensor> small = decode_weights(dt);
    unsetenv("KILN_HUGE_PAGES");
    const std::vector<Tensor> huge = decode_weights(dt);
    pass(small);  // warm-up: packs nothing, but wakes the team and faults nothing in later
    pass(huge);
    const char* name = dt == DType::f32 ? "f32" : "bf16";
    for (int r = 0; r < rounds; ++r) {
      double a = 0, b = 0;
      for (int i = 0; i < 5; ++i) {
        a += pass(small);
        b += pass(huge);
      }
      std::printf("%-4s 4 KiB pages %5.1f GB/s   huge pages %5.1f GB/s   ratio %.3f\n", name, a / 5,
                  b / 5, b / a);
      std::fflush(stdout);
    }
    keep.push_back(small);
    keep.push_back(huge);
  }
  for (const auto& [n, k] :
       {std::pair{2304, 768}, {768, 768}, {3072, 768}, {768, 3072}, {50257, 768}}) {
    std::vector<Tensor> ws, moved;
    for (int i = 0; i < (n == 50257 ? 2 : 24); ++i) {
      ws.push_back(Tensor::full({n, k}, 1e-3f));
      moved.push_back(Tensor::full({n, k}, 1e-3f));
      kiln::to_streaming_memory(moved.back());
    }
    double where = 0, aligned = 0;
    for (int r = 0; r < 4; ++r) {  // in turns, as above
      where += shape_rate(ws) / 4;
      aligned += shape_rate(moved) / 4;
    }
    std::printf(
        "f32  %5dx%-5d huge pages where malloc put them %5.1f GB/s   "
        "to_streaming_memory %5.1f GB/s\n",
        n, k, where, aligned);
    std::fflush(stdout);
    keep.push_back(std::move(ws));
    keep.push_back(std::move(moved));
  }
  return 0;
}
