// Text corpora for language models: files, a character vocabulary, and datasets of token
// windows for the DataLoader. Character-level models (RNN) use CharVocab; token-level models
// (BPE) encode the corpus text with their own tokenizer and build the same datasets from ids.
//
//   kiln::text::Corpus corpus = kiln::text::load_corpus({"/usr/share/games/fortunes"});
//   kiln::text::TextSplit split = kiln::text::split_text(corpus, /*validation=*/0.05);
//   kiln::text::CharVocab vocab = kiln::text::CharVocab::from_text(corpus.text);
//   auto ids = kiln::text::make_ids(vocab.encode(split.train));
//   auto train = std::make_shared<kiln::text::TokenWindows>(ids, /*seq_len=*/128);
//   // or, for truncated BPTT with the state carried from batch to batch (batch_size = 32,
//   // shuffle = false): std::make_shared<kiln::text::TokenStreams>(ids, 32, 128);
//
// Characters are Unicode code points: files must be UTF-8 (plain ASCII is UTF-8), and "bits per
// character" counts code points. Bytes are never split, so every generated text is valid UTF-8.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "kiln/data.hpp"
#include "kiln/export.hpp"
#include "kiln/tensor.hpp"

namespace kiln::text {

// ------------------------------------------------------------------------------ corpora

struct KILN_API CorpusOptions {
  // File-name patterns (fnmatch, matched against the name only) left out of folders and globs.
  // The default skips the `.dat` indices of fortune files.
  std::vector<std::string> exclude = {"*.dat"};
  bool recursive = true;  // descend into sub-folders of a folder source
};

struct CorpusDocument {
  std::filesystem::path path;  // canonical path of the file
  std::size_t offset = 0;      // where its text starts in Corpus::text
  std::size_t size = 0;        // its length in bytes (without the separator)
};

struct KILN_API Corpus {
  std::string text;  // every document, in order; a '\n' is appended to one that lacks it
  std::vector<CorpusDocument> documents;
  std::string describe() const;  // "N files, M bytes (first/path ...)"
};

// The files a source names, in a deterministic order:
//   * a file: that file;
//   * a folder: every regular file below it (recursively unless !opts.recursive), sorted by
//     path relative to the folder (bytewise), skipping names that start with '.', names that
//     match opts.exclude, and empty files;
//   * a glob: a path whose last component holds '*', '?' or '[' (e.g. "data/*.txt"): the
//     matching regular files of that folder, sorted by name, with the same skips.
// Symbolic links are followed, and a file reached twice (fortunes' `name.u8 -> name`) is kept once,
// at its first position. Errors (kiln::Error) name the source: it does not exist, a glob
// whose folder part has wildcards, a folder or glob that yields no file.
KILN_API std::vector<std::filesystem::path> list_corpus_files(const std::string& source,
                                                              const CorpusOptions& opts = {});

// The text of every file of every source (sources in order, each listed as above, duplicates
// across sources kept once). Errors name the file: unreadable, empty (when named explicitly),
// binary (a NUL byte) or not UTF-8 (with the byte offset); and an all-empty corpus.
KILN_API Corpus load_corpus(const std::vector<std::string>& sources,
                            const CorpusOptions& opts = {});

struct TextSplit {
  std::string train;
  std::string validation;
};
// Deterministic train / validation split: the last `validation_fraction` of each document goes
// to validation, cut at the start of a line at or after the nominal point (so no line and no
// character is split; a document without a later line break stays in train). Every document
// therefore contributes to both parts in proportion. validation_fraction in [0, 0.5].
KILN_API TextSplit split_text(const Corpus& corpus, double validation_fraction);

// ------------------------------------------------------------------------------ UTF-8

// Code points of `utf8`; invalid UTF-8 (bad lead or continuation bytes, overlong forms,
// surrogates, values above U+10FFFF, a truncated sequence) is a kiln::Error giving the byte
// offset, prefixed with `what` (e.g. a file name) when given.
KILN_API std::vector<char32_t> decode_utf8(std::string_view utf8, std::string_view what = "");
KILN_API void append_utf8(std::string& out, char32_t cp);
// Byte offset of the first invalid UTF-8 sequence, or npos when `bytes` is valid.
KILN_API std::size_t find_invalid_utf8(std::string_view bytes);

// ------------------------------------------------------------------------------ vocabulary

// What encode() does with a character that is not in the vocabulary.
enum class Unknown {
  error,    // kiln::Error naming the character (U+XXXX) and its position
  skip,     // leave it out
  replace,  // encode the vocabulary's replacement character instead (see replacement())
};
// "error", "skip", "replace" <-> Unknown; parse throws naming the value and the choices.
KILN_API Unknown parse_unknown(std::string_view name);
KILN_API const char* unknown_name(Unknown u);

// A character vocabulary: token id i is the i-th smallest code point seen.
class KILN_API CharVocab {
 public:
  CharVocab() = default;
  // The sorted distinct code points (must be valid, i.e. < 0x110000 and not surrogates).
  explicit CharVocab(std::vector<char32_t> chars);
  static CharVocab from_text(std::string_view utf8);

