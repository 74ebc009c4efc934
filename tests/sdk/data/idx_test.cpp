#include <gtest/gtest.h>

#include <cstring>
#include <fstream>

#include "kiln/data.hpp"
#include "kiln/file_io.hpp"
#include "support/test_support.hpp"

namespace kiln::data {
namespace {

namespace fs = std::filesystem;
const fs::path kFashion = "/usr/share/datasets/fashion-mnist";

std::string be32(std::uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8),
          static_cast<char>(v)};
}

std::string idx_header(int type, const std::vector<std::uint32_t>& dims) {
  std::string s = {0, 0, static_cast<char>(type), static_cast<char>(dims.size())};
  for (std::uint32_t d : dims) s += be32(d);
  return s;
}

std::uint32_t crc32(const std::string& s) {
  std::uint32_t c = 0xffffffffu;
  for (unsigned char b : s) {
    c ^= b;
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
  }
  return c ^ 0xffffffffu;
}

// A valid gzip file holding `data` in stored (uncompressed) deflate blocks.
std::string gzip_stored(const std::string& data) {
  std::string out = {'\x1f', '\x8b', 8, 0, 0, 0, 0, 0, 0, '\xff'};
  std::size_t pos = 0;
  do {
    const std::size_t n = std::min<std::size_t>(65535, data.size() - pos);
    const bool last = pos + n == data.size();
    out += static_cast<char>(last ? 1 : 0);
    const std::uint16_t len = static_cast<std::uint16_t>(n), nlen = static_cast<std::uint16_t>(~n);
    out += {static_cast<char>(len), static_cast<char>(len >> 8), static_cast<char>(nlen),
            static_cast<char>(nlen >> 8)};
    out += data.substr(pos, n);
    pos += n;
  } while (pos < data.size());
  const std::uint32_t crc = crc32(data), size = static_cast<std::uint32_t>(data.size());
  for (std::uint32_t v : {crc, size}) {
    out += {static_cast<char>(v), static_cast<char>(v >> 8), static_cast<char>(v >> 16),
            static_cast<char>(v >> 24)};
  }
  return out;
}

fs::path write(const test::TempDir& dir, const std::string& name, const std::string& bytes) {
  const fs::path p = dir / name;
  write_file_atomic(p, bytes);
  return p;
}

// read_idx must throw a kiln::Error naming the file and containing `part`.
void expect_idx_error(const fs::path& p, const std::string& part) {
  try {
    read_idx(p);
    ADD_FAILURE() << p << ": no error (expected '" << part << "')";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(p.string()), std::string::npos) << msg;
    EXPECT_NE(msg.find(part), std::string::npos) << msg << "  /  expected: " << part;
  }
}

// (The 60000 training images are loaded by image_dataset_test.cpp; here the smaller files.)
TEST(Idx, FashionMnistFiles) {
  const Tensor labels = read_idx(kFashion / "train-labels-idx1-ubyte.gz");
  EXPECT_EQ(labels.shape(), (Shape{60000}));
  const std::vector<std::int64_t> l = labels.to_int_vector();
  EXPECT_EQ(l[0], 9);  // the first training image is an ankle boot
  std::vector<int> counts(10, 0);
  for (std::int64_t v : l) {
    ASSERT_GE(v, 0);
    ASSERT_LT(v, 10);
    counts[static_cast<std::size_t>(v)]++;
  }
  for (int c : counts) EXPECT_EQ(c, 6000);  // Fashion-MNIST is balanced
  const Tensor test = read_idx(kFashion / "t10k-images-idx3-ubyte.gz");
  EXPECT_EQ(test.shape(), (Shape{10000, 28, 28}));
  EXPECT_EQ(test.dtype(), DType::u8);
  EXPECT_EQ(read_idx(kFashion / "t10k-labels-idx1-ubyte.gz").shape(), (Shape{10000}));
}

TEST(Idx, PlainAndGzipGiveTheSameTensor) {
  test::TempDir dir;
  const Tensor t = read_idx(kFashion / "t10k-labels-idx1-ubyte.gz");
  std::string plain = idx_header(0x08, {10000});
  plain.append(static_cast<const char*>(t.raw_data()), 10000);
  const fs::path p = write(dir, "labels-plain", plain);
  EXPECT_EQ(read_idx(p).to_int_vector(), t.to_int_vector());
  // A gzip file is recognised by content, whatever its name.
  fs::copy_file(kFashion / "t10k-labels-idx1-ubyte.gz", dir / "no-suffix");
  EXPECT_EQ(read_idx(dir / "no-suffix").to_int_vector(), t.to_int_vector());
  // Stored-block gzip spanning several blocks.
  std::string big = idx_header(0x08, {3, 50000});
  for (int i = 0; i < 150000; ++i) big += static_cast<char>(i * 7);
  const Tensor b = read_idx(write(dir, "big.gz", gzip_stored(big)));
  EXPECT_EQ(b.shape(), (Shape{3, 50000}));
  EXPECT_EQ(b.data<std::uint8_t>()[149999], static_cast<std::uint8_t>(149999 * 7));
}

