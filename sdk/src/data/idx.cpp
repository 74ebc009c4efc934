// IDX files (the MNIST format), plain or gzip-compressed.
//
// Layout: bytes 0, 0, a type code and the number of dimensions; then each dimension as a
// big-endian u32; then the data, big-endian, row-major. zlib's gzread reads gzip files and passes
// plain files through unchanged, so both go through one path. The header is validated before
// anything large is allocated, and the data must fill the dimensions exactly.
#include <zlib.h>

#include <cerrno>
#include <cstring>
#include <limits>

#include "kiln/data.hpp"

namespace kiln::data {

namespace {
constexpr std::uint64_t kMaxBytes = std::uint64_t{1} << 40;  // 1 TiB: beyond that, a lie
constexpr std::size_t kReadChunk = std::size_t{1} << 20;

struct GzFile {
  gzFile f = nullptr;
  ~GzFile() {
    if (f != nullptr) gzclose(f);
  }
};

struct TypeInfo {
  const char* name;
  std::size_t size;  // bytes per element in the file
  DType dtype;       // element type of the tensor
};

bool type_info(int code, TypeInfo* t) {
  switch (code) {
    case 0x08:
      *t = {"u8", 1, DType::u8};
      return true;
    case 0x09:
      *t = {"s8", 1, DType::s8};
      return true;
    case 0x0B:
      *t = {"s16", 2, DType::s32};
      return true;
    case 0x0C:
      *t = {"s32", 4, DType::s32};
      return true;
    case 0x0D:
      *t = {"f32", 4, DType::f32};
      return true;
    case 0x0E:
      *t = {"f64", 8, DType::f32};
      return true;
    default:
      return false;
  }
}

std::string hex_byte(unsigned v) {
  char buf[8];
  std::snprintf(buf, sizeof(buf), "0x%02X", v & 0xFFu);
  return buf;
}

// Reads up to n bytes; returns the count. Throws on a zlib error other than a short read.
std::size_t read_some(gzFile f, unsigned char* out, std::size_t n, const std::string& name) {
  std::size_t got = 0;
  while (got < n) {
    const unsigned want = static_cast<unsigned>(std::min(n - got, kReadChunk));
    const int r = gzread(f, out + got, want);
    if (r < 0) {
      int errnum = 0;
      const char* msg = gzerror(f, &errnum);
      throw Error("IDX file '" + name + "' is corrupt: " + (msg != nullptr ? msg : "read error") +
                  " (a damaged gzip stream?)");
    }
    got += static_cast<std::size_t>(r);
    if (static_cast<unsigned>(r) < want) break;
  }
  return got;
}

std::uint32_t be32(const unsigned char* p) {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) |
         std::uint32_t{p[3]};
}

std::string truncation_detail(gzFile f) {
  int errnum = 0;
  const char* msg = gzerror(f, &errnum);
  if (errnum != Z_OK && msg != nullptr && msg[0] != 0) return std::string(" (zlib: ") + msg + ")";
  return "";
}
}  // namespace

