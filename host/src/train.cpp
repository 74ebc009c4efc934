// The training runtime: epochs and steps over data::DataLoader, metrics, evaluation, atomic
// checkpoints, exact resume and the NaN guard.
//
// Stage folder:
//   checkpoints/step-<n>.safetensors   plugin state ("state.<name>") + host position (metadata)
//   checkpoints/latest                 the newest checkpoint's file name
//   metrics.jsonl                      {"kind": "train"|"eval", "step", "epoch", <metrics>...}
//   model.safetensors                  TrainTask::export_model(), the stage's main output
#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "host_error.hpp"
#include "kiln/data.hpp"
#include "kiln/file_io.hpp"
#include "kiln/safetensors.hpp"
#include "runtime.hpp"
#include "text.hpp"

namespace kiln::host {
namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

namespace {

constexpr const char* kStatePrefix = "state.";
constexpr const char* kTrainMetaKey = "kiln.train";

struct Position {
  std::int64_t step = 0, epoch = 0, batch = 0;
};

// Running sums of the train metrics since the last log line.
struct Window {
  std::map<std::string, std::pair<double, std::int64_t>> sums;
  void add(const Metrics& m) {
    for (const auto& [k, v] : m) {
      auto& s = sums[k];
      s.first += v;
      s.second += 1;
    }
  }
  bool empty() const { return sums.empty(); }
  json means() const {
    json j = json::object();
    for (const auto& [k, s] : sums) j[k] = s.first / static_cast<double>(s.second);
    return j;
  }
  json to_json() const {
    json j = json::object();
    for (const auto& [k, s] : sums) j[k] = json::array({s.first, s.second});
    return j;
  }
  static Window from_json(const json& j) {
    Window w;
    for (auto it = j.begin(); it != j.end(); ++it) {
      w.sums[it.key()] = {it.value().at(0).get<double>(), it.value().at(1).get<std::int64_t>()};
    }
    return w;
  }
};

std::string fmt_metric(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4g", v);
  return buf;
}

std::string metrics_text(const json& m) {
  std::string s;
  for (auto it = m.begin(); it != m.end(); ++it) {
    if (!it.value().is_number()) continue;
    s += (s.empty() ? "" : ", ") + it.key() + " " + fmt_metric(it.value().get<double>());
  }
  return s;
}

class Trainer {
 public:
  explicit Trainer(StageRun& r)
      : r_(r),
        s_(r.stage),
        task_(*r.task.as_train()),
        ckpt_dir_(s_.out_dir / "checkpoints"),
        metrics_path_(s_.out_dir / "metrics.jsonl") {
    const Params& h = s_.host;
    epochs_ = h.integer("epochs");
    max_steps_ = h.integer("max_steps");
    batch_size_ = h.integer("batch_size");
    shuffle_ = h.boolean("shuffle");
    checkpoint_every_ = h.integer("checkpoint_every");
    keep_ = h.integer("keep_checkpoints");
    eval_every_ = h.integer("eval_every");
    log_every_ = h.integer("log_every");
  }

