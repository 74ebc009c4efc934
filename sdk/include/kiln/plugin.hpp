// The plugin contract: what a model plugin declares, and the tasks it hands to the host.
//
//   class VaePlugin : public kiln::Plugin {
//    public:
//     kiln::PluginInfo info() const override {
//       return {"vae", "1.0.0", "vae", "Convolutional VAE and autoencoders",
//               {kiln::TaskSpec::train("train", "Train on IDX files or a folder of PNGs")
//                    .param(kiln::ParamSpec::integer("latent", 16, "Latent size").range(1, 1024))
//                    .param(kiln::ParamSpec::path("data", "Dataset folder or IDX file"))
//                    .batch(128).epochs(10)}};
//     }
//     std::unique_ptr<kiln::Task> create_task(const std::string& task, const kiln::Params& p,
//                                             kiln::TaskContext& ctx) override;
//   };
//   KILN_PLUGIN(VaePlugin, "vae")
//
// The host loads the library, reads the descriptor (ABI version, SDK version, toolchain, name)
// and refuses a mismatch before creating any object; then calls the factory, reads info(),
// validates the pipeline's keys against each task's ParamSpecs, and creates tasks with complete,
// typed Params (defaults filled, paths absolute). Plugins compute; the host schedules and
// persists:
//   * TrainTask: the host owns epochs, batching (through data::DataLoader over train_data()),
//     checkpoint cadence, resume, metrics and the NaN guard; the plugin runs one step on a batch
//     and exposes its complete state as named tensors.
//   * GenerateTask: the host owns sample ranges, batching, seeds, shards, resume and writing; the
//     plugin turns sample indices (and the seed) into one artifact per index. Sample i's
//     randomness must come from Philox(seed, i, stream) alone.
//   * RunTask: one-shot work (evaluation, interpolation grids, style optimisation); the host
//     writes the artifacts it returns.
// Bad input is reported by throwing kiln::Error with a sentence for a person.
//
// ABI: the types in this header cross the plugin boundary. Changing any of them, or a virtual
// interface of the SDK, bumps KILN_ABI_VERSION (docs/plugin-authoring.md, "ABI policy").
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "kiln/data.hpp"
#include "kiln/export.hpp"
#include "kiln/image.hpp"
#include "kiln/tensor.hpp"
#include "kiln/version.hpp"

namespace kiln {

// ------------------------------------------------------------------------------ parameters

// Values are part of the ABI: append only.
enum class ParamType : std::uint8_t {
  boolean = 0,
  integer = 1,
  number = 2,
  string = 3,
  path = 4,  // an existing file or folder; relative paths resolve against the pipeline file;
             // "@stage" names an earlier stage's main output
  choice = 5,
  integer_list = 6,
  number_list = 7,
  string_list = 8,
};
KILN_API const char* param_type_name(ParamType t);

using ParamValue =
    std::variant<std::monostate, bool, std::int64_t, double, std::string, std::vector<std::int64_t>,
                 std::vector<double>, std::vector<std::string>>;
// TOML-like rendering: 3, 0.5, "text", [1, 2], true.
KILN_API std::string param_value_str(const ParamValue& v);

struct KILN_API ParamSpec {
  std::string name;
  ParamType type = ParamType::string;
  ParamValue default_value;          // std::monostate: no default
  bool optional = false;             // without a default: may be left out (Params::has is false)
  std::optional<double> min, max;    // integer / number (and their lists' elements), inclusive
  std::vector<std::string> choices;  // choice (and string_list elements when non-empty)
  std::string help;

  static ParamSpec boolean(std::string name, bool def, std::string help);
  static ParamSpec integer(std::string name, std::int64_t def, std::string help);
  static ParamSpec number(std::string name, double def, std::string help);
  static ParamSpec string(std::string name, std::string def, std::string help);
  // A required path (no default).
  static ParamSpec path(std::string name, std::string help);
  // A path with a default, e.g. a dataset's install folder. The default is treated like a value
  // given in the pipeline (a relative one resolves against the pipeline file), so make it absolute.
  static ParamSpec path(std::string name, std::string def, std::string help);
  static ParamSpec choice(std::string name, std::string def, std::vector<std::string> choices,
                          std::string help);
  static ParamSpec integers(std::string name, std::vector<std::int64_t> def, std::string help);
  static ParamSpec numbers(std::string name, std::vector<double> def, std::string help);
  static ParamSpec strings(std::string name, std::vector<std::string> def, std::string help);

