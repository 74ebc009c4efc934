#include "pipeline.hpp"

#include <algorithm>
#include <cstdlib>
#include <set>
#include <sstream>

#include <toml++/toml.h>

#include "host_error.hpp"
#include "host_keys.hpp"
#include "kiln/context.hpp"
#include "kiln/version.hpp"
#include "text.hpp"

namespace kiln::host {
namespace fs = std::filesystem;

std::string StageConfig::label() const {
  return "stage '" + id + "' (" + plugin_name + "/" + task_name + ")";
}

const StageConfig* Pipeline::find(const std::string& id) const {
  for (const StageConfig& s : stages) {
    if (s.id == id) return &s;
  }
  return nullptr;
}

namespace {

const std::vector<std::string> kSections = {"pipeline", "compute", "plugins", "stage"};

// One key's value as read from the file or from --set, with where it came from. A value TOML
// can hold but a parameter cannot (a table, a date, a nested list) keeps a description instead.
struct Entry {
  ParamValue value;
  std::string unsupported;  // e.g. "a table"; empty when `value` is set
  std::string where;
};

struct Section {
  std::string where;  // of the table itself
  std::map<std::string, Entry> entries;
  std::vector<std::string> order;  // keys in file order, for stable messages

  void set(const std::string& key, Entry e) {
    if (entries.find(key) == entries.end()) order.push_back(key);
    entries[key] = std::move(e);
  }
  const Entry* find(const std::string& key) const {
    auto it = entries.find(key);
    return it == entries.end() ? nullptr : &it->second;
  }
};

struct Diagnostics {
  std::vector<std::string> errors;
  void add(const std::string& where, const std::string& message) {
    errors.push_back(where.empty() ? message : where + ": " + message);
  }
  void throw_if_any() const {
    if (errors.empty()) return;
    std::string all;
    const std::size_t shown = std::min<std::size_t>(errors.size(), 20);
    for (std::size_t i = 0; i < shown; ++i) all += (i ? "\n" : "") + errors[i];
    if (errors.size() > shown) {
      all += "\n(" + std::to_string(errors.size() - shown) + " more problems not shown)";
    }
    throw pipeline_error(all);
  }
};

std::string location(const fs::path& file, const toml::source_region& r) {
  return file.string() + ":" + std::to_string(r.begin.line) + ":" + std::to_string(r.begin.column);
}

std::string toml_type_name(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::table:
      return "a table";
    case toml::node_type::array:
      return "a list";
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a number";
    case toml::node_type::boolean:
      return "a boolean";
    case toml::node_type::date:
      return "a date";
    case toml::node_type::time:
      return "a time";
    case toml::node_type::date_time:
      return "a date-time";
    default:
      return "an unknown value";
  }
}

Entry entry_from_node(const toml::node& n, std::string where) {
  Entry e;
  e.where = std::move(where);
  if (auto v = n.as_integer()) {
    e.value = v->get();
  } else if (auto f = n.as_floating_point()) {
    e.value = f->get();
  } else if (auto b = n.as_boolean()) {
    e.value = b->get();
  } else if (auto s = n.as_string()) {
    e.value = s->get();
  } else if (auto a = n.as_array()) {
    bool ints = true, nums = true, strs = true;
    for (const toml::node& x : *a) {
      ints = ints && x.is_integer();
      nums = nums && (x.is_integer() || x.is_floating_point());
      strs = strs && x.is_string();
    }
    if (a->empty() || ints) {
      std::vector<std::int64_t> l;
      for (const toml::node& x : *a) l.push_back(x.as_integer()->get());
      e.value = l;
    } else if (nums) {
      std::vector<double> l;
      for (const toml::node& x : *a) l.push_back(x.value<double>().value_or(0.0));
      e.value = l;
    } else if (strs) {
      std::vector<std::string> l;
      for (const toml::node& x : *a) l.push_back(x.as_string()->get());
      e.value = l;
    } else {
      e.unsupported = "a list of mixed or nested values";
    }
  } else {
    e.unsupported = toml_type_name(n);
  }
  return e;
}

Section section_from_table(const toml::table& t, const fs::path& file) {
  Section s;
  s.where = location(file, t.source());
  for (auto&& [k, v] : t)
    s.set(std::string(k.str()), entry_from_node(v, location(file, k.source())));
  return s;
}

// Integers where numbers are expected are numbers; an empty list takes the expected list type.
ParamValue coerce(const ParamSpec& spec, ParamValue v) {
  if (spec.type == ParamType::number && std::holds_alternative<std::int64_t>(v)) {
    return static_cast<double>(std::get<std::int64_t>(v));
  }
  if (const auto* l = std::get_if<std::vector<std::int64_t>>(&v)) {
    if (spec.type == ParamType::number_list) return std::vector<double>(l->begin(), l->end());
    if (l->empty() && spec.type == ParamType::string_list) return std::vector<std::string>{};
  }
  return v;
}

std::vector<std::string> names_of(const std::vector<ParamSpec>& specs,
                                  const std::vector<std::string>& extra = {}) {
  std::vector<std::string> n = extra;
  for (const ParamSpec& s : specs) n.push_back(s.name);
  return n;
}

// Checks every key of `section` against `specs` (plus `structural` keys, which are not
// parameters) and returns the complete values. `what` names the table in messages.
Params check_section(const Section& section, const std::vector<ParamSpec>& specs,
                     const std::vector<std::string>& structural, const std::string& what,
                     const std::string& unknown_hint, Diagnostics& diag) {
  Params out;
  for (const std::string& key : section.order) {
    const Entry& e = section.entries.at(key);
    if (std::find(structural.begin(), structural.end(), key) != structural.end()) continue;
    const auto spec =
        std::find_if(specs.begin(), specs.end(), [&](const ParamSpec& s) { return s.name == key; });
    if (spec == specs.end()) {
      diag.add(e.where, what + ": unknown key '" + key + "'" +
                            did_you_mean(key, names_of(specs, structural)) + unknown_hint);
      continue;
    }
    if (!e.unsupported.empty()) {
      const std::string type = param_type_name(spec->type);
      diag.add(e.where, what + ": '" + key + "' must be " + (type[0] == 'i' ? "an " : "a ") + type +
                            ", got " + e.unsupported);
      continue;
    }
    ParamValue v = coerce(*spec, e.value);
    const std::string reason = spec->check(v);
    if (!reason.empty()) {
      diag.add(e.where, what + ": '" + key + "' " + reason);
      continue;
    }
    out.set(key, std::move(v));
  }
  for (const ParamSpec& s : specs) {
    if (out.has(s.name) || section.find(s.name) != nullptr) continue;
    if (!std::holds_alternative<std::monostate>(s.default_value)) {
      out.set(s.name, s.default_value);
    } else if (!s.optional) {
      diag.add(section.where, what + ": '" + s.name + "' is required (" + s.help + ")");
    }
  }
  return out;
}

std::string expand_home(const std::string& p) {
  if (p == "~" || p.rfind("~/", 0) == 0) {
    if (const char* home = std::getenv("HOME")) return std::string(home) + p.substr(1);
  }
  return p;
}

fs::path resolve_against(const fs::path& dir, const std::string& p) {
  fs::path path(expand_home(p));
  return (path.is_absolute() ? path : dir / path).lexically_normal();
}

toml::array to_toml_array(const ParamValue& v) {
  toml::array a;
  std::visit(
      [&](const auto& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, std::vector<std::int64_t>> ||
                      std::is_same_v<T, std::vector<double>> ||
                      std::is_same_v<T, std::vector<std::string>>) {
          for (const auto& e : x) a.push_back(e);
        }
      },
      v);
  return a;
}