  int run() {
    StageRun& r = r_;
    std::shared_ptr<const data::Dataset> dataset = task_.train_data();
    KILN_CHECK(dataset != nullptr, "the plugin's train_data() returned no dataset");
    data::DataLoader loader(dataset, {.batch_size = batch_size_,
                                      .shuffle = shuffle_,
                                      .drop_last = true,
                                      .seed = s_.seed,
                                      // The next batch is built on the I/O thread when the
                                      // budget has one (one at a time: one thread); otherwise
                                      // here, between steps.
                                      .prefetch = r.threads.overlap_io ? 1 : 0});
    const std::int64_t per_epoch = loader.batches_per_epoch();
    if (per_epoch == 0) {
      throw pipeline_error(where("batch_size") + ": " + s_.label() + ": the training data has " +
                           std::to_string(dataset->size()) + " examples, fewer than batch_size " +
                           std::to_string(batch_size_) + "; lower batch_size");
    }
    total_ = epochs_ * per_epoch;
    if (max_steps_ > 0) total_ = std::min(total_, max_steps_);
    config_ = config_json(*dataset);

    std::error_code ec;
    fs::create_directories(ckpt_dir_, ec);
    if (ec) {
      throw runtime_error("cannot create '" + ckpt_dir_.string() + "': " + ec.message());
    }
    remove_stale_temporaries(ckpt_dir_);
    remove_stale_temporaries(s_.out_dir);
    Position pos;
    if (r_.options.resume) {
      pos = restore();
    } else {
      start_fresh();
    }
    metrics_.open(metrics_path_, std::ios::app);
    if (!metrics_) throw runtime_error("cannot write '" + metrics_path_.string() + "'");

    r_.console.info(s_.label() + ": " + dataset->describe() + ", " + std::to_string(per_epoch) +
                    " batches of " + std::to_string(batch_size_) + " per epoch, " +
                    std::to_string(total_) + " steps" +
                    (pos.step > 0 ? ", resuming at step " + std::to_string(pos.step) : ""));
    Progress progress(r_.console, s_.id, total_, "step", pos.step);
    std::int64_t last_checkpoint = pos.step;
    std::int64_t last_eval_step = -1;

    while (pos.step < total_) {
      if (interrupted()) {
        if (pos.step > last_checkpoint) save_checkpoint(pos);
        progress.finish();
        r_.console.info(s_.label() + ": stopped at step " + std::to_string(pos.step) +
                        (pos.step > 0 ? "; checkpoint " + checkpoint_name(pos.step) : ""));
        return kExitInterrupted;
      }
      data::Batch batch = loader.get(pos.epoch, pos.batch);
      const StepInfo info{pos.step, pos.epoch, pos.batch, s_.seed};
      Metrics m = task_.train_step(batch, info);
      if (m.find("loss") == m.end()) {
        throw runtime_error(s_.label() + ": the plugin's train_step returned no \"loss\" metric");
      }
      guard(m, pos.step + 1, "training step");
      window_.add(m);
      ++pos.step;
      bool epoch_done = false;
      if (++pos.batch == per_epoch) {
        pos.batch = 0;
        ++pos.epoch;
        epoch_done = true;
      }
      progress.update(pos.step, "loss " + fmt_metric(m.at("loss")),
                      static_cast<double>(batch_size_), "samples");
      if (pos.step % log_every_ == 0 || pos.step == total_) {
        json line = {{"kind", "train"}, {"step", pos.step}, {"epoch", pos.epoch}};
        json means = window_.means();
        line.update(means);
        write_metrics(line);
        progress.log_line(metrics_text(means));
        window_ = Window{};
      }
      if (epoch_done && eval_every_ > 0 && pos.epoch % eval_every_ == 0) {
        evaluate(pos);
        last_eval_step = pos.step;
      }
      if (checkpoint_every_ > 0 && pos.step % checkpoint_every_ == 0 && pos.step < total_) {
        save_checkpoint(pos);
        last_checkpoint = pos.step;
      }
    }
    progress.finish();
    if (last_eval_step != pos.step && !already_evaluated_at(pos.step)) evaluate(pos);
    if (last_checkpoint != pos.step || !fs::exists(ckpt_dir_ / checkpoint_name(pos.step))) {
      save_checkpoint(pos, /*final=*/true);
    }
    export_model();
    return kExitOk;
  }

 private:
  std::string where(const std::string& key) const {
    auto it = s_.origin.find(key);
    return it != s_.origin.end() ? it->second : s_.where;
  }

  json config_json(const data::Dataset& dataset) const {
    return {{"plugin", s_.plugin_name},
            {"task", s_.task_name},
            {"params", json::parse(params_json_relative(s_.params, s_.spec, r_.pipeline.run_dir))},
            {"batch_size", batch_size_},
            {"shuffle", shuffle_},
            {"seed", s_.seed},
            {"examples", dataset.size()}};
  }

  static std::string checkpoint_name(std::int64_t step) {
    return "step-" + std::to_string(step) + ".safetensors";
  }

  // Checkpoints present, by step.
  std::vector<std::pair<std::int64_t, fs::path>> checkpoints() const {
    std::vector<std::pair<std::int64_t, fs::path>> out;
    std::error_code ec;
    for (fs::directory_iterator it(ckpt_dir_, ec), end; !ec && it != end; it.increment(ec)) {
      const auto step = number_between(it->path().filename().string(), "step-", ".safetensors");
      if (step) out.emplace_back(*step, it->path());
    }
    std::sort(out.begin(), out.end());
    return out;
  }

