#include "plugin_loader.hpp"

#include <dlfcn.h>
#include <gtest/gtest.h>

#include <cstdlib>

#include "conformance.hpp"
#include "host_error.hpp"
#include "host_test_util.hpp"
#include "support/test_support.hpp"

namespace kiln::host {
namespace {
namespace fs = std::filesystem;
using test::kBrokenPluginDir;
using test::kTestPluginDir;

class NullContext final : public TaskContext {
 public:
  std::string stage_id() const override { return "t"; }
  fs::path work_dir() const override { return fs::temp_directory_path(); }
  std::uint64_t seed() const override { return 1; }
  DType precision() const override { return DType::f32; }
  void progress(std::int64_t, std::int64_t, const std::string&) override {}
  bool cancelled() const override { return false; }
  void stream_text(std::string_view) override {}
};

// Whether the dynamic loader still has `file` mapped (RTLD_NOLOAD does not load it).
bool is_mapped(const fs::path& file) {
  void* h = ::dlopen(file.c_str(), RTLD_LAZY | RTLD_NOLOAD);
  if (h == nullptr) return false;
  ::dlclose(h);
  return true;
}

std::string load_error(const fs::path& file) {
  try {
    load_plugin(file);
  } catch (const HostError& e) {
    EXPECT_EQ(e.code(), kExitPlugin) << e.what();
    return e.what();
  }
  ADD_FAILURE() << file << " loaded but should not";
  return "";
}

TEST(PluginLoader, LoadsTheTestPlugin) {
  auto p = load_plugin(kTestPluginDir / "kiln_test.so");
  EXPECT_EQ(p->name(), "test");
  EXPECT_EQ(p->descriptor().abi_version, static_cast<std::uint32_t>(KILN_ABI_VERSION));
  EXPECT_EQ(p->descriptor().sdk_version, KILN_VERSION_STRING);
  EXPECT_EQ(p->descriptor().toolchain, KILN_TOOLCHAIN_ID);
  EXPECT_EQ(p->info().version, "1.2.3");
  ASSERT_EQ(p->info().tasks.size(), 3u);
  EXPECT_EQ(p->info().tasks[0].kind, TaskKind::train);
  EXPECT_EQ(plugin_name_from_file("/x/kiln_test.so"), "test");
  EXPECT_EQ(plugin_name_from_file("/x/libfoo.so"), "");
  EXPECT_EQ(plugin_name_from_file("/x/kiln_.so"), "");
}

TEST(PluginLoader, RefusesBrokenPluginsWithTheReason) {
  std::string e = load_error(kBrokenPluginDir / "kiln_notalib.so");
  EXPECT_TRUE(test::contains(e, "not a loadable shared library")) << e;
  e = load_error(kBrokenPluginDir / "kiln_nosymbols.so");
  EXPECT_TRUE(test::contains(e, "not a Kiln plugin")) << e;
  EXPECT_TRUE(test::contains(e, "kiln_plugin_descriptor")) << e;
  e = load_error(kBrokenPluginDir / "kiln_badabi.so");
  EXPECT_TRUE(test::contains(e, "ABI version 999")) << e;
  EXPECT_TRUE(test::contains(e, "ABI version " + std::to_string(KILN_ABI_VERSION))) << e;
  EXPECT_TRUE(test::contains(e, "rebuild the plugin")) << e;
  e = load_error(kBrokenPluginDir / "kiln_throws.so");
  EXPECT_TRUE(test::contains(e, "factory threw")) << e;
  EXPECT_TRUE(test::contains(e, "cannot start (this plugin always fails)")) << e;
  e = load_error(kBrokenPluginDir / "kiln_missing.so");
  EXPECT_TRUE(test::contains(e, "does not exist")) << e;
  // A refused plugin leaves nothing mapped (the ABI check happens before any object exists).
  EXPECT_FALSE(is_mapped(kBrokenPluginDir / "kiln_badabi.so"));
  EXPECT_FALSE(is_mapped(kBrokenPluginDir / "kiln_throws.so"));
}

TEST(PluginLoader, ObjectsKeepTheirLibraryLoaded) {
  const fs::path file = kTestPluginDir / "kiln_test.so";
  ASSERT_FALSE(is_mapped(file));
  NullContext ctx;
  std::shared_ptr<Task> task;
  std::shared_ptr<Plugin> plugin;
  {
    auto loaded = load_plugin(file);
    plugin = loaded->plugin();
    Params p = Params::resolve(loaded->info().find("report")->params,
                               Params({{"title", std::string("t")}}));
    task = loaded->create_task("report", p, ctx);
  }
  EXPECT_TRUE(is_mapped(file));
  EXPECT_EQ(plugin->info().name, "test");  // plugin code still runs
  plugin.reset();
  EXPECT_TRUE(is_mapped(file));
  const auto artifacts = task->as_run()->run();
  EXPECT_EQ(artifacts.size(), 6u);
  task.reset();
  EXPECT_FALSE(is_mapped(file)) << "the library stayed loaded after its last object died";
}

TEST(PluginLoaderDeathTest, EveryDestructionOrderIsSafe) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  for (int order = 0; order < lifetime_order_count(); ++order) {
    EXPECT_EXIT(
        {
          run_lifetime_order(kTestPluginDir / "kiln_test.so", order);
          std::exit(0);
        },
        ::testing::ExitedWithCode(0), "")
        << lifetime_order_name(order);
  }
}

TEST(PluginSearch, FollowsTheOrderAndReportsShadowedPlugins) {
  kiln::test::TempDir dir;
  fs::create_directories(dir / "first");
  fs::copy_file(kTestPluginDir / "kiln_test.so", dir / "first" / "kiln_test.so");
  ::setenv("KILN_PLUGIN_PATH", (kTestPluginDir.string() + ":" + kBrokenPluginDir.string()).c_str(),
           1);
  const auto dirs = plugin_search_dirs({dir / "first"});
  ::unsetenv("KILN_PLUGIN_PATH");
  ASSERT_GE(dirs.size(), 3u);
  EXPECT_EQ(dirs[0].origin, "pipeline [plugins].paths");
  EXPECT_EQ(dirs[1].dir, fs::weakly_canonical(kTestPluginDir));
  EXPECT_EQ(dirs[1].origin, "KILN_PLUGIN_PATH");
  EXPECT_EQ(dirs[2].dir, fs::weakly_canonical(kBrokenPluginDir));

  PluginRegistry registry(dirs);
  int tests = 0;
  for (const Candidate& c : registry.candidates()) {
    if (c.name != "test") continue;
    ++tests;
    if (c.path.parent_path().filename() == "first") {
      EXPECT_TRUE(c.shadowed_by.empty());
    } else {
      EXPECT_EQ(c.shadowed_by, dir / "first" / "kiln_test.so");
    }
  }
  EXPECT_EQ(tests, 2);
  EXPECT_EQ(registry.get("test")->path(), dir / "first" / "kiln_test.so");
  // A broken plugin does not stop the others from working.
  try {
    registry.get("badabi");
    FAIL();
  } catch (const HostError& e) {
    EXPECT_EQ(e.code(), kExitPlugin);
  }
  EXPECT_EQ(registry.get("test")->name(), "test");
  try {
    registry.get("tset");
    FAIL();
  } catch (const HostError& e) {
    EXPECT_EQ(e.code(), kExitUsage);
    EXPECT_TRUE(test::contains(e.what(), "unknown plugin 'tset' (did you mean 'test'?)"))
        << e.what();
    EXPECT_TRUE(test::contains(e.what(), kTestPluginDir.string())) << e.what();
  }
}

}  // namespace
}  // namespace kiln::host
