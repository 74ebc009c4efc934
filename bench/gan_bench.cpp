// DCGAN side of the B1/B2 peer workloads (/work/shared/peers/README.md), timed with the peers'
// protocol (warm-up, samples of >= 50 ms, median of 7): generator inference at batch 64 (img/s)
// and the training step at batch 64 (step/s), the step being the gan plugin's own dcgan_step.
// Prints one JSON line, like bench/peers/dcgan.py bench; bench/gan_side_by_side.sh runs both.
//   build/bench/bench_gan_bench [--samples N] [--threads N] [--bf16]
// --bf16 runs the generator's inference as `gan/generate` does under [compute] precision =
// "bf16" (the training step stays f32, as the plugin's train task does).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <functional>
#include <vector>

#include "kiln/autograd.hpp"
#include "kiln/context.hpp"
#include "kiln/optim.hpp"
#include "kiln/random.hpp"
#include "model.hpp"

namespace {

struct Rate {
  double median, worst, best;
  double cpu_per_call;  // process CPU seconds per call over the timed samples
};

Rate timed(const std::function<void()>& fn, int samples) {
  using clock = std::chrono::steady_clock;
  for (int i = 0; i < 2; ++i) fn();
  auto t0 = clock::now();
  fn();
  const double one = std::chrono::duration<double>(clock::now() - t0).count();
  const int inner = std::max(1, static_cast<int>(0.05 / std::max(one, 1e-9)));
  std::vector<double> rates;
  const std::clock_t c0 = std::clock();
  for (int s = 0; s < samples; ++s) {
    t0 = clock::now();
    for (int i = 0; i < inner; ++i) fn();
    rates.push_back(inner / std::chrono::duration<double>(clock::now() - t0).count());
  }
  const double cpu = static_cast<double>(std::clock() - c0) / CLOCKS_PER_SEC / (samples * inner);
  std::sort(rates.begin(), rates.end());
  return {rates[rates.size() / 2], rates.front(), rates.back(), cpu};
}

}  // namespace

int main(int argc, char** argv) {
  int samples = 7, threads = 1;
  bool bf16 = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--bf16") == 0) bf16 = true;
    if (i + 1 == argc) break;
    if (std::strcmp(argv[i], "--samples") == 0) samples = std::atoi(argv[i + 1]);
    if (std::strcmp(argv[i], "--threads") == 0) threads = std::atoi(argv[i + 1]);
  }
  kiln::set_num_threads(threads);  // the whole budget: OpenMP team and Kiln's TBB kernels
  kiln::Generator gen(0);
  kiln_gan::GanSizes s;  // nz 100, ngf = ndf = 64, unconditional: the workload
  kiln_gan::Generator g(s, gen);
  kiln_gan::Discriminator d(s, gen);
  kiln_gan::dcgan_init(g, gen);
  kiln_gan::dcgan_init(d, gen);
  const kiln::Tensor z = kiln::Tensor::randn({64, 100}, gen);
  const kiln::Tensor none = kiln::Tensor::zeros({64}, kiln::DType::s64);
  g.eval();
  Rate infer;
  {
    kiln::NoGradGuard ng;
    if (bf16) g.set_compute_dtype(kiln::DType::bf16);
    infer = timed([&] { g.forward(z, none); }, samples);
    g.set_compute_dtype(kiln::DType::f32);
  }
  kiln::optim::Adam og(g.named_parameters(), {.lr = 2e-4f, .beta1 = 0.5f, .beta2 = 0.999f});
  kiln::optim::Adam od(d.named_parameters(), {.lr = 2e-4f, .beta1 = 0.5f, .beta2 = 0.999f});
  const kiln::Tensor real = kiln::Tensor::rand({64, 1, 28, 28}, gen, -1.f, 1.f);
  const kiln::Tensor zt = kiln::Tensor::randn({64, 100}, gen);
  const Rate train = timed(
      [&] {
        kiln_gan::StepLosses l = kiln_gan::dcgan_step(g, d, og, od, real, none, zt, false);
        (void)l.loss_g.item();
      },
      samples);
  std::printf(
      "{\"G_infer_b64_img_s\": [%.1f, %.1f, %.1f], \"train_step_b64_step_s\": [%.3f, %.3f, "
      "%.3f], \"G_infer_b64_cpu_s\": %.4f, \"train_step_b64_cpu_s\": %.4f, \"G_precision\": "
      "\"%s\"}\n",
      64 * infer.median, 64 * infer.worst, 64 * infer.best, train.median, train.worst, train.best,
      infer.cpu_per_call, train.cpu_per_call, bf16 ? "bf16" : "f32");
  return 0;
}