TEST(Idx, EveryElementType) {
  test::TempDir dir;
  // u8
  Tensor u8 =
      read_idx(write(dir, "u8", idx_header(0x08, {2, 2}) + std::string("\x00\x01\xfe\xff", 4)));
  EXPECT_EQ(u8.dtype(), DType::u8);
  EXPECT_EQ(u8.to_int_vector(), (std::vector<std::int64_t>{0, 1, 254, 255}));
  // s8
  Tensor s8 = read_idx(write(dir, "s8", idx_header(0x09, {3}) + std::string("\x7f\x80\xff", 3)));
  EXPECT_EQ(s8.dtype(), DType::s8);
  EXPECT_EQ(s8.to_int_vector(), (std::vector<std::int64_t>{127, -128, -1}));
  // s16 -> s32
  Tensor s16 = read_idx(
      write(dir, "s16", idx_header(0x0B, {3}) + std::string("\x7f\xff\x80\x00\xff\xfe", 6)));
  EXPECT_EQ(s16.dtype(), DType::s32);
  EXPECT_EQ(s16.to_int_vector(), (std::vector<std::int64_t>{32767, -32768, -2}));
  // s32
  Tensor s32 =
      read_idx(write(dir, "s32", idx_header(0x0C, {2}) + be32(0x7fffffffu) + be32(0xfffffff9u)));
  EXPECT_EQ(s32.dtype(), DType::s32);
  EXPECT_EQ(s32.to_int_vector(), (std::vector<std::int64_t>{2147483647, -7}));
  // f32
  float f = -1.25f;
  std::uint32_t fu;
  std::memcpy(&fu, &f, 4);
  Tensor f32 = read_idx(write(dir, "f32", idx_header(0x0D, {1, 1}) + be32(fu)));
  EXPECT_EQ(f32.dtype(), DType::f32);
  EXPECT_EQ(f32.shape(), (Shape{1, 1}));
  EXPECT_EQ(f32.item(), -1.25f);
  // f64 -> f32
  const double d = 3.5e10;
  std::uint64_t du;
  std::memcpy(&du, &d, 8);
  Tensor f64 = read_idx(write(dir, "f64",
                              idx_header(0x0E, {1}) + be32(static_cast<std::uint32_t>(du >> 32)) +
                                  be32(static_cast<std::uint32_t>(du))));
  EXPECT_EQ(f64.dtype(), DType::f32);
  EXPECT_EQ(f64.item(), 3.5e10f);
  // gzip of a typed file; a zero-sized dimension gives an empty tensor.
  EXPECT_EQ(read_idx(write(dir, "s16.gz",
                           gzip_stored(idx_header(0x0B, {3}) +
                                       std::string("\x7f\xff\x80\x00\xff\xfe", 6))))
                .to_int_vector(),
            (std::vector<std::int64_t>{32767, -32768, -2}));
  EXPECT_EQ(read_idx(write(dir, "empty-dim", idx_header(0x08, {0, 5}))).shape(), (Shape{0, 5}));
}

