#include "runtime.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include "host_test_util.hpp"
#include "support/test_support.hpp"

namespace kiln::host {
namespace {
namespace fs = std::filesystem;

TEST(ThreadPlan, NeverUsesMoreThreadsThanTheBudget) {
  for (int n : {0, 1, 2}) {
    const ThreadPlan p = plan_threads(n);
    EXPECT_EQ(p.budget.compute_threads, std::max(1, n)) << n;
    EXPECT_FALSE(p.overlap_io) << n;  // I/O takes turns with compute
  }
  for (int n = 3; n <= 64; ++n) {
    const ThreadPlan p = plan_threads(n);
    EXPECT_TRUE(p.overlap_io) << n;
    EXPECT_EQ(p.budget.io_threads, std::max(1, n / 8)) << n;
    EXPECT_EQ(p.budget.compute_threads + p.budget.io_threads, n) << n;
  }
}

TEST(StaleTemporaries, RemovesThoseOfDeadProcessesOnly) {
  kiln::test::TempDir dir;
  test::write_text(dir / ".000001.png.tmp-999999999-0", "partial");
  const std::string mine = ".000002.png.tmp-" + std::to_string(::getpid()) + "-3";
  test::write_text(dir / mine, "being written");
  test::write_text(dir / "000003.png", "a sample");
  test::write_text(dir / ".hidden", "not ours");
  EXPECT_EQ(remove_stale_temporaries(dir.path()), 1);
  EXPECT_FALSE(fs::exists(dir / ".000001.png.tmp-999999999-0"));
  EXPECT_TRUE(fs::exists(dir / mine));
  EXPECT_TRUE(fs::exists(dir / "000003.png"));
  EXPECT_TRUE(fs::exists(dir / ".hidden"));
}

TEST(ParamsJson, PathsInsideTheRunFolderAreRelative) {
  TaskSpec spec = TaskSpec::generate("g", "help");
  spec.param(ParamSpec::path("model", "m")).param(ParamSpec::path("data", "d"));
  Params p;
  p.set("model", std::string("/runs/x/train/model.safetensors"));
  p.set("data", std::string("/data/set"));
  EXPECT_EQ(params_json_relative(p, spec, "/runs/x"),
            R"({"data":"/data/set","model":"train/model.safetensors"})");
}

}  // namespace
}  // namespace kiln::host
