#include "conformance.hpp"

#include <fcntl.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>

#include <boost/core/demangle.hpp>
#include <nlohmann/json.hpp>

#include "host_error.hpp"
#include "host_keys.hpp"
#include "kiln/data.hpp"
#include "kiln/file_io.hpp"
#include "kiln/safetensors.hpp"
#include "plugin_loader.hpp"
#include "text.hpp"

extern char** environ;

namespace kiln::host {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr std::uint64_t kSuiteSeed = 1234;

class TempFolder {
 public:
  TempFolder() {
    std::string tmpl = (fs::temp_directory_path() / "kiln-check-XXXXXX").string();
    KILN_CHECK(::mkdtemp(tmpl.data()) != nullptr, "cannot create a temporary folder in ",
               fs::temp_directory_path().string());
    path_ = tmpl;
  }
  ~TempFolder() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

class SuiteContext final : public TaskContext {
 public:
  explicit SuiteContext(fs::path dir) : dir_(std::move(dir)) {}
  std::string stage_id() const override { return "conformance"; }
  fs::path work_dir() const override {
    fs::create_directories(dir_ / "work");
    return dir_ / "work";
  }
  std::uint64_t seed() const override { return kSuiteSeed; }
  DType precision() const override { return DType::f32; }
  void progress(std::int64_t, std::int64_t, const std::string&) override {}
  bool cancelled() const override { return false; }
  void stream_text(std::string_view) override {}

