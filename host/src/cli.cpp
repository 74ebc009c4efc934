#include "cli.hpp"

#include <algorithm>
#include <cstdlib>
#include <iomanip>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <oneapi/tbb/version.h>
#include <oneapi/dnnl/dnnl.hpp>

#include "conformance.hpp"
#include "console.hpp"
#include "host_error.hpp"
#include "host_keys.hpp"
#include "kiln/version.hpp"
#include "pipeline.hpp"
#include "plugin_loader.hpp"
#include "runtime.hpp"
#include "text.hpp"

namespace kiln::host {
namespace fs = std::filesystem;

namespace {

const char* kUsage = R"(kiln - generative models on the CPU

Usage:
  kiln run PIPELINE.toml [--set STAGE.KEY=VALUE]... [--resume] [--shard I/N] [--threads N]
  kiln validate PIPELINE.toml [--set STAGE.KEY=VALUE]... [--threads N]
  kiln plugins [--path DIR]...
  kiln inspect PLUGIN [--path DIR]...
  kiln check-plugin FILE.so
  kiln --version
  kiln help [COMMAND]          (or: kiln COMMAND --help)

Plugins are searched in the pipeline's [plugins] paths, KILN_PLUGIN_PATH (folders separated by
':'), the build tree (when kiln runs from it) and <prefix>/lib/kiln/plugins.

Exit codes: 0 success, 1 a stage failed, 2 usage or pipeline error, 3 plugin error,
130 interrupted. See docs/cli.md and docs/pipelines.md.
)";

const std::map<std::string, std::string> kHelp = {
    {"run", R"(kiln run PIPELINE.toml [options]

Validates the pipeline, then runs its stages in order. Outputs go to the run folder
([pipeline] run_dir, default runs/<name> next to the file): one folder per stage, plus
pipeline.resolved.toml and log.txt.

Options:
  --set STAGE.KEY=VALUE  override a key of a stage (or pipeline.KEY, compute.KEY); VALUE is
                         read as TOML (3, 0.5, true, [1, 2], "text"), or as a string otherwise.
                         Repeatable.
  --resume               continue an interrupted run: training from its newest checkpoint
                         (bit-exactly), generation by skipping samples whose files verify
                         against the manifest, finished run stages are skipped.
  --shard I/N            generate only the samples whose index % N == I (0 <= I < N); the
                         shards together make exactly the unsharded samples.
  --threads N            threads for compute and I/O (0: all cores); overrides [compute].
  --quiet                only warnings and errors on stderr (log.txt has everything).

Ctrl-C stops at the next safe point (after the current step or batch), keeps a checkpoint or
the finished samples, and exits with 130; --resume continues.
)"},
    {"validate", R"(kiln validate PIPELINE.toml [--set STAGE.KEY=VALUE]... [--threads N]

Loads the plugins the pipeline names and checks every key against their declared parameters,
that input files and folders exist and that "@stage" references name earlier stages. Runs
nothing and writes nothing. Exit 0 when the pipeline is valid, 2 (or 3 for a plugin that
cannot load) otherwise, with every problem listed as FILE:LINE:COLUMN: message.
)"},
    {"plugins", R"(kiln plugins [--path DIR]...

Lists the plugins found in the search folders (plus each --path DIR, searched first): name,
version, family, tasks and file, then plugins that cannot be loaded with the reason, and
plugins hidden by one of the same name in an earlier folder.
)"},
    {"inspect", R"(kiln inspect PLUGIN [--path DIR]...

Prints a plugin's description, its tasks and, for each task, every parameter (type, default,
range or choices, help) and the keys the host owns for that kind of task. PLUGIN is a name
found in the search folders or the path of a .so file.
)"},
    {"check-plugin", R"(kiln check-plugin FILE.so

Runs the plugin conformance suite on a plugin file: descriptor, self-description, parameter
defaults, refusal of bad parameters, a tiny run of every task (with the parameters the plugin
declares through KILN_PLUGIN_CONFORMANCE), determinism, state round trips, errors reported as
kiln::Error, and object lifetimes in every destruction order. Exit 0 when every check passes,
1 when one fails, 3 when the file cannot be loaded at all.
)"},
};

