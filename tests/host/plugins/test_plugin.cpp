// The test plugin (tests only, never installed): exercises every path of the plugin contract so
// that the host's runtimes and the conformance suite can be tested without a real model.
//
//   fit    (train)     a linear model y = x.w + b on a synthetic dataset, momentum SGD whose
//                      velocity is part of the state, gradient noise from Philox(seed, step);
//                      nan_at_step makes one step's loss NaN, poison_at_step the weights,
//                      sleep_ms slows every step
//   draw   (generate)  images (noise + a square, all from Philox(seed, index)) or text; a model
//                      from `fit` tints them; delay_ms slows every batch, fail_at_index throws;
//                      matmuls adds oneDNN work per batch (for measuring the thread split)
//   report (run)       one artifact of every kind; fail / throw_std make it throw
//
// Built a second time with KILN_TEST_SLOPPY as the plugin "sloppy", which breaks the contract in
// ways the conformance suite must catch: a default outside its own range, an unknown task and a
// missing required parameter accepted, training that is not reproducible, samples that depend on
// their position in the batch.
#include <chrono>
#include <cmath>
#include <stdexcept>
#include <thread>

#include "kiln/data.hpp"
#include "kiln/file_io.hpp"
#include "kiln/ops.hpp"
#include "kiln/plugin.hpp"
#include "kiln/random.hpp"
#include "kiln/safetensors.hpp"

namespace {

using kiln::Artifact;
using kiln::Error;
using kiln::Params;
using kiln::ParamSpec;
using kiln::Tensor;
using kiln::TensorMap;

#ifdef KILN_TEST_SLOPPY
constexpr const char* kName = "sloppy";
constexpr bool kSloppy = true;
#else
constexpr const char* kName = "test";
constexpr bool kSloppy = false;
#endif
constexpr const char* kVersion = "1.2.3";

std::vector<ParamSpec> fit_params() {
  return {
      ParamSpec::integer("samples", 96, "Examples in the synthetic dataset").range(1, 100000),
      ParamSpec::integer("features", 4, "Inputs of the linear model").range(1, 64),
      ParamSpec::number("lr", 0.05, "Learning rate").range(1e-6, 1.0),
      ParamSpec::number("noise", 0.01, "Gradient noise drawn from Philox(seed, step)").range(0, 1),
      ParamSpec::number("val_fraction", 0.25, "Share of examples held out for evaluate()")
          .range(0, 0.9),
      ParamSpec::integer("nan_at_step", -1, "Step index (from 0) whose loss is NaN; -1: never")
          .at_least(-1),
      ParamSpec::integer("poison_at_step", -1,
                         "Step index (from 0) that leaves NaN weights behind a finite loss")
          .at_least(-1),
      ParamSpec::integer("sleep_ms", 0, "Milliseconds to sleep in every step").range(0, 10000)};
}

// Example i: x ~ N(0, 1) from Philox(7, i), y = x . (1, -2, 3, ...) + 0.5.
class LinearData final : public kiln::data::Dataset {
 public:
  LinearData(std::int64_t n, std::int64_t f) : n_(n), f_(f) {}
  std::int64_t size() const override { return n_; }
  kiln::data::Batch get_batch(const std::vector<std::int64_t>& indices) const override {
    const auto b = static_cast<std::int64_t>(indices.size());
    Tensor x = Tensor::empty({b, f_}), y = Tensor::empty({b, 1});
    for (std::int64_t r = 0; r < b; ++r) {
      KILN_CHECK(indices[r] >= 0 && indices[r] < n_, "test/fit: example ", indices[r],
                 " out of range");
      kiln::Philox rng(7, static_cast<std::uint64_t>(indices[r]));
      float target = 0.5f;
      for (std::int64_t j = 0; j < f_; ++j) {
        const float v = rng.normal();
        x.data<float>()[r * f_ + j] = v;
        target += v * static_cast<float>((j % 2 ? -1 : 1) * (j + 1));
      }
      y.data<float>()[r] = target;
    }
    return {{"x", x}, {"y", y}, {"index", Tensor::from_ints(indices, {b})}};
  }
  std::string describe() const override {
    return "synthetic linear data (" + std::to_string(n_) + " examples)";
  }

 private:
  std::int64_t n_, f_;
};

class FitTask final : public kiln::TrainTask {
 public:
  FitTask(const Params& p, kiln::TaskContext& ctx) : params_(p), ctx_(ctx) {
    f_ = p.integer("features");
    auto all = std::make_shared<LinearData>(p.integer("samples"), f_);
    auto [train, val] = kiln::data::random_split(all, p.number("val_fraction"), ctx.seed());
    train_ = train;
    val_ = val;
    w_ = Tensor::zeros({f_});
    b_ = Tensor::zeros({1});
    vw_ = Tensor::zeros({f_});
    vb_ = Tensor::zeros({1});
    steps_ = Tensor::zeros({1}, kiln::DType::s64);
  }

