// Running a validated pipeline: the thread budget, Ctrl-C, the task context given to plugins, and
// the three stage runtimes (training, generation, one-shot runs).
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include "console.hpp"
#include "kiln/context.hpp"
#include "kiln/plugin.hpp"
#include "pipeline.hpp"

namespace kiln::host {

struct RunOptions {
  bool resume = false;
  std::int64_t shard_index = 0;  // --shard i/n
  std::int64_t shard_count = 1;
};

// How a budget of `threads` is used: oneDNN's OpenMP team (compute) and, when there is a thread
// to spare, one TBB thread that loads batches and encodes and writes samples while compute runs.
// OpenMP and TBB threads together never exceed the budget. See docs/pipelines.md, "Threads".
struct ThreadPlan {
  ThreadBudget budget;
  bool overlap_io = false;  // false: loading and writing run on the compute thread, in turn
};
ThreadPlan plan_threads(int threads);

// Ctrl-C: the first SIGINT sets the flag (stages stop at the next safe point, keep their work
// and exit 130); a second one ends the process at once.
void install_interrupt_handler();
bool interrupted();
void reset_interrupted();  // tests

// The TaskContext the host gives to every task.
class HostTaskContext final : public TaskContext {
 public:
  HostTaskContext(const Pipeline& p, const StageConfig& s, Console& console);
  ~HostTaskContext() override;
  std::string stage_id() const override { return stage_.id; }
  std::filesystem::path work_dir() const override;
  std::uint64_t seed() const override { return stage_.seed; }
  DType precision() const override;
  void progress(std::int64_t done, std::int64_t total, const std::string& unit) override;
  bool cancelled() const override { return interrupted(); }
  void stream_text(std::string_view chunk) override;

 private:
  const Pipeline& pipeline_;
  const StageConfig& stage_;
  Console& console_;
  std::unique_ptr<Progress> progress_;
  std::int64_t progress_total_ = -1;
  std::string progress_unit_;
};

// What every stage runtime gets.
struct StageRun {
  const Pipeline& pipeline;
  const StageConfig& stage;
  Console& console;
  const RunOptions& options;
  const ThreadPlan& threads;
  Task& task;
};

// Each returns kExitOk or kExitInterrupted, and throws HostError / kiln::Error on failure.
int run_train_stage(StageRun& r);
int run_generate_stage(StageRun& r);
int run_task_stage(StageRun& r);

// Loads nothing: `p` is validated. Creates the run folder, writes the resolved pipeline and the
// log, runs the stages in order and returns the exit code (errors are printed, not thrown).
int run_pipeline(const Pipeline& p, const RunOptions& opts, Console& console);

// Removes the temporaries kiln::AtomicFile leaves when a process dies mid-write
// (".<name>.tmp-<pid>-<n>") from `dir`, unless that process is still running (a shard writing to
// the same folder). Returns how many were removed.
int remove_stale_temporaries(const std::filesystem::path& dir);

// Parameters as JSON for manifests and checkpoints: path values inside `run_dir` are written
// relative to it, so two runs of the same pipeline in different folders record the same text.
std::string params_json_relative(const Params& params, const TaskSpec& spec,
                                 const std::filesystem::path& run_dir);

}  // namespace kiln::host
