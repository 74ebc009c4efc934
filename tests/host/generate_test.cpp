// The generation runtime through the real `kiln` binary: reproducibility, shards, manifest,
// resume after damage or kill -9, text output and errors.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <nlohmann/json.hpp>
#include <set>

#include "host_test_util.hpp"
#include "kiln/image.hpp"
#include "support/test_support.hpp"

namespace kiln::host {
namespace {
namespace fs = std::filesystem;
using json = nlohmann::json;
using test::contains;
using test::Result;

class Generate : public test::KilnTest {
 protected:
  fs::path pipeline(const std::string& stage_body) {
    return test_pipeline("gen.toml",
                         "[pipeline]\nname = \"gen\"\nseed = 5\n[compute]\nthreads = 2\n", "draw",
                         "draw", stage_body);
  }
  static std::vector<json> manifest(const fs::path& file) {
    std::vector<json> out;
    for (const std::string& line : test::lines_of(test::read_text(file)))
      out.push_back(json::parse(line));
    return out;
  }
  // Every manifest entry's file exists and has the recorded digest; indices are unique.
  static void expect_complete(const fs::path& stage, const fs::path& manifest_file,
                              std::int64_t count) {
    const auto lines = manifest(manifest_file);
    EXPECT_EQ(static_cast<std::int64_t>(lines.size()), count);
    std::set<std::int64_t> seen;
    for (const json& j : lines) {
      const std::int64_t index = j.at("index").get<std::int64_t>();
      EXPECT_TRUE(seen.insert(index).second) << "index " << index << " listed twice";
      EXPECT_EQ(sha256_file_hex(stage / j.at("path").get<std::string>()),
                j.at("sha256").get<std::string>());
    }
    EXPECT_EQ(static_cast<std::int64_t>(seen.size()), count);
    if (!seen.empty()) {
      EXPECT_EQ(*seen.begin(), 0);
      EXPECT_EQ(*seen.rbegin(), count - 1);
    }
    std::int64_t files = 0;
    for (const auto& e : fs::directory_iterator(stage / "samples")) files += e.is_regular_file();
    EXPECT_EQ(files, count) << "stray or missing sample files";
  }
};

TEST_F(Generate, SamePipelineTwiceGivesByteIdenticalOutputs) {
  const fs::path file = pipeline(
      "count = 13\nbatch = 4\ngrid = 4\n"
      "[[stage]]\nid = \"text\"\nplugin = \"test\"\ntask = \"draw\"\n"
      "kind = \"text\"\ncount = 6\nbatch = 5\n");
  // One run writes on an I/O thread alongside compute (3 threads), the other in turns (2): the
  // test plugin's samples do not depend on the thread count, so the bytes must not either.
  const Result a = kiln({"run", file.string(), "--threads", "3"}, dir_ / "a");
  ASSERT_EQ(a.code, 0) << a.err;
  EXPECT_TRUE(contains(a.err, "3 threads (compute 2, I/O 1 alongside)")) << a.err;
  const Result b = kiln({"run", file.string()}, dir_ / "b");
  ASSERT_EQ(b.code, 0) << b.err;
  EXPECT_TRUE(contains(b.err, "2 threads (compute 2, I/O between batches)")) << b.err;
  for (const std::string stage : {"draw", "text"}) {
    const auto da = test::tree_digest(dir_ / "a" / stage);
    EXPECT_EQ(da, test::tree_digest(dir_ / "b" / stage)) << stage;
    EXPECT_EQ(da.count("manifest.jsonl"), 1u);
  }
  EXPECT_TRUE(fs::exists(dir_ / "a" / "draw" / "grid.png"));
  EXPECT_TRUE(fs::exists(dir_ / "a" / "text" / "samples" / "000005.txt"));
  // The grid holds the 13 images, 4 per row, 2 pixels of padding.
  const Image grid = read_image(dir_ / "a" / "draw" / "grid.png");
  EXPECT_EQ(grid.width, 4 * (16 + 2) + 2);
  EXPECT_EQ(grid.height, 4 * (16 + 2) + 2);
  // A run into the same folder again replaces the outputs with the same bytes.
  const auto before = test::tree_digest(dir_ / "a" / "draw");
  ASSERT_EQ(kiln({"run", file.string()}, dir_ / "a").code, 0);
  EXPECT_EQ(test::tree_digest(dir_ / "a" / "draw"), before);
}

TEST_F(Generate, ManifestLinesDescribeEachSample) {
  const fs::path file = pipeline("count = 3\nbatch = 2\nlabel = \"hello\"\n");
  ASSERT_EQ(kiln({"run", file.string()}, dir_ / "r").code, 0);
  const std::string text = test::read_text(dir_ / "r" / "draw" / "manifest.jsonl");
  const auto lines = test::lines_of(text);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(
      lines[1].rfind("{\"index\":1,\"seed\":5,\"path\":\"samples/000001.png\",\"sha256\":\"", 0),
      0u)
      << lines[1];
  const json j = json::parse(lines[1]);
  EXPECT_EQ(j.at("params").at("label"), "hello");
  EXPECT_EQ(j.at("params").at("size"), 16);
  EXPECT_EQ(j.at("info").at("label"), "hello");
  EXPECT_EQ(j.at("info").at("precision"), "f32");
}

TEST_F(Generate, ShardsTogetherEqualTheUnshardedRun) {
  const fs::path file = pipeline("count = 11\nbatch = 3\n");
  ASSERT_EQ(kiln({"run", file.string()}, dir_ / "whole").code, 0);
  // Both shards write into one folder: each keeps its own manifest.
  for (const std::string shard : {"0/2", "1/2"}) {
    const Result r = kiln({"run", file.string(), "--shard", shard}, dir_ / "sharded");
    ASSERT_EQ(r.code, 0) << r.err;
  }
  const fs::path whole = dir_ / "whole" / "draw", sharded = dir_ / "sharded" / "draw";
  const auto m0 = manifest(sharded / "manifest.shard-0-of-2.jsonl");
  const auto m1 = manifest(sharded / "manifest.shard-1-of-2.jsonl");
  EXPECT_EQ(m0.size(), 6u);  // indices 0, 2, ..., 10
  EXPECT_EQ(m1.size(), 5u);  // indices 1, 3, ..., 9
  for (const json& j : m0) EXPECT_EQ(j.at("index").get<int>() % 2, 0);
  for (const json& j : m1) EXPECT_EQ(j.at("index").get<int>() % 2, 1);
  std::map<std::int64_t, json> from_shards;
  for (const auto* m : {&m0, &m1}) {
    for (const json& j : *m)
      EXPECT_TRUE(from_shards.emplace(j.at("index").get<std::int64_t>(), j).second);
  }
  const auto reference = manifest(whole / "manifest.jsonl");
  ASSERT_EQ(reference.size(), from_shards.size());
  for (const json& ref : reference) {
    const json& got = from_shards.at(ref.at("index").get<std::int64_t>());
    EXPECT_EQ(got.at("seed"), ref.at("seed"));
    EXPECT_EQ(got.at("path"), ref.at("path"));
    EXPECT_EQ(got.at("params"), ref.at("params"));
    const Image a = read_image(whole / ref.at("path").get<std::string>());
    const Image b = read_image(sharded / got.at("path").get<std::string>());
    ASSERT_EQ(a.pixels.size(), b.pixels.size());
    int worst = 0;
    for (std::size_t i = 0; i < a.pixels.size(); ++i) {
      worst = std::max(worst, std::abs(int(a.pixels[i]) - int(b.pixels[i])));
    }
    EXPECT_LE(worst, 1) << ref.at("path");
  }
  EXPECT_FALSE(fs::exists(sharded / "grid.png"));
  // An unsharded run in the same folder replaces the shards' samples and manifests.
  ASSERT_EQ(kiln({"run", file.string()}, dir_ / "sharded").code, 0);
  EXPECT_FALSE(fs::exists(sharded / "manifest.shard-0-of-2.jsonl"));
  EXPECT_EQ(test::tree_digest(sharded), test::tree_digest(whole));
}

TEST_F(Generate, ResumeRemakesOnlyMissingOrCorruptSamples) {
  const fs::path file = pipeline("count = 10\nbatch = 3\n");
  ASSERT_EQ(kiln({"run", file.string()}, dir_ / "r").code, 0);
  const fs::path stage = dir_ / "r" / "draw";
  const auto original = test::tree_digest(stage);
  auto inode = [&](const std::string& f) {
    struct stat st {};
    ::stat((stage / "samples" / f).c_str(), &st);
    return st.st_ino;
  };
  const auto untouched_inode = inode("000007.png");
  std::ofstream(stage / "samples" / "000003.png", std::ios::app) << "junk";             // corrupt
  fs::remove(stage / "samples" / "000005.png");                                         // missing
  std::ofstream(stage / "manifest.jsonl", std::ios::app) << "{\"index\": 9, \"seed\"";  // torn line
  const Result r = kiln({"run", file.string(), "--resume"}, dir_ / "r");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(contains(r.err, "3 manifest entries did not verify")) << r.err;
  EXPECT_TRUE(contains(r.err, "8 already complete")) << r.err;
  expect_complete(stage, stage / "manifest.jsonl", 10);
  EXPECT_EQ(test::tree_digest(stage), original);  // the same bytes, manifest included
  EXPECT_EQ(inode("000007.png"), untouched_inode) << "a verified sample was rewritten";
}

TEST_F(Generate, ResumeAfterKill9GivesExactlyCountSamples) {
  const fs::path file = pipeline("count = 40\nbatch = 2\ndelay_ms = 25\n");
  ASSERT_EQ(kiln({"run", file.string()}, dir_ / "reference").code, 0);
  const fs::path stage = dir_ / "killed" / "draw";  // written on the I/O thread (3 threads)
  {
    test::Process p({"run", file.string(), "--threads", "3", "--set",
                     "pipeline.run_dir=" + (dir_ / "killed").string()},
                    dir_.path());
    ASSERT_TRUE(test::wait_until(
        [&] { return test::lines_of(test::read_text(stage / "manifest.jsonl")).size() >= 6; }));
    p.signal(SIGKILL);
    EXPECT_EQ(p.wait().code, 128 + SIGKILL);
  }
  const auto partial = test::lines_of(test::read_text(stage / "manifest.jsonl"));
  EXPECT_LT(partial.size(), 40u);
  const Result r = kiln({"run", file.string(), "--resume", "--threads", "3"}, dir_ / "killed");
  ASSERT_EQ(r.code, 0) << r.err;
  expect_complete(stage, stage / "manifest.jsonl", 40);
  EXPECT_EQ(test::tree_digest(stage), test::tree_digest(dir_ / "reference" / "draw"));
}

TEST_F(Generate, CtrlCKeepsFinishedSamplesAndExits130) {
  const fs::path file = pipeline("count = 40\nbatch = 2\ndelay_ms = 25\n");
  const fs::path stage = dir_ / "r" / "draw";
  test::Process p({"run", file.string(), "--set", "pipeline.run_dir=" + (dir_ / "r").string()},
                  dir_.path());
  ASSERT_TRUE(test::wait_until(
      [&] { return test::lines_of(test::read_text(stage / "manifest.jsonl")).size() >= 4; }));
  p.signal(SIGINT);
  const Result r = p.wait();
  EXPECT_EQ(r.code, 130) << r.err;
  EXPECT_TRUE(contains(r.err, "run again with --resume")) << r.err;
  const auto lines = manifest(stage / "manifest.jsonl");
  ASSERT_GE(lines.size(), 4u);
  ASSERT_LT(lines.size(), 40u);
  expect_complete(stage, stage / "manifest.jsonl", static_cast<std::int64_t>(lines.size()));
  ASSERT_EQ(kiln({"run", file.string(), "--resume"}, dir_ / "r").code, 0);
  expect_complete(stage, stage / "manifest.jsonl", 40);
}

TEST_F(Generate, TextSamplesStreamToStdout) {
  const fs::path file = pipeline("kind = \"text\"\ncount = 1\nstream = true\n");
  const Result r = kiln({"run", file.string()}, dir_ / "r");
  ASSERT_EQ(r.code, 0) << r.err;
  const std::string sample = test::read_text(dir_ / "r" / "draw" / "samples" / "000000.txt");
  EXPECT_EQ(sample.rfind("sample 0:", 0), 0u) << sample;
  EXPECT_EQ(r.out, sample);  // streamed once, nothing else on stdout
}

TEST_F(Generate, CountDefaultsToTheTasksOwn) {
  const fs::path file = pipeline("batch = 2\n");
  ASSERT_EQ(kiln({"run", file.string()}, dir_ / "r").code, 0);
  expect_complete(dir_ / "r" / "draw", dir_ / "r" / "draw" / "manifest.jsonl", 5);  // default_count
}

TEST_F(Generate, FailingBatchStopsTheStageAndKeepsEarlierSamples) {
  const fs::path file = pipeline("count = 10\nbatch = 2\nfail_at_index = 6\n");
  const Result r = kiln({"run", file.string()}, dir_ / "r");
  EXPECT_EQ(r.code, 1);
  EXPECT_TRUE(
      contains(r.err, "stage 'draw' (test/draw) failed: test/draw: asked to fail at sample 6"))
      << r.err;
  expect_complete(dir_ / "r" / "draw", dir_ / "r" / "draw" / "manifest.jsonl", 6);
}

}  // namespace
}  // namespace kiln::host
