// Byte-level BPE: pre-tokenisation, training with incremental pair counts, GPT-2 file formats.
#include "kiln/bpe.hpp"

#include <algorithm>
#include <array>
#include <queue>
#include <unordered_map>
#include <utility>

#include "kiln/error.hpp"
#include "kiln/file_io.hpp"

namespace kiln::text {
namespace {

// ------------------------------------------------------------------ UTF-8 and character classes

enum class Cls : std::uint8_t { letter, number, space, other };

// Decodes the code point at text[i]; `len` receives its byte length (1 for an invalid byte, whose
// code point is returned as 0xFFFFFFFF).
char32_t utf8_at(std::string_view s, std::size_t i, std::size_t& len) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  len = 1;
  if (b0 < 0x80) return b0;
  int n = 0;
  char32_t cp = 0;
  if ((b0 & 0xE0) == 0xC0) {
    n = 1;
    cp = b0 & 0x1F;
  } else if ((b0 & 0xF0) == 0xE0) {
    n = 2;
    cp = b0 & 0x0F;
  } else if ((b0 & 0xF8) == 0xF0) {
    n = 3;
    cp = b0 & 0x07;
  } else {
    return 0xFFFFFFFF;
  }
  if (i + static_cast<std::size_t>(n) >= s.size()) return 0xFFFFFFFF;
  for (int k = 1; k <= n; ++k) {
    const auto b = static_cast<unsigned char>(s[i + static_cast<std::size_t>(k)]);
    if ((b & 0xC0) != 0x80) return 0xFFFFFFFF;
    cp = (cp << 6) | (b & 0x3F);
  }
  // Overlong forms, surrogates and values beyond U+10FFFF are invalid.
  static constexpr char32_t kMin[] = {0, 0x80, 0x800, 0x10000};
  if (cp < kMin[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0xFFFFFFFF;
  len = static_cast<std::size_t>(n) + 1;
  return cp;
}

bool is_space_cp(char32_t c) {
  if (c < 0x80) return c == ' ' || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F);
  return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 ||
         c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

Cls classify(char32_t c) {
  if (c == 0xFFFFFFFF) return Cls::other;
  if (c < 0x80) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return Cls::letter;
    if (c >= '0' && c <= '9') return Cls::number;
    return is_space_cp(c) ? Cls::space : Cls::other;
  }
  if (is_space_cp(c)) return Cls::space;
  if (c < 0x100) {
    if (c == 0xAA || c == 0xB5 || c == 0xBA) return Cls::letter;
    if (c == 0xB2 || c == 0xB3 || c == 0xB9 || (c >= 0xBC && c <= 0xBE)) return Cls::number;
    if (c >= 0xC0 && c != 0xD7 && c != 0xF7) return Cls::letter;
    return Cls::other;
  }
  // General punctuation, superscripts / currency / letterlike symbols / arrows / maths /
  // technical / box drawing / shapes / dingbats, CJK symbols and punctuation, full-width forms'
  // punctuation, specials and emoji: "other". Digits of a few common scripts: numbers.
  if ((c >= 0x2010 && c <= 0x2027) || (c >= 0x2030 && c <= 0x205E) ||
      (c >= 0x20A0 && c <= 0x20CF) ||
      (c >= 0x2100 && c <= 0x214F && c != 0x2102 && c != 0x2107 && !(c >= 0x210A && c <= 0x2113)) ||
      (c >= 0x2190 && c <= 0x2BFF) || (c >= 0x3001 && c <= 0x3004) ||
      (c >= 0x3008 && c <= 0x3020) || (c >= 0xFF01 && c <= 0xFF0F) ||
      (c >= 0xFF1A && c <= 0xFF20) || (c >= 0xFFF0 && c <= 0xFFFF) ||
      (c >= 0x1F000 && c <= 0x1FAFF) || (c >= 0xE000 && c <= 0xF8FF)) {
    return Cls::other;
  }
  if ((c >= 0x2070 && c <= 0x2079) || (c >= 0x2080 && c <= 0x2089) ||
      (c >= 0x2150 && c <= 0x218B) || (c >= 0x2460 && c <= 0x249B) ||
      (c >= 0x0660 && c <= 0x0669) || (c >= 0x06F0 && c <= 0x06F9) ||
      (c >= 0x0966 && c <= 0x096F) || (c >= 0xFF10 && c <= 0xFF19)) {
    return Cls::number;
  }
  if (c >= 0x0300 && c <= 0x036F) return Cls::other;  // combining marks are \p{M}, not \p{L}
  return Cls::letter;
}

struct Char {
  std::size_t pos, len;
  Cls cls;
  char32_t cp;
};

std::vector<Char> scan(std::string_view s) {
  std::vector<Char> out;
  out.reserve(s.size());
  std::size_t i = 0;
  while (i < s.size()) {
    std::size_t len = 1;
    const char32_t cp = utf8_at(s, i, len);
    out.push_back({i, len, classify(cp), cp});
    i += len;
  }
  return out;
}

// ------------------------------------------------------------------ GPT-2 byte <-> unicode table

struct ByteTable {
  std::array<char32_t, 256> to_cp{};
  std::array<std::uint8_t, 256> order{};  // order[i] = the byte of base token i (GPT-2's bs list)
  std::unordered_map<char32_t, std::uint8_t> from_cp;
  ByteTable() {
    std::vector<int> bs;
    for (int b = 33; b <= 126; ++b) bs.push_back(b);
    for (int b = 161; b <= 172; ++b) bs.push_back(b);
    for (int b = 174; b <= 255; ++b) bs.push_back(b);
    std::array<bool, 256> have{};
    for (int b : bs) have[static_cast<std::size_t>(b)] = true;
    std::vector<char32_t> cs(bs.begin(), bs.end());
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      if (!have[static_cast<std::size_t>(b)]) {
        bs.push_back(b);
        cs.push_back(static_cast<char32_t>(256 + n++));
      }
    }
    for (std::size_t i = 0; i < 256; ++i) {
      to_cp[static_cast<std::size_t>(bs[i])] = cs[i];
      order[i] = static_cast<std::uint8_t>(bs[i]);
      from_cp[cs[i]] = static_cast<std::uint8_t>(bs[i]);
    }
  }
};

const ByteTable& byte_table() {
  static const ByteTable t;
  return t;
}

void put_utf8(std::string& out, char32_t c) {
  if (c < 0x80) {
    out += static_cast<char>(c);
  } else if (c < 0x800) {
    out += static_cast<char>(0xC0 | (c >> 6));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else if (c < 0x10000) {
    out += static_cast<char>(0xE0 | (c >> 12));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (c >> 18));
    out += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  }
}

// A vocab.json / merges.txt token string back to bytes; nullopt when it holds a character outside
// the byte table (then it is taken literally, as a special token's UTF-8).
std::optional<std::string> vocab_string_to_bytes(std::string_view s) {
  const ByteTable& t = byte_table();
  std::string out;
  std::size_t i = 0;
  while (i < s.size()) {
    std::size_t len = 1;
    const char32_t cp = utf8_at(s, i, len);
    auto it = t.from_cp.find(cp);
    if (cp == 0xFFFFFFFF || it == t.from_cp.end()) return std::nullopt;
    out += static_cast<char>(it->second);
    i += len;
  }
  return out;
}

// ------------------------------------------------------------------ a small JSON object reader

class JsonReader {
 public:
  JsonReader(const std::string& s, const std::string& source) : s_(s), src_(source) {}