 private:
  fs::path dir_;
};

// "kiln::Error: ..." or a description of anything else, with whether it was a kiln::Error.
std::string describe(std::exception_ptr e, bool* was_kiln_error = nullptr) {
  if (was_kiln_error) *was_kiln_error = false;
  try {
    std::rethrow_exception(e);
  } catch (const Error& x) {
    if (was_kiln_error) *was_kiln_error = true;
    return x.what();
  } catch (const std::exception& x) {
    return boost::core::demangle(typeid(x).name()) + " (not kiln::Error): " + x.what();
  } catch (...) {
    return "an exception that is not a std::exception";
  }
}

// Failures found by one check; empty means it passed.
struct Problems {
  std::vector<std::string> list;
  void add(std::string p) { list.push_back(std::move(p)); }
  bool empty() const { return list.empty(); }
  std::string text() const {
    std::string s;
    for (const auto& p : list) s += (s.empty() ? "" : "; ") + p;
    return s;
  }
};

// Calls `f`; an exception becomes a problem ("while <what>: ...").
template <typename F>
bool guarded(Problems& p, const std::string& what, F&& f) {
  try {
    f();
    return true;
  } catch (...) {
    p.add(what + " threw " + describe(std::current_exception()));
    return false;
  }
}

TensorMap deep_copy(const TensorMap& m) {
  TensorMap out;
  for (const auto& [k, t] : m) out[k] = t.defined() ? t.detach().contiguous().clone() : Tensor();
  return out;
}

std::string diff_tensors(const TensorMap& a, const TensorMap& b) {
  if (a.size() != b.size()) {
    return std::to_string(a.size()) + " tensors vs " + std::to_string(b.size());
  }
  for (const auto& [k, t] : a) {
    auto it = b.find(k);
    if (it == b.end()) return "'" + k + "' missing in one of them";
    const Tensor& u = it->second;
    if (!t.defined() || !u.defined()) return "'" + k + "' is undefined";
    if (t.dtype() != u.dtype() || t.shape() != u.shape())
      return "'" + k + "' differs in type or shape";
    const Tensor tc = t.contiguous(), uc = u.contiguous();
    if (std::memcmp(tc.raw_data(), uc.raw_data(), tc.nbytes()) != 0)
      return "'" + k + "' differs in value";
  }
  return "";
}

// "" when equal; images may differ by `tolerance` per pixel value.
std::string diff_artifacts(const Artifact& a, const Artifact& b, int tolerance) {
  if (a.kind != b.kind) return "kinds differ";
  if (a.index != b.index) return "indices differ";
  if (a.name != b.name) return "names differ ('" + a.name + "' vs '" + b.name + "')";
  switch (a.kind) {
    case ArtifactKind::image: {
      if (a.image.width != b.image.width || a.image.height != b.image.height ||
          a.image.channels != b.image.channels || a.image.pixels.size() != b.image.pixels.size()) {
        return "image sizes differ";
      }
      int worst = 0;
      for (std::size_t i = 0; i < a.image.pixels.size(); ++i) {
        worst = std::max(worst, std::abs(int(a.image.pixels[i]) - int(b.image.pixels[i])));
      }
      if (worst > tolerance) return "pixels differ by up to " + std::to_string(worst) + "/255";
      return "";
    }
    case ArtifactKind::text:
      return a.text == b.text ? "" : "texts differ";
    case ArtifactKind::tensors: {
      std::string d = diff_tensors(a.tensors, b.tensors);
      if (d.empty() && a.metadata != b.metadata) d = "metadata differs";
      return d;
    }
    case ArtifactKind::table:
      return a.table.columns == b.table.columns && a.table.rows == b.table.rows ? ""
                                                                                : "tables differ";
    case ArtifactKind::metrics: {
      if (a.metrics.size() != b.metrics.size()) return "metric names differ";
      for (const auto& [k, v] : a.metrics) {
        auto it = b.metrics.find(k);
        if (it == b.metrics.end()) return "metric '" + k + "' missing";
        if (!(v == it->second || (std::isnan(v) && std::isnan(it->second)))) {
          return "metric '" + k + "' differs";
        }
      }
      return "";
    }
    case ArtifactKind::file:
      return a.bytes == b.bytes && a.extension == b.extension ? "" : "file contents differ";
  }
  return "unknown kind";
}

std::string well_formed(const Artifact& a) {
  if (a.kind == ArtifactKind::image) {
    const Image& im = a.image;
    if (im.width <= 0 || im.height <= 0 ||
        (im.channels != 1 && im.channels != 3 && im.channels != 4) ||
        im.pixels.size() != static_cast<std::size_t>(im.width) * im.height * im.channels) {
      return "a malformed image (" + std::to_string(im.width) + "x" + std::to_string(im.height) +
             "x" + std::to_string(im.channels) + ", " + std::to_string(im.pixels.size()) +
             " bytes)";
    }
  }
  if (a.kind == ArtifactKind::tensors) {
    for (const auto& [k, t] : a.tensors) {
      if (!t.defined()) return "an undefined tensor '" + k + "'";
    }
  }
  return "";
}

// The plugin's declared settings (KILN_PLUGIN_CONFORMANCE), by task.
json read_settings(const Library& lib, std::string& error) {
  if (!lib.has("kiln_conformance_params")) return json::object();
  try {
    const char& first = lib.get_alias<const char>("kiln_conformance_params");
    json j = json::parse(std::string(&first));
    if (!j.is_object()) {
      error = "KILN_PLUGIN_CONFORMANCE must be a JSON object of task names";
      return json::object();
    }
    return j;
  } catch (const std::exception& e) {
    error = std::string("KILN_PLUGIN_CONFORMANCE is not valid JSON: ") + e.what();
    return json::object();
  }
}

struct TaskSetup {
  bool usable = false;
  std::string why_not;
  Params params;
  json host = json::object();
};

// Complete parameters of `spec` from the declared settings ("@task" -> exported models).
TaskSetup setup_for(const TaskSpec& spec, const json& settings,
                    const std::map<std::string, fs::path>& models) {
  TaskSetup s;
  json given = settings.contains(spec.name) ? settings.at(spec.name) : json::object();
  if (!given.is_object()) {
    s.why_not = "its KILN_PLUGIN_CONFORMANCE entry is not an object";
    return s;
  }
  json plugin_keys = json::object();
  const std::vector<ParamSpec> host = host_key_specs(spec, 0);
  for (auto it = given.begin(); it != given.end(); ++it) {
    const bool is_host = std::any_of(host.begin(), host.end(),
                                     [&](const ParamSpec& h) { return h.name == it.key(); });
    (is_host ? s.host : plugin_keys)[it.key()] = it.value();
  }
  try {
    Params p = Params::from_json(plugin_keys.dump());
    for (const ParamSpec& ps : spec.params) {
      if (ps.type != ParamType::path || !p.has(ps.name)) continue;
      const std::string v = p.string(ps.name);
      if (!v.empty() && v[0] == '@') {
        auto m = models.find(v.substr(1));
        if (m == models.end()) {
          s.why_not = "'" + ps.name + "' = \"" + v + "\" names no train task that ran in the suite";
          return s;
        }
        p.set(ps.name, m->second.string());
      }
    }
    s.params = Params::resolve(spec.params, p);
  } catch (const Error& e) {
    s.why_not = settings.contains(spec.name)
                    ? std::string("its KILN_PLUGIN_CONFORMANCE settings are invalid: ") + e.what()
                    : std::string("it has required parameters (") + e.what() +
                          "); declare settings with KILN_PLUGIN_CONFORMANCE to test it";
    return s;
  }
  s.usable = true;
  return s;
}

std::int64_t host_int(const TaskSetup& s, const std::string& key, std::int64_t def) {
  return s.host.contains(key) && s.host.at(key).is_number_integer()
             ? s.host.at(key).get<std::int64_t>()
             : def;
}

class Suite {
 public:
  Suite(const fs::path& file, const ConformanceOptions& opts, ConformanceReport& report)
      : file_(file), opts_(opts), report_(report) {}