  void start_fresh() {
    const auto old = checkpoints();
    std::error_code ec;
    if (!old.empty() || fs::exists(metrics_path_, ec)) {
      r_.console.info(s_.label() +
                      ": starting from step 0 (earlier checkpoints and metrics are "
                      "replaced; use --resume to continue instead)");
    }
    for (const auto& [step, path] : old) fs::remove(path, ec);
    fs::remove(ckpt_dir_ / "latest", ec);
    fs::remove(metrics_path_, ec);
  }

  Position restore() {
    auto list = checkpoints();
    // The `latest` file names the newest checkpoint; fall back on the highest step found.
    std::error_code ec;
    if (fs::exists(ckpt_dir_ / "latest", ec)) {
      try {
        std::string name = read_file(ckpt_dir_ / "latest");
        while (!name.empty() && (name.back() == '\n' || name.back() == ' ')) name.pop_back();
        auto it = std::find_if(list.begin(), list.end(),
                               [&](const auto& c) { return c.second.filename() == name; });
        if (it != list.end()) std::rotate(it, it + 1, list.end());  // try it first (from the back)
      } catch (const Error&) {
      }
    }
    for (auto it = list.rbegin(); it != list.rend(); ++it) {
      Safetensors ck;
      try {
        ck = load_safetensors(it->second);
      } catch (const Error& e) {
        r_.console.warn(s_.label() + ": skipping unreadable checkpoint " + it->second.string() +
                        ": " + e.what());
        continue;
      }
      return restore_from(ck, it->second);
    }
    r_.console.info(s_.label() + ": no checkpoint to resume from; starting at step 0");
    start_fresh();
    return {};
  }

  Position restore_from(const Safetensors& ck, const fs::path& file) {
    auto meta = ck.metadata.find(kTrainMetaKey);
    if (meta == ck.metadata.end()) {
      throw runtime_error("'" + file.string() + "' is not a Kiln training checkpoint (no " +
                          kTrainMetaKey + " metadata)");
    }
    json h;
    try {
      h = json::parse(meta->second);
    } catch (const json::exception& e) {
      throw runtime_error("'" + file.string() + "': damaged " + kTrainMetaKey +
                          " metadata: " + e.what());
    }
    const json& saved = h.at("config");
    if (saved != config_) {
      std::vector<std::string> differ;
      for (auto it = config_.begin(); it != config_.end(); ++it) {
        if (!saved.contains(it.key()) || saved.at(it.key()) != it.value()) {
          if (it.key() == "params" && saved.contains("params")) {
            for (auto p = it.value().begin(); p != it.value().end(); ++p) {
              if (!saved["params"].contains(p.key()) || saved["params"][p.key()] != p.value()) {
                differ.push_back(p.key());
              }
            }
          } else {
            differ.push_back(it.key());
          }
        }
      }
      throw pipeline_error(s_.label() + ": cannot resume from '" + file.string() +
                           "': it was written with different settings (" + quoted_list(differ) +
                           "); restore them, or run without --resume to start over");
    }
    TensorMap state;
    const std::string prefix = kStatePrefix;
    for (const auto& [k, t] : ck.tensors) {
      if (k.rfind(prefix, 0) == 0) state[k.substr(prefix.size())] = t;
    }
    task_.load_state(state);
    Position pos;
    pos.step = h.at("step").get<std::int64_t>();
    pos.epoch = h.at("epoch").get<std::int64_t>();
    pos.batch = h.at("batch").get<std::int64_t>();
    window_ = Window::from_json(h.at("window"));
    truncate_metrics(pos.step);
    r_.console.info(s_.label() + ": resuming from " + file.string());
    return pos;
  }

  // Drops metrics lines written after the checkpoint we resume from (they will be written again).
  void truncate_metrics(std::int64_t step) {
    std::error_code ec;
    if (!fs::exists(metrics_path_, ec)) return;
    std::ifstream in(metrics_path_);
    std::string line, kept;
    while (std::getline(in, line)) {
      try {
        const json j = json::parse(line);
        if (j.at("step").get<std::int64_t>() <= step) kept += line + "\n";
      } catch (const json::exception&) {
        // a torn last line: dropped
      }
    }
    write_file_atomic(metrics_path_, kept);
  }

  bool already_evaluated_at(std::int64_t step) const {
    // After a resume exactly at the end of an evaluated epoch, the evaluation line is present.
    std::ifstream in(metrics_path_);
    std::string line;
    while (std::getline(in, line)) {
      try {
        const json j = json::parse(line);
        if (j.at("kind") == "eval" && j.at("step").get<std::int64_t>() == step) return true;
      } catch (const json::exception&) {
      }
    }
    return false;
  }

