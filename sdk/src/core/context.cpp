#include "kiln/context.hpp"

#include <malloc.h>
#include <omp.h>
#include <unistd.h>

#include <atomic>
#include <iostream>
#include <memory>
#include <mutex>
#include <thread>

#include <oneapi/tbb/global_control.h>

#include "kiln/dnnl_interop.hpp"

namespace kiln {
namespace {

struct ComputeState {
  ComputeState() {
    // Keep large freed blocks in the heap instead of returning them to the OS on every free:
    // training loops allocate the same big activations each step, and mmap/munmap page faults
    // would otherwise dominate (see ../shared/peers/README.md, "Environment").
    mallopt(M_MMAP_THRESHOLD, 256 << 20);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
    mallopt(M_TOP_PAD, 64 << 20);
    engine = dnnl::engine(dnnl::engine::kind::cpu, 0);
    stream = dnnl::stream(engine);
    set(ThreadBudget{hardware_threads(), 1});
  }

  void set(const ThreadBudget& b) {
    std::lock_guard<std::mutex> lock(mutex);
    budget = b;
    budget.compute_threads = std::max(1, budget.compute_threads);
    budget.io_threads = std::max(1, budget.io_threads);
    tbb_control.reset();
    tbb_control = std::make_unique<oneapi::tbb::global_control>(
        oneapi::tbb::global_control::max_allowed_parallelism,
        static_cast<std::size_t>(std::max(budget.compute_threads, budget.io_threads)));
    omp_set_num_threads(budget.compute_threads);
    generation.fetch_add(1, std::memory_order_release);
  }

  std::mutex mutex;
  ThreadBudget budget;
  std::unique_ptr<oneapi::tbb::global_control> tbb_control;
  // Bumped by every set(); each thread compares it with the value it last applied. Atomic
  // because compute threads read it (on every primitive call) while another thread may set it.
  std::atomic<int> generation{0};
  dnnl::engine engine;
  dnnl::stream stream;
};

ComputeState& state() {
  static ComputeState s;
  return s;
}

struct LogState {
  std::mutex mutex;
  LogSink sink;
  LogLevel level = LogLevel::info;
};
LogState& log_state() {
  static LogState s;
  return s;
}

// The budget generation and thread count last applied to this thread's OpenMP settings.
struct AppliedBudget {
  int generation = -1;
  int threads = 1;
};
thread_local AppliedBudget applied;

}  // namespace

int hardware_threads() {
  const unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

void set_thread_budget(const ThreadBudget& budget) {
  state().set(budget);  // also sets this thread's OpenMP team size
  AppliedBudget& a = applied;
  a.generation = state().generation.load(std::memory_order_acquire);
  a.threads = thread_budget().compute_threads;
}

void set_num_threads(int n) {
  if (n <= 0) n = hardware_threads();
  set_thread_budget(ThreadBudget{n, n});
}

ThreadBudget thread_budget() {
  return state().budget;
}
int num_threads() {
  return state().budget.compute_threads;
}

int apply_thread_budget_to_this_thread() {
  ComputeState& s = state();
  AppliedBudget& a = applied;
  const int generation = s.generation.load(std::memory_order_acquire);
  if (a.generation != generation) {
    {
      std::lock_guard<std::mutex> lock(s.mutex);
      a.threads = s.budget.compute_threads;
    }
    omp_set_num_threads(a.threads);
    a.generation = generation;
  }
  return a.threads;
}

dnnl::engine& dnnl_engine() {
  return state().engine;
}

dnnl::stream& dnnl_stream() {
  // One stream per thread: oneDNN streams are not meant to be shared between threads that
  // execute concurrently (the host computes on one thread but tests may use several).
  thread_local dnnl::stream s(state().engine);
  return s;
}

void set_log_sink(LogSink sink) {
  std::lock_guard<std::mutex> lock(log_state().mutex);
  log_state().sink = std::move(sink);
}

void set_log_level(LogLevel level) {
  log_state().level = level;
}

void log(LogLevel level, const std::string& message) {
  LogState& s = log_state();
  if (static_cast<int>(level) < static_cast<int>(s.level)) return;
  std::lock_guard<std::mutex> lock(s.mutex);
  if (s.sink) {
    s.sink(level, message);
    return;
  }
  static const char* names[] = {"debug", "info", "warning", "error"};
  std::cerr << "kiln: " << names[static_cast<int>(level)] << ": " << message << "\n";
}

}  // namespace kiln