  void run() {
    try {
      plugin_ = load_plugin(file_);
    } catch (const HostError& e) {
      add("the plugin loads", CheckResult::Status::fail, e.what());
      return;
    }
    report_.loaded = true;
    report_.plugin = plugin_->name() + " " + plugin_->info().version;
    add("the plugin loads (descriptor, ABI " + std::to_string(plugin_->descriptor().abi_version) +
            ", factory, info)",
        CheckResult::Status::pass, "");
    std::string settings_error;
    settings_ = read_settings(*plugin_->library(), settings_error);
    if (!settings_error.empty())
      add("conformance settings", CheckResult::Status::fail, settings_error);
    for (auto it = settings_.begin(); it != settings_.end(); ++it) {
      if (plugin_->info().find(it.key()) == nullptr) {
        add("conformance settings", CheckResult::Status::fail,
            "KILN_PLUGIN_CONFORMANCE names task '" + it.key() +
                "', which the plugin does not have");
      }
    }
    check_description();
    check_unknown_task();
    check_required_params();
    // Train tasks first: later tasks may use their models ("@task").
    for (TaskKind kind : {TaskKind::train, TaskKind::generate, TaskKind::run}) {
      for (const TaskSpec& t : plugin_->info().tasks) {
        if (t.kind == kind) check_task(t);
      }
    }
    check_lifetimes();
  }

 private:
  void add(const std::string& name, CheckResult::Status s, const std::string& detail) {
    report_.checks.push_back({name, s, detail});
  }
  void add(const std::string& name, const Problems& p) {
    add(name, p.empty() ? CheckResult::Status::pass : CheckResult::Status::fail, p.text());
  }

