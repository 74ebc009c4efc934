// End-to-end: the real kiln binary runs eval/train (tiny), eval/classify and eval/evaluate on a
// folder laid out as a generate stage writes it (samples/*.png + manifest.jsonl with labels).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "host_test_util.hpp"
#include "kiln/data.hpp"
#include "kiln/image.hpp"

namespace kiln::host::test {
namespace {

using nlohmann::json;

const char* kData = "/usr/share/datasets/fashion-mnist";

class EvalPlugin : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new kiln::test::TempDir();
    // A tiny classifier: a few steps on 512 images, enough to run every task.
    write_text(dir_->path() / "train.toml", std::string(R"([pipeline]
seed = 3
[compute]
threads = 1
[[stage]]
id = "train"
plugin = "eval"
task = "train"
channels = [4, 8, 8]
hidden = 16
train_count = 512
val_count = 0
batch_size = 64
max_steps = 8
)"));
    const Result r = run_kiln({"run", (dir_->path() / "train.toml").string()}, dir_->path());
    ASSERT_EQ(r.code, 0) << r.all();
    model_ = dir_->path() / "runs/train/train/model.safetensors";
    // A generate-stage folder: 60 test images with requested labels (their true labels).
    auto test = kiln::data::load_fashion_mnist(kData, "test");
    const fs::path samples = dir_->path() / "fake";
    fs::create_directories(samples / "samples");
    std::string manifest;
    const std::vector<std::int64_t> labels = test->labels().to_int_vector();
    for (int i = 0; i < 60; ++i) {
      kiln::Image im;
      im.width = im.height = 28;
      im.channels = 1;
      const std::uint8_t* p = test->images().data<std::uint8_t>() + i * 784;
      im.pixels.assign(p, p + 784);
      char name[32];
      std::snprintf(name, sizeof name, "samples/%06d.png", i);
      kiln::write_png(samples / name, im);
      manifest += json{{"index", i},
                       {"seed", 0},
                       {"path", name},
                       {"info", {{"label", std::to_string(labels[i])}}}}
                      .dump() +
                  "\n";
    }
    write_text(samples / "manifest.jsonl", manifest);
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }

  // Runs one stage of the eval plugin with `body` as its keys.
  Result stage(const std::string& name, const std::string& task, const std::string& body) {
    const fs::path file = write_text(
        dir_->path() / (name + ".toml"),
        "[pipeline]\nseed = 5\n[compute]\nthreads = 1\n[[stage]]\nid = \"s\"\nplugin = \"eval\"\n"
        "task = \"" +
            task + "\"\nmodel = \"" + model_.string() + "\"\n" + body);
    return run_kiln({"run", file.string()}, dir_->path());
  }
  fs::path run_dir(const std::string& name) { return dir_->path() / "runs" / name / "s"; }

  static kiln::test::TempDir* dir_;
  static fs::path model_;
};
kiln::test::TempDir* EvalPlugin::dir_ = nullptr;
fs::path EvalPlugin::model_;

TEST_F(EvalPlugin, EvaluatesAGenerateFolderWithLabelsAndCachesTheReference) {
  const std::string body = "images = \"" + (dir_->path() / "fake").string() +
                           "\"\nmin_samples = 50\nreference_count = 200\nkid_subsets = 4\n"
                           "kid_subset_size = 50\n";
  const Result r = stage("ev", "evaluate", body);
  ASSERT_EQ(r.code, 0) << r.all();
  const json m = json::parse(read_text(run_dir("ev") / "metrics.json"));
  for (const char* k : {"fid", "kid", "kid_std", "precision", "recall", "classifier_score",
                        "label_agreement", "count", "reference_count"}) {
    ASSERT_TRUE(m.contains(k)) << k << "\n" << m.dump();
  }
  EXPECT_EQ(m["count"], 60);
  EXPECT_EQ(m["labelled_count"], 60);
  EXPECT_EQ(m["reference_count"], 200);
  EXPECT_GE(m["fid"].get<double>(), 0.0);
  EXPECT_GE(m["precision"].get<double>(), 0.0);
  EXPECT_LE(m["precision"].get<double>(), 1.0);
  EXPECT_TRUE(fs::exists(run_dir("ev") / "classes.csv"));
  // The reference features are cached in the stage's work folder and reused: same metrics.
  int cached = 0;
  for (const auto& e : fs::directory_iterator(run_dir("ev") / "work")) {
    cached += e.path().filename().string().rfind("reference-", 0) == 0;
  }
  EXPECT_EQ(cached, 1);
  const Result again = stage("ev", "evaluate", body);
  ASSERT_EQ(again.code, 0) << again.all();
  EXPECT_EQ(json::parse(read_text(run_dir("ev") / "metrics.json")), m);
}

TEST_F(EvalPlugin, TooFewSamplesIsAClearError) {
  const Result r =
      stage("few", "evaluate",
            "images = \"" + (dir_->path() / "fake").string() + "\"\nmin_samples = 100\n");
  EXPECT_EQ(r.code, 1) << r.all();
  EXPECT_TRUE(contains(r.all(), "holds 60 images, fewer than min_samples = 100")) << r.all();
}

TEST_F(EvalPlugin, ClassifiesAFolderAndReportsAccuracyAgainstTheManifestLabels) {
  const Result r =
      stage("cl", "classify", "images = \"" + (dir_->path() / "fake").string() + "\"\n");
  ASSERT_EQ(r.code, 0) << r.all();
  const json m = json::parse(read_text(run_dir("cl") / "metrics.json"));
  EXPECT_EQ(m["count"], 60);
  EXPECT_TRUE(m.contains("accuracy"));
  const std::vector<std::string> rows = lines_of(read_text(run_dir("cl") / "predictions.csv"));
  ASSERT_EQ(rows.size(), 61u);
  EXPECT_EQ(rows[0].rfind("index,source,label,class,probability,expected,p_T-shirt/top", 0), 0u)
      << rows[0];
}

TEST_F(EvalPlugin, BadInputsNameTheProblem) {
  // A folder without images.
  fs::create_directories(dir_->path() / "empty");
  write_text(dir_->path() / "empty" / "notes.txt", "no images here\n");
  Result r = stage("bad1", "classify", "images = \"" + (dir_->path() / "empty").string() + "\"\n");
  EXPECT_EQ(r.code, 1) << r.all();
  EXPECT_TRUE(contains(r.all(), (dir_->path() / "empty").string())) << r.all();
  // A manifest line that is not JSON.
  fs::create_directories(dir_->path() / "torn");
  write_text(dir_->path() / "torn" / "manifest.jsonl", "{\"index\": 0, \"path\": \n");
  r = stage("bad2", "classify", "images = \"" + (dir_->path() / "torn").string() + "\"\n");
  EXPECT_EQ(r.code, 1) << r.all();
  EXPECT_TRUE(contains(r.all(), "line 1 of the manifest")) << r.all();
  // A model that is not the eval plugin's.
  write_text(dir_->path() / "other.safetensors", "not a model");
  const fs::path file = write_text(dir_->path() / "bad3.toml",
                                   "[[stage]]\nid = \"s\"\nplugin = \"eval\"\ntask = \"classify\"\n"
                                   "model = \"other.safetensors\"\nimages = \"fake\"\n");
  r = run_kiln({"run", file.string()}, dir_->path());
  EXPECT_EQ(r.code, 1) << r.all();
  EXPECT_TRUE(contains(r.all(), "other.safetensors")) << r.all();
}

}  // namespace
}  // namespace kiln::host::test