struct Args {
  std::string command;
  std::vector<std::string> positional;
  std::vector<std::string> sets;
  std::vector<std::string> paths;
  bool resume = false;
  bool quiet = false;
  bool help = false;
  std::optional<int> threads;
  std::int64_t shard_index = 0, shard_count = 1;
  std::string lifetime_order;  // internal: check-plugin's isolated lifetime runs
};

std::int64_t parse_int(const std::string& s, const std::string& what) {
  std::size_t used = 0;
  long long v = 0;
  try {
    v = std::stoll(s, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != s.size())
    throw usage_error(what + " expects an integer, got '" + s + "'");
  return v;
}

Args parse_args(int argc, char** argv) {
  Args a;
  std::vector<std::string> args(argv + 1, argv + argc);
  const std::vector<std::string> commands = {"run",     "validate",     "plugins",
                                             "inspect", "check-plugin", "help"};
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string arg = args[i];
    std::string value;
    bool has_value = false;
    if (arg.rfind("--", 0) == 0) {
      if (auto eq = arg.find('='); eq != std::string::npos) {
        value = arg.substr(eq + 1);
        arg = arg.substr(0, eq);
        has_value = true;
      }
    }
    auto need_value = [&]() -> std::string {
      if (has_value) return value;
      if (i + 1 >= args.size()) throw usage_error(arg + " needs a value (see kiln help)");
      return args[++i];
    };
    if (arg == "--help" || arg == "-h") {
      a.help = true;
    } else if (arg == "--version" || arg == "-V") {
      if (a.command.empty()) a.command = "--version";
    } else if (arg == "--set") {
      a.sets.push_back(need_value());
    } else if (arg == "--resume") {
      a.resume = true;
    } else if (arg == "--quiet" || arg == "-q") {
      a.quiet = true;
    } else if (arg == "--threads") {
      const std::int64_t n = parse_int(need_value(), "--threads");
      if (n < 0 || n > 4096)
        throw usage_error("--threads must be between 0 and 4096, got " + std::to_string(n));
      a.threads = static_cast<int>(n);
    } else if (arg == "--shard") {
      const std::string v = need_value();
      const auto slash = v.find('/');
      if (slash == std::string::npos) {
        throw usage_error("--shard expects I/N (e.g. --shard 0/4), got '" + v + "'");
      }
      a.shard_index = parse_int(v.substr(0, slash), "--shard");
      a.shard_count = parse_int(v.substr(slash + 1), "--shard");
      if (a.shard_count < 1 || a.shard_index < 0 || a.shard_index >= a.shard_count) {
        throw usage_error("--shard I/N needs N >= 1 and 0 <= I < N, got '" + v + "'");
      }
    } else if (arg == "--path") {
      a.paths.push_back(need_value());
    } else if (arg == "--lifetime-order") {
      a.lifetime_order = need_value();
    } else if (arg.size() > 1 && arg[0] == '-') {
      throw usage_error("unknown option '" + arg + "'" +
                        did_you_mean(arg, {"--set", "--resume", "--shard", "--threads", "--quiet",
                                           "--path", "--help", "--version"}) +
                        "; see kiln help");
    } else if (a.command.empty()) {
      if (std::find(commands.begin(), commands.end(), arg) == commands.end()) {
        throw usage_error(
            "unknown command '" + arg + "'" + did_you_mean(arg, commands) +
            "; commands: run, validate, plugins, inspect, check-plugin (see kiln help)");
      }
      a.command = arg;
    } else {
      a.positional.push_back(arg);
    }
  }
  return a;
}

