#include "runtime.hpp"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <oneapi/tbb/global_control.h>

#include "host_error.hpp"
#include "kiln/file_io.hpp"
#include "kiln/version.hpp"
#include "text.hpp"

namespace kiln::host {
namespace fs = std::filesystem;

// ------------------------------------------------------------------------------ threads

ThreadPlan plan_threads(int threads) {
  const int n = std::max(1, threads);
  // Loading, encoding and writing are a small share of the work: one TBB thread is enough. It
  // gets a thread of its own from three threads on (samples of a batch are encoded in parallel
  // on the I/O arena when it has more than one thread). With one or two, taking a thread from
  // compute would halve it, and running the I/O thread beside a full OpenMP team oversubscribes the
  // cores: OpenMP threads spin at their barriers, so one preempted team member stalls the whole
  // team (the slowest of three layouts in every measured series; docs/pipelines.md, "Threads").
  // Then I/O runs on the compute thread between batches instead.
  // Large budgets give I/O one thread in eight, so encoding big images keeps up with compute.
  ThreadPlan plan;
  plan.budget.io_threads = std::max(1, n / 8);
  plan.budget.compute_threads = n >= 3 ? n - plan.budget.io_threads : n;
  plan.overlap_io = n >= 3;
  return plan;
}

// ------------------------------------------------------------------------------ Ctrl-C

namespace {
std::atomic<bool> g_interrupted{false};

extern "C" void on_sigint(int) {
  if (g_interrupted.exchange(true)) {
    static const char msg[] = "\nkiln: interrupted again, quitting at once\n";
    [[maybe_unused]] auto n = ::write(STDERR_FILENO, msg, sizeof msg - 1);
    ::_exit(kExitInterrupted);
  }
  static const char msg[] =
      "\nkiln: stopping at the next safe point and keeping the work done (Ctrl-C again to quit "
      "at once)\n";
  [[maybe_unused]] auto n = ::write(STDERR_FILENO, msg, sizeof msg - 1);
}
}  // namespace

void install_interrupt_handler() {
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
}

bool interrupted() {
  return g_interrupted.load(std::memory_order_relaxed);
}
void reset_interrupted() {
  g_interrupted = false;
}

// ------------------------------------------------------------------------------ TaskContext

HostTaskContext::HostTaskContext(const Pipeline& p, const StageConfig& s, Console& console)
    : pipeline_(p), stage_(s), console_(console) {}

HostTaskContext::~HostTaskContext() = default;

fs::path HostTaskContext::work_dir() const {
  const fs::path d = stage_.out_dir / "work";
  std::error_code ec;
  fs::create_directories(d, ec);
  KILN_CHECK(!ec, "cannot create the work folder '", d.string(), "': ", ec.message());
  return d;
}

DType HostTaskContext::precision() const {
  return parse_dtype(pipeline_.precision);
}

void HostTaskContext::progress(std::int64_t done, std::int64_t total, const std::string& unit) {
  if (!progress_ || total != progress_total_ || unit != progress_unit_) {
    progress_ = std::make_unique<Progress>(console_, stage_.id, total, unit);
    progress_total_ = total;
    progress_unit_ = unit;
  }
  progress_->update(done);
  if (!console_.is_tty() && total > 0) {
    // Plain lines at every tenth of the way.
    const std::int64_t step = std::max<std::int64_t>(1, total / 10);
    if (done % step == 0 || done == total) progress_->log_line();
  }
  if (done >= total) progress_.reset();
}

void HostTaskContext::stream_text(std::string_view chunk) {
  if (stage_.host.has("stream") && stage_.host.boolean("stream")) console_.out(std::string(chunk));
}

// ------------------------------------------------------------------------------ helpers

int remove_stale_temporaries(const fs::path& dir) {
  int removed = 0;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    // kiln::AtomicFile's temporaries: ".<name>.tmp-<pid>-<counter>".
    const std::string name = it->path().filename().string();
    const auto tmp = name.rfind(".tmp-");
    if (name.size() < 2 || name[0] != '.' || tmp == std::string::npos || tmp == 0) continue;
    const auto dash = name.find('-', tmp + 5);
    if (dash == std::string::npos) continue;
    const auto pid_digits = parse_digits(std::string_view(name).substr(tmp + 5, dash - tmp - 5));
    if (!pid_digits || !parse_digits(std::string_view(name).substr(dash + 1))) continue;
    const auto pid = static_cast<pid_t>(*pid_digits);
    if (pid == ::getpid() || ::kill(pid, 0) == 0 || errno == EPERM) continue;  // still writing
    std::error_code rm;
    if (fs::remove(it->path(), rm)) ++removed;
  }
  return removed;
}

