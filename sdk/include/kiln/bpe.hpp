// Byte-level BPE (byte-pair encoding) tokenizer, as GPT-2's: train one on a corpus, or load
// GPT-2-format `vocab.json` + `merges.txt`.
//
//   kiln::text::BpeTokenizer tok = kiln::text::BpeTokenizer::train(corpus, {.vocab_size = 4096});
//   std::vector<std::int64_t> ids = tok.encode("Hello, world!");
//   std::string back = tok.decode(ids);                     // == "Hello, world!"
//   tok.save("out/vocab.json", "out/merges.txt");           // readable by Hugging Face tokenizers
//   auto gpt2 = kiln::text::BpeTokenizer::load("vocab.json", "merges.txt");
//
// Tokens are byte strings. Every one of the 256 bytes is a token, so encode() never fails and
// decode(encode(s)) == s for any byte string s, valid UTF-8 or not.
//
// Pre-tokenisation splits text into pieces that merges never cross, following GPT-2's pattern
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// implemented by hand over UTF-8 code points (no std::regex). Letter / number / space classes are
// exact for ASCII and Latin-1 and approximate beyond (general punctuation, CJK punctuation and
// Unicode spaces are recognised; other code points >= U+0100 count as letters). A byte that is not
// part of valid UTF-8 is a piece-class "other" character of its own.
//
// Files (GPT-2 format): vocab.json maps each token, written through GPT-2's byte-to-Unicode
// table (space = "Ġ", newline = "Ċ"), to its id; merges.txt starts with "#version: 0.2" and lists
// one merge "left right" per line, in priority order. Ids must be 0..n-1 without gaps. A token of
// the vocabulary that is neither a byte nor a merge result (e.g. "<|endoftext|>") is a special
// token: encode() never produces it from text; decode() writes its text.
//
// A trained vocabulary has the 256 byte tokens first (in GPT-2's order, so ids 0..255 mean the
// same bytes as in GPT-2), then one token per merge, then the special tokens.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kiln/export.hpp"

namespace kiln::text {

// GPT-2's pre-tokenisation (see above): consecutive pieces that together are `text`.
KILN_API std::vector<std::string_view> pretokenize(std::string_view text);

struct BpeTrainOptions {
  std::int64_t vocab_size = 4096;  // total, including the 256 bytes and the special tokens
  std::int64_t min_frequency = 2;  // pairs seen fewer times are never merged
  std::vector<std::string> special_tokens = {"<|endoftext|>"};
};

class KILN_API BpeTokenizer {
 public:
  // The 256 byte tokens and no merges.
  BpeTokenizer();

  // Learns merges on `corpus` until the vocabulary has opts.vocab_size tokens or no pair occurs
  // min_frequency times. Pair frequencies are counted over word types and updated incrementally,
  // so training a few thousand merges on megabytes takes seconds. Ties between equally frequent
  // pairs go to the pair of smaller ids. Throws kiln::Error for a vocab_size below 256 + the
  // number of special tokens, or an empty / duplicate special token.
  static BpeTokenizer train(std::string_view corpus, const BpeTrainOptions& opts);
  // The same over several documents (pieces never cross a document boundary).
  static BpeTokenizer train(const std::vector<std::string_view>& documents,
                            const BpeTrainOptions& opts);

  // GPT-2-format files. Errors (unreadable file, bad JSON, ids with gaps or duplicates, a byte
  // missing from the vocabulary, a merge line that is not "a b" or whose parts or result are not
  // in the vocabulary) name the file, and the line for merges.txt.
  static BpeTokenizer load(const std::filesystem::path& vocab_json,
                           const std::filesystem::path& merges_txt);
  // The same from the files' contents; `source` names them in error messages.
  static BpeTokenizer from_strings(const std::string& vocab_json, const std::string& merges_txt,
                                   const std::string& source);
  // Writes both files atomically.
  void save(const std::filesystem::path& vocab_json, const std::filesystem::path& merges_txt) const;
  std::string vocab_json() const;
  std::string merges_txt() const;

  std::vector<std::int64_t> encode(std::string_view text) const;
  // Concatenated bytes of the tokens; an id outside [0, vocab_size) is a kiln::Error.
  std::string decode(std::span<const std::int64_t> ids) const;
  // The bytes of one token.
  const std::string& token_bytes(std::int64_t id) const;

  std::int64_t vocab_size() const;
  std::int64_t num_merges() const;
  // The id of the token whose bytes are exactly `bytes` (special tokens included), if any.
  std::optional<std::int64_t> find(std::string_view bytes) const;
  // Ids of the special tokens, in id order.
  std::vector<std::int64_t> special_ids() const;

 private:
  struct Impl;
  explicit BpeTokenizer(std::shared_ptr<const Impl> impl);
  std::shared_ptr<const Impl> impl_;
};

// GPT-2's reversible byte <-> printable code point table (bytes_to_unicode in GPT-2's encoder.py).
KILN_API char32_t byte_to_unicode(std::uint8_t b);
// The UTF-8 form of a token's bytes as vocab.json writes it.
KILN_API std::string bytes_to_vocab_string(std::string_view bytes);

}  // namespace kiln::text
