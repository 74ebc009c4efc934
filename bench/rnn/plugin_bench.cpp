// Kiln's side of the B4 char-LSTM workload (/work/shared/peers/README.md), measured through the
// rnn plugin's own tasks: Embedding(96, 64) -> LSTM(64 -> 512, 2 layers) -> Linear(512 -> 96).
//
//   train_step_b32_t128  rnn/train's train_step on batches of 32 x 128 characters, zero initial
//                        state (shuffled windows, so no state is carried), mean cross-entropy,
//                        backward, Adam lr 2e-3, no clipping (step/s)
//   sample_bN            rnn/generate: prime with one character, then 256 characters per
//                        sequence, multinomial over softmax(logits / 1.0) through the SDK's
//                        decoding chain, N sequences in lock-step (chars/s)
//
// Timing as bench/peers/char_lstm.py: warm-up calls untimed, samples of >= 50 ms, the median of
// --reps samples with the worst and best. One JSON line per point.
//
//   build/bench_rnn_plugin [--reps 7] [--threads 2] [--points train,sample_b1,sample_b32]
//                          [--bf16 | --int8]
// --bf16 runs the tasks as a pipeline with [compute] precision = "bf16" would: sampling computes
// the LSTM in bf16. --int8 samples with rnn/generate's quantize = "int8" (the LSTM on u8/s8
// primitives). Training is f32 either way.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include <unistd.h>

#include "kiln/context.hpp"
#include "kiln/data.hpp"
#include "kiln/safetensors.hpp"
#include "model.hpp"
#include "tasks.hpp"

namespace {

namespace fs = std::filesystem;

class BenchContext final : public kiln::TaskContext {
 public:
  BenchContext(fs::path d, kiln::DType precision) : dir_(std::move(d)), precision_(precision) {}
  std::string stage_id() const override { return "bench"; }
  fs::path work_dir() const override { return dir_; }
  std::uint64_t seed() const override { return 0; }
  kiln::DType precision() const override { return precision_; }
  void progress(std::int64_t, std::int64_t, const std::string&) override {}
  bool cancelled() const override { return false; }
  void stream_text(std::string_view) override {}

