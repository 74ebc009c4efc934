// Byte-level BPE: GPT-2 pre-tokenisation, training, the encode/decode identity on any bytes,
// GPT-2-format files (round trip, hand-made files with known merges, every malformed case).
#include "kiln/bpe.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "kiln/error.hpp"
#include "kiln/random.hpp"

namespace kiln::text {
namespace {

std::vector<std::string> pieces(std::string_view s) {
  std::vector<std::string> out;
  for (auto p : pretokenize(s)) out.emplace_back(p);
  return out;
}

std::string random_bytes(std::uint64_t seed, std::size_t n) {
  Philox rng(seed, 0, 0);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng.below(256));
  return s;
}

const char* kCorpus =
    "the cat sat on the mat. the cat ate the rat. the rat sat on the cat's hat.\n"
    "a mat, a hat, a cat: that is what the fat cat had. The end, the end.\n";

std::string expect_error(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "no kiln::Error thrown";
  return "";
}

TEST(BpePretokenize, FollowsGpt2Pattern) {
  EXPECT_EQ(pieces("Hello world's  end\n\nok 123 !!"),
            (std::vector<std::string>{"Hello", " world", "'s", " ", " end", "\n", "\n", "ok",
                                      " 123", " !!"}));
  EXPECT_EQ(pieces("I'll don't we're they've I'm he'd 'x"),
            (std::vector<std::string>{"I", "'ll", " don", "'t", " we", "'re", " they", "'ve", " I",
                                      "'m", " he", "'d", " '", "x"}));
  EXPECT_EQ(pieces("a  "), (std::vector<std::string>{"a", "  "}));
  EXPECT_EQ(pieces("x\n y"), (std::vector<std::string>{"x", "\n", " y"}));
  EXPECT_EQ(pieces("abc123def"), (std::vector<std::string>{"abc", "123", "def"}));
  EXPECT_EQ(pieces("caf\xC3\xA9 na\xC3\xAFve \xE2\x80\x94 ok"),
            (std::vector<std::string>{"caf\xC3\xA9", " na\xC3\xAFve", " \xE2\x80\x94", " ok"}));
  EXPECT_EQ(pieces(""), std::vector<std::string>{});
  // An invalid byte is an "other" character of its own class, grouped with other punctuation.
  EXPECT_EQ(pieces("ab\xFF\xFE!cd"), (std::vector<std::string>{"ab", "\xFF\xFE!", "cd"}));
}

TEST(BpePretokenize, PiecesCoverAnyBytes) {
  for (std::uint64_t seed = 0; seed < 20; ++seed) {
    const std::string s = random_bytes(seed, 1 + seed * 37);
    std::string joined;
    for (auto p : pretokenize(s)) {
      EXPECT_FALSE(p.empty());
      joined += p;
    }
    EXPECT_EQ(joined, s);
  }
}

TEST(Bpe, BytesOnlyTokenizerUsesGpt2ByteIds) {
  BpeTokenizer t;
  EXPECT_EQ(t.vocab_size(), 256);
  EXPECT_EQ(t.encode("!"), std::vector<std::int64_t>{0});     // GPT-2: "!" = 0
  EXPECT_EQ(t.encode("~"), std::vector<std::int64_t>{93});    // "~" = 93
  EXPECT_EQ(t.encode(" "), std::vector<std::int64_t>{220});   // "Ġ" = 220
  EXPECT_EQ(t.encode("\n"), std::vector<std::int64_t>{198});  // "Ċ" = 198
  EXPECT_EQ(bytes_to_vocab_string(" "), "\xC4\xA0");
  EXPECT_EQ(byte_to_unicode('\n'), U'\u010A');
}

TEST(Bpe, TrainsMergesThatShortenText) {
  BpeTokenizer t = BpeTokenizer::train(kCorpus, {.vocab_size = 300, .min_frequency = 2});
  EXPECT_GT(t.num_merges(), 10);
  EXPECT_LE(t.vocab_size(), 300);
  // The most frequent word is merged into one token, with its leading space.
  ASSERT_TRUE(t.find(" the").has_value());
  EXPECT_EQ(t.encode(" the"), std::vector<std::int64_t>{*t.find(" the")});
  EXPECT_LT(t.encode(kCorpus).size(), std::string(kCorpus).size() / 2);
  EXPECT_EQ(t.decode(t.encode(kCorpus)), kCorpus);
  // The special token sits at the end and is never produced from text.
  ASSERT_EQ(t.special_ids().size(), 1u);
  EXPECT_EQ(t.special_ids()[0], t.vocab_size() - 1);
  EXPECT_EQ(t.token_bytes(t.vocab_size() - 1), "<|endoftext|>");
  for (std::int64_t id : t.encode("<|endoftext|>")) EXPECT_NE(id, t.vocab_size() - 1);
  // Deterministic.
  BpeTokenizer u = BpeTokenizer::train(kCorpus, {.vocab_size = 300, .min_frequency = 2});
  EXPECT_EQ(t.merges_txt(), u.merges_txt());
}

// The textbook algorithm: recount every pair over every word for every merge, take the most
// frequent (ties: smaller (left, right) ids). The incremental trainer must learn the same merges.
std::vector<std::string> naive_merges(std::string_view corpus, int merges) {
  BpeTokenizer bytes;
  std::map<std::string, std::int64_t> counts;
  for (auto p : pretokenize(corpus)) ++counts[std::string(p)];
  std::vector<std::pair<std::vector<std::int64_t>, std::int64_t>> words;
  for (const auto& [w, c] : counts) words.emplace_back(bytes.encode(w), c);
  std::vector<std::string> tokens;
  for (std::int64_t i = 0; i < 256; ++i) tokens.push_back(bytes.token_bytes(i));
  std::vector<std::string> out;
  for (int m = 0; m < merges; ++m) {
    std::map<std::pair<std::int64_t, std::int64_t>, std::int64_t> pc;
    for (const auto& [s, c] : words) {
      for (std::size_t i = 0; i + 1 < s.size(); ++i) pc[{s[i], s[i + 1]}] += c;
    }
    std::pair<std::int64_t, std::int64_t> best{-1, -1};
    std::int64_t best_count = 0;
    for (const auto& [p, c] : pc) {
      if (c > best_count) best = p, best_count = c;  // map order: smaller ids win ties
    }
    if (best_count < 2) break;
    const auto id = static_cast<std::int64_t>(tokens.size());
    tokens.push_back(tokens[best.first] + tokens[best.second]);
    out.push_back(bytes_to_vocab_string(tokens[best.first]) + " " +
                  bytes_to_vocab_string(tokens[best.second]));
    for (auto& [s, c] : words) {
      std::vector<std::int64_t> merged;
      for (std::size_t i = 0; i < s.size();) {
        if (i + 1 < s.size() && s[i] == best.first && s[i + 1] == best.second) {
          merged.push_back(id);
          i += 2;
        } else {
          merged.push_back(s[i++]);
        }
      }
      s = merged;
    }
  }
  return out;
}

TEST(Bpe, IncrementalTrainingMatchesTheTextbookAlgorithm) {
  std::string corpus;
  for (int k = 0; k < 3; ++k) corpus += kCorpus + std::to_string(k * 1234567) + " aaaa abab ";
  const std::vector<std::string> expected = naive_merges(corpus, 80);
  BpeTokenizer t = BpeTokenizer::train(
      corpus,
      {.vocab_size = 256 + static_cast<std::int64_t>(expected.size()), .special_tokens = {}});
  std::vector<std::string> got;
  const std::string m = t.merges_txt();
  std::size_t pos = m.find('\n') + 1;
  while (pos < m.size()) {
    const std::size_t e = m.find('\n', pos);
    got.push_back(m.substr(pos, e - pos));
    pos = e + 1;
  }
  EXPECT_EQ(got, expected);
  EXPECT_GT(expected.size(), 40u);
}

TEST(Bpe, MinFrequencyStopsTraining) {
  BpeTokenizer t = BpeTokenizer::train("ab ab cd", {.vocab_size = 1000, .min_frequency = 2});
  // Only "a b" and then " ab" (or "ab"+" ab" parts) occur twice; "c d" occurs once.
  EXPECT_FALSE(t.find("cd").has_value());
  EXPECT_TRUE(t.find("ab").has_value());
}

TEST(Bpe, EncodeDecodeIsIdentityOnAnyBytes) {
  BpeTokenizer t = BpeTokenizer::train(kCorpus, {.vocab_size = 320});
  for (std::uint64_t seed = 0; seed < 30; ++seed) {
    const std::string s = random_bytes(seed, seed * 53);
    const auto ids = t.encode(s);
    for (std::int64_t id : ids) ASSERT_TRUE(id >= 0 && id < t.vocab_size());
    EXPECT_EQ(t.decode(ids), s) << "seed " << seed;
  }
  const std::string invalid[] = {"\xC3",
                                 "\xE2\x80",
                                 "\xF0\x9F\x98",
                                 "\xC0\xAF",
                                 "\xED\xA0\x80",
                                 "\xF8\x88\x80\x80\x80",
                                 "the \xFF cat\x80sat",
                                 std::string(5, '\0')};
  for (const std::string& s : invalid) EXPECT_EQ(t.decode(t.encode(s)), s);
  // A long run without spaces (one piece) is encoded in reasonable time.
  const std::string long_run(200000, '!');
  EXPECT_EQ(t.decode(t.encode(long_run)), long_run);
}

TEST(Bpe, SaveLoadRoundTrip) {
  BpeTokenizer t = BpeTokenizer::train(kCorpus, {.vocab_size = 310});
  const auto dir = std::filesystem::temp_directory_path() / "kiln_bpe_test";
  std::filesystem::create_directories(dir);
  t.save(dir / "vocab.json", dir / "merges.txt");
  BpeTokenizer u = BpeTokenizer::load(dir / "vocab.json", dir / "merges.txt");
  EXPECT_EQ(u.vocab_size(), t.vocab_size());
  EXPECT_EQ(u.num_merges(), t.num_merges());
  EXPECT_EQ(u.special_ids(), t.special_ids());
  const std::string probe = std::string(kCorpus) + random_bytes(3, 500);
  EXPECT_EQ(u.encode(probe), t.encode(probe));
  EXPECT_EQ(u.vocab_json(), t.vocab_json());
  EXPECT_EQ(u.merges_txt(), t.merges_txt());
  std::filesystem::remove_all(dir);
}

// A GPT-2-style vocabulary written by hand: 256 bytes in GPT-2 order, then merges.
std::string handmade_vocab(const std::vector<std::string>& extra) {
  std::string v = "{";
  BpeTokenizer bytes;
  for (std::int64_t id = 0; id < 256; ++id) {
    std::string s = bytes_to_vocab_string(bytes.token_bytes(id));
    std::string esc;
    for (char c : s) {
      if (c == '"' || c == '\\') esc += '\\';
      esc += c;
    }
    v += "\"" + esc + "\": " + std::to_string(id) + ", ";
  }
  for (std::size_t i = 0; i < extra.size(); ++i) {
    v += "\"" + extra[i] + "\": " + std::to_string(256 + i) + (i + 1 < extra.size() ? ", " : "");
  }
  return v + "}";
}

TEST(Bpe, LoadsGpt2FormatWithKnownMerges) {
  // Merge priority: "h e" before "l l", then "he ll", then "Ġ w"; "\u0120" written as an escape.
  const std::string vocab = handmade_vocab({"he", "ll", "hell", "\\u0120w", "<|endoftext|>"});
  const std::string merges = "#version: 0.2\nh e\nl l\nhe ll\n\xC4\xA0 w\n";
  BpeTokenizer t = BpeTokenizer::from_strings(vocab, merges, "handmade");
  EXPECT_EQ(t.vocab_size(), 261);
  EXPECT_EQ(t.num_merges(), 4);
  EXPECT_EQ(t.special_ids(), std::vector<std::int64_t>{260});
  const auto o = static_cast<std::int64_t>(*BpeTokenizer().find("o"));
  EXPECT_EQ(t.encode("hello"), (std::vector<std::int64_t>{258, o}));
  EXPECT_EQ(t.encode(" w"), (std::vector<std::int64_t>{259}));
  EXPECT_EQ(t.decode(std::vector<std::int64_t>{258, o, 259, 260}), "hello w<|endoftext|>");
}

TEST(Bpe, MalformedFilesAreClearErrors) {
  const std::string good = handmade_vocab({"he"});
  EXPECT_NE(expect_error([] { BpeTokenizer::from_strings("[1, 2]", "", "v"); }).find("'v'"),
            std::string::npos);
  EXPECT_NE(expect_error([] { BpeTokenizer::from_strings("{\"a\": 1", "", "v"); }).find("expected"),
            std::string::npos);
  EXPECT_NE(expect_error([] { BpeTokenizer::from_strings("{\"a\": x}", "", "v"); }).find("integer"),
            std::string::npos);
  // A gap in the ids.
  std::string gap = good;
  gap.replace(gap.find("\"he\": 256"), 9, "\"he\": 400");
  EXPECT_NE(expect_error([&] { BpeTokenizer::from_strings(gap, "", "v"); }).find("no gaps"),
            std::string::npos);
  // Two tokens with one id.
  std::string dup = good;
  dup.replace(dup.find("\"he\": 256"), 9, "\"he\": 5");
  EXPECT_NE(expect_error([&] { BpeTokenizer::from_strings(dup, "", "v"); }).find("two tokens"),
            std::string::npos);
  // A byte without a token.
  EXPECT_NE(
      expect_error([] { BpeTokenizer::from_strings("{\"a\": 0}", "", "v"); }).find("has no token"),
      std::string::npos);
  // Merges: bad line, unknown part, unknown result.
  EXPECT_NE(expect_error([&] {
              BpeTokenizer::from_strings(good, "#version: 0.2\nhe\n", "m");
            }).find(":2: expected two tokens"),
            std::string::npos);
  EXPECT_NE(expect_error([&] {
              BpeTokenizer::from_strings(good, "h e\nhe zz\n", "m");
            }).find(":2: 'zz' is not in the vocabulary"),
            std::string::npos);
  EXPECT_NE(expect_error([&] {
              BpeTokenizer::from_strings(good, "l l\n", "m");
            }).find(":1: 'll' is not in the vocabulary"),
            std::string::npos);
  // Missing files name the path.
  EXPECT_NE(expect_error([] {
              BpeTokenizer::load("/nonexistent/vocab.json", "/nonexistent/m");
            }).find("/nonexistent/vocab.json"),
            std::string::npos);
  // Ids out of range in decode.
  BpeTokenizer t;
  EXPECT_NE(expect_error([&] { t.decode(std::vector<std::int64_t>{256}); }).find("outside"),
            std::string::npos);
}

TEST(Bpe, BadTrainingOptionsAreErrors) {
  EXPECT_NE(
      expect_error([] { BpeTokenizer::train("abc", {.vocab_size = 256}); }).find("at least 256"),
      std::string::npos);
  EXPECT_NE(expect_error([] {
              BpeTokenizer::train("abc", {.vocab_size = 300, .special_tokens = {"<a>", "<a>"}});
            }).find("listed twice"),
            std::string::npos);
  EXPECT_NE(expect_error([] {
              BpeTokenizer::train("abc", {.vocab_size = 300, .special_tokens = {""}});
            }).find("empty"),
            std::string::npos);
  EXPECT_NE(expect_error([] {
              BpeTokenizer::train("abc", {.vocab_size = 300, .special_tokens = {"a"}});
            }).find("same bytes"),
            std::string::npos);
}

}  // namespace
}  // namespace kiln::text
