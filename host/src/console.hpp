// Where the host's messages go: stderr (with a live progress bar on a terminal) and the run's
// log.txt. SDK and plugin log messages (kiln::log_info ...) are routed here too.
//
//   Console console;                         // detects whether stderr is a terminal
//   console.open_log(run_dir / "log.txt");
//   console.info("stage 'train' (vae/train): 937 steps");
//   Progress bar(console, "train", total, "step");
//   bar.update(done, "loss 0.31");           // redraws at most 10 times a second on a terminal,
//                                            // or logs a line every `log_every` calls otherwise
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>

namespace kiln::host {

class Console {
 public:
  Console();
  ~Console();
  Console(const Console&) = delete;
  Console& operator=(const Console&) = delete;

  bool is_tty() const { return tty_; }
  void set_quiet(bool q) { quiet_ = q; }
  // Appends to `path` from now on (also what was logged before, so the log is complete).
  void open_log(const std::filesystem::path& path);
  void close_log();

  void info(const std::string& message);
  void warn(const std::string& message);
  void error(const std::string& message);
  // The live status line (terminal only); "" clears it.
  void status(const std::string& line);
  // Text for stdout (streamed samples), kept apart from the status line.
  void out(const std::string& text);

 private:
  void emit(const std::string& level, const std::string& message);
  void clear_status_locked();
  std::mutex mutex_;
  bool tty_ = false;
  bool quiet_ = false;
  std::ofstream log_;
  std::string early_;   // messages before the log file was opened
  std::string status_;  // the status line currently drawn
};

// Progress of one stage: a bar with rate and ETA on a terminal, plain lines otherwise.
class Progress {
 public:
  Progress(Console& console, std::string label, std::int64_t total, std::string unit,
           std::int64_t start = 0);
  ~Progress();
  // `done` units so far (absolute), `extra` appended (e.g. "loss 0.314"), `items` per unit for a
  // second rate (e.g. samples per step; 0 for none).
  void update(std::int64_t done, const std::string& extra = "", double items_per_unit = 0,
              const std::string& items_name = "");
  // A plain log line with the same figures (used at log intervals when not on a terminal).
  void log_line(const std::string& extra = "");
  void finish();
  double rate() const;  // units per second since start
  std::string eta() const;

 private:
  std::string figures() const;
  Console& console_;
  std::string label_, unit_;
  std::int64_t total_, start_, done_;
  double items_per_unit_ = 0;
  std::string items_name_;
  std::string extra_;
  std::chrono::steady_clock::time_point t0_, last_draw_;
  bool finished_ = false;
};

}  // namespace kiln::host
