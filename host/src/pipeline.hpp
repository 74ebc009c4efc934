// Pipeline files: parsing (toml++), validation against the plugins' declared schemas, `--set`
// overrides, `@stage` references and path resolution. See docs/pipelines.md for the format.
//
//   Pipeline p = load_pipeline("configs/vae.toml", {"train.epochs=2"}, {});
//   for (const StageConfig& s : p.stages) ...   // complete, typed, validated
//
// Every problem is reported as "file:line:column: message" (or "--set a.b=c: message"), with a
// suggestion for a misspelt key, and all problems of a file are reported together: a
// HostError(kExitUsage) for the pipeline, HostError(kExitPlugin) when a plugin cannot load.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kiln/plugin.hpp"
#include "plugin_loader.hpp"

namespace kiln::host {

struct StageConfig {
  std::string id;
  std::string plugin_name;
  std::string task_name;
  std::shared_ptr<LoadedPlugin> plugin;
  TaskSpec spec;
  Params params;  // the plugin's parameters: complete, checked, paths absolute
  Params host;    // host-owned keys: complete, checked
  std::uint64_t seed = 0;
  std::string where;                          // "file:line:col" of the [[stage]] table
  std::map<std::string, std::string> origin;  // key -> "file:line:col" or "--set ..."
  std::filesystem::path out_dir;              // <run_dir>/<id>
  std::filesystem::path main_output;          // what "@<id>" stands for
  std::vector<std::string> uses;              // stages named by "@id" references

  TaskKind kind() const { return spec.kind; }
  // "stage 'train' (vae/train)"
  std::string label() const;
};

struct Pipeline {
  std::filesystem::path file;  // as given
  std::filesystem::path dir;   // absolute folder of the file
  std::string name;
  std::uint64_t seed = 0;
  std::filesystem::path run_dir;  // absolute
  int threads = 0;                // resolved: >= 1
  int threads_requested = 0;      // as configured (0 = all cores)
  std::string precision = "f32";
  std::vector<std::filesystem::path> plugin_paths;  // absolute
  std::vector<StageConfig> stages;
  std::shared_ptr<PluginRegistry> plugins;

  const StageConfig* find(const std::string& id) const;
  // Every resolved value as a TOML pipeline (itself a valid pipeline file).
  std::string resolved_toml() const;
};

struct PipelineOptions {
  std::vector<std::string> sets;  // "stage.key=value"
  std::optional<int> threads;     // --threads
  bool check_input_paths = true;  // input files and folders must exist
};

Pipeline load_pipeline(const std::filesystem::path& file, const PipelineOptions& opts);

// `--set` value text as TOML ("3", "0.5", "true", "[1, 2]", "\"x\""), or the text itself as a
// string when it is not a TOML value.
ParamValue parse_set_value(const std::string& text);

}  // namespace kiln::host
