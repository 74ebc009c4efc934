#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "kiln/data.hpp"
#include "kiln/error.hpp"
#include "kiln/text.hpp"
#include "support/test_support.hpp"

namespace kiln::text {
namespace {

namespace fs = std::filesystem;

void write(const fs::path& p, const std::string& bytes) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << bytes;
}

std::vector<std::string> names(const std::vector<fs::path>& paths) {
  std::vector<std::string> out;
  for (const auto& p : paths) out.push_back(p.filename().string());
  return out;
}

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Corpus, FolderIsSortedSkipsIndicesHiddenEmptyAndSymlinkDuplicates) {
  test::TempDir dir;
  write(dir / "b", "bee\n%\n");
  write(dir / "a", "ay\n");
  write(dir / "a.dat", std::string("\0\1\2", 3));
  write(dir / ".hidden", "no\n");
  write(dir / "empty", "");
  write(dir / "sub/c", "sea");
  fs::create_symlink(dir / "a", dir / "a.u8");
  const auto files = list_corpus_files(dir.path().string());
  EXPECT_EQ(names(files), (std::vector<std::string>{"a", "b", "c"}));

  const Corpus c = load_corpus({dir.path().string()});
  EXPECT_EQ(c.text, "ay\nbee\n%\nsea\n");  // a newline appended to "sea"
  ASSERT_EQ(c.documents.size(), 3u);
  EXPECT_EQ(c.documents[1].offset, 3u);
  EXPECT_EQ(c.documents[2].size, 3u);

  CorpusOptions flat;
  flat.recursive = false;
  EXPECT_EQ(names(list_corpus_files(dir.path().string(), flat)),
            (std::vector<std::string>{"a", "b"}));
}

TEST(Corpus, GlobMatchesFileNamesAndDuplicatesAcrossSourcesAreKeptOnce) {
  test::TempDir dir;
  write(dir / "x1.txt", "one\n");
  write(dir / "x2.txt", "two\n");
  write(dir / "y.md", "why\n");
  EXPECT_EQ(names(list_corpus_files((dir / "x*.txt").string())),
            (std::vector<std::string>{"x1.txt", "x2.txt"}));
  const Corpus c = load_corpus({(dir / "x2.txt").string(), (dir / "*.txt").string()});
  EXPECT_EQ(c.text, "two\none\n");
  EXPECT_NE(error_of([&] {
              list_corpus_files((dir / "*.csv").string());
            }).find("no non-empty file matches"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              list_corpus_files((dir / "*" / "x1.txt").string());
            }).find("last path component"),
            std::string::npos);
}

TEST(Corpus, ClearErrorsForMissingEmptyBinaryAndNonUtf8Files) {
  test::TempDir dir;
  EXPECT_NE(error_of([&] { load_corpus({(dir / "nope.txt").string()}); }).find("does not exist"),
            std::string::npos);
  write(dir / "empty.txt", "");
  const std::string e1 = error_of([&] { load_corpus({(dir / "empty.txt").string()}); });
  EXPECT_NE(e1.find("empty.txt"), std::string::npos) << e1;
  EXPECT_NE(e1.find("is empty"), std::string::npos) << e1;
  write(dir / "bin", std::string("ab\0cd", 5));
  const std::string e2 = error_of([&] { load_corpus({(dir / "bin").string()}); });
  EXPECT_NE(e2.find("binary"), std::string::npos) << e2;
  EXPECT_NE(e2.find("offset 2"), std::string::npos) << e2;
  write(dir / "latin1", "caf\xe9\n");
  const std::string e3 = error_of([&] { load_corpus({(dir / "latin1").string()}); });
  EXPECT_NE(e3.find("not UTF-8"), std::string::npos) << e3;
  EXPECT_NE(e3.find("0xE9 at offset 3"), std::string::npos) << e3;
  test::TempDir empty_dir;
  EXPECT_NE(error_of([&] { load_corpus({empty_dir.path().string()}); }).find("no non-empty"),
            std::string::npos);
}

TEST(Corpus, SplitTakesTheTailOfEveryDocumentAtALineStart) {
  Corpus c;
  c.text = "aaaa\nbbbb\ncccc\ndddd\nxx\nyy\n";
  c.documents = {{"one", 0, 20}, {"two", 20, 6}};
  const TextSplit s = split_text(c, 0.25);
  // doc 1: nominal 15 -> the line "dddd\n" starting at 15; doc 2: nominal 4 -> no later line.
  EXPECT_EQ(s.train, "aaaa\nbbbb\ncccc\nxx\nyy\n");
  EXPECT_EQ(s.validation, "dddd\n");
  const TextSplit none = split_text(c, 0.0);
  EXPECT_EQ(none.train, c.text);
  EXPECT_TRUE(none.validation.empty());
  EXPECT_THROW(split_text(c, 0.7), Error);
}

TEST(Utf8, RoundTripsAndRejectsMalformedSequences) {
  const std::string s = "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80";  // a é € 😀
  const auto cps = decode_utf8(s);
  EXPECT_EQ(cps, (std::vector<char32_t>{U'a', 0xE9, 0x20AC, 0x1F600}));
  std::string back;
  for (char32_t c : cps) append_utf8(back, c);
  EXPECT_EQ(back, s);
  EXPECT_EQ(find_invalid_utf8(s), std::string::npos);
  EXPECT_EQ(find_invalid_utf8("ab\xc0\xaf"), 2u);        // overlong '/'
  EXPECT_EQ(find_invalid_utf8("\xed\xa0\x80"), 0u);      // surrogate
  EXPECT_EQ(find_invalid_utf8("x\xe2\x82"), 1u);         // truncated
  EXPECT_EQ(find_invalid_utf8("\xf4\x90\x80\x80"), 0u);  // above U+10FFFF
  EXPECT_THROW(decode_utf8("\x80"), Error);
}

