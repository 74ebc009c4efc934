// BPE training at realistic size: a 4096-token vocabulary on the fortunes corpus (~2.5 MB), which
// must take well under a minute and compress the text while decoding back exactly.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include "kiln/bpe.hpp"
#include "kiln/file_io.hpp"

namespace kiln::text {
namespace {

std::string fortunes_corpus() {
  const std::filesystem::path dir = "/usr/share/games/fortunes";
  std::vector<std::filesystem::path> files;
  if (!std::filesystem::is_directory(dir)) return {};
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    const auto ext = e.path().extension();
    if (e.is_regular_file() && ext != ".dat" && ext != ".u8") files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  std::string all;
  for (const auto& f : files) all += read_file(f);
  return all;
}

TEST(BpeSlow, TrainsOnFortunesQuickly) {
  const std::string corpus = fortunes_corpus();
  if (corpus.size() < 1000000) GTEST_SKIP() << "the fortunes package is not installed";
  const auto t0 = std::chrono::steady_clock::now();
  BpeTokenizer t = BpeTokenizer::train(corpus, {.vocab_size = 4096});
  const double train_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const auto t1 = std::chrono::steady_clock::now();
  const auto ids = t.encode(corpus);
  const double encode_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
  std::printf(
      "fortunes: %zu bytes, vocab %lld, trained in %.2f s, encoded in %.2f s to %zu tokens "
      "(%.2f bytes/token)\n",
      corpus.size(), static_cast<long long>(t.vocab_size()), train_s, encode_s, ids.size(),
      static_cast<double>(corpus.size()) / static_cast<double>(ids.size()));
  EXPECT_EQ(t.vocab_size(), 4096);
  EXPECT_LT(train_s, 30.0);
  EXPECT_GT(static_cast<double>(corpus.size()) / static_cast<double>(ids.size()), 2.8);
  EXPECT_EQ(t.decode(ids), corpus);
}

}  // namespace
}  // namespace kiln::text
