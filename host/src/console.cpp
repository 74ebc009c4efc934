#include "console.hpp"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <ctime>
#include <iostream>

#include "kiln/context.hpp"
#include "text.hpp"

namespace kiln::host {

namespace {
std::string timestamp() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}
}  // namespace

Console::Console() : tty_(::isatty(STDERR_FILENO) == 1) {
  set_log_sink([this](LogLevel level, const std::string& m) {
    emit(level == LogLevel::warn ? "warning" : level == LogLevel::error ? "error" : "", m);
  });
}

Console::~Console() {
  set_log_sink({});
  std::lock_guard<std::mutex> lock(mutex_);
  clear_status_locked();
}

void Console::open_log(const std::filesystem::path& path) {
  std::lock_guard<std::mutex> lock(mutex_);
  log_.open(path, std::ios::app);
  if (log_) {
    log_ << early_;
    log_.flush();
  }
  early_.clear();
}

void Console::close_log() {
  std::lock_guard<std::mutex> lock(mutex_);
  log_.close();
}

void Console::clear_status_locked() {
  if (!status_.empty()) {
    std::cerr << "\r\033[K" << std::flush;
    status_.clear();
  }
}

void Console::emit(const std::string& level, const std::string& message) {
  std::lock_guard<std::mutex> lock(mutex_);
  const std::string line = (level.empty() ? "" : level + ": ") + message;
  const std::string logged = timestamp() + " " + line + "\n";
  if (log_.is_open()) {
    log_ << logged;
    log_.flush();
  } else {
    early_ += logged;
  }
  if (quiet_ && level.empty()) return;
  const std::string keep = status_;
  clear_status_locked();
  std::cerr << "kiln: " << line << "\n";
  if (!keep.empty()) {
    std::cerr << keep << std::flush;
    status_ = keep;
  }
}

void Console::info(const std::string& message) {
  emit("", message);
}
void Console::warn(const std::string& message) {
  emit("warning", message);
}
void Console::error(const std::string& message) {
  emit("error", message);
}

void Console::status(const std::string& line) {
  if (!tty_) return;
  std::lock_guard<std::mutex> lock(mutex_);
  std::cerr << "\r\033[K" << line << std::flush;
  status_ = line;
}

void Console::out(const std::string& text) {
  std::lock_guard<std::mutex> lock(mutex_);
  const std::string keep = status_;
  clear_status_locked();
  std::cout << text << std::flush;
  if (!keep.empty()) {
    std::cerr << keep << std::flush;
    status_ = keep;
  }
}

Progress::Progress(Console& console, std::string label, std::int64_t total, std::string unit,
                   std::int64_t start)
    : console_(console),
      label_(std::move(label)),
      unit_(std::move(unit)),
      total_(total),
      start_(start),
      done_(start),
      t0_(std::chrono::steady_clock::now()),
      last_draw_(t0_ - std::chrono::seconds(1)) {}

Progress::~Progress() {
  finish();
}

double Progress::rate() const {
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
  return s > 0 ? static_cast<double>(done_ - start_) / s : 0.0;
}

std::string Progress::eta() const {
  const double r = rate();
  if (r <= 0 || done_ <= start_) return "?";
  return format_duration(static_cast<double>(total_ - done_) / r);
}

std::string Progress::figures() const {
  char buf[160];
  const double r = rate();
  std::snprintf(buf, sizeof buf, "%lld/%lld %ss, %.2f %ss/s", static_cast<long long>(done_),
                static_cast<long long>(total_), unit_.c_str(), r, unit_.c_str());
  std::string s = buf;
  if (items_per_unit_ > 0) {
    std::snprintf(buf, sizeof buf, ", %.1f %s/s", r * items_per_unit_, items_name_.c_str());
    s += buf;
  }
  s += ", ETA " + eta();
  if (!extra_.empty()) s += ", " + extra_;
  return s;
}

void Progress::update(std::int64_t done, const std::string& extra, double items_per_unit,
                      const std::string& items_name) {
  done_ = done;
  extra_ = extra;
  items_per_unit_ = items_per_unit;
  items_name_ = items_name;
  if (!console_.is_tty()) return;
  const auto now = std::chrono::steady_clock::now();
  if (done_ < total_ && now - last_draw_ < std::chrono::milliseconds(100)) return;
  last_draw_ = now;
  const int width = 24;
  const double frac = total_ > 0 ? static_cast<double>(done_) / static_cast<double>(total_) : 1.0;
  const int filled = static_cast<int>(std::lround(frac * width));
  std::string bar = label_ + " [" + std::string(static_cast<std::size_t>(filled), '#') +
                    std::string(static_cast<std::size_t>(width - filled), '.') + "] " + figures();
  console_.status(bar);
}

void Progress::log_line(const std::string& extra) {
  if (!extra.empty()) extra_ = extra;
  console_.info(label_ + ": " + figures());
}

void Progress::finish() {
  if (finished_) return;
  finished_ = true;
  console_.status("");
}

}  // namespace kiln::host
