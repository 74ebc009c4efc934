// The plugin ABI check on a deliberately mismatched build: tests/host/plugins/test_plugin.cpp,
// unchanged, compiled against SDK headers that claim the next ABI version (tests/host/
// CMakeLists.txt). Every way of loading it refuses it with a message naming both versions and
// saying to rebuild; none runs its code.
#include <gtest/gtest.h>

#include "host_error.hpp"
#include "host_test_util.hpp"
#include "kiln/version.hpp"
#include "plugin_loader.hpp"

namespace kiln::host {
namespace {
namespace fs = std::filesystem;
using test::contains;
using test::Result;

const fs::path kMismatched = fs::path(KILN_MISMATCHED_PLUGIN_DIR) / "kiln_test.so";
const std::string kBothVersions =
    "it was built for Kiln plugin ABI version " + std::to_string(KILN_MISMATCHED_ABI_VERSION) +
    ", but this kiln uses ABI version " + std::to_string(KILN_ABI_VERSION) +
    " (Kiln " KILN_VERSION_STRING "); rebuild the plugin against this Kiln SDK";

using Env = std::map<std::string, std::string>;

class Abi : public test::KilnTest {};

TEST_F(Abi, MismatchedBuildIsAnotherAbiVersion) {
  static_assert(KILN_MISMATCHED_ABI_VERSION != KILN_ABI_VERSION);
  ASSERT_TRUE(fs::exists(kMismatched));
}

TEST_F(Abi, LoaderRefusesMismatchedBuild) {
  try {
    load_plugin(kMismatched);
    FAIL() << "a plugin built for another ABI version was loaded";
  } catch (const HostError& e) {
    EXPECT_EQ(e.code(), kExitPlugin);
    EXPECT_TRUE(contains(e.what(), "cannot load plugin 'test' from " + kMismatched.string()))
        << e.what();
    EXPECT_TRUE(contains(e.what(), kBothVersions)) << e.what();
  }
}

TEST_F(Abi, RunRefusesMismatchedBuild) {
  const fs::path file =
      test::write_text(dir_ / "p.toml",
                       "[pipeline]\nrun_dir = \"run\"\n[[stage]]\nid = \"s\"\nplugin = \"test\"\n"
                       "task = \"report\"\ntitle = \"x\"\n");
  for (const std::string cmd : {"validate", "run"}) {
    const Result r =
        kiln({cmd, file.string()}, Env{{"KILN_PLUGIN_PATH", KILN_MISMATCHED_PLUGIN_DIR}});
    EXPECT_EQ(r.code, 3) << cmd << "\n" << r.err;
    EXPECT_TRUE(contains(r.err, kBothVersions)) << cmd << "\n" << r.err;
  }
  EXPECT_FALSE(fs::exists(dir_ / "run" / "s")) << "nothing may run for a refused plugin";
}

TEST_F(Abi, CheckPluginAndInspectRefuseMismatchedBuild) {
  Result r = kiln({"check-plugin", kMismatched.string()});
  EXPECT_EQ(r.code, 3) << r.all();
  EXPECT_TRUE(contains(r.all(), kBothVersions)) << r.all();
  r = kiln({"inspect", kMismatched.string()});
  EXPECT_EQ(r.code, 3) << r.all();
  EXPECT_TRUE(contains(r.err, kBothVersions)) << r.err;
  // `kiln plugins` lists it among the files that cannot be loaded, with the reason.
  r = kiln({"plugins", "--path", KILN_MISMATCHED_PLUGIN_DIR}, Env{{"KILN_PLUGIN_PATH", ""}});
  EXPECT_EQ(r.code, 0) << r.all();
  EXPECT_TRUE(contains(r.out, "Cannot be loaded:")) << r.out;
  EXPECT_TRUE(contains(r.out, "ABI version " + std::to_string(KILN_MISMATCHED_ABI_VERSION)))
      << r.out;
}

TEST_F(Abi, PluginNeedingAnotherSdkLibraryNamesBothVersions) {
  // kiln_newer.so needs libkiln_sdk.so.<ABI + 1>, which is nowhere to be found.
  const fs::path newer = fs::path(KILN_MISMATCHED_PLUGIN_DIR) / "kiln_newer.so";
  const Result r = kiln({"inspect", newer.string()});
  EXPECT_EQ(r.code, 3) << r.all();
  const std::string next = std::to_string(KILN_MISMATCHED_ABI_VERSION);
  EXPECT_TRUE(contains(r.err, "it was built for Kiln plugin ABI version " + next +
                                  " (it needs libkiln_sdk.so." + next +
                                  ", which is not installed), but this kiln uses ABI version " +
                                  std::to_string(KILN_ABI_VERSION)))
      << r.err;
  EXPECT_TRUE(contains(r.err, "rebuild the plugin against this Kiln SDK")) << r.err;
}

}  // namespace
}  // namespace kiln::host
