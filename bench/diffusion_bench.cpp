// The diffusion plugin's U-Net on workload B6 (../shared/peers/README.md): 64/128/256 channels at
// 28/14/7, two residual blocks down and three up, attention at 7x7, 15.72 M parameters.
//   denoise: one ancestral DDPM step at batch 64, t = 500, without autograd (eps prediction and
//            the update x' = (x - beta / sqrt(1 - ab) eps) / sqrt(alpha) + sigma z)
//   train:   one training step at batch 64: t ~ U{0..999}, eps ~ N(0, 1), MSE, backward, Adam 2e-4
//
//   build/bench/bench_diffusion_bench [--threads 2] [--reps 3] [--bf16] [--what denoise|train|both]
//
// Prints one JSON line per measurement (median, worst and best of `reps` calls after one warm-up
// call). bench/diffusion_compare.py runs this and bench/peers/ddpm.py in alternating rounds and
// prints the ratios.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "../plugins/diffusion/schedule.cpp"  // the plugin's model itself (it exports no symbols)
#include "../plugins/diffusion/unet.cpp"
#include "kiln/autograd.hpp"
#include "kiln/context.hpp"
#include "kiln/ops.hpp"
#include "kiln/optim.hpp"
#include "kiln/random.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using kiln::Tensor;
namespace ops = kiln::ops;

template <typename F>
void measure(const std::string& name, int reps, int threads, long params, F&& f) {
  f();  // warm-up: primitives created
  std::vector<double> s;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = Clock::now();
    f();
    s.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
  }
  std::vector<double> sorted = s;
  std::sort(sorted.begin(), sorted.end());
  std::printf(
      "{\"workload\": \"ddpm\", \"case\": \"%s\", \"threads\": %d, \"params\": %ld, "
      "\"median_s\": %.6f, \"worst_s\": %.6f, \"best_s\": %.6f}\n",
      name.c_str(), threads, params, sorted[sorted.size() / 2], sorted.back(), sorted.front());
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 2, reps = 3, batch = 64;
  bool bf16 = false;
  std::string what = "both";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--threads" && i + 1 < argc)
      threads = std::atoi(argv[++i]);
    else if (a == "--reps" && i + 1 < argc)
      reps = std::atoi(argv[++i]);
    else if (a == "--batch" && i + 1 < argc)
      batch = std::atoi(argv[++i]);
    else if (a == "--what" && i + 1 < argc)
      what = argv[++i];
    else if (a == "--bf16")
      bf16 = true;
    else {
      std::fprintf(
          stderr,
          "usage: %s [--threads N] [--reps N] [--batch N] [--bf16] [--what denoise|train|both]\n",
          argv[0]);
      return 2;
    }
  }
  kiln::set_num_threads(threads);
  kiln::Generator gen(0);
  diffusion::UNet net({.in_channels = 1,
                       .image_size = 28,
                       .channels = 64,
                       .channel_mult = {1, 2, 4},
                       .res_blocks = 2,
                       .groups = 32,
                       .attention = true,
                       .num_classes = 0},
                      gen);
  if (bf16) net.set_compute_dtype(kiln::DType::bf16);
  const long params = static_cast<long>(net.num_parameters());
  const diffusion::Schedule sched = diffusion::Schedule::make("linear", 1000);
  const std::string suffix = "_b" + std::to_string(batch) + (bf16 ? "_bf16" : "_f32");
  const Tensor x = Tensor::randn({batch, 1, 28, 28}, gen);
  std::vector<std::int64_t> idx(static_cast<std::size_t>(batch));
  for (int i = 0; i < batch; ++i) idx[static_cast<std::size_t>(i)] = i;

  if (what == "denoise" || what == "both") {
    std::uint64_t call = 0;
    measure("denoise_step" + suffix, reps, threads, params, [&] {
      kiln::NoGradGuard ng;
      const std::int64_t t = 500;
      const Tensor eps = net.forward(x, std::vector<float>(static_cast<std::size_t>(batch), 500.f));
      const double a = sched.alpha(t), ab = sched.alpha_bar(t), abp = sched.alpha_bar(t - 1);
      const Tensor mean = ops::mul_scalar(
          ops::sub(x, ops::mul_scalar(eps, static_cast<float>((1 - a) / std::sqrt(1 - ab)))),
          static_cast<float>(1 / std::sqrt(a)));
      const double sigma = std::sqrt((1 - abp) / (1 - ab) * (1 - a));
      const Tensor z = kiln::randn_for_samples(idx, {1, 28, 28}, ++call, 1);
      return ops::add(mean, ops::mul_scalar(z, static_cast<float>(sigma)));
    });
  }
  if (what == "train" || what == "both") {
    kiln::optim::Adam opt(net.named_parameters(), {.lr = 2e-4f});
    kiln::Philox rng(7);
    const Tensor x0 = ops::clamp(x, -1.f, 1.f);
    measure("train_step" + suffix, reps, threads, params, [&] {
      std::vector<float> tf;
      std::vector<float> a, b;
      for (int i = 0; i < batch; ++i) {
        const auto t = static_cast<std::int64_t>(rng.below(1000));
        tf.push_back(static_cast<float>(t));
        a.push_back(static_cast<float>(std::sqrt(sched.alpha_bar(t))));
        b.push_back(static_cast<float>(std::sqrt(1 - sched.alpha_bar(t))));
      }
      Tensor eps = Tensor::empty({batch, 1, 28, 28});
      rng.fill_normal(eps.data<float>(), eps.numel());
      const Tensor xt = ops::add(ops::mul(x0, Tensor::from_vector(a, {batch, 1, 1, 1})),
                                 ops::mul(eps, Tensor::from_vector(b, {batch, 1, 1, 1})));
      opt.zero_grad();
      const Tensor loss = ops::mse_loss(net.forward(xt, tf), eps);
      loss.backward();
      opt.step();
    });
  }
  return 0;
}