void expect_positional(const Args& a, std::size_t n, const std::string& what) {
  if (a.positional.size() < n) {
    throw usage_error("kiln " + a.command + " needs " + what + " (see kiln " + a.command +
                      " --help)");
  }
  if (a.positional.size() > n) {
    throw usage_error("kiln " + a.command + ": unexpected argument '" + a.positional[n] + "'");
  }
}

std::string isa_name(dnnl::cpu_isa isa) {
  using I = dnnl::cpu_isa;
  switch (isa) {
    case I::sse41:
      return "SSE4.1";
    case I::avx:
      return "AVX";
    case I::avx2:
      return "AVX2";
    case I::avx2_vnni:
      return "AVX2 VNNI";
    case I::avx512_mic:
      return "AVX-512 MIC";
    case I::avx512_mic_4ops:
      return "AVX-512 MIC 4OPS";
    case I::avx512_core:
      return "AVX-512";
    case I::avx512_core_vnni:
      return "AVX-512 VNNI";
    case I::avx512_core_bf16:
      return "AVX-512 BF16";
    case I::avx512_core_amx:
      return "AVX-512 AMX";
    case I::all:
      return "all";
    default:
      break;
  }
  std::ostringstream os;
  os << "ISA code 0x" << std::hex << static_cast<unsigned>(isa);
  return os.str();
}

int cmd_version() {
  const dnnl::version_t* v = dnnl::version();
  std::cout << "kiln " << KILN_VERSION_STRING << " (plugin ABI " << KILN_ABI_VERSION << ")\n"
            << "oneDNN " << v->major << "." << v->minor << "." << v->patch << " ("
            << (v->cpu_runtime == DNNL_RUNTIME_OMP ? "OpenMP" : "other") << " runtime), CPU ISA "
            << isa_name(dnnl::get_effective_cpu_isa()) << "\n"
            << "oneTBB " << TBB_runtime_version() << "\n"
            << "C++ runtime: " << KILN_TOOLCHAIN_ID << "\n"
            << "threads: " << hardware_threads() << " available\n";
  return kExitOk;
}

std::vector<fs::path> as_paths(const std::vector<std::string>& v) {
  return std::vector<fs::path>(v.begin(), v.end());
}

std::string task_list(const PluginInfo& info) {
  std::string s;
  for (const TaskSpec& t : info.tasks) {
    s += (s.empty() ? "" : ", ") + t.name + " (" + task_kind_name(t.kind) + ")";
  }
  return s;
}

