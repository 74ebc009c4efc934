// One-shot (run) stages through the real `kiln` binary, and the progress display.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>

#include <nlohmann/json.hpp>

#include "host_test_util.hpp"
#include "kiln/image.hpp"
#include "kiln/safetensors.hpp"
#include "support/test_support.hpp"

namespace kiln::host {
namespace {
namespace fs = std::filesystem;
using json = nlohmann::json;
using test::contains;
using test::Result;

class RunStage : public test::KilnTest {
 protected:
  fs::path pipeline(const std::string& stage_body) {
    return test_pipeline("report.toml", "[pipeline]\nseed = 3\nrun_dir = \"run\"\n", "rep",
                         "report", "title = \"Quarterly\"\n" + stage_body);
  }
};

TEST_F(RunStage, WritesEveryArtifactKind) {
  const Result r = kiln({"run", pipeline("rows = 2\n").string()});
  ASSERT_EQ(r.code, 0) << r.err;
  const fs::path stage = dir_ / "run" / "rep";
  const Image img = read_image(stage / "pattern.png");
  EXPECT_EQ(img.width, 6);
  EXPECT_EQ(img.height, 4);
  EXPECT_EQ(img.pixels[5], 50);
  EXPECT_EQ(test::read_text(stage / "summary.txt"), "Quarterly\n");
  const auto csv = test::lines_of(test::read_text(stage / "table.csv"));
  ASSERT_EQ(csv.size(), 3u);
  EXPECT_EQ(csv[0], "row,value,note");
  EXPECT_EQ(csv[2].substr(csv[2].rfind(",\"")), ",\"odd, \"\"quoted\"\"\"");
  const Safetensors w = load_safetensors(stage / "weights.safetensors");
  EXPECT_EQ(w.tensors.at("w").to_vector(), (std::vector<float>{0, 1, 2, 3}));
  EXPECT_EQ(w.metadata.at("note"), "four");
  EXPECT_EQ(test::read_text(stage / "data.bin"), std::string("\x00\x01\x02kiln", 7));
  const json metrics = json::parse(test::read_text(stage / "metrics.json"));
  EXPECT_EQ(metrics.at("rows"), 2.0);
  EXPECT_TRUE(metrics.contains("total"));
  EXPECT_TRUE(contains(r.err, "rows = 2.0")) << r.err;  // metrics are printed
  const auto manifest = test::lines_of(test::read_text(stage / "manifest.jsonl"));
  ASSERT_EQ(manifest.size(), 5u);  // one per file written
  for (const std::string& line : manifest) {
    const json j = json::parse(line);
    EXPECT_EQ(sha256_file_hex(stage / j.at("path").get<std::string>()), j.at("sha256"));
    EXPECT_EQ(j.at("seed"), 3);
    if (j.at("path") == "summary.txt") {
      EXPECT_EQ(j.at("info").at("stage"), "rep");
    }
  }
  EXPECT_TRUE(fs::exists(stage / "work" / "scratch.txt"));  // TaskContext::work_dir
  EXPECT_EQ(json::parse(test::read_text(stage / "stage.json")).at("status"), "complete");
  // The run folder holds the resolved pipeline and the log.
  EXPECT_TRUE(
      contains(test::read_text(dir_ / "run" / "pipeline.resolved.toml"), "title = 'Quarterly'"));
  EXPECT_TRUE(
      contains(test::read_text(dir_ / "run" / "log.txt"), "stage 'rep' (test/report): done"));
}

TEST_F(RunStage, ResumeSkipsAStageThatCompletedWithTheSameSettings) {
  const fs::path file = pipeline("");
  ASSERT_EQ(kiln({"run", file.string()}).code, 0);
  Result r = kiln({"run", file.string(), "--resume"});
  ASSERT_EQ(r.code, 0);
  EXPECT_TRUE(contains(r.err, "already complete with these settings; skipped")) << r.err;
  r = kiln({"run", file.string(), "--resume", "--set", "rep.rows=4"});
  ASSERT_EQ(r.code, 0);
  EXPECT_FALSE(contains(r.err, "skipped")) << r.err;
  EXPECT_EQ(test::lines_of(test::read_text(dir_ / "run" / "rep" / "table.csv")).size(), 5u);
}

TEST_F(RunStage, ProgressIsABarOnATerminalAndLinesOtherwise) {
  const fs::path file = pipeline("rows = 20\n");
  // Not a terminal: plain lines.
  Result r = kiln({"run", file.string()});
  ASSERT_EQ(r.code, 0);
  EXPECT_TRUE(contains(r.err, "kiln: rep: 10/20 rows")) << r.err;
  EXPECT_FALSE(contains(r.err, "\r")) << r.err;

  // A terminal: the bar is redrawn in place with a rate and an ETA.
  const int master = ::posix_openpt(O_RDWR | O_NOCTTY);
  ASSERT_GE(master, 0);
  ASSERT_EQ(::grantpt(master), 0);
  ASSERT_EQ(::unlockpt(master), 0);
  const std::string slave = ::ptsname(master);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, slave.c_str(), O_RDWR, 0);
  std::vector<std::string> args = {test::kKilnExe.string(), "run", file.string(), "--set",
                                   "rep.rows=40"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env = test::make_env({});
  std::vector<char*> envp;
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  pid_t pid = 0;
  ASSERT_EQ(posix_spawn(&pid, args[0].c_str(), &actions, nullptr, argv.data(), envp.data()), 0);
  posix_spawn_file_actions_destroy(&actions);
  std::string screen;
  int status = 0;
  while (true) {
    pollfd pfd{master, POLLIN, 0};
    if (::poll(&pfd, 1, 50) > 0 && (pfd.revents & POLLIN)) {
      char buf[4096];
      const ssize_t n = ::read(master, buf, sizeof buf);
      if (n > 0) screen.append(buf, static_cast<std::size_t>(n));
    }
    if (::waitpid(pid, &status, WNOHANG) == pid) break;
  }
  ::close(master);
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_TRUE(contains(screen, "\r\033[Krep [")) << screen;
  EXPECT_TRUE(contains(screen, "rows/s, ETA")) << screen;
}

}  // namespace
}  // namespace kiln::host