  std::shared_ptr<const kiln::data::Dataset> train_data() override { return train_; }

  kiln::Metrics train_step(const kiln::data::Batch& batch, const kiln::StepInfo& info) override {
    if (params_.integer("sleep_ms") > 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(params_.integer("sleep_ms")));
    }
    const Tensor& x = batch.at("x");
    const Tensor& y = batch.at("y");
    const std::int64_t n = x.size(0);
    std::vector<double> gw(static_cast<std::size_t>(f_), 0.0);
    double gb = 0.0, loss = 0.0;
    float* w = w_.data<float>();
    for (std::int64_t r = 0; r < n; ++r) {
      double pred = b_.data<float>()[0];
      for (std::int64_t j = 0; j < f_; ++j) pred += double(x.data<float>()[r * f_ + j]) * w[j];
      const double e = pred - y.data<float>()[r];
      loss += e * e;
      for (std::int64_t j = 0; j < f_; ++j) gw[j] += 2 * e * x.data<float>()[r * f_ + j];
      gb += 2 * e;
    }
    loss /= static_cast<double>(n);
    static std::uint64_t calls = 0;  // sloppy: noise that depends on history, not on the step
    kiln::Philox rng(info.seed, kSloppy ? calls++ : static_cast<std::uint64_t>(info.step), 1);
    const float noise = static_cast<float>(params_.number("noise"));
    const float lr = static_cast<float>(params_.number("lr"));
    for (std::int64_t j = 0; j < f_; ++j) {
      const float g = static_cast<float>(gw[j] / n) + noise * rng.normal();
      vw_.data<float>()[j] = 0.9f * vw_.data<float>()[j] + g;
      w[j] -= lr * vw_.data<float>()[j];
    }
    vb_.data<float>()[0] = 0.9f * vb_.data<float>()[0] + static_cast<float>(gb / n);
    b_.data<float>()[0] -= lr * vb_.data<float>()[0];
    steps_.data<std::int64_t>()[0] += 1;
    if (info.step == params_.integer("nan_at_step")) loss = std::nan("");
    if (info.step == params_.integer("poison_at_step")) w[0] = std::nanf("");
    return {{"loss", loss}, {"lr", lr}};
  }

  kiln::Metrics evaluate() override {
    if (val_->size() == 0) return {};
    std::vector<std::int64_t> all(static_cast<std::size_t>(val_->size()));
    for (std::size_t i = 0; i < all.size(); ++i) all[i] = static_cast<std::int64_t>(i);
    auto batch = val_->get_batch(all);
    double loss = 0;
    for (std::int64_t r = 0; r < val_->size(); ++r) {
      double pred = b_.data<float>()[0];
      for (std::int64_t j = 0; j < f_; ++j)
        pred += double(batch["x"].data<float>()[r * f_ + j]) * w_.data<float>()[j];
      loss += (pred - batch["y"].data<float>()[r]) * (pred - batch["y"].data<float>()[r]);
    }
    return {{"val_loss", loss / static_cast<double>(val_->size())}};
  }

  TensorMap state() const override {
    return {{"w", w_},
            {"b", b_},
            {"optim.w_velocity", vw_},
            {"optim.b_velocity", vb_},
            {"steps", steps_}};
  }

  void load_state(const TensorMap& state) override {
    const TensorMap mine = this->state();
    for (const auto& [k, t] : mine) {
      auto it = state.find(k);
      KILN_CHECK(it != state.end(), "test/fit: the state lacks '", k, "'");
      KILN_CHECK(it->second.shape() == t.shape() && it->second.dtype() == t.dtype(), "test/fit: '",
                 k, "' has shape ", kiln::shape_str(it->second.shape()), ", expected ",
                 kiln::shape_str(t.shape()));
    }
    KILN_CHECK(state.size() == mine.size(), "test/fit: the state has unexpected tensors");
    for (const auto& [k, t] : mine) {
      Tensor dst = t;
      dst.copy_(state.at(k));
    }
  }

  kiln::Checkpoint export_model() const override {
    return {{{"w", w_.clone()}, {"b", b_.clone()}},
            kiln::checkpoint_metadata(kName, kVersion, "fit", params_)};
  }

 private:
  Params params_;
  kiln::TaskContext& ctx_;
  std::int64_t f_;
  std::shared_ptr<kiln::data::Dataset> train_, val_;
  Tensor w_, b_, vw_, vb_, steps_;
};