  // {"string": integer, ...}
  std::vector<std::pair<std::string, std::int64_t>> string_int_object() {
    std::vector<std::pair<std::string, std::int64_t>> out;
    ws();
    expect('{');
    ws();
    if (peek() == '}') {
      ++i_;
      return out;
    }
    for (;;) {
      ws();
      std::string key = string();
      ws();
      expect(':');
      ws();
      out.emplace_back(std::move(key), integer());
      ws();
      if (peek() == ',') {
        ++i_;
        continue;
      }
      expect('}');
      break;
    }
    ws();
    if (i_ != s_.size()) fail("unexpected text after the closing '}'");
    return out;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw Error(
        src_ + ": not a valid vocab.json (a JSON object of token strings to integer ids): " + what +
        " at byte " + std::to_string(i_));
  }
  char peek() const { return i_ < s_.size() ? s_[i_] : '\0'; }
  void ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\r' || s_[i_] == '\t'))
      ++i_;
  }
  void expect(char c) {
    if (peek() != c || i_ >= s_.size()) fail(std::string("expected '") + c + "'");
    ++i_;
  }
  unsigned hex4() {
    if (i_ + 4 > s_.size()) fail("truncated \\u escape");
    unsigned v = 0;
    for (int k = 0; k < 4; ++k) {
      const char c = s_[i_++];
      v <<= 4;
      if (c >= '0' && c <= '9') {
        v |= static_cast<unsigned>(c - '0');
      } else if (c >= 'a' && c <= 'f') {
        v |= static_cast<unsigned>(c - 'a' + 10);
      } else if (c >= 'A' && c <= 'F') {
        v |= static_cast<unsigned>(c - 'A' + 10);
      } else {
        fail("bad \\u escape");
      }
    }
    return v;
  }
  std::string string() {
    expect('"');
    std::string out;
    for (;;) {
      if (i_ >= s_.size()) fail("unterminated string");
      const char c = s_[i_++];
      if (c == '"') break;
      if (static_cast<unsigned char>(c) < 0x20) fail("control character inside a string");
      if (c != '\\') {
        out += c;
        continue;
      }
      if (i_ >= s_.size()) fail("unterminated string");
      const char e = s_[i_++];
      switch (e) {
        case '"':
          out += '"';
          break;
        case '\\':
          out += '\\';
          break;
        case '/':
          out += '/';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 't':
          out += '\t';
          break;
        case 'u': {
          char32_t cp = hex4();
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (i_ + 2 > s_.size() || s_[i_] != '\\' || s_[i_ + 1] != 'u') fail("lone surrogate");
            i_ += 2;
            const unsigned lo = hex4();
            if (lo < 0xDC00 || lo > 0xDFFF) fail("bad surrogate pair");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            fail("lone surrogate");
          }
          put_utf8(out, cp);
          break;
        }
        default:
          fail(std::string("bad escape \\") + e);
      }
    }
    return out;
  }
  std::int64_t integer() {
    const std::size_t start = i_;
    if (peek() == '-') ++i_;
    std::int64_t v = 0;
    while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') {
      if (v > (std::int64_t{1} << 40)) fail("id too large");
      v = v * 10 + (s_[i_++] - '0');
    }
    if (i_ == start || (i_ == start + 1 && s_[start] == '-')) fail("expected an integer id");
    return s_[start] == '-' ? -v : v;
  }

  const std::string& s_;
  std::string src_;
  std::size_t i_ = 0;
};