  ParamSpec& range(double lo, double hi);
  ParamSpec& at_least(double lo);
  ParamSpec& make_optional();  // drops the default: the key may be absent
  ParamSpec& make_required();  // drops the default: the key must be given

  bool required() const {
    return std::holds_alternative<std::monostate>(default_value) && !optional;
  }
  // "" when `v` is acceptable (type, range, choices), otherwise the reason, e.g.
  // "must be between 1 and 1024, got 0".
  std::string check(const ParamValue& v) const;
  // "integer in [1, 1024], default 16" — for `kiln inspect` and the docs.
  std::string describe() const;
};

// Validated, typed parameter values of one task.
class KILN_API Params {
 public:
  Params() = default;
  explicit Params(std::map<std::string, ParamValue> values) : values_(std::move(values)) {}

  bool has(const std::string& name) const;
  const ParamValue& get(const std::string& name) const;  // throws naming the missing key
  bool boolean(const std::string& name) const;
  std::int64_t integer(const std::string& name) const;
  double number(const std::string& name) const;              // integers are widened
  const std::string& string(const std::string& name) const;  // string, path and choice
  std::vector<std::int64_t> integers(const std::string& name) const;
  std::vector<double> numbers(const std::string& name) const;
  std::vector<std::string> strings(const std::string& name) const;
  void set(const std::string& name, ParamValue v) { values_[name] = std::move(v); }
  const std::map<std::string, ParamValue>& values() const { return values_; }

  // JSON object (for checkpoint metadata and manifests) and back.
  std::string to_json() const;
  static Params from_json(const std::string& json);
  // `given` completed with the spec's defaults and checked against it (unknown keys, types,
  // ranges): throws kiln::Error naming the key. Plugins use it to rebuild a model from the
  // parameters stored in a checkpoint.
  static Params resolve(const std::vector<ParamSpec>& spec, const Params& given);

 private:
  std::map<std::string, ParamValue> values_;
};

// ------------------------------------------------------------------------------ artifacts

// Values are part of the ABI: append only.
enum class ArtifactKind : std::uint8_t {
  image = 0,    // -> PNG
  text = 1,     // -> .txt
  tensors = 2,  // -> .safetensors (tensors + metadata)
  table = 3,    // -> .csv
  metrics = 4,  // -> merged into the stage's metrics.json and printed
  file = 5,     // -> raw bytes with `extension`
};

struct Table {
  std::vector<std::string> columns;
  std::vector<std::vector<std::string>> rows;
};

struct KILN_API Artifact {
  ArtifactKind kind = ArtifactKind::image;
  std::int64_t index = -1;  // sample index for generate tasks, -1 otherwise
  std::string name;         // file stem, e.g. "interpolation"; generate tasks may leave it empty
  Image image;
  std::string text;
  TensorMap tensors;
  std::map<std::string, std::string> metadata;  // stored with `tensors`
  Table table;
  std::map<std::string, double> metrics;
  std::string bytes;
  std::string extension;  // for `file`, without the dot
  // Details recorded in the manifest line of this artifact (label, prompt, step count, ...).
  std::map<std::string, std::string> info;

