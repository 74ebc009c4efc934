#include "pipeline.hpp"

#include <gtest/gtest.h>

#include "host_error.hpp"
#include "host_test_util.hpp"
#include "support/test_support.hpp"

namespace kiln::host {
namespace {
namespace fs = std::filesystem;
using test::contains;

class PipelineTest : public ::testing::Test {
 protected:
  // A pipeline file in a temporary folder whose [plugins] paths names the test plugins.
  fs::path write(const std::string& body, const std::string& name = "p.toml") {
    const std::string head = "[plugins]\npaths = [\"" + test::kTestPluginDir.string() + "\", \"" +
                             test::kBrokenPluginDir.string() + "\"]\n";
    return test::write_text(dir_ / name, head + body);
  }
  // The error message of loading `file` (which must fail with `code`).
  std::string error_of(const fs::path& file, int code = kExitUsage, PipelineOptions opts = {}) {
    try {
      load_pipeline(file, opts);
    } catch (const HostError& e) {
      EXPECT_EQ(e.code(), code) << e.what();
      return e.what();
    }
    ADD_FAILURE() << "the pipeline loaded without error";
    return "";
  }
  kiln::test::TempDir dir_;
};

TEST_F(PipelineTest, FillsDefaultsAndResolvesPathsAndReferences) {
  test::write_text(dir_ / "data" / "model.bin", "x");
  const fs::path file = write(R"(
[pipeline]
name = "demo"
seed = 7

[compute]
threads = 3
precision = "bf16"

[[stage]]
id = "train"
plugin = "test"
task = "fit"
epochs = 4
lr = 1

[[stage]]
id = "gen"
plugin = "test"
task = "draw"
model = "@train"
seed = 99

[[stage]]
id = "other"
plugin = "test"
task = "draw"
model = "data/model.bin"
count = 3

[[stage]]
id = "report"
plugin = "test"
task = "report"
title = "t"
)");
  Pipeline p = load_pipeline(file, {});
  EXPECT_EQ(p.name, "demo");
  EXPECT_EQ(p.seed, 7u);
  EXPECT_EQ(p.threads, 3);
  EXPECT_EQ(p.precision, "bf16");
  EXPECT_EQ(p.run_dir, dir_.path() / "runs" / "demo");
  ASSERT_EQ(p.stages.size(), 4u);
  const StageConfig& train = p.stages[0];
  EXPECT_EQ(train.host.integer("epochs"), 4);
  EXPECT_EQ(train.host.integer("batch_size"), 8);  // TaskSpec::default_batch of test/fit
  EXPECT_EQ(train.host.integer("checkpoint_every"), 500);
  EXPECT_EQ(train.seed, 7u);                       // the pipeline's seed
  EXPECT_EQ(train.params.number("lr"), 1.0);       // an integer where a number goes
  EXPECT_EQ(train.params.integer("samples"), 96);  // the plugin's default
  EXPECT_EQ(train.main_output, p.run_dir / "train" / "model.safetensors");
  const StageConfig& gen = p.stages[1];
  EXPECT_EQ(gen.params.string("model"), train.main_output.string());
  EXPECT_EQ(gen.uses, std::vector<std::string>{"train"});
  EXPECT_EQ(gen.seed, 99u);
  EXPECT_FALSE(gen.host.has("count"));  // optional: the task's default_count decides
  EXPECT_EQ(p.stages[2].params.string("model"), (dir_.path() / "data" / "model.bin").string());
  EXPECT_EQ(p.stages[3].main_output, p.run_dir / "report");
}

TEST_F(PipelineTest, ResolvedTomlIsItselfAnEquivalentPipeline) {
  const fs::path file = write(R"(
[pipeline]
seed = 3
[[stage]]
id = "a"
plugin = "test"
task = "fit"
epochs = 2
noise = 0.5
[[stage]]
id = "b"
plugin = "test"
task = "draw"
model = "@a"
)");
  Pipeline p = load_pipeline(file, {});
  test::write_text(dir_ / "resolved.toml", p.resolved_toml());
  Pipeline q = load_pipeline(dir_ / "resolved.toml", {.check_input_paths = false});
  ASSERT_EQ(q.stages.size(), 2u);
  EXPECT_EQ(q.run_dir, p.run_dir);
  for (std::size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(q.stages[i].params.to_json(), p.stages[i].params.to_json());
    EXPECT_EQ(q.stages[i].host.to_json(), p.stages[i].host.to_json());
  }
}

TEST_F(PipelineTest, UnknownKeyNamesFileLineColumnAndSuggests) {
  const fs::path file = write(R"([[stage]]
id = "train"
plugin = "test"
task = "fit"
  epoch = 3
)");
  const std::string e = error_of(file);
  EXPECT_TRUE(contains(e, file.string() + ":7:3: stage 'train' (test/fit): unknown key 'epoch' "
                                          "(did you mean 'epochs'?)"))
      << e;
  EXPECT_TRUE(contains(e, "kiln inspect test")) << e;
}

TEST_F(PipelineTest, WrongTypesRangesAndChoicesUseTheSameFormat) {
  const fs::path file = write(R"([[stage]]
id = "train"
plugin = "test"
task = "fit"
lr = "fast"
samples = 0
shuffle = "yes"
[[stage]]
id = "gen"
plugin = "test"
task = "draw"
color = "blue"
size = [1, 2]
when = 1979-05-27
)");
  const std::string e = error_of(file);
  EXPECT_TRUE(contains(e, ":7:1: stage 'train' (test/fit): 'lr' must be a number, got \"fast\""))
      << e;
  EXPECT_TRUE(
      contains(e, ":8:1: stage 'train' (test/fit): 'samples' must be between 1 and 100000, got 0"))
      << e;
  EXPECT_TRUE(
      contains(e, ":9:1: stage 'train' (test/fit): 'shuffle' must be a boolean, got \"yes\""))
      << e;
  EXPECT_TRUE(contains(
      e, ":14:1: stage 'gen' (test/draw): 'color' must be one of \"grey\", \"rgb\", got \"blue\""))
      << e;
  EXPECT_TRUE(contains(e, ":15:1: stage 'gen' (test/draw): 'size' must be an integer, got [1, 2]"))
      << e;
  EXPECT_TRUE(contains(e, ":16:1: stage 'gen' (test/draw): unknown key 'when'")) << e;
}

TEST_F(PipelineTest, MissingInputFileIsAnError) {
  const fs::path file = write(R"([[stage]]
id = "gen"
plugin = "test"
task = "draw"
model = "models/none.safetensors"
)");
  const std::string e = error_of(file);
  EXPECT_TRUE(contains(e, ":7:1: stage 'gen' (test/draw): 'model' names '" +
                              (dir_.path() / "models" / "none.safetensors").string() +
                              "', which does not exist (relative paths are relative to the "
                              "pipeline's folder"))
      << e;
}

TEST_F(PipelineTest, StageReferencesMustNameEarlierStages) {
  const fs::path file = write(R"([[stage]]
id = "gen"
plugin = "test"
task = "draw"
model = "@train"
[[stage]]
id = "train"
plugin = "test"
task = "fit"
[[stage]]
id = "gen2"
plugin = "test"
task = "draw"
model = "@trian"
)");
  const std::string e = error_of(file);
  EXPECT_TRUE(contains(e, "'model' = \"@train\" names a stage that comes later")) << e;
  EXPECT_TRUE(contains(e, "'model' = \"@trian\" names no stage (did you mean 'train'?)")) << e;
}

TEST_F(PipelineTest, PluginAndTaskErrors) {
  const fs::path file = write(R"([[stage]]
id = "a"
plugin = "tset"
[[stage]]
id = "b"
plugin = "test"
task = "drwa"
[[stage]]
id = "c"
plugin = "test"
[[stage]]
id = "a"
plugin = "test"
task = "fit"
[[stage]]
plugin = "test"
)");
  const std::string e = error_of(file);
  EXPECT_TRUE(contains(e, ":5:1: stage 'a': unknown plugin 'tset' (did you mean 'test'?)")) << e;
  EXPECT_TRUE(
      contains(e, ":9:1: stage 'b': plugin 'test' has no task 'drwa' (did you mean 'draw'?)"))
      << e;
  EXPECT_TRUE(contains(
      e, "stage 'c': 'task' is required; plugin 'test' has tasks 'fit', 'draw' and 'report'"))
      << e;
  EXPECT_TRUE(contains(e, ":14:1: stage id 'a' is used twice")) << e;
  EXPECT_TRUE(contains(e, "a [[stage]] needs an 'id'")) << e;
}

TEST_F(PipelineTest, BrokenPluginIsAPluginError) {
  const fs::path file = write(R"([[stage]]
id = "a"
plugin = "badabi"
)");
  const std::string e = error_of(file, kExitPlugin);
  EXPECT_TRUE(contains(e, ":5:1: stage 'a': cannot load plugin 'badabi'")) << e;
  EXPECT_TRUE(contains(e, "ABI version 999")) << e;
  const fs::path throws = write("[[stage]]\nid = \"a\"\nplugin = \"throws\"\n", "t.toml");
  EXPECT_TRUE(contains(error_of(throws, kExitPlugin), "factory threw"));
}

TEST_F(PipelineTest, SetOverridesAndIsValidatedTheSameWay) {
  const fs::path file = write(R"([pipeline]
seed = 1
[[stage]]
id = "train"
plugin = "test"
task = "fit"
epochs = 2
)");
  Pipeline p =
      load_pipeline(file, {.sets = {"train.epochs=5", "train.lr=0.5",
                                    "pipeline.run_dir=/tmp/elsewhere", "compute.threads=1"}});
  EXPECT_EQ(p.stages[0].host.integer("epochs"), 5);
  EXPECT_EQ(p.stages[0].params.number("lr"), 0.5);
  EXPECT_EQ(p.run_dir, fs::path("/tmp/elsewhere"));
  EXPECT_EQ(p.threads, 1);
  EXPECT_EQ(load_pipeline(file, {.threads = 4}).threads, 4);

  std::string e = error_of(file, kExitUsage, {.sets = {"train.epochs=zero"}});
  EXPECT_TRUE(contains(e,
                       "--set train.epochs=zero: stage 'train' (test/fit): 'epochs' must be an "
                       "integer, got \"zero\""))
      << e;
  e = error_of(file, kExitUsage, {.sets = {"trian.epochs=1"}});
  EXPECT_TRUE(
      contains(e, "--set trian.epochs=1: there is no stage 'trian' (did you mean 'train'?)"))
      << e;
  e = error_of(file, kExitUsage, {.sets = {"train.epoch=1"}});
  EXPECT_TRUE(
      contains(e,
               "--set train.epoch=1: stage 'train' (test/fit): unknown key 'epoch' (did you "
               "mean 'epochs'?)"))
      << e;
  e = error_of(file, kExitUsage, {.sets = {"epochs=1"}});
  EXPECT_TRUE(contains(e, "--set epochs=1: expected STAGE.KEY=VALUE")) << e;
}

TEST(SetValue, ParsesTomlOrFallsBackToString) {
  EXPECT_EQ(parse_set_value("3"), ParamValue(std::int64_t{3}));
  EXPECT_EQ(parse_set_value("0.5"), ParamValue(0.5));
  EXPECT_EQ(parse_set_value("true"), ParamValue(true));
  EXPECT_EQ(parse_set_value("[1, 2]"), ParamValue(std::vector<std::int64_t>{1, 2}));
  EXPECT_EQ(parse_set_value("[\"a\"]"), ParamValue(std::vector<std::string>{"a"}));
  EXPECT_EQ(parse_set_value("\"3\""), ParamValue(std::string("3")));
  EXPECT_EQ(parse_set_value("hello world"), ParamValue(std::string("hello world")));
  EXPECT_EQ(parse_set_value("/data/x.idx"), ParamValue(std::string("/data/x.idx")));
}

TEST_F(PipelineTest, InvalidTomlAndStructureErrors) {
  fs::path file = test::write_text(dir_ / "bad.toml", "[pipeline]\nname = \"x\"\nseed = \n");
  std::string e = error_of(file);
  EXPECT_TRUE(contains(e, file.string() + ":3:")) << e;
  EXPECT_TRUE(contains(e, "invalid TOML")) << e;
  file = write("[pipelne]\nname = \"x\"\n[stage]\nid = 1\n", "s.toml");
  e = error_of(file);
  EXPECT_TRUE(contains(e, "unknown top-level key 'pipelne' (did you mean 'pipeline'?)")) << e;
  EXPECT_TRUE(contains(e, "'stage' must be an array of tables")) << e;
  e = error_of(dir_ / "none.toml");
  EXPECT_TRUE(contains(e, "none.toml': no such file")) << e;
  file = write("[pipeline]\nname = \"x\"\n", "empty.toml");
  EXPECT_TRUE(contains(error_of(file), "the pipeline has no stages"));
}

}  // namespace
}  // namespace kiln::host