std::vector<ParamSpec> draw_params() {
  return {
      ParamSpec::integer("size", kSloppy ? 2 : 16, "Image width and height").range(4, 256),
      ParamSpec::choice("color", "rgb", {"grey", "rgb"}, "Image channels"),
      ParamSpec::choice("kind", "image", {"image", "text"}, "What each sample is"),
      ParamSpec::string("label", "sample", "Recorded in each sample's manifest info"),
      ParamSpec::path("model", "A model trained by test/fit; it tints the images").make_optional(),
      ParamSpec::integer("delay_ms", 0, "Milliseconds to sleep per batch").range(0, 10000),
      ParamSpec::integer("matmuls", 0, "256x256 oneDNN matmuls per sample in each batch")
          .range(0, 10000),
      ParamSpec::integer("fail_at_index", -1, "Sample index whose generation throws").at_least(-1)};
}

class DrawTask final : public kiln::GenerateTask {
 public:
  DrawTask(const Params& p, kiln::TaskContext& ctx) : params_(p), ctx_(ctx) {
    if (p.has("model")) {
      kiln::Safetensors m = kiln::load_safetensors(p.string("model"));
      kiln::checkpoint_params(m.metadata, kName, fit_params(), p.string("model"));
      KILN_CHECK(m.tensors.count("w") == 1, "test/draw: '", p.string("model"), "' has no 'w'");
      for (float v : m.tensors.at("w").to_vector()) tint_ += v;
    }
  }

  std::int64_t default_count() const override { return 5; }

  std::vector<Artifact> generate(const kiln::SampleRequest& req) override {
    if (params_.integer("delay_ms") > 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(params_.integer("delay_ms")));
    }
    if (params_.integer("matmuls") > 0) {
      // Compute whose result is not used: load on oneDNN's OpenMP team, as a real model has.
      Tensor a = Tensor::full({static_cast<std::int64_t>(req.indices.size()) * 16, 256}, 0.01f);
      const Tensor w = Tensor::full({256, 256}, 0.01f);
      for (std::int64_t k = 0; k < params_.integer("matmuls"); ++k) a = kiln::ops::matmul(a, w);
    }
    std::vector<Artifact> out;
    for (std::int64_t i : req.indices) {
      KILN_CHECK(i != params_.integer("fail_at_index"), "test/draw: asked to fail at sample ", i,
                 " (fail_at_index)");
      // sloppy: the seed of a sample depends on its position in the batch
      const std::uint64_t seed = kSloppy ? req.seed + out.size() : req.seed;
      Artifact a = params_.string("kind") == "text" ? text(i, seed) : image(i, seed);
      a.info = {{"label", params_.string("label")},
                {"precision", kiln::dtype_name(ctx_.precision())}};
      out.push_back(std::move(a));
    }
    return out;
  }

 private:
  Artifact image(std::int64_t i, std::uint64_t seed) const {
    kiln::Image im;
    im.width = im.height = static_cast<int>(params_.integer("size"));
    im.channels = params_.string("color") == "grey" ? 1 : 3;
    im.pixels.resize(static_cast<std::size_t>(im.width) * im.height * im.channels);
    kiln::Philox noise(seed, static_cast<std::uint64_t>(i), 0);
    const int shift = static_cast<int>(std::lround(tint_ * 10)) & 63;
    for (auto& p : im.pixels) p = static_cast<std::uint8_t>((noise.next_u32() & 63) + shift);
    kiln::Philox shape(seed, static_cast<std::uint64_t>(i), 1);
    const int side = 2 + static_cast<int>(shape.below(static_cast<std::uint64_t>(im.width / 2)));
    const int x0 = static_cast<int>(shape.below(static_cast<std::uint64_t>(im.width - side)));
    const int y0 = static_cast<int>(shape.below(static_cast<std::uint64_t>(im.height - side)));
    const auto value = static_cast<std::uint8_t>(128 + shape.below(128));
    for (int y = y0; y < y0 + side; ++y) {
      for (int x = x0; x < x0 + side; ++x) {
        for (int c = 0; c < im.channels; ++c) im.at(y, x)[c] = value;
      }
    }
    return Artifact::make_image(i, std::move(im));
  }

  Artifact text(std::int64_t i, std::uint64_t seed) const {
    static const char* words[] = {"kiln", "clay", "glaze", "fire", "ash", "pot", "wheel", "slip"};
    kiln::Philox rng(seed, static_cast<std::uint64_t>(i), 2);
    std::string s = "sample " + std::to_string(i) + ":";
    for (int w = 0; w < 6; ++w) s += std::string(" ") + words[rng.below(8)];
    s += "\n";
    ctx_.stream_text(s);
    return Artifact::make_text(i, s);
  }

  Params params_;
  kiln::TaskContext& ctx_;
  float tint_ = 0;
};