  static Artifact make_image(std::int64_t index, Image img, std::string name = "");
  static Artifact make_text(std::int64_t index, std::string text, std::string name = "");
  static Artifact make_tensors(std::string name, TensorMap tensors,
                               std::map<std::string, std::string> metadata = {});
  static Artifact make_table(std::string name, Table table);
  static Artifact make_metrics(std::map<std::string, double> metrics);
};

using Metrics = std::map<std::string, double>;

// A trained model: tensors plus metadata. Plugins store "kiln.plugin", "kiln.plugin_version",
// "kiln.task" and "kiln.params" (Params::to_json of the training parameters) so that other
// tasks can rebuild the architecture from the file alone.
struct Checkpoint {
  TensorMap tensors;
  std::map<std::string, std::string> metadata;
};

// ------------------------------------------------------------------------------ tasks

// Given by the host to every task it creates; valid for the task's lifetime.
class KILN_API TaskContext {
 public:
  virtual ~TaskContext() = default;
  virtual std::string stage_id() const = 0;
  // A folder the task may use for its own files (caches, intermediate results).
  virtual std::filesystem::path work_dir() const = 0;
  virtual std::uint64_t seed() const = 0;  // the stage's seed
  virtual DType precision() const = 0;     // f32 or bf16, from the pipeline's [compute]
  // For long RunTasks: progress in `unit`s (the host draws the bar or logs).
  virtual void progress(std::int64_t done, std::int64_t total, const std::string& unit) = 0;
  // True once the user asked to stop (Ctrl-C); long loops should return early.
  virtual bool cancelled() const = 0;
  // Text for a person as it is produced (token streaming); the host decides where it goes.
  virtual void stream_text(std::string_view chunk) = 0;
};

// Values are part of the ABI: append only.
enum class TaskKind : std::uint8_t { train = 0, generate = 1, run = 2 };
KILN_API const char* task_kind_name(TaskKind k);

class TrainTask;
class GenerateTask;
class RunTask;

class KILN_API Task {
 public:
  virtual ~Task() = default;
  virtual TrainTask* as_train() { return nullptr; }
  virtual GenerateTask* as_generate() { return nullptr; }
  virtual RunTask* as_run() { return nullptr; }
};

struct StepInfo {
  std::int64_t step = 0;  // global optimisation step, from 0
  std::int64_t epoch = 0;
  std::int64_t batch = 0;  // batch within the epoch
  std::uint64_t seed = 0;  // the stage seed: step randomness is Philox(seed, step, stream)
};

class KILN_API TrainTask : public Task {
 public:
  TrainTask* as_train() override { return this; }
  // The training examples; the host batches them with data::DataLoader.
  virtual std::shared_ptr<const data::Dataset> train_data() = 0;
  // One optimisation step; the result must contain "loss".
  virtual Metrics train_step(const data::Batch& batch, const StepInfo& info) = 0;
  // Validation metrics (e.g. "val_loss"), at the end of each epoch and of training.
  virtual Metrics evaluate() { return {}; }
  // The complete training state (parameters, buffers, optimiser state): restoring it with
  // load_state continues bit-exactly.
  virtual TensorMap state() const = 0;
  virtual void load_state(const TensorMap& state) = 0;
  // The trained model, for later stages (e.g. `generate` with model = "@train").
  virtual Checkpoint export_model() const = 0;
};

struct SampleRequest {
  std::vector<std::int64_t> indices;  // ascending sample indices of this batch
  std::uint64_t seed = 0;             // sample i's randomness: Philox(seed, i, stream)
};

class KILN_API GenerateTask : public Task {
 public:
  GenerateTask* as_generate() override { return this; }
  // The sample count when the pipeline sets none (e.g. the size of an input dataset);
  // -1 means the pipeline must set `count`.
  virtual std::int64_t default_count() const { return -1; }
  // One artifact (image or text) per requested index, with `index` set.
  virtual std::vector<Artifact> generate(const SampleRequest& request) = 0;
};

class KILN_API RunTask : public Task {
 public:
  RunTask* as_run() override { return this; }
  virtual std::vector<Artifact> run() = 0;
};

// ------------------------------------------------------------------------------ description

struct KILN_API TaskSpec {
  std::string name;
  TaskKind kind = TaskKind::run;
  std::string help;
  std::vector<ParamSpec> params;
  // Defaults of host-owned keys (train: batch_size, epochs; generate: batch).
  std::int64_t default_batch = 64;
  std::int64_t default_epochs = 1;