  void check_description() {
    const PluginInfo& info = plugin_->info();
    Problems p;
    if (info.version.empty()) p.add("the version is empty");
    if (info.family.empty()) p.add("the family is empty");
    if (info.description.empty()) p.add("the description is empty");
    if (info.name.empty() || !std::all_of(info.name.begin(), info.name.end(), [](char c) {
          return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
        })) {
      p.add("the name '" + info.name + "' should use only a-z, 0-9 and _");
    }
    std::set<std::string> tasks;
    for (const TaskSpec& t : info.tasks) {
      const std::string tw = "task '" + t.name + "'";
      if (t.name.empty()) p.add("a task has no name");
      if (!tasks.insert(t.name).second) p.add(tw + " is declared twice");
      if (t.help.empty()) p.add(tw + " has no help text");
      if (t.default_batch < 1) p.add(tw + " has default batch " + std::to_string(t.default_batch));
      if (t.default_epochs < 1)
        p.add(tw + " has default epochs " + std::to_string(t.default_epochs));
      const std::vector<ParamSpec> host = host_key_specs(t, 0);
      std::set<std::string> names;
      for (const ParamSpec& s : t.params) {
        const std::string pw = tw + " parameter '" + s.name + "'";
        if (!is_identifier(s.name)) {
          p.add(pw + ": names use letters, digits and _");
        }
        if (!names.insert(s.name).second) p.add(pw + " is declared twice");
        if (s.help.empty()) p.add(pw + " has no help text");
        for (const ParamSpec& h : host) {
          if (h.name == s.name) p.add(pw + " clashes with the host-owned key of that name");
        }
        for (const std::string& k : kStageStructureKeys) {
          if (k == s.name) p.add(pw + " clashes with the stage key '" + k + "'");
        }
        if (s.min && s.max && *s.min > *s.max) p.add(pw + " has min > max");
        if (s.type == ParamType::choice && s.choices.empty())
          p.add(pw + " is a choice without choices");
        if (!std::holds_alternative<std::monostate>(s.default_value)) {
          const std::string reason = s.check(s.default_value);
          if (!reason.empty()) p.add(pw + ": its default " + reason);
        }
      }
    }
    add("self-description (names, help texts, defaults pass their own checks)", p);
  }

  void check_unknown_task() {
    TempFolder dir;
    SuiteContext ctx(dir.path());
    Problems p;
    try {
      auto t = plugin_->create_task("kiln-conformance-no-such-task", Params{}, ctx);
      p.add("create_task accepted an unknown task name instead of throwing kiln::Error");
    } catch (...) {
      bool kiln_error = false;
      const std::string d = describe(std::current_exception(), &kiln_error);
      if (!kiln_error) p.add("create_task of an unknown task threw " + d);
    }
    add("an unknown task is refused with kiln::Error", p);
  }

  void check_required_params() {
    TempFolder dir;
    SuiteContext ctx(dir.path());
    Problems p;
    int tried = 0;
    for (const TaskSpec& t : plugin_->info().tasks) {
      for (const ParamSpec& missing : t.params) {
        if (!missing.required()) continue;
        Params params;
        for (const ParamSpec& s : t.params) {
          if (!std::holds_alternative<std::monostate>(s.default_value))
            params.set(s.name, s.default_value);
        }
        ++tried;
        try {
          auto task = plugin_->create_task(t.name, params, ctx);
          p.add("task '" + t.name + "' was created without its required parameter '" +
                missing.name + "'");
        } catch (...) {
          bool kiln_error = false;
          const std::string d = describe(std::current_exception(), &kiln_error);
          if (!kiln_error) p.add("task '" + t.name + "' without '" + missing.name + "' threw " + d);
        }
        break;  // one missing parameter per task is enough
      }
    }
    if (tried == 0) {
      add("missing required parameters are refused", CheckResult::Status::skip,
          "no task has a required parameter");
      return;
    }
    add("missing required parameters are refused with kiln::Error", p);
  }

  void check_task(const TaskSpec& spec) {
    const std::string name = "task " + spec.name + " (" + task_kind_name(spec.kind) + ")";
    const TaskSetup setup = setup_for(spec, settings_, models_);
    if (!setup.usable) {
      add(name, CheckResult::Status::skip, setup.why_not);
      return;
    }
    Problems p;
    std::string summary;
    switch (spec.kind) {
      case TaskKind::train:
        summary = check_train(spec, setup, p);
        break;
      case TaskKind::generate:
        summary = check_generate(spec, setup, p);
        break;
      case TaskKind::run:
        summary = check_run(spec, setup, p);
        break;
    }
    if (p.empty()) {
      add(name + ": " + summary, CheckResult::Status::pass, "");
    } else {
      add(name, p);
    }
  }