void put(toml::table& t, const std::string& key, const ParamValue& v) {
  std::visit(
      [&](const auto& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, std::monostate>) {
          // absent optional value: nothing to write
        } else if constexpr (std::is_same_v<T, bool> || std::is_same_v<T, std::int64_t> ||
                             std::is_same_v<T, double> || std::is_same_v<T, std::string>) {
          t.insert_or_assign(key, x);
        } else {
          t.insert_or_assign(key, to_toml_array(v));
        }
      },
      v);
}

}  // namespace

ParamValue parse_set_value(const std::string& text) {
  try {
    toml::table t = toml::parse("v = " + text);
    Entry e = entry_from_node(*t.get("v"), "");
    if (e.unsupported.empty()) return e.value;
  } catch (const toml::parse_error&) {
    // not a TOML value: a bare string
  }
  return text;
}

Pipeline load_pipeline(const fs::path& file, const PipelineOptions& opts) {
  std::error_code ec;
  if (!fs::exists(file, ec)) {
    throw usage_error("cannot read pipeline '" + file.string() + "': no such file");
  }
  if (fs::is_directory(file, ec)) {
    throw usage_error("cannot read pipeline '" + file.string() + "': it is a folder");
  }
  toml::table root;
  try {
    root = toml::parse_file(file.string());
  } catch (const toml::parse_error& e) {
    throw pipeline_error(location(file, e.source()) +
                         ": invalid TOML: " + std::string(e.description()));
  }

  Pipeline p;
  p.file = file;
  p.dir = fs::absolute(file).parent_path().lexically_normal();
  Diagnostics diag;

  // ---- read the file into sections
  std::map<std::string, Section> sections;
  std::vector<Section> stage_sections;
  for (auto&& [k, v] : root) {
    const std::string key(k.str());
    const std::string where = location(file, k.source());
    if (key == "stage") {
      const toml::array* arr = v.as_array();
      if (arr == nullptr || !arr->is_array_of_tables()) {
        diag.add(where, "'stage' must be an array of tables: write each stage as [[stage]]");
        continue;
      }
      for (const toml::node& n : *arr)
        stage_sections.push_back(section_from_table(*n.as_table(), file));
    } else if (key == "pipeline" || key == "compute" || key == "plugins") {
      if (!v.is_table()) {
        diag.add(where, "'" + key + "' must be a table: write it as [" + key + "]");
        continue;
      }
      sections[key] = section_from_table(*v.as_table(), file);
    } else {
      diag.add(where, "unknown top-level key '" + key + "'" + did_you_mean(key, kSections) +
                          "; a pipeline has [pipeline], [compute], [plugins] and [[stage]] tables");
    }
  }

  // ---- --set overrides
  for (const std::string& set : opts.sets) {
    const std::string where = "--set " + set;
    const auto eq = set.find('=');
    const auto dot = set.find('.');
    if (eq == std::string::npos || dot == std::string::npos || dot > eq || dot == 0 ||
        dot + 1 == eq) {
      throw usage_error(where +
                        ": expected STAGE.KEY=VALUE (or pipeline.KEY=VALUE, "
                        "compute.KEY=VALUE), e.g. --set train.epochs=3");
    }
    const std::string target = set.substr(0, dot);
    const std::string key = set.substr(dot + 1, eq - dot - 1);
    Entry e{parse_set_value(set.substr(eq + 1)), "", where};
    if (target == "pipeline" || target == "compute" || target == "plugins") {
      Section& s = sections[target];
      if (s.where.empty()) s.where = where;
      s.set(key, std::move(e));
      continue;
    }
    if (key == "id") {
      diag.add(where, "a stage's id cannot be changed with --set");
      continue;
    }
    Section* found = nullptr;
    std::vector<std::string> ids;
    for (Section& s : stage_sections) {
      const Entry* id = s.find("id");
      if (id == nullptr) continue;
      if (const auto* str = std::get_if<std::string>(&id->value)) {
        ids.push_back(*str);
        if (*str == target) found = &s;
      }
    }
    if (found == nullptr) {
      diag.add(where, "there is no stage '" + target + "'" + did_you_mean(target, ids) +
                          (ids.empty() ? std::string("; the pipeline has no stages")
                                       : "; stages: " + quoted_list(ids)) +
                          " (or use pipeline.KEY, compute.KEY)");
      continue;
    }
    found->set(key, std::move(e));
  }

  // ---- [pipeline], [compute], [plugins]
  const std::string default_name = file.stem().string();
  const std::vector<ParamSpec> pipeline_specs = {
      ParamSpec::string("name", default_name, "Name of the pipeline (default: the file name)"),
      ParamSpec::integer("seed", 0, "Default seed of every stage").at_least(0),
      ParamSpec::string("run_dir", "", "Folder of the run's outputs (default: runs/<name>)")};
  const std::vector<ParamSpec> compute_specs = {
      ParamSpec::integer("threads", 0, "Threads for compute and I/O (0: all cores)").at_least(0),
      ParamSpec::choice("precision", "f32", {"f32", "bf16"}, "Compute precision of the tasks")};
  const std::vector<ParamSpec> plugins_specs = {
      ParamSpec::strings("paths", {}, "Extra folders searched for plugins")};
  const Params pp = check_section(sections["pipeline"], pipeline_specs, {}, "[pipeline]", "", diag);
  const Params cp = check_section(sections["compute"], compute_specs, {}, "[compute]", "", diag);
  const Params lp = check_section(sections["plugins"], plugins_specs, {}, "[plugins]", "", diag);
  p.name = pp.has("name") ? pp.string("name") : default_name;
  p.seed = static_cast<std::uint64_t>(pp.has("seed") ? pp.integer("seed") : 0);
  const std::string run_dir = pp.has("run_dir") ? pp.string("run_dir") : "";
  p.run_dir = run_dir.empty() ? (p.dir / "runs" / p.name).lexically_normal()
                              : resolve_against(p.dir, run_dir);
  p.threads_requested = static_cast<int>(cp.has("threads") ? cp.integer("threads") : 0);
  if (opts.threads) p.threads_requested = *opts.threads;
  p.threads = p.threads_requested > 0 ? p.threads_requested : hardware_threads();
  p.precision = cp.has("precision") ? cp.string("precision") : "f32";
  if (lp.has("paths")) {
    for (const std::string& d : lp.strings("paths"))
      p.plugin_paths.push_back(resolve_against(p.dir, d));
  }
  p.plugins = std::make_shared<PluginRegistry>(plugin_search_dirs(p.plugin_paths));

  // ---- stages
  if (stage_sections.empty()) {
    diag.add(file.string(), "the pipeline has no stages; add at least one [[stage]] table");
  }
  std::set<std::string> ids;
  std::set<std::string> unknown_plugins;  // reported once in full
  for (const Section& sec : stage_sections) {
    StageConfig st;
    st.where = sec.where;
    auto text_of = [&](const std::string& key) -> std::string {
      const Entry* e = sec.find(key);
      if (e == nullptr) return "";
      if (const auto* s = std::get_if<std::string>(&e->value)) return *s;
      diag.add(e->where, "'" + key + "' must be a string, got " +
                             (e->unsupported.empty() ? param_value_str(e->value) : e->unsupported));
      return "";
    };
    st.id = text_of("id");
    const std::string what_stage = st.id.empty() ? "stage" : "stage '" + st.id + "'";
    if (sec.find("id") == nullptr) {
      diag.add(sec.where, "a [[stage]] needs an 'id' (a name such as \"train\")");
      continue;
    }
    if (st.id.empty()) continue;
    if (!is_safe_name(st.id) || st.id == "pipeline" || st.id == "compute" || st.id == "plugins") {
      diag.add(sec.find("id")->where,
               "stage id '" + st.id +
                   "' is not allowed: use letters, digits, '_', '-' and '.', not starting with "
                   "'-' or '.', and not 'pipeline', 'compute' or 'plugins'");
      continue;
    }
    if (!ids.insert(st.id).second) {
      diag.add(sec.find("id")->where, "stage id '" + st.id + "' is used twice");
      continue;
    }
    st.plugin_name = text_of("plugin");
    if (sec.find("plugin") == nullptr) {
      diag.add(sec.where,
               what_stage + ": 'plugin' is required (the name of a plugin, e.g. \"vae\")");
      continue;
    }
    if (st.plugin_name.empty()) continue;
    try {
      st.plugin = p.plugins->get(st.plugin_name);
    } catch (const HostError& e) {
      const Entry* pe = sec.find("plugin");
      if (e.code() == kExitPlugin) {
        throw HostError(e.code(), pe->where + ": " + what_stage + ": " + e.what());
      }
      diag.add(pe->where, what_stage + ": " +
                              (unknown_plugins.insert(st.plugin_name).second
                                   ? std::string(e.what())
                                   : "unknown plugin '" + st.plugin_name + "' (see above)"));
      continue;
    }
    const PluginInfo& info = st.plugin->info();
    std::vector<std::string> task_names;
    for (const TaskSpec& t : info.tasks) task_names.push_back(t.name);
    st.task_name = text_of("task");
    if (sec.find("task") == nullptr) {
      if (info.tasks.size() == 1) {
        st.task_name = info.tasks[0].name;
      } else {
        diag.add(sec.where, what_stage + ": 'task' is required; plugin '" + st.plugin_name +
                                "' has tasks " + quoted_list(task_names));
        continue;
      }
    }
    if (st.task_name.empty()) continue;
    const TaskSpec* spec = info.find(st.task_name);
    if (spec == nullptr) {
      diag.add(sec.find("task")->where,
               what_stage + ": plugin '" + st.plugin_name + "' has no task '" + st.task_name + "'" +
                   did_you_mean(st.task_name, task_names) + "; tasks: " + quoted_list(task_names));
      continue;
    }
    st.spec = *spec;
    std::vector<ParamSpec> host_specs = host_key_specs(*spec, static_cast<std::int64_t>(p.seed));
    for (const ParamSpec& ps : spec->params) {
      for (const ParamSpec& hs : host_specs) {
        if (hs.name == ps.name) {
          throw plugin_error("plugin '" + st.plugin_name + "' (" + st.plugin->path().string() +
                             ") declares a parameter '" + ps.name + "' in task '" + spec->name +
                             "', which is a key the host owns; rename the parameter");
        }
      }
    }
    std::vector<ParamSpec> all = host_specs;
    all.insert(all.end(), spec->params.begin(), spec->params.end());
    const Params values = check_section(
        sec, all, kStageStructureKeys, st.label(),
        "; run 'kiln inspect " + st.plugin_name + "' for the keys of task '" + st.task_name + "'",
        diag);
    for (const auto& [k, v] : values.values()) {
      const bool is_host = std::any_of(host_specs.begin(), host_specs.end(),
                                       [&](const ParamSpec& s) { return s.name == k; });
      (is_host ? st.host : st.params).set(k, v);
    }
    for (const auto& [k, e] : sec.entries) st.origin[k] = e.where;
    st.seed = static_cast<std::uint64_t>(st.host.has("seed") ? st.host.integer("seed") : 0);
    st.out_dir = p.run_dir / st.id;
    st.main_output = st.kind() == TaskKind::train ? st.out_dir / "model.safetensors" : st.out_dir;

    // Paths: "@stage" names an earlier stage's main output; others are relative to the file.
    for (const ParamSpec& ps : spec->params) {
      if (ps.type != ParamType::path || !st.params.has(ps.name)) continue;
      const std::string raw = st.params.string(ps.name);
      const std::string where = st.origin.count(ps.name) ? st.origin[ps.name] : sec.where;
      if (!raw.empty() && raw[0] == '@') {
        const std::string ref = raw.substr(1);
        const StageConfig* earlier = p.find(ref);
        if (earlier == nullptr) {
          std::vector<std::string> before;
          for (const StageConfig& s : p.stages) before.push_back(s.id);
          const bool later =
              std::any_of(stage_sections.begin(), stage_sections.end(), [&](const Section& s) {
                const Entry* id = s.find("id");
                const auto* str = id ? std::get_if<std::string>(&id->value) : nullptr;
                return str && *str == ref;
              });
          diag.add(where, st.label() + ": '" + ps.name + "' = \"" + raw + "\" " +
                              (later ? "names a stage that comes later; a stage can only use "
                                       "the outputs of stages before it"
                                     : "names no stage" + did_you_mean(ref, before)) +
                              (before.empty() ? std::string("")
                                              : " (earlier stages: " + quoted_list(before) + ")"));
          continue;
        }
        st.params.set(ps.name, earlier->main_output.string());
        st.uses.push_back(ref);
        continue;
      }
      const fs::path resolved = resolve_against(p.dir, raw);
      st.params.set(ps.name, resolved.string());
      if (opts.check_input_paths && !fs::exists(resolved, ec)) {
        diag.add(where, st.label() + ": '" + ps.name + "' names '" + resolved.string() +
                            "', which does not exist" +
                            (fs::path(raw).is_absolute()
                                 ? std::string("")
                                 : " (relative paths are relative to the pipeline's folder, " +
                                       p.dir.string() + ")"));
      }
    }
    p.stages.push_back(std::move(st));
  }
  diag.throw_if_any();
  return p;
}