void json_escape(std::string& out, std::string_view s) {
  out += '"';
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"') {
      out += "\\\"";
    } else if (c == '\\') {
      out += "\\\\";
    } else if (u < 0x20) {
      static const char* hex = "0123456789abcdef";
      out += "\\u00";
      out += hex[u >> 4];
      out += hex[u & 15];
    } else {
      out += c;
    }
  }
  out += '"';
}

std::uint64_t pair_key(std::int32_t a, std::int32_t b) {
  return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(a)) << 32) |
         static_cast<std::uint32_t>(b);
}

}  // namespace

// ------------------------------------------------------------------ pre-tokenisation

std::vector<std::string_view> pretokenize(std::string_view text) {
  const std::vector<Char> ch = scan(text);
  const std::size_t n = ch.size();
  std::vector<std::string_view> out;
  auto piece = [&](std::size_t a, std::size_t b) {  // characters [a, b)
    const std::size_t end = b < n ? ch[b].pos : text.size();
    out.push_back(text.substr(ch[a].pos, end - ch[a].pos));
  };
  auto run = [&](std::size_t j, Cls c) {
    while (j < n && ch[j].cls == c) ++j;
    return j;
  };
  auto run_other = [&](std::size_t j) {
    while (j < n && ch[j].cls == Cls::other) ++j;
    return j;
  };
  std::size_t i = 0;
  while (i < n) {
    const Char& c = ch[i];
    // 's 't 're 've 'm 'll 'd
    if (c.cp == '\'' && i + 1 < n) {
      const char32_t a = ch[i + 1].cp;
      if (a == 's' || a == 't' || a == 'm' || a == 'd') {
        piece(i, i + 2);
        i += 2;
        continue;
      }
      if (i + 2 < n) {
        const char32_t b = ch[i + 2].cp;
        if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) {
          piece(i, i + 3);
          i += 3;
          continue;
        }
      }
    }
    // ' ?' followed by a letter / number / other run
    std::size_t j = i;
    if (c.cp == ' ' && i + 1 < n && ch[i + 1].cls != Cls::space) j = i + 1;
    const Cls k = ch[j].cls;
    if (k == Cls::letter || k == Cls::number) {
      const std::size_t e = run(j, k);
      piece(i, e);
      i = e;
      continue;
    }
    if (k == Cls::other) {
      const std::size_t e = run_other(j);
      piece(i, e);
      i = e;
      continue;
    }
    // whitespace: \s+(?!\S) then \s+
    const std::size_t e = run(i, Cls::space);
    if (e == n || e - i == 1) {
      piece(i, e);
      i = e;
    } else {
      piece(i, e - 1);
      i = e - 1;
    }
  }
  return out;
}

