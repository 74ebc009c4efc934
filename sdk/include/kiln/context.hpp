// Process-wide compute settings: the thread budget and the logger.
//
//   kiln::set_num_threads(2);                  // oneDNN's OpenMP team and TBB share 2 threads
//   kiln::log_info("loaded ", n, " images");   // through the host's sink when one is set
//
// Debian's oneDNN runs its primitives on OpenMP; Kiln's own kernels and the host's I/O run on
// TBB. One budget bounds both so the cores are never oversubscribed: the compute thread's OpenMP
// team gets `compute_threads`, and TBB's global arena `io_threads` (see ThreadBudget).
#pragma once

#include <functional>
#include <string>

#include "kiln/error.hpp"
#include "kiln/export.hpp"

namespace kiln {

struct ThreadBudget {
  int compute_threads = 1;  // OpenMP threads per oneDNN primitive, and TBB width of Kiln's kernels
  int io_threads = 1;       // extra TBB concurrency for loading, encoding and writing
};

// Sets the budget; n <= 0 means "all cores". Safe to call again.
KILN_API void set_num_threads(int n);
KILN_API void set_thread_budget(const ThreadBudget& budget);
KILN_API ThreadBudget thread_budget();
KILN_API int num_threads();
KILN_API int hardware_threads();
// Applies the OpenMP part of the budget to the calling thread (OpenMP settings are per thread)
// and returns its compute thread count. Kiln's primitive wrappers call it; a thread that calls
// oneDNN directly should too.
KILN_API int apply_thread_budget_to_this_thread();

enum class LogLevel : int { debug = 0, info = 1, warn = 2, error = 3 };
using LogSink = std::function<void(LogLevel, const std::string&)>;
KILN_API void set_log_sink(LogSink sink);  // empty sink = stderr
KILN_API void set_log_level(LogLevel level);
KILN_API void log(LogLevel level, const std::string& message);

template <typename... Args>
void log_info(const Args&... args) {
  log(LogLevel::info, detail::concat(args...));
}
template <typename... Args>
void log_warn(const Args&... args) {
  log(LogLevel::warn, detail::concat(args...));
}
template <typename... Args>
void log_debug(const Args&... args) {
  log(LogLevel::debug, detail::concat(args...));
}

}  // namespace kiln