std::string Pipeline::resolved_toml() const {
  toml::table root;
  toml::table pipeline;
  pipeline.insert("name", name);
  pipeline.insert("seed", static_cast<std::int64_t>(seed));
  pipeline.insert("run_dir", run_dir.string());
  root.insert("pipeline", std::move(pipeline));
  toml::table compute;
  compute.insert("threads", static_cast<std::int64_t>(threads));
  compute.insert("precision", precision);
  root.insert("compute", std::move(compute));
  toml::array paths;
  for (const fs::path& d : plugin_paths) paths.push_back(d.string());
  toml::table plugins_table;
  plugins_table.insert("paths", std::move(paths));
  root.insert("plugins", std::move(plugins_table));
  toml::array stage_array;
  std::ostringstream header;
  header << "# Every value of " << file.string() << " as kiln " << KILN_VERSION_STRING
         << " resolved it.\n";
  for (const StageConfig& s : stages) {
    toml::table t;
    t.insert("id", s.id);
    t.insert("plugin", s.plugin_name);
    t.insert("task", s.task_name);
    for (const auto& [k, v] : s.host.values()) put(t, k, v);
    for (const auto& [k, v] : s.params.values()) put(t, k, v);
    stage_array.push_back(std::move(t));
    header << "# stage '" << s.id << "': plugin " << s.plugin_name << " "
           << s.plugin->info().version << " from " << s.plugin->path().string() << "\n";
  }
  root.insert("stage", std::move(stage_array));
  std::ostringstream os;
  os << header.str() << "\n" << root << "\n";
  return os.str();
}

}  // namespace kiln::host