// ------------------------------------------------------------------ the tokenizer

struct BpeTokenizer::Impl {
  std::vector<std::string> tokens;                            // id -> bytes
  std::vector<std::pair<std::int32_t, std::int32_t>> merges;  // rank -> (left, right)
  std::array<std::int32_t, 256> byte_id{};                    // byte -> id
  std::unordered_map<std::uint64_t, std::pair<std::int32_t, std::int32_t>> merge_of;  // -> rank, id
  std::unordered_map<std::string, std::int32_t> by_bytes;
  std::vector<std::int64_t> specials;

  void index() {
    merge_of.clear();
    by_bytes.clear();
    for (std::size_t id = 0; id < tokens.size(); ++id) {
      by_bytes.emplace(tokens[id], static_cast<std::int32_t>(id));
    }
    for (std::size_t r = 0; r < merges.size(); ++r) {
      const auto [a, b] = merges[r];
      const std::string joined =
          tokens[static_cast<std::size_t>(a)] + tokens[static_cast<std::size_t>(b)];
      merge_of.emplace(pair_key(a, b),
                       std::make_pair(static_cast<std::int32_t>(r), by_bytes.at(joined)));
    }
  }

  static std::shared_ptr<Impl> bytes_only() {
    auto impl = std::make_shared<Impl>();
    const ByteTable& t = byte_table();
    for (std::size_t i = 0; i < 256; ++i) {
      impl->tokens.emplace_back(1, static_cast<char>(t.order[i]));
      impl->byte_id[t.order[i]] = static_cast<std::int32_t>(i);
    }
    return impl;
  }

