// The plugin conformance suite, run against the test plugin and every plugin built from
// plugins/ (the build tree's plugin folder), and shown to catch a plugin that breaks the rules.
#include "conformance.hpp"

#include <gtest/gtest.h>

#include "host_test_util.hpp"
#include "plugin_loader.hpp"

namespace kiln::host {
namespace {
namespace fs = std::filesystem;

ConformanceReport check(const fs::path& file) {
  ConformanceOptions opts;
  // Each destruction order runs in its own `kiln check-plugin --lifetime-order` process, so a
  // lifetime bug shows as a failed check instead of taking this test binary down.
  opts.lifetime_runner = [file](int order, std::string& detail) {
    return run_lifetime_in_subprocess(test::kKilnExe.string(), file, order, detail);
  };
  return check_plugin(file, opts);
}

const CheckResult* find_check(const ConformanceReport& r, const std::string& prefix) {
  for (const CheckResult& c : r.checks) {
    if (c.name.rfind(prefix, 0) == 0) return &c;
  }
  return nullptr;
}

TEST(Conformance, TestPluginPasses) {
  const ConformanceReport r = check(test::kTestPluginDir / "kiln_test.so");
  EXPECT_TRUE(r.passed()) << r.to_text();
  EXPECT_EQ(r.plugin, "test 1.2.3");
  // Every task ran (none skipped), and every destruction order was tried.
  for (const char* task : {"task fit (train): ", "task draw (generate): ", "task report (run): "}) {
    const CheckResult* c = find_check(r, task);
    ASSERT_NE(c, nullptr) << task << "\n" << r.to_text();
    EXPECT_EQ(c->status, CheckResult::Status::pass) << r.to_text();
  }
  int lifetimes = 0;
  for (const CheckResult& c : r.checks) lifetimes += c.name.rfind("lifetime: ", 0) == 0;
  EXPECT_EQ(lifetimes, lifetime_order_count());
  const CheckResult* required = find_check(r, "missing required parameters");
  ASSERT_NE(required, nullptr);
  EXPECT_EQ(required->status, CheckResult::Status::pass);
}

TEST(Conformance, EveryBundledPluginPasses) {
  // The plugins built from plugins/ land in the build tree's plugin folder; there may be none.
  std::vector<SearchDir> dirs = {{KILN_PLUGIN_BUILD_DIR, "build tree"}};
  int checked = 0;
  for (const Candidate& c : find_candidates(dirs)) {
    SCOPED_TRACE(c.path.string());
    const ConformanceReport r = check(c.path);
    EXPECT_TRUE(r.passed()) << r.to_text();
    ++checked;
  }
  std::cout << "[ INFO     ] " << checked << " bundled plugin(s) checked in "
            << KILN_PLUGIN_BUILD_DIR << "\n";
}

TEST(Conformance, CatchesAPluginThatBreaksTheContract) {
  const ConformanceReport r = check(fs::path(KILN_SLOPPY_PLUGIN_DIR) / "kiln_sloppy.so");
  EXPECT_FALSE(r.passed());
  auto failed = [&](const std::string& prefix, const std::string& detail) {
    const CheckResult* c = find_check(r, prefix);
    ASSERT_NE(c, nullptr) << prefix << "\n" << r.to_text();
    EXPECT_EQ(c->status, CheckResult::Status::fail) << prefix << "\n" << r.to_text();
    EXPECT_TRUE(test::contains(c->detail, detail)) << c->detail;
  };
  failed("self-description", "parameter 'size': its default must be between 4 and 256, got 2");
  failed("an unknown task is refused", "accepted an unknown task name");
  failed("missing required parameters", "created without its required parameter 'title'");
  failed("task fit (train)", "two runs with the same seed end in different states");
  failed("task draw (generate)", "changes with the batch it is in");
  // What it does right still passes.
  const CheckResult* report = find_check(r, "task report (run): ");
  ASSERT_NE(report, nullptr) << r.to_text();
  EXPECT_EQ(report->status, CheckResult::Status::pass);
}

TEST(Conformance, BrokenPluginsFailToLoad) {
  for (const char* name :
       {"kiln_notalib.so", "kiln_nosymbols.so", "kiln_badabi.so", "kiln_throws.so"}) {
    const ConformanceReport r = check(test::kBrokenPluginDir / name);
    EXPECT_FALSE(r.loaded) << name;
    EXPECT_FALSE(r.passed()) << name;
    ASSERT_EQ(r.checks.size(), 1u) << r.to_text();
    EXPECT_EQ(r.checks[0].status, CheckResult::Status::fail);
  }
}

}  // namespace
}  // namespace kiln::host