  std::shared_ptr<Task> create(const TaskSpec& spec, const TaskSetup& setup, TaskContext& ctx,
                               Problems& p) {
    std::shared_ptr<Task> t;
    guarded(p, "create_task", [&] { t = plugin_->create_task(spec.name, setup.params, ctx); });
    if (!t) return nullptr;
    const bool right_kind = (spec.kind == TaskKind::train && t->as_train()) ||
                            (spec.kind == TaskKind::generate && t->as_generate()) ||
                            (spec.kind == TaskKind::run && t->as_run());
    if (!right_kind) {
      p.add("create_task returned a task of another kind than declared");
      return nullptr;
    }
    return t;
  }

  std::string check_train(const TaskSpec& spec, const TaskSetup& setup, Problems& p) {
    TempFolder dir;
    SuiteContext ctx(dir.path());
    const std::int64_t steps = std::max<std::int64_t>(2, host_int(setup, "max_steps", 2));
    auto a = create(spec, setup, ctx, p);
    if (!a) return "";
    std::shared_ptr<const data::Dataset> dataset;
    if (!guarded(p, "train_data()", [&] { dataset = a->as_train()->train_data(); })) return "";
    if (!dataset) {
      p.add("train_data() returned no dataset");
      return "";
    }
    const std::int64_t bs =
        std::max<std::int64_t>(1, host_int(setup, "batch_size", spec.default_batch));
    const bool shuffle = !setup.host.contains("shuffle") || setup.host.at("shuffle") == true;
    data::DataLoader loader(dataset, {.batch_size = bs,
                                      .shuffle = shuffle,
                                      .drop_last = true,
                                      .seed = kSuiteSeed,
                                      .prefetch = 0});
    if (loader.batches_per_epoch() == 0) {
      p.add("the dataset has " + std::to_string(dataset->size()) +
            " examples, fewer than batch_size " + std::to_string(bs) +
            " (declare a smaller batch_size with KILN_PLUGIN_CONFORMANCE)");
      return "";
    }
    auto step = [&](TrainTask& t, std::int64_t s) -> bool {
      const std::int64_t per = loader.batches_per_epoch();
      StepInfo info{s, s / per, s % per, kSuiteSeed};
      Metrics m;
      if (!guarded(p, "train_step " + std::to_string(s),
                   [&] { m = t.train_step(loader.get(info.epoch, info.batch), info); })) {
        return false;
      }
      auto loss = m.find("loss");
      if (loss == m.end()) {
        p.add("train_step returned no \"loss\"");
        return false;
      }
      for (const auto& [k, v] : m) {
        if (!std::isfinite(v)) {
          p.add("train_step " + std::to_string(s) + " gave a non-finite " + k);
          return false;
        }
      }
      return true;
    };
    for (std::int64_t s = 0; s < steps; ++s) {
      if (!step(*a->as_train(), s)) return "";
    }
    TensorMap state_a;
    if (!guarded(p, "state()", [&] { state_a = deep_copy(a->as_train()->state()); })) return "";
    if (state_a.empty()) p.add("state() is empty");

    // Same seed, fresh task: the same state bit for bit. Then a third task restored from the
    // second's state after one step continues to the same state.
    auto b = create(spec, setup, ctx, p);
    if (!b) return "";
    if (!step(*b->as_train(), 0)) return "";
    TensorMap state_b1;
    if (!guarded(p, "state()", [&] { state_b1 = deep_copy(b->as_train()->state()); })) return "";
    for (std::int64_t s = 1; s < steps; ++s) {
      if (!step(*b->as_train(), s)) return "";
    }
    TensorMap state_b;
    guarded(p, "state()", [&] { state_b = deep_copy(b->as_train()->state()); });
    if (const std::string d = diff_tensors(state_a, state_b); !d.empty()) {
      p.add("two runs with the same seed end in different states (" + d + ")");
    }
    auto c = create(spec, setup, ctx, p);
    if (!c) return "";
    if (!guarded(p, "load_state()", [&] { c->as_train()->load_state(state_b1); })) return "";
    for (std::int64_t s = 1; s < steps; ++s) {
      if (!step(*c->as_train(), s)) return "";
    }
    TensorMap state_c;
    guarded(p, "state()", [&] { state_c = deep_copy(c->as_train()->state()); });
    if (const std::string d = diff_tensors(state_a, state_c); !d.empty()) {
      p.add("a task restored with load_state() does not continue exactly (" + d + ")");
    }
    // load_state must refuse a state that does not fit.
    {
      TensorMap wrong = state_b1;
      if (!wrong.empty()) {
        wrong.erase(wrong.begin());
        try {
          c->as_train()->load_state(wrong);
          p.add("load_state() accepted a state with a tensor missing");
        } catch (...) {
          bool kiln_error = false;
          const std::string d = describe(std::current_exception(), &kiln_error);
          if (!kiln_error) p.add("load_state() of an incomplete state threw " + d);
        }
      }
    }
    Metrics eval;
    if (guarded(p, "evaluate()", [&] { eval = a->as_train()->evaluate(); })) {
      for (const auto& [k, v] : eval) {
        if (!std::isfinite(v)) p.add("evaluate() gave a non-finite " + k);
      }
    }
    Checkpoint model;
    if (guarded(p, "export_model()", [&] { model = a->as_train()->export_model(); })) {
      if (model.tensors.empty()) p.add("export_model() holds no tensors");
      auto it = model.metadata.find("kiln.plugin");
      if (it == model.metadata.end() || it->second != plugin_->name()) {
        p.add("export_model() metadata lacks kiln.plugin = \"" + plugin_->name() +
              "\" (use kiln::checkpoint_metadata)");
      }
      const fs::path file = models_dir_.path() / (spec.name + ".safetensors");
      guarded(p, "saving the exported model", [&] {
        save_safetensors(file, detach_tensors(model.tensors, "export_model()"), model.metadata);
      });
      models_[spec.name] = file;
    }
    return std::to_string(steps) +
           " steps, same seed same state, load_state continues exactly, "
           "export_model";
  }