  // Applies the merges to one piece (lowest rank first, leftmost first among equals).
  void encode_piece(std::string_view piece, std::vector<std::int64_t>& out) const {
    const std::size_t n = piece.size();
    if (n == 1) {
      out.push_back(byte_id[static_cast<unsigned char>(piece[0])]);
      return;
    }
    std::vector<std::int32_t> sym(n);
    std::vector<std::int32_t> prev(n), next(n);
    for (std::size_t i = 0; i < n; ++i) {
      sym[i] = byte_id[static_cast<unsigned char>(piece[i])];
      prev[i] = static_cast<std::int32_t>(i) - 1;
      next[i] = i + 1 < n ? static_cast<std::int32_t>(i + 1) : -1;
    }
    // (rank, position, left symbol, right symbol); stale entries are skipped on pop.
    using Entry = std::tuple<std::int32_t, std::int32_t, std::int32_t, std::int32_t>;
    std::priority_queue<Entry, std::vector<Entry>, std::greater<>> heap;
    auto push = [&](std::int32_t pos) {
      const std::int32_t nx = next[static_cast<std::size_t>(pos)];
      if (pos < 0 || nx < 0) return;
      const auto it = merge_of.find(
          pair_key(sym[static_cast<std::size_t>(pos)], sym[static_cast<std::size_t>(nx)]));
      if (it != merge_of.end()) {
        heap.emplace(it->second.first, pos, sym[static_cast<std::size_t>(pos)],
                     sym[static_cast<std::size_t>(nx)]);
      }
    };
    for (std::size_t i = 0; i + 1 < n; ++i) push(static_cast<std::int32_t>(i));
    while (!heap.empty()) {
      const auto [rank, pos, a, b] = heap.top();
      heap.pop();
      const auto p = static_cast<std::size_t>(pos);
      if (sym[p] != a) continue;  // merged away or changed
      const std::int32_t nx = next[p];
      if (nx < 0 || sym[static_cast<std::size_t>(nx)] != b) continue;
      sym[p] = merge_of.at(pair_key(a, b)).second;
      const std::int32_t nn = next[static_cast<std::size_t>(nx)];
      next[p] = nn;
      if (nn >= 0) prev[static_cast<std::size_t>(nn)] = pos;
      sym[static_cast<std::size_t>(nx)] = -1;
      push(prev[p]);
      push(pos);
    }
    for (std::int32_t i = 0; i >= 0; i = next[static_cast<std::size_t>(i)]) {
      out.push_back(sym[static_cast<std::size_t>(i)]);
    }
  }
};

BpeTokenizer::BpeTokenizer() : BpeTokenizer(std::shared_ptr<const Impl>(Impl::bytes_only())) {
  std::const_pointer_cast<Impl>(impl_)->index();
}

BpeTokenizer::BpeTokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}

BpeTokenizer BpeTokenizer::train(std::string_view corpus, const BpeTrainOptions& opts) {
  return train(std::vector<std::string_view>{corpus}, opts);
}

