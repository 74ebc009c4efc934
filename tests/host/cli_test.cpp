// The `kiln` command line, run as a subprocess: commands, help, exit codes and every kind of bad
// input with its message.
#include <gtest/gtest.h>
#include <unistd.h>

#include <sstream>

#include "host_test_util.hpp"
#include "kiln/version.hpp"
#include "support/test_support.hpp"

namespace kiln::host {
namespace {
namespace fs = std::filesystem;
using test::contains;
using test::Result;

class Cli : public test::KilnTest {
 protected:
  fs::path pipeline(const std::string& body, const std::string& name = "p.toml") {
    return test::write_text(dir_ / name, "[pipeline]\nrun_dir = \"run\"\n" + body);
  }
};

TEST_F(Cli, VersionNamesKilnAbiAndOneDnn) {
  const Result r = kiln({"--version"});
  EXPECT_EQ(r.code, 0);
  EXPECT_TRUE(contains(r.out, "kiln " KILN_VERSION_STRING)) << r.out;
  EXPECT_TRUE(contains(r.out, "plugin ABI " + std::to_string(KILN_ABI_VERSION))) << r.out;
  EXPECT_TRUE(contains(r.out, "oneDNN 2.")) << r.out;
  EXPECT_TRUE(contains(r.out, "CPU ISA")) << r.out;
}

TEST_F(Cli, HelpForEveryCommand) {
  Result r = kiln({"--help"});
  EXPECT_EQ(r.code, 0);
  EXPECT_TRUE(contains(r.out, "Exit codes")) << r.out;
  for (const std::string cmd : {"run", "validate", "plugins", "inspect", "check-plugin"}) {
    r = kiln({cmd, "--help"});
    EXPECT_EQ(r.code, 0) << cmd;
    EXPECT_TRUE(contains(r.out, "kiln " + cmd)) << r.out;
    EXPECT_EQ(kiln({"help", cmd}).out, r.out);
  }
  EXPECT_TRUE(contains(kiln({"run", "--help"}).out, "--shard I/N"));
}

TEST_F(Cli, UsageErrorsExitWith2) {
  Result r = kiln({});
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(contains(r.err, "Usage"));
  r = kiln({"runn", "x.toml"});
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(contains(r.err, "unknown command 'runn' (did you mean 'run'?)")) << r.err;
  r = kiln({"run", "x.toml", "--resmue"});
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(contains(r.err, "unknown option '--resmue' (did you mean '--resume'?)")) << r.err;
  r = kiln({"run"});
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(contains(r.err, "needs a pipeline file")) << r.err;
  r = kiln({"run", "x.toml", "--shard", "2/2"});
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(contains(r.err, "--shard I/N needs N >= 1 and 0 <= I < N, got '2/2'")) << r.err;
  r = kiln({"run", "x.toml", "--threads", "two"});
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(contains(r.err, "--threads expects an integer, got 'two'")) << r.err;
  r = kiln({"run", "missing.toml"});
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(contains(r.err, "cannot read pipeline 'missing.toml': no such file")) << r.err;
}

TEST_F(Cli, PluginsListsWorkingAndBrokenPlugins) {
  const Result r = kiln({"plugins"}, {{"KILN_PLUGIN_PATH", test::kTestPluginDir.string() + ":" +
                                                               test::kBrokenPluginDir.string()}});
  EXPECT_EQ(r.code, 0) << r.err;
  // Columns are as wide as the longest name listed (bundled plugins are listed too).
  std::istringstream lines(r.out);
  std::string line, name, version, family;
  while (std::getline(lines, line) && line.rfind("test ", 0) != 0) {
  }
  std::istringstream(line) >> name >> version >> family;
  EXPECT_EQ(name + " " + version + " " + family, "test 1.2.3 test") << r.out;
  EXPECT_TRUE(contains(r.out, "fit (train), draw (generate), report (run)")) << r.out;
  EXPECT_TRUE(contains(r.out, (test::kTestPluginDir / "kiln_test.so").string())) << r.out;
  EXPECT_TRUE(contains(r.out, "Cannot be loaded:")) << r.out;
  EXPECT_TRUE(contains(r.out, "kiln_notalib.so\n    it is not a loadable shared library")) << r.out;
  EXPECT_TRUE(contains(r.out, "kiln_nosymbols.so\n    it is not a Kiln plugin")) << r.out;
  EXPECT_TRUE(contains(r.out, "kiln_badabi.so\n    it was built for Kiln plugin ABI version 999"))
      << r.out;
  EXPECT_TRUE(contains(r.out, "kiln_throws.so\n    its factory threw")) << r.out;
  EXPECT_TRUE(contains(r.out, "(KILN_PLUGIN_PATH)")) << r.out;
}

TEST_F(Cli, PluginsReportsShadowedDuplicates) {
  fs::create_directories(dir_ / "early");
  fs::copy_file(test::kTestPluginDir / "kiln_test.so", dir_ / "early" / "kiln_test.so");
  const Result r = kiln({"plugins", "--path", (dir_ / "early").string()});
  EXPECT_EQ(r.code, 0);
  EXPECT_TRUE(contains(r.out, "Hidden by a plugin of the same name")) << r.out;
  EXPECT_TRUE(contains(r.out, "the one used is " + (dir_ / "early" / "kiln_test.so").string()))
      << r.out;
}

TEST_F(Cli, InspectPrintsEveryParameterAndHostKey) {
  Result r = kiln({"inspect", "test"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "test 1.2.3 (family test)")) << r.out;
  EXPECT_TRUE(contains(r.out, "task fit (train): Fit a linear model")) << r.out;
  EXPECT_TRUE(contains(r.out, "samples           integer in [1, 100000], default 96")) << r.out;
  EXPECT_TRUE(contains(r.out, "color          choice of \"grey\", \"rgb\", default \"rgb\""))
      << r.out;
  EXPECT_TRUE(contains(r.out, "model          path, optional")) << r.out;
  EXPECT_TRUE(contains(r.out, "epochs            integer >= 1, default 2"))
      << r.out;  // TaskSpec::epochs
  EXPECT_TRUE(contains(r.out, "batch          integer >= 1, default 4")) << r.out;
  EXPECT_TRUE(contains(r.out, "checkpoint_every  integer >= 0, default 500")) << r.out;
  // By path, and errors.
  r = kiln({"inspect", (test::kTestPluginDir / "kiln_test.so").string()});
  EXPECT_EQ(r.code, 0);
  r = kiln({"inspect", "tset"});
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(contains(r.err, "unknown plugin 'tset' (did you mean 'test'?)")) << r.err;
  r = kiln({"inspect", (test::kBrokenPluginDir / "kiln_badabi.so").string()});
  EXPECT_EQ(r.code, 3);
  EXPECT_TRUE(contains(r.err, "ABI version 999")) << r.err;
}

TEST_F(Cli, ValidateChecksWithoutRunning) {
  const fs::path file = pipeline(R"([[stage]]
id = "train"
plugin = "test"
task = "fit"
)");
  Result r = kiln({"validate", file.string(), "--set", "train.epochs=3"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "valid pipeline")) << r.out;
  EXPECT_TRUE(contains(r.out, "epochs = 3")) << r.out;
  EXPECT_FALSE(fs::exists(dir_ / "run")) << "validate must not write anything";
}

// ---- bad input: each a clear message and a non-zero exit

TEST_F(Cli, BadInputUnknownKey) {
  const fs::path file =
      pipeline("[[stage]]\nid = \"t\"\nplugin = \"test\"\ntask = \"fit\"\nepoch = 3\n");
  for (const std::string cmd : {"validate", "run"}) {
    const Result r = kiln({cmd, file.string()});
    EXPECT_EQ(r.code, 2) << cmd;
    EXPECT_TRUE(contains(r.err, file.string() + ":7:1: stage 't' (test/fit): unknown key 'epoch' "
                                                "(did you mean 'epochs'?)"))
        << r.err;
  }
}

TEST_F(Cli, BadInputWrongType) {
  const fs::path file =
      pipeline("[[stage]]\nid = \"t\"\nplugin = \"test\"\ntask = \"fit\"\nepochs = \"3\"\n");
  const Result r = kiln({"run", file.string()});
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(contains(r.err, ":7:1: stage 't' (test/fit): 'epochs' must be an integer, got \"3\""))
      << r.err;
}

TEST_F(Cli, BadInputOutOfRange) {
  const fs::path file = pipeline("[[stage]]\nid = \"t\"\nplugin = \"test\"\ntask = \"fit\"\n");
  const Result r = kiln({"run", file.string(), "--set", "t.lr=5"});
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(contains(
      r.err, "--set t.lr=5: stage 't' (test/fit): 'lr' must be between 1e-06 and 1, got 5"))
      << r.err;
}

TEST_F(Cli, BadInputMissingFile) {
  const fs::path file = pipeline(
      "[[stage]]\nid = \"g\"\nplugin = \"test\"\ntask = \"draw\"\nmodel = \"nope.safetensors\"\n");
  const Result r = kiln({"run", file.string()});
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(contains(
      r.err, "'model' names '" + (dir_ / "nope.safetensors").string() + "', which does not exist"))
      << r.err;
}

TEST_F(Cli, BadInputUnknownPlugin) {
  const fs::path file = pipeline("[[stage]]\nid = \"g\"\nplugin = \"tets\"\n");
  const Result r = kiln({"run", file.string()});
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(contains(r.err, ":5:1: stage 'g': unknown plugin 'tets' (did you mean 'test'?)"))
      << r.err;
  EXPECT_TRUE(contains(r.err, test::kTestPluginDir.string())) << r.err;
}

TEST_F(Cli, BadInputAbiMismatch) {
  const fs::path file = pipeline("[[stage]]\nid = \"g\"\nplugin = \"badabi\"\n");
  const Result r =
      kiln({"run", file.string()}, {{"KILN_PLUGIN_PATH", test::kBrokenPluginDir.string()}});
  EXPECT_EQ(r.code, 3);
  EXPECT_TRUE(contains(r.err, "cannot load plugin 'badabi'")) << r.err;
  EXPECT_TRUE(contains(
      r.err, "ABI version 999, but this kiln uses ABI version " + std::to_string(KILN_ABI_VERSION)))
      << r.err;
  EXPECT_TRUE(contains(r.err, "rebuild the plugin against this Kiln SDK")) << r.err;
}

TEST_F(Cli, BadInputPluginThatThrows) {
  // In its factory: a plugin error.
  fs::path file = pipeline("[[stage]]\nid = \"g\"\nplugin = \"throws\"\n");
  Result r = kiln({"run", file.string()}, {{"KILN_PLUGIN_PATH", test::kBrokenPluginDir.string()}});
  EXPECT_EQ(r.code, 3);
  EXPECT_TRUE(contains(r.err, "its factory threw: throws: cannot start")) << r.err;
  // In a task: the stage fails, naming stage, plugin and the plugin's message.
  file = pipeline(
      "[[stage]]\nid = \"rep\"\nplugin = \"test\"\ntask = \"report\"\ntitle = \"t\"\nfail = true\n",
      "f.toml");
  r = kiln({"run", file.string()});
  EXPECT_EQ(r.code, 1);
  EXPECT_TRUE(
      contains(r.err, "stage 'rep' (test/report) failed: test/report: asked to fail (fail = true)"))
      << r.err;
  EXPECT_FALSE(contains(r.err, "terminate")) << r.err;
  // A non-kiln exception is reported too, not a crash.
  r = kiln({"run", file.string(), "--set", "rep.fail=false", "--set", "rep.throw_std=true"});
  EXPECT_EQ(r.code, 1);
  EXPECT_TRUE(contains(
      r.err,
      "stage 'rep' (test/report) failed with an unexpected error: test/report: a plain std error"))
      << r.err;
}

TEST_F(Cli, BadInputUnwritableOutputFolder) {
  test::write_text(dir_ / "afile", "not a folder");
  const fs::path file = test::write_text(dir_ / "w.toml",
                                         "[pipeline]\nrun_dir = \"afile/run\"\n[[stage]]\nid = "
                                         "\"rep\"\nplugin = \"test\"\ntask = \"report\"\n"
                                         "title = \"t\"\n");
  Result r = kiln({"run", file.string()});
  EXPECT_EQ(r.code, 1);
  EXPECT_TRUE(
      contains(r.err, "cannot create the run folder '" + (dir_ / "afile" / "run").string() + "'"))
      << r.err;
  EXPECT_TRUE(contains(r.err, "choose another [pipeline] run_dir")) << r.err;
  if (::geteuid() != 0) {  // root writes anywhere
    fs::create_directories(dir_ / "ro");
    fs::permissions(dir_ / "ro", fs::perms::owner_read | fs::perms::owner_exec);
    r = kiln({"run", file.string(), "--set", "pipeline.run_dir=ro"});
    fs::permissions(dir_ / "ro", fs::perms::owner_all);
    EXPECT_EQ(r.code, 1);
    EXPECT_TRUE(contains(r.err, "not writable")) << r.err;
  }
}

TEST_F(Cli, BadInputInvalidToml) {
  const fs::path file =
      test::write_text(dir_ / "bad.toml", "[[stage]]\nid = \"a\nplugin = \"test\"\n");
  const Result r = kiln({"run", file.string()});
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(contains(r.err, file.string() + ":2:")) << r.err;
  EXPECT_TRUE(contains(r.err, "invalid TOML")) << r.err;
}

TEST_F(Cli, CheckPluginRunsTheConformanceSuite) {
  Result r = kiln({"check-plugin", (test::kTestPluginDir / "kiln_test.so").string()});
  EXPECT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_TRUE(contains(r.out, "0 failed")) << r.out;
  EXPECT_TRUE(contains(r.out, "PASS  lifetime: drop library, then plugin, then task")) << r.out;
  r = kiln({"check-plugin", (test::kBrokenPluginDir / "kiln_throws.so").string()});
  EXPECT_EQ(r.code, 3);
  EXPECT_TRUE(contains(r.out, "FAIL  the plugin loads")) << r.out;
  r = kiln({"check-plugin", (fs::path(KILN_SLOPPY_PLUGIN_DIR) / "kiln_sloppy.so").string()});
  EXPECT_EQ(r.code, 1);
  EXPECT_TRUE(contains(r.out, "FAIL  task draw (generate)")) << r.out;
}

}  // namespace
}  // namespace kiln::host