  std::string check_generate(const TaskSpec& spec, const TaskSetup& setup, Problems& p) {
    TempFolder dir;
    SuiteContext ctx(dir.path());
    const std::int64_t count = std::max<std::int64_t>(2, host_int(setup, "count", 2));
    SampleRequest all;
    all.seed = kSuiteSeed;
    for (std::int64_t i = 0; i < count; ++i) all.indices.push_back(i);
    auto a = create(spec, setup, ctx, p);
    if (!a) return "";
    std::vector<Artifact> first;
    if (!guarded(p, "generate()", [&] { first = a->as_generate()->generate(all); })) return "";
    if (first.size() != all.indices.size()) {
      p.add("generate() returned " + std::to_string(first.size()) + " artifacts for " +
            std::to_string(count) + " indices");
      return "";
    }
    for (std::size_t i = 0; i < first.size(); ++i) {
      const Artifact& x = first[i];
      if (x.index != all.indices[i])
        p.add("artifact " + std::to_string(i) + " has index " + std::to_string(x.index));
      if (x.kind != ArtifactKind::image && x.kind != ArtifactKind::text) {
        p.add("artifact " + std::to_string(i) + " is neither an image nor text");
      }
      if (const std::string w = well_formed(x); !w.empty())
        p.add("artifact " + std::to_string(i) + " is " + w);
    }
    if (!p.empty()) return "";
    // Sample i depends on (seed, i) only: alone in a batch it comes out the same.
    SampleRequest last{{all.indices.back()}, kSuiteSeed};
    std::vector<Artifact> alone;
    if (guarded(p, "generate() of one index", [&] { alone = a->as_generate()->generate(last); })) {
      if (alone.size() != 1) {
        p.add("generate() of one index returned " + std::to_string(alone.size()) + " artifacts");
      } else if (const std::string d = diff_artifacts(alone[0], first.back(), 1); !d.empty()) {
        p.add("sample " + std::to_string(last.indices[0]) + " changes with the batch it is in (" +
              d +
              "); its randomness must come from "
              "(seed, index) alone");
      }
    }
    auto b = create(spec, setup, ctx, p);
    if (!b) return "";
    std::vector<Artifact> again;
    if (guarded(p, "generate()", [&] { again = b->as_generate()->generate(all); })) {
      for (std::size_t i = 0; i < std::min(again.size(), first.size()); ++i) {
        if (const std::string d = diff_artifacts(first[i], again[i], 0); !d.empty()) {
          p.add("a fresh task with the same seed gives a different sample " + std::to_string(i) +
                " (" + d + ")");
          break;
        }
      }
    }
    return std::to_string(count) +
           " samples, well formed, independent of the batch, "
           "deterministic";
  }