BpeTokenizer BpeTokenizer::train(const std::vector<std::string_view>& documents,
                                 const BpeTrainOptions& opts) {
  const auto nspecial = static_cast<std::int64_t>(opts.special_tokens.size());
  KILN_CHECK(opts.vocab_size >= 256 + nspecial, "BPE training: vocab_size must be at least 256 (",
             "one token per byte) plus the ", nspecial, " special tokens, got ", opts.vocab_size);
  KILN_CHECK(opts.vocab_size <= (std::int64_t{1} << 30), "BPE training: vocab_size ",
             opts.vocab_size, " is too large");
  KILN_CHECK(opts.min_frequency >= 1, "BPE training: min_frequency must be at least 1, got ",
             opts.min_frequency);
  for (std::size_t i = 0; i < opts.special_tokens.size(); ++i) {
    KILN_CHECK(!opts.special_tokens[i].empty(), "BPE training: special token ", i, " is empty");
    for (std::size_t j = 0; j < i; ++j) {
      KILN_CHECK(opts.special_tokens[i] != opts.special_tokens[j], "BPE training: special token '",
                 opts.special_tokens[i], "' is listed twice");
    }
  }
  auto impl = Impl::bytes_only();

  // Word types and their counts.
  std::unordered_map<std::string_view, std::int64_t> counts;
  for (std::string_view doc : documents) {
    for (std::string_view p : pretokenize(doc)) ++counts[p];
  }
  struct Word {
    std::vector<std::int32_t> sym;
    std::int64_t count;
  };
  std::vector<std::pair<std::string_view, std::int64_t>> types(counts.begin(), counts.end());
  std::sort(types.begin(), types.end());  // deterministic word order
  std::vector<Word> words;
  words.reserve(types.size());
  for (const auto& [w, c] : types) {
    Word word{{}, c};
    word.sym.reserve(w.size());
    for (char ch : w) word.sym.push_back(impl->byte_id[static_cast<unsigned char>(ch)]);
    words.push_back(std::move(word));
  }

  std::unordered_map<std::uint64_t, std::int64_t> pair_count;
  std::unordered_map<std::uint64_t, std::vector<std::int32_t>> where;
  for (std::size_t w = 0; w < words.size(); ++w) {
    const auto& s = words[w].sym;
    for (std::size_t i = 0; i + 1 < s.size(); ++i) {
      const std::uint64_t k = pair_key(s[i], s[i + 1]);
      pair_count[k] += words[w].count;
      auto& v = where[k];
      if (v.empty() || v.back() != static_cast<std::int32_t>(w)) {
        v.push_back(static_cast<std::int32_t>(w));
      }
    }
  }
  // Max-heap of (count, pair); ties to the smaller pair key. Entries may be stale.
  struct HeapEntry {
    std::int64_t count;
    std::uint64_t key;
    bool operator<(const HeapEntry& o) const {
      return count != o.count ? count < o.count : key > o.key;
    }
  };
  std::priority_queue<HeapEntry> heap;
  for (const auto& [k, c] : pair_count) heap.push({c, k});

  const std::int64_t target_merges = opts.vocab_size - 256 - nspecial;
  std::unordered_map<std::uint64_t, std::int64_t> delta;
  while (static_cast<std::int64_t>(impl->merges.size()) < target_merges && !heap.empty()) {
    const HeapEntry top = heap.top();
    heap.pop();
    const auto it = pair_count.find(top.key);
    const std::int64_t current = it == pair_count.end() ? 0 : it->second;
    if (current != top.count) {
      if (current > 0) heap.push({current, top.key});
      continue;
    }
    if (current < opts.min_frequency) break;
    const auto a = static_cast<std::int32_t>(top.key >> 32);
    const auto b = static_cast<std::int32_t>(top.key & 0xffffffffu);
    const auto id = static_cast<std::int32_t>(impl->tokens.size());
    impl->tokens.push_back(impl->tokens[static_cast<std::size_t>(a)] +
                           impl->tokens[static_cast<std::size_t>(b)]);
    impl->merges.emplace_back(a, b);

    std::vector<std::int32_t> affected = std::move(where[top.key]);
    where.erase(top.key);
    delta.clear();
    for (std::int32_t wi : affected) {
      Word& w = words[static_cast<std::size_t>(wi)];
      auto& s = w.sym;
      bool found = false;
      for (std::size_t i = 0; i + 1 < s.size(); ++i) {
        if (s[i] == a && s[i + 1] == b) {
          found = true;
          break;
        }
      }
      if (!found) continue;
      for (std::size_t i = 0; i + 1 < s.size(); ++i) delta[pair_key(s[i], s[i + 1])] -= w.count;
      std::vector<std::int32_t> merged;
      merged.reserve(s.size());
      for (std::size_t i = 0; i < s.size();) {
        if (i + 1 < s.size() && s[i] == a && s[i + 1] == b) {
          merged.push_back(id);
          i += 2;
        } else {
          merged.push_back(s[i]);
          ++i;
        }
      }
      s = std::move(merged);
      for (std::size_t i = 0; i + 1 < s.size(); ++i) {
        const std::uint64_t k = pair_key(s[i], s[i + 1]);
        delta[k] += w.count;
        if (s[i] == id || s[i + 1] == id) {
          auto& v = where[k];
          if (v.empty() || v.back() != wi) v.push_back(wi);
        }
      }
    }
    for (const auto& [k, d] : delta) {
      if (d == 0) continue;
      std::int64_t& c = pair_count[k];
      c += d;
      if (d > 0) heap.push({c, k});
      if (c <= 0) pair_count.erase(k);
    }
    pair_count.erase(top.key);
  }
  for (const std::string& s : opts.special_tokens) {
    impl->specials.push_back(static_cast<std::int64_t>(impl->tokens.size()));
    impl->tokens.push_back(s);
  }
  impl->index();
  KILN_CHECK(impl->by_bytes.size() == impl->tokens.size(), "BPE training: a special token has the ",
             "same bytes as a learned token; choose special tokens that cannot occur in text, such "
             "as '<|endoftext|>'");
  return BpeTokenizer(std::move(impl));
}

