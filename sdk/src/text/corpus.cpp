// Text corpora, UTF-8, the character vocabulary and the token-window datasets (kiln/text.hpp).
#include <fnmatch.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <set>
#include <system_error>

#include "kiln/error.hpp"
#include "kiln/file_io.hpp"
#include "kiln/text.hpp"

namespace kiln::text {

namespace fs = std::filesystem;

namespace {

std::string quoted(const fs::path& p) {
  return "'" + p.string() + "'";
}

bool has_wildcard(const std::string& s) {
  return s.find_first_of("*?[") != std::string::npos;
}

bool excluded(const std::string& name, const CorpusOptions& opts) {
  if (name.empty() || name[0] == '.') return true;
  for (const std::string& pat : opts.exclude) {
    if (::fnmatch(pat.c_str(), name.c_str(), 0) == 0) return true;
  }
  return false;
}

// Regular (after following links), non-empty, not excluded.
bool wanted_file(const fs::path& p, const CorpusOptions& opts) {
  std::error_code ec;
  if (excluded(p.filename().string(), opts)) return false;
  if (!fs::is_regular_file(p, ec)) return false;
  return fs::file_size(p, ec) > 0 && !ec;
}

std::string hex_cp(char32_t cp) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "U+%04X", static_cast<unsigned>(cp));
  return buf;
}