int cmd_plugins(const Args& a) {
  expect_positional(a, 0, "no arguments");
  const std::vector<SearchDir> dirs = plugin_search_dirs(as_paths(a.paths));
  const std::vector<Candidate> candidates = find_candidates(dirs);
  struct Row {
    std::string name, version, family, tasks, path;
  };
  std::vector<Row> ok;
  std::vector<std::pair<Candidate, std::string>> broken;
  std::vector<Candidate> shadowed;
  for (const Candidate& c : candidates) {
    if (!c.shadowed_by.empty()) {
      shadowed.push_back(c);
      continue;
    }
    try {
      auto p = load_plugin(c.path);
      ok.push_back(
          {p->name(), p->info().version, p->info().family, task_list(p->info()), c.path.string()});
    } catch (const HostError& e) {
      std::string why = e.what();
      const std::string prefix = "from " + c.path.string() + ": ";
      if (auto at = why.find(prefix); at != std::string::npos) why = why.substr(at + prefix.size());
      broken.emplace_back(c, why);
    }
  }
  if (ok.empty()) {
    std::cout << "No working plugins found.\n";
  } else {
    std::size_t wn = 4, wv = 7, wf = 6;
    for (const Row& r : ok) {
      wn = std::max(wn, r.name.size());
      wv = std::max(wv, r.version.size());
      wf = std::max(wf, r.family.size());
    }
    std::cout << std::left << std::setw(static_cast<int>(wn + 2)) << "NAME"
              << std::setw(static_cast<int>(wv + 2)) << "VERSION"
              << std::setw(static_cast<int>(wf + 2)) << "FAMILY"
              << "TASKS / FILE\n";
    for (const Row& r : ok) {
      std::cout << std::left << std::setw(static_cast<int>(wn + 2)) << r.name
                << std::setw(static_cast<int>(wv + 2)) << r.version
                << std::setw(static_cast<int>(wf + 2)) << r.family << r.tasks << "\n"
                << std::string(wn + wv + wf + 6, ' ') << r.path << "\n";
    }
  }
  if (!broken.empty()) {
    std::cout << "\nCannot be loaded:\n";
    for (const auto& [c, why] : broken) {
      std::cout << "  " << c.name << "  " << c.path.string() << "\n    " << why << "\n";
    }
  }
  if (!shadowed.empty()) {
    std::cout << "\nHidden by a plugin of the same name in an earlier folder:\n";
    for (const Candidate& c : shadowed) {
      std::cout << "  " << c.name << "  " << c.path.string() << " (the one used is "
                << c.shadowed_by.string() << ")\n";
    }
  }
  std::cout << "\nSearched:\n";
  if (dirs.empty()) std::cout << "  (no folders)\n";
  for (const SearchDir& d : dirs) {
    std::error_code ec;
    std::cout << "  " << d.dir.string() << "  (" << d.origin
              << (fs::is_directory(d.dir, ec) ? "" : ", missing") << ")\n";
  }
  return kExitOk;
}

void print_param(std::ostream& os, const ParamSpec& p, std::size_t width) {
  os << "    " << std::left << std::setw(static_cast<int>(width + 2)) << p.name << p.describe()
     << "\n"
     << "    " << std::string(width + 2, ' ') << p.help << "\n";
}

int cmd_inspect(const Args& a) {
  expect_positional(a, 1, "a plugin name or file (e.g. kiln inspect vae)");
  const std::string target = a.positional[0];
  std::shared_ptr<LoadedPlugin> p;
  if (target.find('/') != std::string::npos || fs::path(target).extension() == ".so") {
    p = load_plugin(target);
  } else {
    PluginRegistry registry(plugin_search_dirs(as_paths(a.paths)));
    p = registry.get(target);
  }
  const PluginInfo& info = p->info();
  std::cout << info.name << " " << info.version << " (family " << info.family
            << "): " << info.description << "\n"
            << "file: " << p->path().string() << " (built against Kiln SDK "
            << p->descriptor().sdk_version << ", plugin ABI " << p->descriptor().abi_version
            << ")\n";
  for (const TaskSpec& t : info.tasks) {
    std::cout << "\ntask " << t.name << " (" << task_kind_name(t.kind) << "): " << t.help << "\n";
    const std::vector<ParamSpec> host = host_key_specs(t, 0);
    std::size_t width = 4;
    for (const ParamSpec& s : t.params) width = std::max(width, s.name.size());
    for (const ParamSpec& s : host) width = std::max(width, s.name.size());
    std::cout << "  parameters:\n";
    if (t.params.empty()) std::cout << "    (none)\n";
    for (const ParamSpec& s : t.params) print_param(std::cout, s, width);
    std::cout << "  host keys:\n";
    for (ParamSpec s : host) {
      if (s.name == "seed") {
        std::cout << "    " << std::left << std::setw(static_cast<int>(width + 2)) << s.name
                  << "integer >= 0, default [pipeline] seed\n"
                  << "    " << std::string(width + 2, ' ') << s.help << "\n";
        continue;
      }
      print_param(std::cout, s, width);
    }
  }
  return kExitOk;
}