  static TaskSpec train(std::string name, std::string help);
  static TaskSpec generate(std::string name, std::string help);
  static TaskSpec run(std::string name, std::string help);
  TaskSpec& param(ParamSpec p);
  TaskSpec& batch(std::int64_t b);
  TaskSpec& epochs(std::int64_t e);
  const ParamSpec* find(const std::string& param) const;
};

struct KILN_API PluginInfo {
  std::string name;
  std::string version;
  std::string family;
  std::string description;
  std::vector<TaskSpec> tasks;
  const TaskSpec* find(const std::string& task) const;
};

class KILN_API Plugin {
 public:
  virtual ~Plugin() = default;
  virtual PluginInfo info() const = 0;
  // `params` are complete and validated against the task's spec.
  virtual std::unique_ptr<Task> create_task(const std::string& task, const Params& params,
                                            TaskContext& ctx) = 0;
};

// Metadata keys every plugin checkpoint carries, and a helper that checks a checkpoint was made
// by `plugin` and returns its stored parameters resolved against `spec`.
KILN_API std::map<std::string, std::string> checkpoint_metadata(const std::string& plugin,
                                                                const std::string& version,
                                                                const std::string& task,
                                                                const Params& params);
KILN_API Params checkpoint_params(const std::map<std::string, std::string>& metadata,
                                  const std::string& plugin, const std::vector<ParamSpec>& spec,
                                  const std::string& file);

}  // namespace kiln

// ------------------------------------------------------------------------------ descriptor

// Read by the host before it creates any C++ object of the plugin. Layout frozen: fields are
// only ever appended in the reserved space, and descriptor_size tells which exist.
extern "C" struct KilnPluginDescriptor {
  std::uint32_t magic;  // kKilnPluginMagic
  std::uint32_t abi_version;
  std::uint32_t descriptor_size;
  std::uint32_t reserved0;
  char sdk_version[16];
  char toolchain[64];
  char name[64];
  std::uint64_t reserved[8];
};
static_assert(sizeof(KilnPluginDescriptor) == 224, "KilnPluginDescriptor layout is frozen");
inline constexpr std::uint32_t kKilnPluginMagic = 0x4b494c4eu;  // "KILN"

#define KILN_STR2(x) #x
#define KILN_STR(x) KILN_STR2(x)
// What must match between the host's and the plugin's C++ runtime for C++ objects to cross.
#define KILN_TOOLCHAIN_ID \
  "libstdc++ cxx11-abi=" KILN_STR(_GLIBCXX_USE_CXX11_ABI) " gcc-abi=" KILN_STR(__GXX_ABI_VERSION)

#include <boost/dll/alias.hpp>

// Exports the descriptor and the factory of `PluginClass` (default-constructible) through
// Boost.DLL aliases `kiln_plugin_descriptor` and `kiln_create_plugin`. Use once per plugin.
#define KILN_PLUGIN(PluginClass, plugin_name)                                                      \
  extern "C" const KilnPluginDescriptor kiln_plugin_descriptor_v1 = {kKilnPluginMagic,             \
                                                                     KILN_ABI_VERSION,             \
                                                                     sizeof(KilnPluginDescriptor), \
                                                                     0,                            \
                                                                     KILN_VERSION_STRING,          \
                                                                     KILN_TOOLCHAIN_ID,            \
                                                                     plugin_name,                  \
                                                                     {}};                          \
  namespace {                                                                                      \
  ::kiln::Plugin* kiln_create_plugin_impl() {                                                      \
    return new PluginClass();                                                                      \
  }                                                                                                \
  }                                                                                                \
  BOOST_DLL_ALIAS(kiln_plugin_descriptor_v1, kiln_plugin_descriptor)                               \
  BOOST_DLL_ALIAS(kiln_create_plugin_impl, kiln_create_plugin)

// Optional: tiny settings per task for the plugin conformance suite (`kiln check-plugin`,
// docs/plugin-authoring.md), as a JSON object {"<task>": {"<key>": value, ...}, ...}. Keys are the
// task's parameters and host keys (train: batch_size, max_steps; generate: count, batch); a path
// value "@<task>" names the model exported by that train task of the suite. Tasks left out run
// with their defaults when they have no required parameter, and are skipped otherwise. An
// optional exported string: declaring it or not does not change the plugin ABI.
//   KILN_PLUGIN_CONFORMANCE(R"({"train": {"data": "/usr/share/datasets/fashion-mnist",
//                                         "latent": 2, "batch_size": 8},
//                               "generate": {"model": "@train", "count": 2}})")
#define KILN_PLUGIN_CONFORMANCE(json_text)                        \
  extern "C" const char kiln_conformance_params_v1[] = json_text; \
  BOOST_DLL_ALIAS(kiln_conformance_params_v1, kiln_conformance_params)