// One code point at s[i]; returns its length, 0 when invalid.
std::size_t utf8_next(std::string_view s, std::size_t i, char32_t& cp) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  if (b0 < 0x80) {
    cp = b0;
    return 1;
  }
  std::size_t len;
  char32_t min;
  if ((b0 & 0xE0) == 0xC0) {
    len = 2, cp = b0 & 0x1F, min = 0x80;
  } else if ((b0 & 0xF0) == 0xE0) {
    len = 3, cp = b0 & 0x0F, min = 0x800;
  } else if ((b0 & 0xF8) == 0xF0) {
    len = 4, cp = b0 & 0x07, min = 0x10000;
  } else {
    return 0;
  }
  if (i + len > s.size()) return 0;
  for (std::size_t k = 1; k < len; ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    if ((b & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (b & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return len;
}

bool valid_cp(char32_t cp) {
  return cp <= 0x10FFFF && !(cp >= 0xD800 && cp <= 0xDFFF);
}

}  // namespace

// ------------------------------------------------------------------------------ corpora

std::vector<fs::path> list_corpus_files(const std::string& source, const CorpusOptions& opts) {
  KILN_CHECK(!source.empty(), "text corpus: the source is an empty string; give a file, a folder ",
             "or a glob such as \"data/*.txt\"");
  std::vector<fs::path> found;
  std::error_code ec;
  const fs::path src(source);
  const bool exists = fs::exists(src, ec);
  if (!exists && has_wildcard(src.parent_path().string())) {
    throw Error("text corpus '" + src.string() +
                "': wildcards are only supported in the last path component (the file name)");
  }
  if (!exists && has_wildcard(src.filename().string())) {
    const fs::path dir = src.has_parent_path() ? src.parent_path() : fs::path(".");
    KILN_CHECK(!has_wildcard(dir.string()), "text corpus ", quoted(src),
               ": wildcards are only supported in the last path component (the file name)");
    KILN_CHECK(fs::is_directory(dir, ec), "text corpus ", quoted(src), ": the folder ", quoted(dir),
               " does not exist");
    const std::string pattern = src.filename().string();
    for (const auto& e : fs::directory_iterator(dir, ec)) {
      const std::string name = e.path().filename().string();
      if (::fnmatch(pattern.c_str(), name.c_str(), FNM_PERIOD) != 0) continue;
      if (wanted_file(e.path(), opts)) found.push_back(e.path());
    }
    KILN_CHECK(!ec, "text corpus ", quoted(src), ": cannot list ", quoted(dir), ": ", ec.message());
    std::sort(found.begin(), found.end());
    KILN_CHECK(
        !found.empty(), "text corpus ", quoted(src),
        ": no non-empty file matches the pattern (excluded: hidden files",
        opts.exclude.empty() ? "" : " and ",
        [&] {
          std::string s;
          for (const auto& p : opts.exclude) s += (s.empty() ? "" : ", ") + p;
          return s;
        }(),
        ")");
  } else if (fs::is_directory(src, ec)) {
    std::vector<std::pair<std::string, fs::path>> files;
    auto consider = [&](const fs::path& p) {
      if (wanted_file(p, opts)) files.emplace_back(fs::relative(p, src, ec).generic_string(), p);
    };
    if (opts.recursive) {
      fs::recursive_directory_iterator it(src, fs::directory_options::follow_directory_symlink, ec),
          end;
      for (; !ec && it != end; it.increment(ec)) {
        const std::string name = it->path().filename().string();
        if (!name.empty() && name[0] == '.') {
          if (it->is_directory(ec)) it.disable_recursion_pending();
          continue;
        }
        if (!it->is_directory(ec)) consider(it->path());
      }
    } else {
      for (const auto& e : fs::directory_iterator(src, ec)) consider(e.path());
    }
    KILN_CHECK(!ec, "text corpus: cannot list the folder ", quoted(src), ": ", ec.message());
    std::sort(files.begin(), files.end());
    for (auto& f : files) found.push_back(std::move(f.second));
    KILN_CHECK(!found.empty(), "text corpus: the folder ", quoted(src),
               " holds no non-empty text file (hidden files and names matching the exclude "
               "patterns are skipped)");
  } else if (exists) {
    KILN_CHECK(fs::is_regular_file(src, ec), "text corpus ", quoted(src),
               " is neither a regular file nor a folder");
    found.push_back(src);
  } else {
    throw Error("text corpus " + quoted(src) + " does not exist; give a file, a folder or a glob");
  }
  // Keep the first occurrence of each canonical file (symlink duplicates such as name.u8).
  std::set<fs::path> seen;
  std::vector<fs::path> out;
  for (const fs::path& p : found) {
    fs::path c = fs::weakly_canonical(p, ec);
    if (ec) c = fs::absolute(p);
    if (seen.insert(c).second) out.push_back(c);
  }
  return out;
}

Corpus load_corpus(const std::vector<std::string>& sources, const CorpusOptions& opts) {
  KILN_CHECK(!sources.empty(), "text corpus: no source given; give a file, a folder or a glob");
  Corpus corpus;
  std::set<fs::path> seen;
  for (const std::string& source : sources) {
    for (const fs::path& path : list_corpus_files(source, opts)) {
      if (!seen.insert(path).second) continue;
      std::string bytes = read_file(path);
      KILN_CHECK(!bytes.empty(), "text corpus: the file ", quoted(path),
                 " is empty; remove it from the sources");
      const std::size_t nul = bytes.find('\0');
      KILN_CHECK(nul == std::string::npos, "text corpus: ", quoted(path),
                 " looks binary (a NUL byte at offset ", nul,
                 "); give text files only, or leave it out with an exclude pattern");
      const std::size_t bad = find_invalid_utf8(bytes);
      KILN_CHECK(
          bad == std::string::npos, "text corpus: ", quoted(path),
          " is not UTF-8 text (invalid byte 0x",
          [&] {
            char b[4];
            std::snprintf(b, sizeof b, "%02X", static_cast<unsigned char>(bytes[bad]));
            return std::string(b);
          }(),
          " at offset ", bad, "); convert it to UTF-8 (e.g. with iconv) or leave it out");
      CorpusDocument doc{path, corpus.text.size(), bytes.size()};
      corpus.text += bytes;
      if (bytes.back() != '\n') corpus.text += '\n';
      corpus.documents.push_back(std::move(doc));
    }
  }
  KILN_CHECK(!corpus.text.empty(), "text corpus: the sources hold no text");
  return corpus;
}

std::string Corpus::describe() const {
  std::string s = std::to_string(documents.size()) +
                  (documents.size() == 1 ? " file, " : " files, ") + std::to_string(text.size()) +
                  " bytes";
  if (!documents.empty()) s += " (first: " + documents.front().path.string() + ")";
  return s;
}

TextSplit split_text(const Corpus& corpus, double validation_fraction) {
  KILN_CHECK(validation_fraction >= 0.0 && validation_fraction <= 0.5,
             "text corpus: the validation fraction must be between 0 and 0.5, got ",
             validation_fraction);
  TextSplit out;
  auto add = [&](std::string_view doc) {
    std::size_t cut = doc.size();
    if (validation_fraction > 0.0) {
      const auto nominal = std::max<std::size_t>(
          1,
          static_cast<std::size_t>(static_cast<double>(doc.size()) * (1.0 - validation_fraction)));
      // The start of the first line at or after the nominal point.
      const std::size_t nl = doc.find('\n', nominal - 1);
      if (nl != std::string_view::npos && nl + 1 < doc.size()) cut = nl + 1;
    }
    out.train.append(doc.substr(0, cut));
    out.validation.append(doc.substr(cut));
  };
  if (corpus.documents.empty()) {
    add(corpus.text);
  } else {
    for (std::size_t d = 0; d < corpus.documents.size(); ++d) {
      const std::size_t begin = corpus.documents[d].offset;
      const std::size_t end =
          d + 1 < corpus.documents.size() ? corpus.documents[d + 1].offset : corpus.text.size();
      add(std::string_view(corpus.text).substr(begin, end - begin));
    }
  }
  return out;
}

// ------------------------------------------------------------------------------ UTF-8

std::size_t find_invalid_utf8(std::string_view bytes) {
  std::size_t i = 0;
  char32_t cp;
  while (i < bytes.size()) {
    // ASCII fast path.
    if (static_cast<unsigned char>(bytes[i]) < 0x80) {
      ++i;
      continue;
    }
    const std::size_t n = utf8_next(bytes, i, cp);
    if (n == 0) return i;
    i += n;
  }
  return std::string_view::npos;
}

std::vector<char32_t> decode_utf8(std::string_view utf8, std::string_view what) {
  std::vector<char32_t> out;
  out.reserve(utf8.size());
  std::size_t i = 0;
  while (i < utf8.size()) {
    char32_t cp;
    const std::size_t n = utf8_next(utf8, i, cp);
    if (n == 0) {
      throw Error((what.empty() ? std::string("text") : std::string(what)) +
                  ": invalid UTF-8 at byte offset " + std::to_string(i));
    }
    out.push_back(cp);
    i += n;
  }
  return out;
}

void append_utf8(std::string& out, char32_t cp) {
  KILN_CHECK(valid_cp(cp), "append_utf8: ", hex_cp(cp), " is not a Unicode scalar value");
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// ------------------------------------------------------------------------------ vocabulary

Unknown parse_unknown(std::string_view name) {
  if (name == "error") return Unknown::error;
  if (name == "skip") return Unknown::skip;
  if (name == "replace") return Unknown::replace;
  throw Error("unknown-character policy '" + std::string(name) +
              "' is not one of \"error\", \"skip\", \"replace\"");
}

const char* unknown_name(Unknown u) {
  switch (u) {
    case Unknown::error:
      return "error";
    case Unknown::skip:
      return "skip";
    case Unknown::replace:
      return "replace";
  }
  return "?";
}

CharVocab::CharVocab(std::vector<char32_t> chars) : chars_(std::move(chars)) {
  for (std::size_t i = 0; i < chars_.size(); ++i) {
    KILN_CHECK(valid_cp(chars_[i]), "character vocabulary: ", hex_cp(chars_[i]),
               " is not a Unicode scalar value");
    KILN_CHECK(i == 0 || chars_[i - 1] < chars_[i],
               "character vocabulary: characters must be sorted and distinct (entry ", i, ", ",
               hex_cp(chars_[i]), ")");
  }
}

CharVocab CharVocab::from_text(std::string_view utf8) {
  std::vector<bool> ascii(128, false);
  std::set<char32_t> other;
  for (char32_t cp : decode_utf8(utf8, "character vocabulary")) {
    if (cp < 128) {
      ascii[cp] = true;
    } else {
      other.insert(cp);
    }
  }
  std::vector<char32_t> chars;
  for (char32_t c = 0; c < 128; ++c) {
    if (ascii[c]) chars.push_back(c);
  }
  chars.insert(chars.end(), other.begin(), other.end());
  return CharVocab(std::move(chars));
}

char32_t CharVocab::char_of(std::int64_t id) const {
  KILN_CHECK(id >= 0 && id < size(), "character vocabulary: token id ", id, " is out of range [0, ",
             size(), ")");
  return chars_[static_cast<std::size_t>(id)];
}

std::int64_t CharVocab::id_of(char32_t cp) const {
  auto it = std::lower_bound(chars_.begin(), chars_.end(), cp);
  if (it == chars_.end() || *it != cp) return -1;
  return it - chars_.begin();
}

std::int64_t CharVocab::replacement() const {
  for (char32_t c : {char32_t(0xFFFD), char32_t('?'), char32_t(' ')}) {
    if (const std::int64_t id = id_of(c); id >= 0) return id;
  }
  return -1;
}

std::vector<std::int32_t> CharVocab::encode(std::string_view utf8, Unknown unknown,
                                            std::int64_t* skipped) const {
  // Direct table for ASCII, binary search above.
  std::int32_t ascii[128];
  for (char32_t c = 0; c < 128; ++c) ascii[c] = static_cast<std::int32_t>(id_of(c));
  const std::int64_t repl = replacement();
  std::vector<std::int32_t> ids;
  ids.reserve(utf8.size());
  std::int64_t n_skipped = 0, position = 0;
  std::size_t i = 0;
  while (i < utf8.size()) {
    char32_t cp;
    std::size_t n = 1;
    if (static_cast<unsigned char>(utf8[i]) < 0x80) {
      cp = static_cast<unsigned char>(utf8[i]);
    } else {
      n = utf8_next(utf8, i, cp);
      KILN_CHECK(n != 0, "text: invalid UTF-8 at byte offset ", i);
    }
    const std::int64_t id = cp < 128 ? ascii[cp] : id_of(cp);
    if (id >= 0) {
      ids.push_back(static_cast<std::int32_t>(id));
    } else {
      ++n_skipped;
      switch (unknown) {
        case Unknown::error: {
          std::string ch;
          append_utf8(ch, cp);
          throw Error("the character " + hex_cp(cp) +
                      (cp >= 32 && cp != 127 ? " '" + ch + "'" : "") + " at character " +
                      std::to_string(position) + " is not in the model's vocabulary of " +
                      std::to_string(size()) +
                      " characters; remove it, or set unknown = \"skip\" or \"replace\"");
        }
        case Unknown::skip:
          break;
        case Unknown::replace:
          KILN_CHECK(repl >= 0, "the character ", hex_cp(cp), " at character ", position,
                     " is not in the vocabulary, which has no replacement character (U+FFFD, '?' ",
                     "or ' '); set unknown = \"skip\" or \"error\"");
          ids.push_back(static_cast<std::int32_t>(repl));
          break;
      }
    }
    i += n;
    ++position;
  }
  if (skipped != nullptr) *skipped = n_skipped;
  return ids;
}

std::string CharVocab::decode(const std::vector<std::int32_t>& ids) const {
  std::string out;
  out.reserve(ids.size());
  for (std::int32_t id : ids) append_utf8(out, char_of(id));
  return out;
}

std::string CharVocab::decode(const std::vector<std::int64_t>& ids) const {
  std::string out;
  out.reserve(ids.size());
  for (std::int64_t id : ids) append_utf8(out, char_of(id));
  return out;
}

std::string CharVocab::token_text(std::int64_t id) const {
  std::string out;
  append_utf8(out, char_of(id));
  return out;
}

Tensor CharVocab::to_tensor() const {
  std::vector<std::int64_t> v(chars_.begin(), chars_.end());
  return Tensor::from_ints(v, {size()}, DType::s32);
}

CharVocab CharVocab::from_tensor(const Tensor& t, std::string_view name) {
  KILN_CHECK(t.defined() && t.dim() == 1 && t.numel() > 0 &&
                 (t.dtype() == DType::s32 || t.dtype() == DType::s64),
             "the tensor '", name, "' must be a non-empty 1-d integer list of code points, got ",
             t.defined() ? t.to_string() : std::string("nothing"));
  std::vector<char32_t> chars;
  for (std::int64_t v : t.to_int_vector()) {
    KILN_CHECK(v >= 0 && v <= 0x10FFFF, "the tensor '", name, "' holds ", v,
               ", which is not a code point");
    chars.push_back(static_cast<char32_t>(v));
  }
  try {
    return CharVocab(std::move(chars));
  } catch (const Error& e) {
    throw Error("the tensor '" + std::string(name) + "' is malformed: " + e.what());
  }
}

// ------------------------------------------------------------------------------ datasets

TokenIds make_ids(std::vector<std::int32_t> ids) {
  return std::make_shared<const std::vector<std::int32_t>>(std::move(ids));
}

namespace {

data::Batch window_batch(const std::vector<std::int32_t>& ids,
                         const std::vector<std::int64_t>& starts, std::int64_t T) {
  const auto B = static_cast<std::int64_t>(starts.size());
  Tensor input = Tensor::empty({B, T}, DType::s64);
  Tensor target = Tensor::empty({B, T}, DType::s64);
  auto* in = input.data<std::int64_t>();
  auto* tg = target.data<std::int64_t>();
  for (std::int64_t b = 0; b < B; ++b) {
    const std::int32_t* src = ids.data() + starts[static_cast<std::size_t>(b)];
    for (std::int64_t t = 0; t < T; ++t) {
      in[b * T + t] = src[t];
      tg[b * T + t] = src[t + 1];
    }
  }
  return {{"input", input}, {"target", target}};
}

}  // namespace

TokenWindows::TokenWindows(TokenIds ids, std::int64_t seq_len, std::int64_t stride)
    : ids_(std::move(ids)), seq_len_(seq_len), stride_(stride == 0 ? seq_len : stride) {
  KILN_CHECK(ids_ != nullptr, "TokenWindows: no token ids given");
  KILN_CHECK(seq_len >= 1, "TokenWindows: seq_len must be at least 1, got ", seq_len);
  KILN_CHECK(stride >= 0, "TokenWindows: stride must be >= 0 (0 = seq_len), got ", stride);
  const auto n = static_cast<std::int64_t>(ids_->size());
  KILN_CHECK(n >= seq_len + 1, "TokenWindows: the text has ", n,
             " tokens, fewer than seq_len + 1 = ", seq_len + 1,
             "; give more text or a shorter seq_len");
  size_ = (n - 1 - seq_len) / stride_ + 1;
}

data::Batch TokenWindows::get_batch(const std::vector<std::int64_t>& indices) const {
  std::vector<std::int64_t> starts;
  starts.reserve(indices.size());
  for (std::int64_t i : indices) {
    KILN_CHECK(i >= 0 && i < size_, "TokenWindows: example ", i, " is out of range [0, ", size_,
               ")");
    starts.push_back(i * stride_);
  }
  data::Batch b = window_batch(*ids_, starts, seq_len_);
  b["index"] = Tensor::from_ints(indices, {static_cast<std::int64_t>(indices.size())});
  return b;
}

std::string TokenWindows::describe() const {
  return std::to_string(size_) + " windows of " + std::to_string(seq_len_) + " tokens (stride " +
         std::to_string(stride_) + ") over " + std::to_string(ids_->size()) + " tokens";
}

TokenStreams::TokenStreams(TokenIds ids, std::int64_t streams, std::int64_t seq_len)
    : ids_(std::move(ids)), streams_(streams), seq_len_(seq_len) {
  KILN_CHECK(ids_ != nullptr, "TokenStreams: no token ids given");
  KILN_CHECK(streams >= 1, "TokenStreams: streams must be at least 1, got ", streams);
  KILN_CHECK(seq_len >= 1, "TokenStreams: seq_len must be at least 1, got ", seq_len);
  const auto n = static_cast<std::int64_t>(ids_->size());
  KILN_CHECK(n >= streams * seq_len + 1, "TokenStreams: the text has ", n,
             " tokens, fewer than streams * seq_len + 1 = ", streams * seq_len + 1,
             "; give more text, fewer streams or a shorter seq_len");
  stream_len_ = (n - 1) / streams;
  chunks_ = stream_len_ / seq_len;
}

data::Batch TokenStreams::get_batch(const std::vector<std::int64_t>& indices) const {
  std::vector<std::int64_t> starts, stream, chunk;
  for (std::int64_t k : indices) {
    KILN_CHECK(k >= 0 && k < size(), "TokenStreams: example ", k, " is out of range [0, ", size(),
               ")");
    const std::int64_t c = k / streams_, r = k % streams_;
    starts.push_back(r * stream_len_ + c * seq_len_);
    stream.push_back(r);
    chunk.push_back(c);
  }
  const auto B = static_cast<std::int64_t>(indices.size());
  data::Batch b = window_batch(*ids_, starts, seq_len_);
  b["index"] = Tensor::from_ints(indices, {B});
  b["stream"] = Tensor::from_ints(stream, {B});
  b["chunk"] = Tensor::from_ints(chunk, {B});
  return b;
}

std::string TokenStreams::describe() const {
  return std::to_string(streams_) + " streams of " + std::to_string(chunks_) + " chunks of " +
         std::to_string(seq_len_) + " tokens over " + std::to_string(ids_->size()) + " tokens";
}

}  // namespace kiln::text
