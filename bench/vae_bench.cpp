// The vae plugin's model on workload B3 (../shared/peers/README.md): training step at batch 128
// (forward, BCE-with-logits + KL, backward, Adam lr 1e-3) and decode at batch 256
// (sigmoid(decoder(z)) without autograd), on synthetic data of the real shapes.
//
//   build/bench/bench_vae_bench [--threads 2] [--reps 7] [--what train|decode|both]
//
// Prints one JSON line per measurement: the median and the worst/best of `reps` samples, each
// sample timing enough back-to-back calls to last >= 0.2 s (after warm-up), and the median rate
// per second of process CPU time (less sensitive to other jobs on a shared machine).
// bench/vae_compare.py runs this and bench/peers/vae.py side by side and prints the ratios.
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "../plugins/vae/model.cpp"  // the plugin's model itself (the plugin exports no symbols)
#include "kiln/autograd.hpp"
#include "kiln/context.hpp"
#include "kiln/ops.hpp"
#include "kiln/optim.hpp"
#include "kiln/random.hpp"

namespace {

using Clock = std::chrono::steady_clock;

double cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

template <typename F>
void measure(const char* name, const char* unit, double per_call, int reps, F&& f) {
  for (int i = 0; i < 3; ++i) f();  // warm-up: primitives created, caches filled
  int inner = 1;
  for (;;) {
    const auto t0 = Clock::now();
    for (int i = 0; i < inner; ++i) f();
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    if (s >= 0.2) break;
    inner *= 2;
  }
  std::vector<double> rates, cpu_rates;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = Clock::now();
    const double c0 = cpu_seconds();
    for (int i = 0; i < inner; ++i) f();
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    rates.push_back(per_call * inner / s);
    cpu_rates.push_back(per_call * inner / (cpu_seconds() - c0));
  }
  std::sort(rates.begin(), rates.end());
  std::sort(cpu_rates.begin(), cpu_rates.end());
  std::printf(
      "{\"impl\": \"kiln\", \"metric\": \"%s\", \"unit\": \"%s\", \"median\": %.4g, "
      "\"worst\": %.4g, \"best\": %.4g, \"per_cpu_second\": %.4g, \"threads\": %d}\n",
      name, unit, rates[rates.size() / 2], rates.front(), rates.back(),
      cpu_rates[cpu_rates.size() / 2], kiln::num_threads());
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 2, reps = 7;
  std::string what = "both";
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--threads")) threads = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--reps")) reps = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--what")) what = argv[i + 1];
  }
  kiln::set_num_threads(threads);
  using namespace kiln;
  vae::Config cfg;  // latent 32, channels {32, 64}, 1x28x28, Bernoulli, beta 1
  vae::Model model(cfg, 0);
  std::printf("{\"params\": %lld}\n", static_cast<long long>(model.num_parameters()));
  Generator gen(1);
  if (what != "decode") {
    const Tensor x = Tensor::rand({128, 1, 28, 28}, gen);
    optim::Adam opt(model.named_parameters(), {.lr = 1e-3f});
    std::vector<std::int64_t> rows(128);
    for (int r = 0; r < 128; ++r) rows[static_cast<std::size_t>(r)] = r;
    std::uint64_t step = 0;
    measure("train_step_b128", "step/s", 1.0, reps, [&] {
      opt.zero_grad();
      const vae::Encoded e = model.encode(x);
      const Tensor eps = randn_for_samples(rows, {cfg.latent}, step++, 0);
      const Tensor out = model.decoder->forward(model.reparameterize(e, eps));
      Tensor loss = model.objective(model.loss_terms(out, x, e));
      loss.backward();
      opt.step();
    });
  }
  if (what != "train") {
    NoGradGuard ng;
    const Tensor z = Tensor::randn({256, cfg.latent}, gen);
    measure("decode_b256", "img/s", 256.0, reps, [&] {
      Tensor y = model.decode_mean(z).contiguous();
      (void)y;
    });
  }
  return 0;
}