  std::string check_run(const TaskSpec& spec, const TaskSetup& setup, Problems& p) {
    TempFolder dir;
    SuiteContext ctx(dir.path());
    auto a = create(spec, setup, ctx, p);
    if (!a) return "";
    std::vector<Artifact> first;
    if (!guarded(p, "run()", [&] { first = a->as_run()->run(); })) return "";
    std::set<std::string> names;
    for (const Artifact& x : first) {
      if (const std::string w = well_formed(x); !w.empty()) p.add("run() returned " + w);
      if (x.kind == ArtifactKind::metrics) continue;
      const std::string stem = x.name.empty() && x.index >= 0 ? std::to_string(x.index) : x.name;
      if (!is_safe_name(stem)) {
        p.add("run() returned an artifact named '" + stem + "'");
      }
      if (!names.insert(stem + "/" + std::to_string(static_cast<int>(x.kind))).second) {
        p.add("run() returned two artifacts named '" + stem + "' of the same kind");
      }
    }
    auto b = create(spec, setup, ctx, p);
    if (!b) return "";
    std::vector<Artifact> again;
    if (guarded(p, "run()", [&] { again = b->as_run()->run(); })) {
      if (again.size() != first.size()) {
        p.add("two runs with the same seed return " + std::to_string(first.size()) + " and " +
              std::to_string(again.size()) + " artifacts");
      } else {
        for (std::size_t i = 0; i < first.size(); ++i) {
          if (const std::string d = diff_artifacts(first[i], again[i], 0); !d.empty()) {
            p.add("two runs with the same seed differ in artifact " + std::to_string(i) + " (" + d +
                  ")");
            break;
          }
        }
      }
    }
    return std::to_string(first.size()) + " artifacts, deterministic";
  }

  void check_lifetimes() {
    for (int order = 0; order < lifetime_order_count(); ++order) {
      const std::string name = "lifetime: " + lifetime_order_name(order);
      std::string detail;
      bool ok = false;
      if (opts_.lifetime_runner) {
        ok = opts_.lifetime_runner(order, detail);
      } else {
        try {
          run_lifetime_order(file_, order);
          ok = true;
        } catch (...) {
          detail = describe(std::current_exception());
        }
      }
      add(name, ok ? CheckResult::Status::pass : CheckResult::Status::fail, detail);
    }
  }