  std::int64_t size() const { return static_cast<std::int64_t>(chars_.size()); }
  const std::vector<char32_t>& chars() const { return chars_; }
  char32_t char_of(std::int64_t id) const;  // throws for an id out of range
  std::int64_t id_of(char32_t cp) const;    // -1 when absent
  bool contains(char32_t cp) const { return id_of(cp) >= 0; }
  // The character Unknown::replace substitutes: U+FFFD if present, else '?', else ' ', else
  // none (-1, and replace is then an error).
  std::int64_t replacement() const;

  // Token ids of `utf8`. `skipped` (optional) receives the number of characters left out or
  // replaced.
  std::vector<std::int32_t> encode(std::string_view utf8, Unknown unknown = Unknown::error,
                                   std::int64_t* skipped = nullptr) const;
  std::string decode(const std::vector<std::int32_t>& ids) const;
  std::string decode(const std::vector<std::int64_t>& ids) const;
  std::string token_text(std::int64_t id) const;  // UTF-8 of one character

  // For checkpoints: the code points as an s32 [V] tensor, and back (validated: sorted,
  // distinct, valid code points; errors say the tensor `name` is malformed).
  Tensor to_tensor() const;
  static CharVocab from_tensor(const Tensor& t, std::string_view name = "vocab");

 private:
  std::vector<char32_t> chars_;
};

// ------------------------------------------------------------------------------ datasets

using TokenIds = std::shared_ptr<const std::vector<std::int32_t>>;
KILN_API TokenIds make_ids(std::vector<std::int32_t> ids);

// Windows over a token sequence: example i reads ids[i*stride .. i*stride + seq_len] and yields
// {"input": [B, T] s64 = ids[s, s+T), "target": [B, T] s64 = ids[s+1, s+T+1), "index": [B] s64}.
// size() = (n - 1 - seq_len) / stride + 1 (0 when n <= seq_len). stride 0 means seq_len
// (non-overlapping windows). Errors: seq_len < 1, stride < 0, fewer than seq_len + 1 ids.
class KILN_API TokenWindows : public data::Dataset {
 public:
  TokenWindows(TokenIds ids, std::int64_t seq_len, std::int64_t stride = 0);
  std::int64_t size() const override { return size_; }
  data::Batch get_batch(const std::vector<std::int64_t>& indices) const override;
  std::string describe() const override;
  std::int64_t seq_len() const { return seq_len_; }
  const TokenIds& ids() const { return ids_; }

 private:
  TokenIds ids_;
  std::int64_t seq_len_, stride_, size_;
};

// Contiguous streams for truncated back-propagation through time. The sequence (minus its last
// id) is cut into `streams` equal contiguous parts of length L = (n - 1) / streams, each read in
// C = L / seq_len chunks. Example k is chunk c = k / streams of stream r = k % streams, so with
// batch_size = streams and no shuffling, batch c holds chunk c of every stream in stream order:
// row r of batch c continues row r of batch c - 1, and a recurrent model may carry its state
// across batches. Batches are {"input", "target" [B, T] s64, "index", "stream", "chunk" [B] s64}.
// size() = streams * C. Errors: streams < 1, seq_len < 1, fewer than streams * seq_len + 1 ids.
class KILN_API TokenStreams : public data::Dataset {
 public:
  TokenStreams(TokenIds ids, std::int64_t streams, std::int64_t seq_len);
  std::int64_t size() const override { return streams_ * chunks_; }
  data::Batch get_batch(const std::vector<std::int64_t>& indices) const override;
  std::string describe() const override;
  std::int64_t streams() const { return streams_; }
  std::int64_t chunks() const { return chunks_; }
  std::int64_t seq_len() const { return seq_len_; }

 private:
  TokenIds ids_;
  std::int64_t streams_, seq_len_, stream_len_, chunks_;
};

}  // namespace kiln::text