 private:
  fs::path dir_;
  kiln::DType precision_;
};

struct Timing {
  double median, worst, best;
  double cpu;  // median process CPU seconds per call (all threads)
};

Timing measure(const std::function<void()>& fn, int reps, int warmup = 2) {
  using clock = std::chrono::steady_clock;
  for (int i = 0; i < warmup; ++i) fn();
  auto t0 = clock::now();
  fn();
  const double one = std::chrono::duration<double>(clock::now() - t0).count();
  const int inner = one < 0.05 ? static_cast<int>(std::ceil(0.05 / std::max(one, 1e-9))) : 1;
  std::vector<double> s, c;
  for (int r = 0; r < reps; ++r) {
    const std::clock_t c0 = std::clock();
    t0 = clock::now();
    for (int i = 0; i < inner; ++i) fn();
    s.push_back(std::chrono::duration<double>(clock::now() - t0).count() / inner);
    c.push_back(static_cast<double>(std::clock() - c0) / CLOCKS_PER_SEC / inner);
  }
  std::sort(s.begin(), s.end());
  std::sort(c.begin(), c.end());
  return {s[s.size() / 2], s.back(), s.front(), c[c.size() / 2]};
}

void report(const char* metric, const char* unit, double per_call, const Timing& t,
            const char* precision) {
  const char* policy = std::getenv("OMP_WAIT_POLICY");
  std::printf(
      "{\"impl\": \"kiln\", \"workload\": \"char_lstm\", \"metric\": \"%s\", \"unit\": \"%s\", "
      "\"value\": %.6g, \"worst\": %.6g, \"best\": %.6g, \"cpu_s_per_call\": %.6g, "
      "\"per_call\": %.6g, \"threads\": %d, \"precision\": \"%s\", \"omp_wait_policy\": \"%s\"}\n",
      metric, unit, per_call / t.median, per_call / t.worst, per_call / t.best, t.cpu, per_call,
      kiln::num_threads(), precision, policy ? policy : "");
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  int reps = 7, threads = 2;
  bool bf16 = false, int8 = false;
  std::string points = "train,sample_b1,sample_b32";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--bf16" || a == "--int8") {
      (a == "--bf16" ? bf16 : int8) = true;
      continue;
    }
    if (i + 1 >= argc) break;
    if (a == "--reps") reps = std::atoi(argv[++i]);
    if (a == "--threads") threads = std::atoi(argv[++i]);
    if (a == "--points") points = argv[++i];
  }
  kiln::set_num_threads(threads);
  const fs::path dir = fs::temp_directory_path() / ("kiln_rnn_bench_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  // 96 distinct printable characters, pseudo-random: the vocabulary of the workload.
  std::string text;
  kiln::Philox rng(1, 0, 0);
  for (int i = 0; i < 32 * 128 * 8 + 1; ++i) text += static_cast<char>(32 + rng.below(95));
  text += '\n';  // 95 printable + newline = 96
  { std::ofstream(dir / "text.txt", std::ios::binary) << text; }
  BenchContext ctx(dir, bf16 ? kiln::DType::bf16 : kiln::DType::f32);
  using PV = kiln::ParamValue;
  const kiln::Params tp = kiln::Params::resolve(
      kiln_rnn::train_param_specs(), kiln::Params({{"data", PV((dir / "text.txt").string())},
                                                   {"embed", PV(std::int64_t{64})},
                                                   {"hidden", PV(std::int64_t{512})},
                                                   {"layers", PV(std::int64_t{2})},
                                                   {"seq_len", PV(std::int64_t{128})},
                                                   {"streams", PV(std::int64_t{32})},
                                                   {"lr", PV(2e-3)},
                                                   {"clip", PV(0.0)},
                                                   {"val_fraction", PV(0.0)}}));
  auto task = kiln_rnn::make_train_task(tp, ctx);
  kiln::TrainTask& train = *task->as_train();
  kiln::data::DataLoader loader(train.train_data(),
                                {.batch_size = 32, .shuffle = true, .seed = 3, .prefetch = 0});
  std::int64_t step = 0;
  if (points.find("train") != std::string::npos) {
    const Timing t = measure(
        [&] {
          const std::int64_t b = step % loader.batches_per_epoch();
          train.train_step(loader.get(0, b), {step, 0, b, 5});
          ++step;
        },
        reps);
    report("train_step_b32_t128", "step/s", 1.0, t, "f32");
  }
  const kiln::Checkpoint model = train.export_model();
  kiln::save_safetensors(dir / "model.safetensors", model.tensors, model.metadata);
  for (std::int64_t n : {1, 32}) {
    if (points.find("sample_b" + std::to_string(n)) == std::string::npos) continue;
    const kiln::Params gp = kiln::Params::resolve(
        kiln_rnn::generate_param_specs(),
        kiln::Params({{"model", PV((dir / "model.safetensors").string())},
                      {"prompt", PV(std::string("a"))},
                      {"include_prompt", PV(false)},
                      {"max_tokens", PV(std::int64_t{256})},
                      {"quantize", PV(std::string(int8 ? "int8" : "none"))}}));
    auto g = kiln_rnn::make_generate_task(gp, ctx);
    std::vector<std::int64_t> idx;
    for (std::int64_t i = 0; i < n; ++i) idx.push_back(i);
    std::uint64_t seed = 0;
    const Timing t = measure([&] { g->as_generate()->generate({idx, seed++}); }, reps, 1);
    report(("sample_b" + std::to_string(n)).c_str(), "char/s", 256.0 * static_cast<double>(n), t,
           int8   ? "int8"
           : bf16 ? "bf16"
                  : "f32");
  }
  std::error_code ec;
  fs::remove_all(dir, ec);
  return 0;
}
