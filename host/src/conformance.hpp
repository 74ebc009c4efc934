// The plugin conformance suite: written once, run against every plugin (tests/host, and
// `kiln check-plugin FILE.so` for third-party authors).
//
//   ConformanceReport r = check_plugin("build/plugins/kiln_vae.so", {});
//   std::cout << r.to_text();   // PASS/FAIL/SKIP per check, with details
//   bool ok = r.passed();
//
// Checks: the descriptor and loading; self-description (names, help texts, every default passes
// its own ParamSpec::check, no clash with host keys); an unknown task and missing required
// parameters are refused with kiln::Error; each task's smallest case runs (with the settings the
// plugin declares through KILN_PLUGIN_CONFORMANCE, see plugin.hpp): train steps give a finite
// loss, the same seed gives bitwise the same state, state() -> load_state() continues exactly,
// export_model() carries the kiln.* metadata; generate returns one well-formed artifact per
// index, the same for the same (seed, index) whatever the batch; run is deterministic; every
// error is a kiln::Error; and plugin, task and library can be destroyed in every order.
#pragma once

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace kiln::host {

struct CheckResult {
  enum class Status { pass, fail, skip };
  std::string name;
  Status status = Status::pass;
  std::string detail;
};

struct ConformanceReport {
  std::filesystem::path file;
  std::string plugin;  // "name version", when it loaded
  bool loaded = false;
  std::vector<CheckResult> checks;
  bool passed() const;
  std::string to_text() const;
};

struct ConformanceOptions {
  // Runs destruction order `order` where a crash cannot take the suite down (another process);
  // returns whether it completed, with what went wrong in `detail`. Empty: run in this process.
  std::function<bool(int order, std::string& detail)> lifetime_runner;
};

ConformanceReport check_plugin(const std::filesystem::path& file, const ConformanceOptions& opts);

// Destruction orders of {library handle, plugin, task}: 6 permutations.
int lifetime_order_count();
std::string lifetime_order_name(int order);
// Loads the plugin, creates a plugin reference and a task, and drops them in order `order`,
// using what remains after each drop. Returns normally when all went well; a lifetime bug
// crashes the process (which is why it runs isolated).
void run_lifetime_order(const std::filesystem::path& file, int order);
// Runs `exe check-plugin --lifetime-order <order> <file>` and reports whether it exited with 0.
bool run_lifetime_in_subprocess(const std::string& exe, const std::filesystem::path& file,
                                int order, std::string& detail);

}  // namespace kiln::host
