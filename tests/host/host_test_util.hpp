// Helpers for the host tests: running the real `kiln` binary, pipelines in temporary folders,
// comparing output trees.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "kiln/file_io.hpp"
#include "sha256.hpp"
#include "support/test_support.hpp"

extern char** environ;

namespace kiln::host::test {
namespace fs = std::filesystem;

inline const fs::path kKilnExe = KILN_EXE;
inline const fs::path kTestPluginDir = KILN_TEST_PLUGIN_DIR;
inline const fs::path kBrokenPluginDir = KILN_BROKEN_PLUGIN_DIR;

struct Result {
  int code = -1;         // exit status, or 128 + signal
  std::string out, err;  // stdout and stderr
  std::string all() const { return out + err; }
};

// The environment for kiln: this process's, with KILN_PLUGIN_PATH set to the test plugins
// (unless `env` says otherwise; an empty value removes the variable).
inline std::vector<std::string> make_env(const std::map<std::string, std::string>& env) {
  std::map<std::string, std::string> vars;
  for (char** e = environ; *e; ++e) {
    const std::string kv = *e;
    const auto eq = kv.find('=');
    if (eq != std::string::npos) vars[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  vars["KILN_PLUGIN_PATH"] = kTestPluginDir.string();
  for (const auto& [k, v] : env) vars[k] = v;
  std::vector<std::string> out;
  for (const auto& [k, v] : vars) {
    if (!v.empty()) out.push_back(k + "=" + v);
  }
  return out;
}

class Process {
 public:
  Process(const std::vector<std::string>& args, const fs::path& out_dir,
          const std::map<std::string, std::string>& env = {})
      : out_(out_dir / ("stdout-" + std::to_string(counter()) + ".txt")),
        err_(out_dir / ("stderr-" + std::to_string(counter()++) + ".txt")) {
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, out_.c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, err_.c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    std::vector<std::string> argv_s = {kKilnExe.string()};
    argv_s.insert(argv_s.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : argv_s) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::vector<std::string> env_s = make_env(env);
    std::vector<char*> envp;
    for (auto& e : env_s) envp.push_back(e.data());
    envp.push_back(nullptr);
    const int rc =
        posix_spawn(&pid_, argv_s[0].c_str(), &actions, nullptr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) throw std::runtime_error("cannot start kiln: " + std::string(std::strerror(rc)));
  }
  ~Process() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      wait();
    }
  }
  pid_t pid() const { return pid_; }
  void signal(int sig) { ::kill(pid_, sig); }
  // Waits (at most `timeout_s`, then kills) and returns the result.
  Result wait(double timeout_s = 120) {
    Result r;
    if (pid_ <= 0) return r;
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
    int status = 0;
    while (true) {
      const pid_t w = ::waitpid(pid_, &status, WNOHANG);
      if (w == pid_) break;
      if (std::chrono::steady_clock::now() > deadline) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &status, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    pid_ = -1;
    r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    r.out = slurp(out_);
    r.err = slurp(err_);
    return r;
  }
  static std::string slurp(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

 private:
  static int& counter() {
    static int c = 0;
    return c;
  }
  fs::path out_, err_;
  pid_t pid_ = -1;
};

// Runs kiln to completion; stdout/stderr are kept in `scratch`.
inline Result run_kiln(const std::vector<std::string>& args, const fs::path& scratch,
                       const std::map<std::string, std::string>& env = {}, double timeout_s = 120) {
  Process p(args, scratch, env);
  return p.wait(timeout_s);
}

inline fs::path write_text(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

inline std::string read_text(const fs::path& path) {
  return Process::slurp(path);
}

// Relative path -> SHA-256 of every regular file under `dir`, except those whose relative path
// starts with one of `skip`.
inline std::map<std::string, std::string> tree_digest(const fs::path& dir,
                                                      const std::vector<std::string>& skip = {}) {
  std::map<std::string, std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    const std::string rel = fs::relative(e.path(), dir).string();
    bool skipped = false;
    for (const auto& s : skip) skipped = skipped || rel.rfind(s, 0) == 0;
    if (!skipped) out[rel] = sha256_file_hex(e.path());
  }
  return out;
}

inline std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream ss(text);
  std::string line;
  while (std::getline(ss, line)) out.push_back(line);
  return out;
}

// Polls until `pred` holds or `timeout_s` passes.
template <typename Pred>
bool wait_until(Pred pred, double timeout_s = 30) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return pred();
}

inline bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// A scratch folder with a pipeline of the test plugin in it, run by the real kiln.
class KilnTest : public ::testing::Test {
 protected:
  // <scratch>/<file>: `head` (e.g. "[pipeline]\nseed = 5\n"), then a [[stage]] of the test
  // plugin with `id` and `task`, then `body` (its keys, and possibly more stages).
  fs::path test_pipeline(const std::string& file, const std::string& head, const std::string& id,
                         const std::string& task, const std::string& body) {
    return write_text(dir_ / file, head + "[[stage]]\nid = \"" + id +
                                       "\"\nplugin = \"test\"\ntask = \"" + task + "\"\n" + body);
  }
  Result kiln(const std::vector<std::string>& args,
              const std::map<std::string, std::string>& env = {}) {
    return run_kiln(args, dir_.path(), env);
  }
  // With the run folder set to `run_dir`.
  Result kiln(std::vector<std::string> args, const fs::path& run_dir) {
    args.push_back("--set");
    args.push_back("pipeline.run_dir=" + run_dir.string());
    return run_kiln(args, dir_.path());
  }
  kiln::test::TempDir dir_;
};

}  // namespace kiln::host::test