TEST(CharVocab, SortedCodePointsEncodeDecodeAndUnknownPolicies) {
  const CharVocab v = CharVocab::from_text("hello w\xc3\xb6rld?");
  EXPECT_EQ(v.size(), 10);  // ' ' ? d e h l o r w ö
  EXPECT_EQ(v.char_of(0), U' ');
  EXPECT_EQ(v.char_of(9), char32_t(0xF6));
  const auto ids = v.encode("w\xc3\xb6rld");
  EXPECT_EQ(v.decode(ids), "w\xc3\xb6rld");
  EXPECT_EQ(v.token_text(9), "\xc3\xb6");

  const std::string err = error_of([&] { v.encode("helloX"); });
  EXPECT_NE(err.find("U+0058 'X' at character 5"), std::string::npos) << err;
  std::int64_t skipped = 0;
  EXPECT_EQ(v.decode(v.encode("heXlo", Unknown::skip, &skipped)), "helo");
  EXPECT_EQ(skipped, 1);
  EXPECT_EQ(v.decode(v.encode("heXlo", Unknown::replace)), "he?lo");
  const CharVocab no_repl = CharVocab::from_text("ab");
  EXPECT_THROW(no_repl.encode("c", Unknown::replace), Error);
  EXPECT_EQ(parse_unknown("skip"), Unknown::skip);
  EXPECT_THROW(parse_unknown("drop"), Error);
}

TEST(CharVocab, TensorRoundTripAndValidation) {
  const CharVocab v = CharVocab::from_text("ba\xe2\x82\xac");
  const Tensor t = v.to_tensor();
  EXPECT_EQ(t.dtype(), DType::s32);
  EXPECT_EQ(CharVocab::from_tensor(t).chars(), v.chars());
  EXPECT_THROW(CharVocab::from_tensor(Tensor::from_ints({98, 97}, {2}, DType::s32)), Error);
  EXPECT_THROW(CharVocab::from_tensor(Tensor::from_ints({0xD800}, {1}, DType::s32)), Error);
  EXPECT_THROW(CharVocab::from_tensor(Tensor::from_vector({1.f}, {1})), Error);
}

TEST(TokenWindows, WindowsAndShiftedTargets) {
  auto ids = make_ids({0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
  TokenWindows w(ids, 3);  // starts 0, 3, 6 (6+3 = 9 <= 9)
  EXPECT_EQ(w.size(), 3);
  data::Batch b = w.get_batch({2, 0});
  EXPECT_EQ(b.at("input").to_int_vector(), (std::vector<std::int64_t>{6, 7, 8, 0, 1, 2}));
  EXPECT_EQ(b.at("target").to_int_vector(), (std::vector<std::int64_t>{7, 8, 9, 1, 2, 3}));
  EXPECT_EQ(b.at("input").dtype(), DType::s64);
  TokenWindows overlapping(ids, 4, 1);
  EXPECT_EQ(overlapping.size(), 6);
  EXPECT_THROW(w.get_batch({3}), Error);
  EXPECT_THROW(TokenWindows(ids, 10), Error);
  EXPECT_THROW(TokenWindows(ids, 0), Error);
}

TEST(TokenStreams, ConsecutiveBatchesContinueEveryRow) {
  std::vector<std::int32_t> v(23);
  for (int i = 0; i < 23; ++i) v[static_cast<std::size_t>(i)] = i;
  TokenStreams s(make_ids(v), /*streams=*/2, /*seq_len=*/5);  // L = 11, 2 chunks per stream
  EXPECT_EQ(s.chunks(), 2);
  EXPECT_EQ(s.size(), 4);
  data::DataLoader loader(std::make_shared<TokenStreams>(s),
                          {.batch_size = 2, .shuffle = false, .prefetch = 0});
  ASSERT_EQ(loader.batches_per_epoch(), 2);
  data::Batch b0 = loader.get(0, 0), b1 = loader.get(0, 1);
  EXPECT_EQ(b0.at("input").to_int_vector(),
            (std::vector<std::int64_t>{0, 1, 2, 3, 4, 11, 12, 13, 14, 15}));
  EXPECT_EQ(b1.at("input").to_int_vector(),
            (std::vector<std::int64_t>{5, 6, 7, 8, 9, 16, 17, 18, 19, 20}));
  EXPECT_EQ(b1.at("target").to_int_vector(),
            (std::vector<std::int64_t>{6, 7, 8, 9, 10, 17, 18, 19, 20, 21}));
  EXPECT_EQ(b1.at("stream").to_int_vector(), (std::vector<std::int64_t>{0, 1}));
  EXPECT_EQ(b1.at("chunk").to_int_vector(), (std::vector<std::int64_t>{1, 1}));
  EXPECT_THROW(TokenStreams(make_ids(v), 5, 5), Error);
}

TEST(Corpus, DebianFortunesLoadWhenInstalled) {
  const fs::path dir = "/usr/share/games/fortunes";
  if (!fs::is_directory(dir)) GTEST_SKIP() << "fortunes not installed";
  const auto files = list_corpus_files(dir.string());
  for (const auto& f : files) {
    EXPECT_NE(f.extension(), ".dat");
    EXPECT_NE(f.extension(), ".u8");  // symlinks to the plain files: kept once
  }
  const Corpus c = load_corpus({dir.string()});
  EXPECT_GT(c.text.size(), 1'000'000u);
  const CharVocab v = CharVocab::from_text(c.text);
  EXPECT_GT(v.size(), 90);
  EXPECT_EQ(v.decode(v.encode(c.text)), c.text);
}

}  // namespace
}  // namespace kiln::text
