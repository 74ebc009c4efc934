// The training runtime through the real `kiln` binary: checkpoints, metrics, exact resume (also
// after kill -9 and Ctrl-C), the NaN guard and resume refusals.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "host_test_util.hpp"
#include "kiln/safetensors.hpp"
#include "support/test_support.hpp"
#include "text.hpp"

namespace kiln::host {
namespace {
namespace fs = std::filesystem;
using json = nlohmann::json;
using test::contains;
using test::Result;

class Train : public test::KilnTest {
 protected:
  fs::path pipeline(const std::string& stage_body) {
    return test_pipeline("train.toml",
                         "[pipeline]\nname = \"fit\"\nseed = 11\n[compute]\nthreads = 2\n", "train",
                         "fit", stage_body);
  }
  static std::vector<std::string> checkpoint_files(const fs::path& stage) {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(stage / "checkpoints"))
      out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
  }
};

TEST_F(Train, WritesCheckpointsMetricsAndTheModel) {
  // 96 examples, 25% held out: 72 / batch 8 = 9 steps per epoch, 27 steps.
  const fs::path file = pipeline("epochs = 3\ncheckpoint_every = 5\nlog_every = 4\n");
  const Result r = kiln({"run", file.string()}, dir_ / "r");
  ASSERT_EQ(r.code, 0) << r.err;
  const fs::path stage = dir_ / "r" / "train";
  // The two newest periodic checkpoints and the final one.
  EXPECT_EQ(checkpoint_files(stage),
            (std::vector<std::string>{"latest", "step-20.safetensors", "step-25.safetensors",
                                      "step-27.safetensors"}));
  EXPECT_EQ(test::read_text(stage / "checkpoints" / "latest"), "step-27.safetensors\n");
  const Safetensors ck = load_safetensors(stage / "checkpoints" / "step-27.safetensors");
  for (const char* k :
       {"state.w", "state.b", "state.optim.w_velocity", "state.optim.b_velocity", "state.steps"}) {
    EXPECT_EQ(ck.tensors.count(k), 1u) << k;
  }
  EXPECT_EQ(ck.tensors.at("state.steps").to_int_vector(), (std::vector<std::int64_t>{27}));
  const json h = json::parse(ck.metadata.at("kiln.train"));
  EXPECT_EQ(h.at("step"), 27);
  EXPECT_EQ(h.at("epoch"), 3);
  EXPECT_EQ(h.at("batch"), 0);
  EXPECT_EQ(ck.metadata.at("kiln.plugin"), "test");

  const auto lines = test::lines_of(test::read_text(stage / "metrics.jsonl"));
  std::vector<std::pair<std::string, int>> kinds;
  for (const std::string& l : lines) {
    const json j = json::parse(l);
    kinds.emplace_back(j.at("kind"), j.at("step"));
    EXPECT_TRUE(j.at("kind") == "eval" ? j.contains("val_loss") : j.contains("loss")) << l;
  }
  const std::vector<std::pair<std::string, int>> expected = {
      {"train", 4}, {"train", 8},  {"eval", 9},   {"train", 12}, {"train", 16},
      {"eval", 18}, {"train", 20}, {"train", 24}, {"train", 27}, {"eval", 27}};
  EXPECT_EQ(kinds, expected);

  const Safetensors model = load_safetensors(stage / "model.safetensors");
  EXPECT_EQ(model.tensors.size(), 2u);
  EXPECT_EQ(model.metadata.at("kiln.plugin"), "test");
  EXPECT_EQ(model.metadata.at("kiln.task"), "fit");
}

TEST_F(Train, ResumeContinuesBitExactly) {
  const fs::path file = pipeline("epochs = 3\ncheckpoint_every = 4\n");
  ASSERT_EQ(kiln({"run", file.string()}, dir_ / "whole").code, 0);
  // Stop after 10 steps, then continue to the end.
  ASSERT_EQ(kiln({"run", file.string(), "--set", "train.max_steps=10"}, dir_ / "parts").code, 0);
  EXPECT_TRUE(fs::exists(dir_ / "parts" / "train" / "checkpoints" / "step-10.safetensors"));
  const Result r = kiln({"run", file.string(), "--resume"}, dir_ / "parts");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(contains(r.err, "resuming at step 10")) << r.err;
  for (const std::string f : {"checkpoints/step-27.safetensors", "model.safetensors"}) {
    EXPECT_EQ(sha256_file_hex(dir_ / "parts" / "train" / f),
              sha256_file_hex(dir_ / "whole" / "train" / f))
        << f;
  }
  // Resuming a finished run does no more steps and changes nothing.
  const auto before = test::tree_digest(dir_ / "parts" / "train");
  ASSERT_EQ(kiln({"run", file.string(), "--resume"}, dir_ / "parts").code, 0);
  EXPECT_EQ(test::tree_digest(dir_ / "parts" / "train"), before);
}

TEST_F(Train, ResumeAfterKill9GivesTheSameFinalCheckpoint) {
  // 400 examples: 300 / 8 = 37 steps per epoch, 74 steps of 10 ms.
  const fs::path file =
      pipeline("samples = 400\nepochs = 2\ncheckpoint_every = 10\nlog_every = 7\nsleep_ms = 10\n");
  // 3 threads: the next batch is prefetched on the I/O thread; the resumed run must not care.
  ASSERT_EQ(kiln({"run", file.string(), "--threads", "3"}, dir_ / "whole").code, 0);
  const fs::path stage = dir_ / "killed" / "train";
  {
    test::Process p({"run", file.string(), "--threads", "3", "--set",
                     "pipeline.run_dir=" + (dir_ / "killed").string()},
                    dir_.path());
    // Once the second checkpoint exists, kill between two checkpoints (well before step 74).
    ASSERT_TRUE(test::wait_until([&] {
      const std::string latest = test::read_text(stage / "checkpoints" / "latest");
      return latest.size() > 5 &&
             number_between(latest, "step-", ".safetensors\n").value_or(0) >= 20;
    }));
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    p.signal(SIGKILL);
    EXPECT_EQ(p.wait().code, 128 + SIGKILL);
  }
  EXPECT_FALSE(fs::exists(stage / "model.safetensors"));
  const Result r = kiln({"run", file.string(), "--resume", "--threads", "3"}, dir_ / "killed");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(contains(r.err, "resuming at step")) << r.err;
  for (const std::string f :
       {"checkpoints/step-74.safetensors", "model.safetensors", "metrics.jsonl"}) {
    EXPECT_EQ(sha256_file_hex(stage / f), sha256_file_hex(dir_ / "whole" / "train" / f)) << f;
  }
}

TEST_F(Train, CtrlCWritesACheckpointAndExits130) {
  const fs::path file =
      pipeline("samples = 400\nepochs = 2\ncheckpoint_every = 25\nlog_every = 5\nsleep_ms = 10\n");
  ASSERT_EQ(kiln({"run", file.string()}, dir_ / "whole").code, 0);
  const fs::path stage = dir_ / "r" / "train";
  test::Process p({"run", file.string(), "--set", "pipeline.run_dir=" + (dir_ / "r").string()},
                  dir_.path());
  // Stop after a few steps, before the first periodic checkpoint (step 25).
  ASSERT_TRUE(test::wait_until([&] { return !test::read_text(stage / "metrics.jsonl").empty(); }));
  p.signal(SIGINT);
  const Result r = p.wait();
  EXPECT_EQ(r.code, 130) << r.err;
  EXPECT_TRUE(contains(r.err, "stopped at step")) << r.err;
  const std::string latest = test::read_text(stage / "checkpoints" / "latest");
  EXPECT_FALSE(latest.empty());
  ASSERT_EQ(kiln({"run", file.string(), "--resume"}, dir_ / "r").code, 0);
  EXPECT_EQ(sha256_file_hex(stage / "checkpoints" / "step-74.safetensors"),
            sha256_file_hex(dir_ / "whole" / "train" / "checkpoints" / "step-74.safetensors"));
}

TEST_F(Train, NanLossStopsAndKeepsTheLastGoodCheckpoint) {
  const fs::path file = pipeline("epochs = 3\ncheckpoint_every = 5\nnan_at_step = 12\n");
  const Result r = kiln({"run", file.string()}, dir_ / "r");
  EXPECT_EQ(r.code, 1);
  const fs::path stage = dir_ / "r" / "train";
  EXPECT_TRUE(
      contains(r.err, "stage 'train' (test/fit): training step 13 gave a non-finite loss (nan)"))
      << r.err;
  EXPECT_TRUE(contains(r.err, "The last good checkpoint is " +
                                  (stage / "checkpoints" / "step-10.safetensors").string()))
      << r.err;
  EXPECT_EQ(checkpoint_files(stage),
            (std::vector<std::string>{"latest", "step-10.safetensors", "step-5.safetensors"}));
  EXPECT_FALSE(fs::exists(stage / "model.safetensors"));
}

TEST_F(Train, NonFiniteStateIsNeverCheckpointed) {
  // The 10th step leaves NaN weights; its loss is finite, the checkpoint after it is refused.
  const fs::path file = pipeline("epochs = 3\ncheckpoint_every = 5\npoison_at_step = 9\n");
  const Result r = kiln({"run", file.string()}, dir_ / "r");
  EXPECT_EQ(r.code, 1);
  const fs::path stage = dir_ / "r" / "train";
  EXPECT_TRUE(contains(r.err,
                       "the training state holds non-finite values in 'w' at step 10; no "
                       "checkpoint was written from it. The last good checkpoint is " +
                           (stage / "checkpoints" / "step-5.safetensors").string()))
      << r.err;
  EXPECT_EQ(checkpoint_files(stage), (std::vector<std::string>{"latest", "step-5.safetensors"}));
}

TEST_F(Train, ResumeRefusesChangedSettings) {
  const fs::path file = pipeline("epochs = 1\ncheckpoint_every = 3\n");
  ASSERT_EQ(kiln({"run", file.string(), "--set", "train.max_steps=4"}, dir_ / "r").code, 0);
  const Result r = kiln({"run", file.string(), "--resume", "--set", "train.lr=0.01"}, dir_ / "r");
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(contains(r.err, "cannot resume from")) << r.err;
  EXPECT_TRUE(contains(r.err, "written with different settings ('lr')")) << r.err;
  // Changing only the length of training is fine.
  EXPECT_EQ(kiln({"run", file.string(), "--resume", "--set", "train.epochs=2"}, dir_ / "r").code,
            0);
}

TEST_F(Train, TooFewExamplesForABatchIsAPipelineError) {
  const fs::path file = pipeline("samples = 10\nbatch_size = 16\n");
  const Result r = kiln({"run", file.string()}, dir_ / "r");
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(contains(
      r.err, "the training data has 7 examples, fewer than batch_size 16; lower batch_size"))
      << r.err;
}

TEST_F(Train, LaterStagesUseTheTrainedModel) {
  const fs::path file = pipeline(
      "epochs = 1\n[[stage]]\nid = \"gen\"\nplugin = \"test\"\ntask = \"draw\"\n"
      "model = \"@train\"\ncount = 2\n");
  const Result r = kiln({"run", file.string()}, dir_ / "r");
  ASSERT_EQ(r.code, 0) << r.err;
  const json line =
      json::parse(test::lines_of(test::read_text(dir_ / "r" / "gen" / "manifest.jsonl"))[0]);
  EXPECT_EQ(line.at("params").at("model"), "train/model.safetensors");
}

}  // namespace
}  // namespace kiln::host
