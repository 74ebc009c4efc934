// The host's errors and exit codes.
//
//   0   success
//   1   runtime error: a stage failed (the plugin threw, a file could not be written, NaN loss)
//   2   usage or pipeline error: bad command line, invalid TOML, unknown key, bad value, missing
//       input file
//   3   plugin error: a plugin cannot be loaded (not a library, no Kiln entry points, another ABI
//       version, its factory throws)
//   130 interrupted (Ctrl-C); a checkpoint or the finished samples were kept
#pragma once

#include <stdexcept>
#include <string>

namespace kiln::host {

enum ExitCode : int {
  kExitOk = 0,
  kExitRuntime = 1,
  kExitUsage = 2,
  kExitPlugin = 3,
  kExitInterrupted = 130,
};

// An error that ends the command with `code`; what() is the complete message for a person.
class HostError : public std::runtime_error {
 public:
  HostError(int code, const std::string& message) : std::runtime_error(message), code_(code) {}
  int code() const { return code_; }

 private:
  int code_;
};

inline HostError usage_error(const std::string& m) {
  return HostError(kExitUsage, m);
}
inline HostError pipeline_error(const std::string& m) {
  return HostError(kExitUsage, m);
}
inline HostError plugin_error(const std::string& m) {
  return HostError(kExitPlugin, m);
}
inline HostError runtime_error(const std::string& m) {
  return HostError(kExitRuntime, m);
}

}  // namespace kiln::host
