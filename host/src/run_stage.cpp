// The runtime of one-shot tasks (RunTask): the task computes, the host writes what it returns.
//
// Stage folder: <name>.png | .txt | .csv | .safetensors | .<extension> per artifact,
// metrics.json (every metrics artifact merged), manifest.jsonl (one line per file written) and
// stage.json (written last: the stage completed with these settings; --resume skips it then).
#include <cmath>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "host_error.hpp"
#include "kiln/file_io.hpp"
#include "kiln/image.hpp"
#include "kiln/safetensors.hpp"
#include "runtime.hpp"
#include "sha256.hpp"
#include "text.hpp"

namespace kiln::host {
namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

namespace {

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

std::string to_csv(const Table& t, const std::string& who) {
  std::string out;
  auto row = [&](const std::vector<std::string>& cells) {
    for (std::size_t i = 0; i < cells.size(); ++i) out += (i ? "," : "") + csv_field(cells[i]);
    out += "\n";
  };
  row(t.columns);
  for (std::size_t r = 0; r < t.rows.size(); ++r) {
    if (t.rows[r].size() != t.columns.size()) {
      throw runtime_error(who + ": table row " + std::to_string(r) + " has " +
                          std::to_string(t.rows[r].size()) + " cells for " +
                          std::to_string(t.columns.size()) + " columns");
    }
    row(t.rows[r]);
  }
  return out;
}

}  // namespace

int run_task_stage(StageRun& r) {
  const StageConfig& s = r.stage;
  const json params = json::parse(params_json_relative(s.params, s.spec, r.pipeline.run_dir));
  const json stage_record = {{"status", "complete"},
                             {"plugin", s.plugin_name},
                             {"plugin_version", s.plugin->info().version},
                             {"task", s.task_name},
                             {"seed", s.seed},
                             {"params", params}};
  const fs::path record_path = s.out_dir / "stage.json";
  std::error_code ec;
  if (r.options.resume && fs::exists(record_path, ec)) {
    try {
      if (json::parse(read_file(record_path)) == stage_record) {
        r.console.info(s.label() + ": already complete with these settings; skipped (--resume)");
        return kExitOk;
      }
    } catch (const std::exception&) {
      // unreadable record: run again
    }
  }
  fs::remove(record_path, ec);

  std::vector<Artifact> artifacts = r.task.as_run()->run();
  if (interrupted()) return kExitInterrupted;

  const std::string who = s.label() + ": the plugin's run()";
  std::set<std::string> names;
  json metrics = json::object();
  std::string manifest;
  for (Artifact& a : artifacts) {
    if (a.kind == ArtifactKind::metrics) {
      for (const auto& [k, v] : a.metrics) {
        metrics[k] = std::isfinite(v) ? json(v) : json(nullptr);
      }
      continue;
    }
    std::string stem = a.name;
    if (stem.empty() && a.index >= 0) stem = pad_number(a.index, 6);
    if (!is_safe_name(stem)) {
      throw runtime_error(who + " returned an artifact named '" + stem +
                          "'; names must be non-empty and use letters, digits, '_', '-', '.'");
    }
    std::string ext, bytes;
    switch (a.kind) {
      case ArtifactKind::image:
        ext = "png";
        bytes = encode_png(a.image);
        break;
      case ArtifactKind::text:
        ext = "txt";
        bytes = a.text;
        break;
      case ArtifactKind::table:
        ext = "csv";
        bytes = to_csv(a.table, who);
        break;
      case ArtifactKind::tensors: {
        ext = "safetensors";
        bytes = serialize_safetensors(
            detach_tensors(a.tensors, who + " returned artifact '" + stem + "', which"),
            a.metadata);
        break;
      }
      case ArtifactKind::file:
        if (!is_safe_name(a.extension)) {
          throw runtime_error(who + " returned file '" + stem + "' with extension '" + a.extension +
                              "'; use letters and digits");
        }
        ext = a.extension;
        bytes = a.bytes;
        break;
      case ArtifactKind::metrics:
        break;
    }
    const std::string file = stem + "." + ext;
    if (!names.insert(file).second) {
      throw runtime_error(who + " returned two artifacts written to '" + file + "'");
    }
    if (file == "metrics.json" || file == "manifest.jsonl" || file == "stage.json" ||
        file == "log.txt") {
      throw runtime_error(who + " returned an artifact named '" + file +
                          "', which the host writes itself");
    }
    write_file_atomic(s.out_dir / file, bytes);
    json info = json::object();
    for (const auto& [k, v] : a.info) info[k] = v;
    json line = {{"index", a.index}, {"seed", s.seed},
                 {"path", file},     {"sha256", sha256_hex(bytes)},
                 {"params", params}, {"info", info}};
    manifest += line.dump() + "\n";
    r.console.info(s.label() + ": wrote " + (s.out_dir / file).string());
  }
  write_file_atomic(s.out_dir / "manifest.jsonl", manifest);
  if (!metrics.empty()) {
    write_file_atomic(s.out_dir / "metrics.json", metrics.dump(2) + "\n");
    std::string text;
    for (auto it = metrics.begin(); it != metrics.end(); ++it) {
      text += (text.empty() ? "" : ", ") + it.key() + " = " + it.value().dump();
    }
    r.console.info(s.label() + ": " + text);
  }
  write_file_atomic(record_path, stage_record.dump(2) + "\n");
  return kExitOk;
}

}  // namespace kiln::host