BpeTokenizer BpeTokenizer::load(const std::filesystem::path& vocab_json,
                                const std::filesystem::path& merges_txt) {
  const std::string vocab = read_file(vocab_json);  // in this order: errors name the first
  const std::string merges = read_file(merges_txt);
  return from_strings(vocab, merges, vocab_json.string() + "' / '" + merges_txt.string());
}

BpeTokenizer BpeTokenizer::from_strings(const std::string& vocab_text,
                                        const std::string& merges_text, const std::string& source) {
  const std::string vsrc = "'" + source + "' (vocab.json)";
  auto entries = JsonReader(vocab_text, vsrc).string_int_object();
  KILN_CHECK(!entries.empty(), vsrc, ": the vocabulary is empty");
  const auto n = static_cast<std::int64_t>(entries.size());
  auto impl = std::make_shared<Impl>();
  impl->tokens.assign(static_cast<std::size_t>(n), std::string());
  std::vector<bool> seen(static_cast<std::size_t>(n), false);
  std::vector<bool> literal(static_cast<std::size_t>(n), false);
  std::unordered_map<std::string, std::int32_t> by_vocab_string;
  for (auto& [tok, id] : entries) {
    KILN_CHECK(id >= 0 && id < n, vsrc, ": token '", tok, "' has id ", id, ", but ids must be 0..",
               n - 1, " (one per token, no gaps)");
    KILN_CHECK(!seen[static_cast<std::size_t>(id)], vsrc, ": id ", id,
               " is given to two tokens (the second is '", tok, "')");
    seen[static_cast<std::size_t>(id)] = true;
    auto bytes = vocab_string_to_bytes(tok);
    literal[static_cast<std::size_t>(id)] = !bytes.has_value();
    impl->tokens[static_cast<std::size_t>(id)] = bytes ? *bytes : tok;
    KILN_CHECK(by_vocab_string.emplace(tok, static_cast<std::int32_t>(id)).second, vsrc,
               ": token '", tok, "' is listed twice");
  }
  std::array<bool, 256> have{};
  for (std::size_t id = 0; id < impl->tokens.size(); ++id) {
    const std::string& t = impl->tokens[id];
    if (t.size() == 1 && !literal[id] && !have[static_cast<unsigned char>(t[0])]) {
      have[static_cast<unsigned char>(t[0])] = true;
      impl->byte_id[static_cast<unsigned char>(t[0])] = static_cast<std::int32_t>(id);
    }
  }
  for (int b = 0; b < 256; ++b) {
    KILN_CHECK(have[static_cast<std::size_t>(b)], vsrc, ": byte ", b, " (written '",
               bytes_to_vocab_string(std::string(1, static_cast<char>(b))),
               "') has no token; a byte-level BPE vocabulary needs all 256");
  }
  const std::string msrc = "'" + source + "' (merges.txt)";
  std::vector<bool> is_result(static_cast<std::size_t>(n), false);
  std::size_t pos = 0;
  std::int64_t line_no = 0;
  while (pos < merges_text.size()) {
    std::size_t end = merges_text.find('\n', pos);
    if (end == std::string::npos) end = merges_text.size();
    std::string line = merges_text.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || (line_no == 1 && line.rfind("#version", 0) == 0)) continue;
    const std::size_t sp = line.find(' ');
    KILN_CHECK(sp != std::string::npos && sp > 0 && sp + 1 < line.size() &&
                   line.find(' ', sp + 1) == std::string::npos,
               msrc, ":", line_no, ": expected two tokens separated by one space, got '", line,
               "'");
    const std::string left = line.substr(0, sp), right = line.substr(sp + 1);
    auto find = [&](const std::string& t) {
      auto it = by_vocab_string.find(t);
      KILN_CHECK(it != by_vocab_string.end(), msrc, ":", line_no, ": '", t,
                 "' is not in the vocabulary");
      return it->second;
    };
    const std::int32_t a = find(left), b = find(right), r = find(left + right);
    impl->merges.emplace_back(a, b);
    is_result[static_cast<std::size_t>(r)] = true;
  }
  impl->by_bytes.clear();
  for (std::size_t id = 0; id < impl->tokens.size(); ++id) {
    impl->by_bytes.emplace(impl->tokens[id], static_cast<std::int32_t>(id));
  }
  impl->merge_of.clear();
  for (std::size_t r = 0; r < impl->merges.size(); ++r) {
    const auto [a, b] = impl->merges[r];
    const std::string joined = bytes_to_vocab_string(impl->tokens[static_cast<std::size_t>(a)]) +
                               bytes_to_vocab_string(impl->tokens[static_cast<std::size_t>(b)]);
    impl->merge_of.emplace(
        pair_key(a, b), std::make_pair(static_cast<std::int32_t>(r), by_vocab_string.at(joined)));
  }
  for (std::int64_t id = 0; id < n; ++id) {
    const std::string& t = impl->tokens[static_cast<std::size_t>(id)];
    const bool is_byte = t.size() == 1 && !literal[static_cast<std::size_t>(id)] &&
                         impl->byte_id[static_cast<unsigned char>(t[0])] == id;
    if (!is_byte && !is_result[static_cast<std::size_t>(id)]) impl->specials.push_back(id);
  }
  return BpeTokenizer(std::move(impl));
}