  fs::path file_;
  const ConformanceOptions& opts_;
  ConformanceReport& report_;
  std::shared_ptr<LoadedPlugin> plugin_;
  json settings_ = json::object();
  TempFolder models_dir_;
  std::map<std::string, fs::path> models_;
};

const char* kObjects[] = {"library", "plugin", "task"};
const int kOrders[6][3] = {{2, 1, 0}, {2, 0, 1}, {1, 2, 0}, {1, 0, 2}, {0, 2, 1}, {0, 1, 2}};

}  // namespace

bool ConformanceReport::passed() const {
  if (!loaded) return false;
  for (const CheckResult& c : checks) {
    if (c.status == CheckResult::Status::fail) return false;
  }
  return true;
}

std::string ConformanceReport::to_text() const {
  std::ostringstream os;
  os << "kiln check-plugin: " << (plugin.empty() ? std::string("?") : plugin) << " ("
     << file.string() << ")\n";
  int pass = 0, fail = 0, skip = 0;
  for (const CheckResult& c : checks) {
    const char* tag = c.status == CheckResult::Status::pass   ? "PASS"
                      : c.status == CheckResult::Status::fail ? "FAIL"
                                                              : "SKIP";
    (c.status == CheckResult::Status::pass   ? pass
     : c.status == CheckResult::Status::fail ? fail
                                             : skip)++;
    os << "  " << tag << "  " << c.name << "\n";
    if (!c.detail.empty()) os << "        " << c.detail << "\n";
  }
  os << pass << " passed, " << fail << " failed, " << skip << " skipped\n";
  return os.str();
}

ConformanceReport check_plugin(const fs::path& file, const ConformanceOptions& opts) {
  ConformanceReport report;
  report.file = file;
  Suite(file, opts, report).run();
  return report;
}

int lifetime_order_count() {
  return 6;
}

std::string lifetime_order_name(int order) {
  KILN_CHECK(order >= 0 && order < lifetime_order_count(), "lifetime order ", order,
             " is outside [0, ", lifetime_order_count(), ")");
  std::string s = "drop ";
  for (int i = 0; i < 3; ++i) s += std::string(i ? ", then " : "") + kObjects[kOrders[order][i]];
  return s;
}

void run_lifetime_order(const fs::path& file, int order) {
  lifetime_order_name(order);  // validates
  TempFolder dir;
  SuiteContext ctx(dir.path());  // outlives the task
  std::shared_ptr<LoadedPlugin> library = load_plugin(file);
  std::shared_ptr<Plugin> plugin = library->plugin();
  std::shared_ptr<Task> task;
  // The first task that can be made with its declared settings or defaults.
  std::string error;
  const json settings = read_settings(*library->library(), error);
  for (const TaskSpec& spec : library->info().tasks) {
    const TaskSetup setup = setup_for(spec, settings, {});
    if (!setup.usable) continue;
    try {
      task = library->create_task(spec.name, setup.params, ctx);
      break;
    } catch (const Error&) {
    }
  }
  auto use_what_remains = [&] {
    if (plugin) {
      const PluginInfo info = plugin->info();  // plugin code runs: it must still be mapped
      KILN_CHECK(!info.tasks.empty(), "info() lost its tasks");
    }
    if (task) {
      if (TrainTask* t = task->as_train()) {
        (void)t->state();
      } else {
        (void)task->as_generate();
      }
    }
  };
  for (int i = 0; i < 3; ++i) {
    switch (kOrders[order][i]) {
      case 0:
        library.reset();
        break;
      case 1:
        plugin.reset();
        break;
      case 2:
        task.reset();
        break;
    }
    use_what_remains();
  }
}

bool run_lifetime_in_subprocess(const std::string& exe, const fs::path& file, int order,
                                std::string& detail) {
  TempFolder dir;
  const fs::path err = dir.path() / "stderr.txt";
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, err.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  const std::string order_text = std::to_string(order);
  std::vector<std::string> args = {exe, "check-plugin", "--lifetime-order", order_text,
                                   file.string()};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, exe.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    detail = "cannot start " + exe + ": " + std::strerror(rc);
    return false;
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  std::string text;
  try {
    text = read_file(err);
  } catch (const Error&) {
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return true;
  detail = WIFSIGNALED(status) ? std::string("crashed with signal ") + strsignal(WTERMSIG(status))
                               : "exited with " + std::to_string(WEXITSTATUS(status));
  if (!text.empty()) detail += ": " + text.substr(0, 500);
  return false;
}

}  // namespace kiln::host
