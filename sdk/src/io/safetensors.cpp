#include "kiln/safetensors.hpp"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <limits>

#include <nlohmann/json.hpp>

#include "kiln/file_io.hpp"

namespace kiln {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// Headers larger than this are refused before reading them (the reference implementation uses
// 100 MB too).
constexpr std::uint64_t kMaxHeader = 100ull << 20;

struct Entry {
  std::string name;
  DType file_dtype;
  Shape shape;
  std::uint64_t begin, end;
};

struct Header {
  std::vector<Entry> entries;
  std::map<std::string, std::string> metadata;
  std::uint64_t data_start;  // byte offset of the data area in the file
};

DType parse_st_dtype(const std::string& s, const std::string& file, const std::string& name) {
  if (s == "F32") return DType::f32;
  if (s == "BF16") return DType::bf16;
  if (s == "F16") return DType::f16;
  if (s == "I32") return DType::s32;
  if (s == "I64") return DType::s64;
  if (s == "U8") return DType::u8;
  if (s == "I8") return DType::s8;
  throw Error("'" + file + "': tensor '" + name + "' has dtype '" + s +
              "', which Kiln does not read (supported: F32, BF16, F16, I32, I64, U8, I8)");
}

const char* st_dtype_name(DType t) {
  switch (t) {
    case DType::f32:
      return "F32";
    case DType::bf16:
      return "BF16";
    case DType::f16:
      return "F16";
    case DType::s32:
      return "I32";
    case DType::s64:
      return "I64";
    case DType::u8:
      return "U8";
    case DType::s8:
      return "I8";
  }
  return "?";
}

std::uint64_t read_u64_le(const unsigned char* p) {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// Parses and validates the JSON header against the data size.
Header parse_header(const std::string& text, std::uint64_t data_size, const std::string& file) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    throw Error("'" + file + "' is not a valid safetensors file: its header is not valid JSON (" +
                e.what() + ")");
  }
  if (!j.is_object()) {
    throw Error("'" + file + "' is not a valid safetensors file: the header is not a JSON object");
  }
  Header h;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& key = it.key();
    const json& v = it.value();
    if (key == "__metadata__") {
      if (!v.is_object()) throw Error("'" + file + "': __metadata__ must be an object of strings");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string()) {
          throw Error("'" + file + "': metadata value for '" + m.key() + "' is not a string");
        }
        h.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string where = "'" + file + "': tensor '" + key + "'";
    if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") ||
        !v.contains("data_offsets")) {
      throw Error(where + " lacks dtype, shape or data_offsets");
    }
    if (!v["dtype"].is_string() || !v["shape"].is_array() || !v["data_offsets"].is_array() ||
        v["data_offsets"].size() != 2) {
      throw Error(where + " has a malformed dtype, shape or data_offsets entry");
    }
    Entry e;
    e.name = key;
    e.file_dtype = parse_st_dtype(v["dtype"].get<std::string>(), file, key);
    long double elems = 1;
    for (const json& d : v["shape"]) {
      if (!d.is_number_unsigned()) throw Error(where + " has a non-integer or negative dimension");
      const std::uint64_t dim = d.get<std::uint64_t>();
      if (dim > (1ull << 40))
        throw Error(where + " has an absurd dimension " + std::to_string(dim));
      e.shape.push_back(static_cast<std::int64_t>(dim));
      elems *= static_cast<long double>(dim);
    }
    if (e.shape.size() > 12) throw Error(where + " has more than 12 dimensions");
    if (elems > static_cast<long double>(1ull << 40)) {
      throw Error(where + " has an absurd shape " + shape_str(e.shape) +
                  " (more than 2^40 elements)");
    }
    for (const json& o : v["data_offsets"]) {
      if (!o.is_number_unsigned()) throw Error(where + " has a negative or non-integer offset");
    }
    e.begin = v["data_offsets"][0].get<std::uint64_t>();
    e.end = v["data_offsets"][1].get<std::uint64_t>();
    if (e.end < e.begin || e.end > data_size) {
      throw Error(where + " has data offsets [" + std::to_string(e.begin) + ", " +
                  std::to_string(e.end) + ") outside the file's " + std::to_string(data_size) +
                  " data bytes (the file is truncated or corrupt)");
    }
    const long double need = elems * static_cast<long double>(dtype_size(e.file_dtype));
    if (need != static_cast<long double>(e.end - e.begin)) {
      throw Error(where + ": shape " + shape_str(e.shape) + " needs " +
                  std::to_string(static_cast<unsigned long long>(need)) +
                  " bytes but its offsets "
                  "cover " +
                  std::to_string(e.end - e.begin));
    }
    h.entries.push_back(std::move(e));
  }
  // Tensors must not overlap.
  std::vector<const Entry*> sorted;
  for (const Entry& e : h.entries) sorted.push_back(&e);
  std::sort(sorted.begin(), sorted.end(),
            [](const Entry* a, const Entry* b) { return a->begin < b->begin; });
  for (std::size_t i = 1; i < sorted.size(); ++i) {
    if (sorted[i]->begin < sorted[i - 1]->end) {
      throw Error("'" + file + "': tensors '" + sorted[i - 1]->name + "' and '" + sorted[i]->name +
                  "' overlap");
    }
  }
  return h;
}