std::string BpeTokenizer::vocab_json() const {
  std::string out = "{";
  for (std::size_t id = 0; id < impl_->tokens.size(); ++id) {
    if (id > 0) out += ",\n";
    const bool special = std::binary_search(impl_->specials.begin(), impl_->specials.end(),
                                            static_cast<std::int64_t>(id));
    json_escape(out, special ? impl_->tokens[id] : bytes_to_vocab_string(impl_->tokens[id]));
    out += ": " + std::to_string(id);
  }
  out += "}\n";
  return out;
}

std::string BpeTokenizer::merges_txt() const {
  std::string out = "#version: 0.2\n";
  for (const auto& [a, b] : impl_->merges) {
    out += bytes_to_vocab_string(impl_->tokens[static_cast<std::size_t>(a)]);
    out += ' ';
    out += bytes_to_vocab_string(impl_->tokens[static_cast<std::size_t>(b)]);
    out += '\n';
  }
  return out;
}

void BpeTokenizer::save(const std::filesystem::path& vocab_path,
                        const std::filesystem::path& merges_path) const {
  write_file_atomic(vocab_path, vocab_json());
  write_file_atomic(merges_path, merges_txt());
}

std::vector<std::int64_t> BpeTokenizer::encode(std::string_view text) const {
  std::vector<std::int64_t> out;
  out.reserve(text.size() / 3 + 1);
  for (std::string_view p : pretokenize(text)) impl_->encode_piece(p, out);
  return out;
}

std::string BpeTokenizer::decode(std::span<const std::int64_t> ids) const {
  std::string out;
  for (std::int64_t id : ids) out += token_bytes(id);
  return out;
}

const std::string& BpeTokenizer::token_bytes(std::int64_t id) const {
  KILN_CHECK(id >= 0 && id < vocab_size(), "BPE: token id ", id, " is outside the vocabulary [0, ",
             vocab_size(), ")");
  return impl_->tokens[static_cast<std::size_t>(id)];
}

std::int64_t BpeTokenizer::vocab_size() const {
  return static_cast<std::int64_t>(impl_->tokens.size());
}
std::int64_t BpeTokenizer::num_merges() const {
  return static_cast<std::int64_t>(impl_->merges.size());
}

std::optional<std::int64_t> BpeTokenizer::find(std::string_view bytes) const {
  auto it = impl_->by_bytes.find(std::string(bytes));
  if (it == impl_->by_bytes.end()) return std::nullopt;
  return it->second;
}

std::vector<std::int64_t> BpeTokenizer::special_ids() const {
  return impl_->specials;
}

char32_t byte_to_unicode(std::uint8_t b) {
  return byte_table().to_cp[b];
}

std::string bytes_to_vocab_string(std::string_view bytes) {
  std::string out;
  for (char c : bytes) put_utf8(out, byte_table().to_cp[static_cast<unsigned char>(c)]);
  return out;
}

}  // namespace kiln::text