std::string stage_summary(const StageConfig& s) {
  std::string line = "  " + s.id + ": " + s.plugin_name + "/" + s.task_name + " (" +
                     task_kind_name(s.kind()) + ")";
  std::string keys;
  for (const auto& [k, v] : s.host.values())
    keys += (keys.empty() ? "" : ", ") + k + " = " + param_value_str(v);
  for (const auto& [k, v] : s.params.values())
    keys += (keys.empty() ? "" : ", ") + k + " = " + param_value_str(v);
  return line + "\n    " + keys;
}

int cmd_validate(const Args& a) {
  expect_positional(a, 1, "a pipeline file (e.g. kiln validate configs/vae.toml)");
  Pipeline p = load_pipeline(a.positional[0], {a.sets, a.threads, true});
  std::cout << a.positional[0] << ": valid pipeline '" << p.name << "', " << p.stages.size()
            << " stage" << (p.stages.size() == 1 ? "" : "s") << ", run folder "
            << p.run_dir.string() << ", " << p.threads << " threads\n";
  for (const StageConfig& s : p.stages) std::cout << stage_summary(s) << "\n";
  return kExitOk;
}

int cmd_run(const Args& a) {
  expect_positional(a, 1, "a pipeline file (e.g. kiln run configs/vae.toml)");
  Console console;
  console.set_quiet(a.quiet);
  Pipeline p = load_pipeline(a.positional[0], {a.sets, a.threads, true});
  RunOptions opts;
  opts.resume = a.resume;
  opts.shard_index = a.shard_index;
  opts.shard_count = a.shard_count;
  return run_pipeline(p, opts, console);
}

int cmd_check_plugin(const Args& a, const char* argv0) {
  expect_positional(a, 1, "a plugin file (e.g. kiln check-plugin build/plugins/kiln_vae.so)");
  const fs::path file = a.positional[0];
  if (!a.lifetime_order.empty()) {
    // Internal: one destruction order, in a process of its own (see conformance.hpp).
    run_lifetime_order(file, static_cast<int>(parse_int(a.lifetime_order, "--lifetime-order")));
    return kExitOk;
  }
  ConformanceOptions opts;
  opts.lifetime_runner = [exe = std::string(argv0), file](int order, std::string& detail) {
    return run_lifetime_in_subprocess(exe, file, order, detail);
  };
  const ConformanceReport report = check_plugin(file, opts);
  std::cout << report.to_text();
  if (!report.loaded) return kExitPlugin;
  return report.passed() ? kExitOk : kExitRuntime;
}

}  // namespace

int kiln_main(int argc, char** argv) {
  Args a;
  try {
    a = parse_args(argc, argv);
    if (a.command == "help" || (a.command.empty() && a.help)) {
      const std::string topic = a.positional.empty() ? "" : a.positional[0];
      auto it = kHelp.find(topic);
      std::cout << (it != kHelp.end() ? it->second : std::string(kUsage));
      return kExitOk;
    }
    if (a.help) {
      auto it = kHelp.find(a.command);
      std::cout << (it != kHelp.end() ? it->second : std::string(kUsage));
      return kExitOk;
    }
    if (a.command == "--version") return cmd_version();
    if (a.command.empty()) {
      std::cerr << kUsage;
      return kExitUsage;
    }
    if (a.command == "run") return cmd_run(a);
    if (a.command == "validate") return cmd_validate(a);
    if (a.command == "plugins") return cmd_plugins(a);
    if (a.command == "inspect") return cmd_inspect(a);
    if (a.command == "check-plugin") return cmd_check_plugin(a, argv[0]);
    throw usage_error("unknown command '" + a.command + "'");
  } catch (const HostError& e) {
    std::cerr << "kiln: error: " << e.what() << "\n";
    return e.code();
  } catch (const Error& e) {
    std::cerr << "kiln: error: " << e.what() << "\n";
    return kExitRuntime;
  } catch (const std::exception& e) {
    std::cerr << "kiln: error: " << e.what() << "\n";
    return kExitRuntime;
  }
}

}  // namespace kiln::host