  std::string last_good_checkpoint() const {
    const auto list = checkpoints();
    return list.empty() ? "No checkpoint was written before it."
                        : "The last good checkpoint is " + list.back().second.string() + ".";
  }

  void guard(const Metrics& m, std::int64_t step, const std::string& what) {
    for (const auto& [k, v] : m) {
      if (std::isfinite(v)) continue;
      throw runtime_error(s_.label() + ": " + what + " " + std::to_string(step) +
                          " gave a non-finite " + k + " (" + fmt_metric(v) +
                          "); training stopped without writing a checkpoint from this state. " +
                          last_good_checkpoint() +
                          " Lower the learning rate or check the data, then run again (--resume "
                          "continues from the last good checkpoint).");
    }
  }

  void evaluate(const Position& pos) {
    Metrics m = task_.evaluate();
    if (m.empty()) return;
    guard(m, pos.step, "evaluation after step");
    json line = {{"kind", "eval"}, {"step", pos.step}, {"epoch", pos.epoch}};
    for (const auto& [k, v] : m) line[k] = v;
    write_metrics(line);
    json vals = json::object();
    for (const auto& [k, v] : m) vals[k] = v;
    r_.console.info(s_.id + ": evaluation at step " + std::to_string(pos.step) + ": " +
                    metrics_text(vals));
  }

  void write_metrics(const json& line) {
    metrics_ << line.dump() << "\n";
    metrics_.flush();
  }

  // Periodic checkpoints keep the `keep` newest; the final one is kept in addition to them.
  void save_checkpoint(const Position& pos, bool final = false) {
    TensorMap tensors;
    for (const auto& [k, t] : detach_tensors(task_.state(), "the plugin's state()")) {
      if (is_floating(t.dtype())) {
        const std::vector<float> values = t.to_vector();
        if (!std::all_of(values.begin(), values.end(), [](float v) { return std::isfinite(v); })) {
          throw runtime_error(s_.label() + ": the training state holds non-finite values in '" + k +
                              "' at step " + std::to_string(pos.step) +
                              "; no checkpoint was written from it. " + last_good_checkpoint() +
                              " Lower the learning rate or check the data.");
        }
      }
      tensors[kStatePrefix + k] = t;
    }
    std::map<std::string, std::string> meta =
        checkpoint_metadata(s_.plugin_name, s_.plugin->info().version, s_.task_name, s_.params);
    meta["kiln.params"] = params_json_relative(s_.params, s_.spec, r_.pipeline.run_dir);
    json h = {{"step", pos.step}, {"epoch", pos.epoch},          {"batch", pos.batch},
              {"seed", s_.seed},  {"window", window_.to_json()}, {"config", config_}};
    meta[kTrainMetaKey] = h.dump();
    const fs::path file = ckpt_dir_ / checkpoint_name(pos.step);
    save_safetensors(file, tensors, meta);
    write_file_atomic(ckpt_dir_ / "latest", checkpoint_name(pos.step) + "\n");
    prune(final ? keep_ + 1 : keep_);
  }

  // Keeps the `keep` newest checkpoints.
  void prune(std::int64_t keep) {
    auto list = checkpoints();
    std::error_code ec;
    for (std::size_t i = 0; i + static_cast<std::size_t>(keep) < list.size(); ++i) {
      fs::remove(list[i].second, ec);
    }
  }

  void export_model() {
    Checkpoint model = task_.export_model();
    save_safetensors(s_.main_output, detach_tensors(model.tensors, "the plugin's exported model"),
                     model.metadata);
    r_.console.info(s_.label() + ": model written to " + s_.main_output.string());
  }

  StageRun& r_;
  const StageConfig& s_;
  TrainTask& task_;
  fs::path ckpt_dir_, metrics_path_;
  std::int64_t epochs_, max_steps_, batch_size_, checkpoint_every_, keep_, eval_every_, log_every_;
  bool shuffle_;
  std::int64_t total_ = 0;
  json config_;
  Window window_;
  std::ofstream metrics_;
};

}  // namespace

int run_train_stage(StageRun& r) {
  Trainer t(r);
  return t.run();
}

}  // namespace kiln::host