Tensor read_idx(const std::filesystem::path& path) {
  const std::string name = path.string();
  std::error_code ec;
  KILN_CHECK(std::filesystem::is_regular_file(path, ec), "IDX file '", name,
             "' does not exist or is not a file");
  GzFile gz;
  gz.f = gzopen(path.c_str(), "rb");
  KILN_CHECK(gz.f != nullptr, "cannot open IDX file '", name, "': ", std::strerror(errno));
  gzbuffer(gz.f, 1u << 17);

  unsigned char head[4];
  const std::size_t got_head = read_some(gz.f, head, 4, name);
  KILN_CHECK(got_head == 4, "IDX file '", name, "' is truncated: it holds ", got_head,
             " bytes, fewer than the 4-byte header", truncation_detail(gz.f));
  KILN_CHECK(head[0] == 0 && head[1] == 0, "IDX file '", name,
             "' has a bad magic number: it starts with ", hex_byte(head[0]), " ", hex_byte(head[1]),
             " ", hex_byte(head[2]), " ", hex_byte(head[3]),
             ", expected 0x00 0x00 <type> <dims> (is it an IDX file?)");
  TypeInfo type;
  KILN_CHECK(type_info(head[2], &type), "IDX file '", name, "' has an unknown data type code ",
             hex_byte(head[2]),
             "; IDX uses 0x08 (u8), 0x09 (s8), 0x0B (s16), 0x0C (s32), 0x0D (f32), 0x0E (f64)");
  const int ndims = head[3];
  KILN_CHECK(ndims >= 1 && ndims <= 8, "IDX file '", name, "' declares ", ndims,
             " dimensions; expected 1 to 8");

  unsigned char dim_bytes[32];
  const std::size_t dims_len = static_cast<std::size_t>(ndims) * 4;
  const std::size_t got_dims = read_some(gz.f, dim_bytes, dims_len, name);
  KILN_CHECK(got_dims == dims_len, "IDX file '", name, "' is truncated inside its header: ", ndims,
             " dimensions need ", dims_len, " bytes, the file has ", got_dims,
             truncation_detail(gz.f));
  Shape shape;
  std::uint64_t count = 1;
  for (int d = 0; d < ndims; ++d) {
    const std::uint32_t v = be32(dim_bytes + 4 * d);
    KILN_CHECK(v <= static_cast<std::uint32_t>(std::numeric_limits<std::int32_t>::max()),
               "IDX file '", name, "' has an absurd size ", v, " for dimension ", d);
    shape.push_back(static_cast<std::int64_t>(v));
    if (v == 0) {
      count = 0;
    } else if (count != 0) {
      KILN_CHECK(count <= kMaxBytes / v, "IDX file '", name, "' has absurd dimensions ",
                 shape_str(shape), "...: more than ", kMaxBytes, " elements");
      count *= v;
    }
  }
  const std::uint64_t nbytes64 = count * type.size;
  KILN_CHECK(count <= kMaxBytes / type.size, "IDX file '", name, "' has absurd dimensions ",
             shape_str(shape), " (", nbytes64, " bytes of data)");
  const std::size_t nbytes = static_cast<std::size_t>(nbytes64);

  // Read the data in pieces so that a header that lies about its size costs no more memory than
  // the data actually present.
  std::vector<unsigned char> data;
  data.reserve(std::min<std::size_t>(nbytes, std::size_t{256} << 20));
  while (data.size() < nbytes) {
    const std::size_t want = std::min(nbytes - data.size(), std::size_t{16} << 20);
    const std::size_t at = data.size();
    data.resize(at + want);
    const std::size_t got = read_some(gz.f, data.data() + at, want, name);
    data.resize(at + got);
    if (got < want) {
      throw Error("IDX file '" + name + "' is truncated: its dimensions " + shape_str(shape) +
                  " of " + type.name + " need " + std::to_string(nbytes) +
                  " bytes of data, the file holds " + std::to_string(data.size()) +
                  truncation_detail(gz.f));
    }
  }
  unsigned char extra[4096];
  std::size_t trailing = 0;
  for (std::size_t got; (got = read_some(gz.f, extra, sizeof(extra), name)) > 0;) {
    trailing += got;
    if (trailing > (std::size_t{1} << 30)) break;
  }
  {
    // gzread reports a gzip stream cut short (e.g. a missing trailer) only through gzerror.
    int errnum = Z_OK;
    const char* msg = gzerror(gz.f, &errnum);
    KILN_CHECK(errnum == Z_OK, "IDX file '", name, "' is ",
               errnum == Z_BUF_ERROR ? "truncated" : "corrupt", ": zlib reports '",
               msg != nullptr ? msg : "?", "' after the data");
  }
  KILN_CHECK(trailing == 0, "IDX file '", name, "' holds ", trailing,
             trailing > (std::size_t{1} << 30) ? "+" : "", " bytes beyond the ", nbytes,
             " that its dimensions ", shape_str(shape), " of ", type.name,
             " describe; the header does not match the data");

  Tensor t = Tensor::empty(shape, type.dtype);
  const std::int64_t n = static_cast<std::int64_t>(count);
  const unsigned char* p = data.data();
  switch (head[2]) {
    case 0x08:
    case 0x09:
      if (nbytes > 0) std::memcpy(t.raw_data(), p, nbytes);
      break;
    case 0x0B: {
      std::int32_t* out = t.data<std::int32_t>();
      for (std::int64_t i = 0; i < n; ++i) {
        out[i] =
            static_cast<std::int16_t>(static_cast<std::uint16_t>((p[2 * i] << 8) | p[2 * i + 1]));
      }
      break;
    }
    case 0x0C: {
      std::int32_t* out = t.data<std::int32_t>();
      for (std::int64_t i = 0; i < n; ++i) out[i] = static_cast<std::int32_t>(be32(p + 4 * i));
      break;
    }
    case 0x0D: {
      float* out = t.data<float>();
      for (std::int64_t i = 0; i < n; ++i) {
        const std::uint32_t u = be32(p + 4 * i);
        std::memcpy(out + i, &u, 4);
      }
      break;
    }
    case 0x0E: {
      float* out = t.data<float>();
      for (std::int64_t i = 0; i < n; ++i) {
        const std::uint64_t u = (std::uint64_t{be32(p + 8 * i)} << 32) | be32(p + 8 * i + 4);
        double d;
        std::memcpy(&d, &u, 8);
        out[i] = static_cast<float>(d);
      }
      break;
    }
  }
  return t;
}

}  // namespace kiln::data