std::vector<ParamSpec> report_params() {
  return {ParamSpec::integer("rows", 3, "Rows of the table").range(0, 1000),
          ParamSpec::string("title", "", "Title of the text artifact").make_required(),
          ParamSpec::boolean("fail", false, "Throw kiln::Error from run()"),
          ParamSpec::boolean("throw_std", false, "Throw std::runtime_error from run()")};
}

class ReportTask final : public kiln::RunTask {
 public:
  ReportTask(const Params& p, kiln::TaskContext& ctx) : params_(p), ctx_(ctx) {}

  std::vector<Artifact> run() override {
    if (params_.boolean("fail")) throw Error("test/report: asked to fail (fail = true)");
    if (params_.boolean("throw_std")) throw std::runtime_error("test/report: a plain std error");
    const std::int64_t rows = params_.integer("rows");
    kiln::Table table{{"row", "value", "note"}, {}};
    kiln::Philox rng(ctx_.seed(), 0, 3);
    double total = 0;
    for (std::int64_t r = 0; r < rows; ++r) {
      const double v = rng.uniform();
      total += v;
      table.rows.push_back(
          {std::to_string(r), std::to_string(v), r % 2 ? "odd, \"quoted\"" : "even"});
      ctx_.progress(r + 1, rows, "row");
      if (ctx_.cancelled()) break;
    }
    kiln::write_file_atomic(ctx_.work_dir() / "scratch.txt", "work files go here\n");
    kiln::Image im;
    im.width = 6;
    im.height = 4;
    im.channels = 1;
    for (int k = 0; k < 24; ++k) im.pixels.push_back(static_cast<std::uint8_t>(k * 10));
    std::vector<Artifact> out;
    out.push_back(Artifact::make_image(-1, im, "pattern"));
    const std::string title = params_.has("title") ? params_.string("title") : "untitled";
    out.push_back(Artifact::make_text(-1, title + "\n", "summary"));
    out.back().info["stage"] = ctx_.stage_id();
    out.push_back(Artifact::make_table("table", table));
    out.push_back(
        Artifact::make_tensors("weights", {{"w", Tensor::arange(4)}}, {{"note", "four"}}));
    out.push_back(Artifact::make_metrics({{"total", total}, {"rows", static_cast<double>(rows)}}));
    Artifact file;
    file.kind = kiln::ArtifactKind::file;
    file.name = "data";
    file.extension = "bin";
    file.bytes = std::string("\x00\x01\x02kiln", 7);
    out.push_back(std::move(file));
    return out;
  }

 private:
  Params params_;
  kiln::TaskContext& ctx_;
};

class TestPlugin final : public kiln::Plugin {
 public:
  kiln::PluginInfo info() const override {
    kiln::TaskSpec fit = kiln::TaskSpec::train("fit", "Fit a linear model to synthetic data");
    for (auto& p : fit_params()) fit.param(p);
    fit.batch(8).epochs(2);
    kiln::TaskSpec draw = kiln::TaskSpec::generate("draw", "Draw noise and a square (or text)");
    for (auto& p : draw_params()) draw.param(p);
    draw.batch(4);
    kiln::TaskSpec report = kiln::TaskSpec::run("report", "Return one artifact of every kind");
    for (auto& p : report_params()) report.param(p);
    return {kName,
            kVersion,
            "test",
            "Exercises every path of the plugin contract (tests only)",
            {fit, draw, report}};
  }

  std::unique_ptr<kiln::Task> create_task(const std::string& task, const Params& params,
                                          kiln::TaskContext& ctx) override {
    const kiln::PluginInfo i = info();
    const kiln::TaskSpec* spec = i.find(task);
    if (kSloppy) {
      if (task == "fit") return std::make_unique<FitTask>(params, ctx);
      if (task == "draw") return std::make_unique<DrawTask>(params, ctx);
      return std::make_unique<ReportTask>(params, ctx);  // even for unknown tasks
    }
    KILN_CHECK(spec != nullptr, "test: no task '", task, "'");
    // Parameters come complete from the host; checking them again costs nothing and catches a
    // caller that forgot one.
    const Params p = Params::resolve(spec->params, params);
    if (task == "fit") return std::make_unique<FitTask>(p, ctx);
    if (task == "draw") return std::make_unique<DrawTask>(p, ctx);
    return std::make_unique<ReportTask>(p, ctx);
  }
};

}  // namespace

#ifdef KILN_TEST_SLOPPY
KILN_PLUGIN(TestPlugin, "sloppy")
#else
KILN_PLUGIN(TestPlugin, "test")
#endif
KILN_PLUGIN_CONFORMANCE(R"({"fit": {"samples": 24, "batch_size": 4},
                            "draw": {"model": "@fit", "size": 8, "count": 3},
                            "report": {"rows": 2, "title": "check"}})")