Tensor make_tensor(const Entry& e, const char* bytes, const SafetensorsReadOptions& opts) {
  Tensor t =
      Tensor::from_bytes(bytes, static_cast<std::size_t>(e.end - e.begin), e.shape, e.file_dtype);
  if (e.file_dtype == DType::f16 && !opts.keep_f16) t = t.to(DType::f32);
  return t;
}

}  // namespace

Safetensors parse_safetensors(const std::string& bytes, const std::string& name,
                              const SafetensorsReadOptions& opts) {
  if (bytes.size() < 8) {
    throw Error("'" + name + "' is not a valid safetensors file: it has only " +
                std::to_string(bytes.size()) + " bytes (truncated?)");
  }
  const std::uint64_t n = read_u64_le(reinterpret_cast<const unsigned char*>(bytes.data()));
  if (n > kMaxHeader || n > bytes.size() - 8) {
    throw Error("'" + name + "' is not a valid safetensors file: its header claims " +
                std::to_string(n) + " bytes but the file has " + std::to_string(bytes.size()) +
                " (truncated or not safetensors)");
  }
  Header h = parse_header(bytes.substr(8, static_cast<std::size_t>(n)), bytes.size() - 8 - n, name);
  Safetensors out;
  out.metadata = std::move(h.metadata);
  const char* data = bytes.data() + 8 + n;
  for (const Entry& e : h.entries) out.tensors[e.name] = make_tensor(e, data + e.begin, opts);
  return out;
}

namespace {
Header read_header(std::ifstream& in, std::uint64_t file_size, const std::string& name) {
  if (file_size < 8) {
    throw Error("'" + name + "' is not a valid safetensors file: it has only " +
                std::to_string(file_size) + " bytes (truncated?)");
  }
  unsigned char len[8];
  in.read(reinterpret_cast<char*>(len), 8);
  const std::uint64_t n = read_u64_le(len);
  if (n > kMaxHeader || n > file_size - 8) {
    throw Error("'" + name + "' is not a valid safetensors file: its header claims " +
                std::to_string(n) + " bytes but the file has " + std::to_string(file_size) +
                " (truncated or not safetensors)");
  }
  std::string text(static_cast<std::size_t>(n), '\0');
  in.read(text.data(), static_cast<std::streamsize>(n));
  if (!in) throw Error("'" + name + "': read error in the header");
  Header h = parse_header(text, file_size - 8 - n, name);
  h.data_start = 8 + n;
  return h;
}

std::ifstream open_checked(const fs::path& path, std::uint64_t& size) {
  std::error_code ec;
  if (!fs::exists(path, ec)) throw Error("cannot read '" + path.string() + "': no such file");
  if (fs::is_directory(path, ec)) {
    throw Error("cannot read '" + path.string() + "': it is a folder, not a safetensors file");
  }
  size = fs::file_size(path, ec);
  if (ec) throw Error("cannot read '" + path.string() + "': " + ec.message());
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot open '" + path.string() + "' for reading");
  return in;
}
}  // namespace

Safetensors load_safetensors(const fs::path& path, const SafetensorsReadOptions& opts) {
  std::uint64_t size = 0;
  std::ifstream in = open_checked(path, size);
  Header h = read_header(in, size, path.string());
  Safetensors out;
  out.metadata = std::move(h.metadata);
  std::string buf;
  for (const Entry& e : h.entries) {
    buf.resize(static_cast<std::size_t>(e.end - e.begin));
    in.seekg(static_cast<std::streamoff>(h.data_start + e.begin));
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    if (!in) throw Error("'" + path.string() + "': read error in tensor '" + e.name + "'");
    out.tensors[e.name] = make_tensor(e, buf.data(), opts);
  }
  return out;
}

std::map<std::string, std::string> read_safetensors_metadata(const fs::path& path) {
  std::uint64_t size = 0;
  std::ifstream in = open_checked(path, size);
  return read_header(in, size, path.string()).metadata;
}

std::string serialize_safetensors(const TensorMap& tensors,
                                  const std::map<std::string, std::string>& metadata) {
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<Tensor> plain;
  std::uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    KILN_CHECK(t.defined(), "save_safetensors: tensor '", name, "' is undefined");
    KILN_CHECK(name != "__metadata__", "save_safetensors: '__metadata__' is reserved");
    Tensor c = t.contiguous();
    const std::uint64_t n = c.nbytes();
    header[name] = {{"dtype", st_dtype_name(c.dtype())},
                    {"shape", c.shape()},
                    {"data_offsets", {offset, offset + n}}};
    offset += n;
    plain.push_back(c);
  }
  std::string text = header.dump();
  while ((text.size() + 8) % 8 != 0) text.push_back(' ');
  std::string out;
  out.reserve(8 + text.size() + offset);
  const std::uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  out += text;
  for (const Tensor& c : plain) out.append(static_cast<const char*>(c.raw_data()), c.nbytes());
  return out;
}

void save_safetensors(const fs::path& path, const TensorMap& tensors,
                      const std::map<std::string, std::string>& metadata) {
  write_file_atomic(path, serialize_safetensors(tensors, metadata));
}

}  // namespace kiln