std::string params_json_relative(const Params& params, const TaskSpec& spec,
                                 const fs::path& run_dir) {
  Params out = params;
  for (const ParamSpec& ps : spec.params) {
    if (ps.type != ParamType::path || !params.has(ps.name)) continue;
    const fs::path v(params.string(ps.name));
    const fs::path rel = v.lexically_relative(run_dir);
    if (!rel.empty() && *rel.begin() != "..") out.set(ps.name, rel.string());
  }
  return out.to_json();
}

// ------------------------------------------------------------------------------ the run

int run_pipeline(const Pipeline& p, const RunOptions& opts, Console& console) {
  const ThreadPlan plan = plan_threads(p.threads);
  set_thread_budget(plan.budget);

  try {
    std::error_code ec;
    fs::create_directories(p.run_dir, ec);
    if (ec) {
      throw runtime_error("cannot create the run folder '" + p.run_dir.string() +
                          "': " + ec.message() +
                          "; choose another [pipeline] run_dir or fix the permissions");
    }
    try {
      write_file_atomic(p.run_dir / "pipeline.resolved.toml", p.resolved_toml());
    } catch (const Error& e) {
      throw runtime_error("the run folder '" + p.run_dir.string() + "' is not writable (" +
                          e.what() + "); choose another [pipeline] run_dir or fix the permissions");
    }
  } catch (const HostError& e) {
    console.error(e.what());
    return e.code();
  }
  console.open_log(p.run_dir / "log.txt");
  console.info("kiln " KILN_VERSION_STRING ": pipeline '" + p.name + "' (" + p.file.string() +
               "), " + std::to_string(p.stages.size()) + " stage" +
               (p.stages.size() == 1 ? "" : "s") + ", " + std::to_string(p.threads) +
               " threads (compute " + std::to_string(plan.budget.compute_threads) +
               (plan.overlap_io ? ", I/O " + std::to_string(plan.budget.io_threads) + " alongside"
                                : ", I/O between batches") +
               "), run folder " + p.run_dir.string());
  install_interrupt_handler();

  for (const StageConfig& s : p.stages) {
    if (interrupted()) {
      console.info("interrupted before " + s.label() + "; run again with --resume to continue");
      return kExitInterrupted;
    }
    int code = kExitOk;
    try {
      std::error_code ec;
      fs::create_directories(s.out_dir, ec);
      if (ec) {
        throw runtime_error("cannot create the output folder '" + s.out_dir.string() +
                            "': " + ec.message());
      }
      console.info(s.label() + ": starting");
      HostTaskContext ctx(p, s, console);
      std::shared_ptr<Task> task;
      try {
        task = s.plugin->create_task(s.task_name, s.params, ctx);
      } catch (const Error& e) {
        throw runtime_error(s.label() + ": the plugin could not set up the task: " + e.what());
      }
      StageRun run{p, s, console, opts, plan, *task};
      switch (s.kind()) {
        case TaskKind::train:
          KILN_CHECK(task->as_train() != nullptr, "plugin '", s.plugin_name, "' declared task '",
                     s.task_name, "' as a train task but created another kind");
          code = run_train_stage(run);
          break;
        case TaskKind::generate:
          KILN_CHECK(task->as_generate() != nullptr, "plugin '", s.plugin_name, "' declared task '",
                     s.task_name, "' as a generate task but created another kind");
          code = run_generate_stage(run);
          break;
        case TaskKind::run:
          KILN_CHECK(task->as_run() != nullptr, "plugin '", s.plugin_name, "' declared task '",
                     s.task_name, "' as a run task but created another kind");
          code = run_task_stage(run);
          break;
      }
      task.reset();  // before its context
    } catch (const HostError& e) {
      const std::string msg = e.what();
      console.error(msg.find(s.label()) != std::string::npos ? msg : s.label() + " failed: " + msg);
      return e.code();
    } catch (const Error& e) {
      console.error(s.label() + " failed: " + e.what());
      return kExitRuntime;
    } catch (const std::exception& e) {
      console.error(s.label() + " failed with an unexpected error: " + e.what() +
                    " (plugins should report problems with kiln::Error)");
      return kExitRuntime;
    } catch (...) {
      console.error(s.label() + " failed with an exception that is not a std::exception");
      return kExitRuntime;
    }
    if (code == kExitInterrupted) {
      console.info(
          "interrupted: the work done so far is kept; run again with --resume to "
          "continue");
      return code;
    }
    console.info(s.label() + ": done, outputs in " + s.out_dir.string());
  }
  console.info("pipeline '" + p.name + "' finished");
  return kExitOk;
}

}  // namespace kiln::host