TEST(Idx, MalformedHeadersAreClearErrors) {
  test::TempDir dir;
  const std::string ok = idx_header(0x08, {2, 3}) + std::string(6, '\x05');
  expect_idx_error(dir / "missing.idx", "does not exist");
  expect_idx_error(write(dir, "empty", ""), "truncated");
  expect_idx_error(write(dir, "short", std::string("\x00\x00\x08", 3)), "truncated");
  expect_idx_error(write(dir, "magic", std::string("\x01\x00\x08\x01", 4) + be32(1) + "x"),
                   "bad magic");
  expect_idx_error(write(dir, "text", "hello world, not idx"), "bad magic");
  expect_idx_error(write(dir, "type", idx_header(0x0A, {1}) + "x"), "unknown data type code 0x0A");
  expect_idx_error(write(dir, "ndims0", idx_header(0x08, {})), "0 dimensions");
  expect_idx_error(write(dir, "ndims9", idx_header(0x08, {1, 1, 1, 1, 1, 1, 1, 1, 1}) + "x"),
                   "9 dimensions");
  expect_idx_error(write(dir, "dims-cut", idx_header(0x08, {2, 3}).substr(0, 9)),
                   "truncated inside its header");
  expect_idx_error(write(dir, "data-short", ok.substr(0, ok.size() - 1)), "truncated");
  expect_idx_error(write(dir, "data-short", ok.substr(0, ok.size() - 1)), "need 6 bytes");
  expect_idx_error(write(dir, "data-long", ok + "zz"), "2 bytes beyond the 6");
  expect_idx_error(write(dir, "s32-short", idx_header(0x0C, {2}) + be32(1) + "ab"), "need 8 bytes");
  // Absurd sizes are refused from the header alone (nothing near that size is allocated).
  expect_idx_error(write(dir, "neg-dim", idx_header(0x08, {0x80000000u}) + "x"), "absurd size");
  expect_idx_error(write(dir, "huge", idx_header(0x0E, {0x7fffffffu, 0x7fffffffu, 4}) + "x"),
                   "absurd dimensions");
  expect_idx_error(write(dir, "lying", idx_header(0x08, {60000, 28, 28}) + std::string(100, 'x')),
                   "the file holds 100");
  // Damaged gzip streams.
  const std::string gz = gzip_stored(ok);
  expect_idx_error(write(dir, "cut.gz", gz.substr(0, gz.size() - 6)), "truncated");
  std::string bad_crc = gz;
  bad_crc[bad_crc.size() - 6] ^= 0x55;
  expect_idx_error(write(dir, "crc.gz", bad_crc), "corrupt");
  std::string bad_block = gz;
  bad_block[10] = 0x07;  // reserved block type
  expect_idx_error(write(dir, "block.gz", bad_block), "corrupt");
  expect_idx_error(dir.path(), "is not a file");
}

// The same header checks apply to gzip files, whose contents arrive through zlib.
TEST(Idx, MalformedHeadersInsideGzipAreClearErrors) {
  test::TempDir dir;
  const std::string ok = idx_header(0x08, {2, 3}) + std::string(6, '\x05');
  EXPECT_EQ(read_idx(write(dir, "ok.gz", gzip_stored(ok))).shape(), (Shape{2, 3}));
  expect_idx_error(write(dir, "empty.gz", gzip_stored("")), "truncated");
  expect_idx_error(
      write(dir, "magic.gz", gzip_stored(std::string("\x01\x00\x08\x01", 4) + be32(1))),
      "bad magic");
  expect_idx_error(write(dir, "type.gz", gzip_stored(idx_header(0x0A, {1}) + "x")),
                   "unknown data type code 0x0A");
  expect_idx_error(write(dir, "ndims0.gz", gzip_stored(idx_header(0x08, {}))), "0 dimensions");
  expect_idx_error(write(dir, "dims-cut.gz", gzip_stored(idx_header(0x08, {2, 3}).substr(0, 9))),
                   "truncated inside its header");
  expect_idx_error(write(dir, "short.gz", gzip_stored(ok.substr(0, ok.size() - 1))),
                   "need 6 bytes");
  expect_idx_error(write(dir, "long.gz", gzip_stored(ok + "zz")), "2 bytes beyond the 6");
  expect_idx_error(
      write(dir, "huge.gz", gzip_stored(idx_header(0x0E, {0x7fffffffu, 0x7fffffffu, 4}))),
      "absurd dimensions");
  expect_idx_error(write(dir, "lying.gz", gzip_stored(idx_header(0x08, {60000, 28, 28}) + "xyz")),
                   "the file holds 3");
  // Only the gzip magic: a header cut short.
  expect_idx_error(write(dir, "stub.gz", std::string("\x1f\x8b", 2)), "truncated");
}

// load_idx_images: images must be [N, H, W] or [N, C, H, W], labels one per image.
TEST(Idx, ImageFilesOfTheWrongRankAreRefused) {
  test::TempDir dir;
  const fs::path flat = write(dir, "flat", idx_header(0x08, {2, 3}) + std::string(6, '\x01'));
  try {
    load_idx_images(flat, "");
    ADD_FAILURE() << "2-d images accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(flat.string()), std::string::npos) << e.what();
  }
  const fs::path imgs = write(dir, "imgs", idx_header(0x08, {2, 2, 2}) + std::string(8, '\x01'));
  const fs::path labels2d =
      write(dir, "labels2d", idx_header(0x08, {2, 1}) + std::string(2, '\x01'));
  try {
    load_idx_images(imgs, labels2d);
    ADD_FAILURE() << "2-d labels accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(labels2d.string()), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace kiln::data
