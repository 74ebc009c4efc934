#include <gtest/gtest.h>

#include <oneapi/tbb/parallel_for.h>

#include <chrono>
#include <cmath>
#include <limits>

#include "kiln/file_io.hpp"
#include "kiln/image.hpp"
#include "kiln/random.hpp"
#include "support/test_support.hpp"

namespace kiln {
namespace {

namespace fs = std::filesystem;

fs::path image_fixture(const std::string& name) {
  return test::fixture_path("images") / name;
}

const Safetensors& expected() {
  static const Safetensors s = load_safetensors(image_fixture("expected.safetensors"));
  return s;
}

Image random_image(int w, int h, int c, std::uint64_t seed) {
  Image img{w, h, c, {}};
  img.pixels.resize(static_cast<std::size_t>(w) * h * c);
  Philox rng(seed);
  for (auto& p : img.pixels) p = static_cast<std::uint8_t>(rng.below(256));
  return img;
}

// Expects decode_image to throw a kiln::Error whose message names `name`.
::testing::AssertionResult decode_fails(const std::string& bytes, const std::string& name,
                                        std::int64_t max_pixels = 1 << 26) {
  try {
    decode_image(bytes, name, max_pixels);
  } catch (const Error& e) {
    if (std::string(e.what()).find(name) == std::string::npos) {
      return ::testing::AssertionFailure() << "message does not name the file: " << e.what();
    }
    return ::testing::AssertionSuccess() << e.what();
  }
  return ::testing::AssertionFailure() << "decoded without an error";
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// CRC-32 as PNG chunks use it (to forge headers in tests).
std::uint32_t crc32(const std::string& s, std::size_t begin, std::size_t end) {
  std::uint32_t c = 0xffffffffu;
  for (std::size_t i = begin; i < end; ++i) {
    c ^= static_cast<unsigned char>(s[i]);
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
  }
  return c ^ 0xffffffffu;
}
void put_be32(std::string& s, std::size_t at, std::uint32_t v) {
  for (int k = 0; k < 4; ++k)
    s[at + static_cast<std::size_t>(k)] = static_cast<char>(v >> (24 - 8 * k));
}

const char* const kPngs[] = {
    "grey8.png", "grey16.png",        "rgb16.png",    "rgba8.png",          "grey_alpha8.png",
    "grey1.png", "palette4_trns.png", "palette8.png", "grey8_colorkey.png", "interlaced_rgb8.png"};
const char* const kJpegs[] = {"rgb.jpg", "rgb_progressive.jpg", "grey.jpg"};

TEST(ImageDecode, HandMadePngsOfEveryLayout) {
  for (const char* name : kPngs) {
    SCOPED_TRACE(name);
    const Image img = read_image(image_fixture(name));
    const Tensor want = expected().tensors.at(name);  // u8 [H, W, C]
    ASSERT_EQ(img.height, want.size(0));
    ASSERT_EQ(img.width, want.size(1));
    ASSERT_EQ(img.channels, want.size(2));
    const std::vector<std::int64_t> w = want.to_int_vector();
    ASSERT_EQ(img.pixels.size(), w.size());
    for (std::size_t i = 0; i < w.size(); ++i) {
      ASSERT_EQ(img.pixels[i], w[i]) << "byte " << i;
    }
  }
  // 16 -> 8 bits rounds (libpng's scale_16): 0xFFFF -> 255, 0x8080 -> 128, 0x00FF -> 1 (not 0).
  const Image g16 = read_image(image_fixture("grey16.png"));
  EXPECT_EQ(g16.pixels[0], 255);
  EXPECT_EQ(g16.pixels[1], 128);
  EXPECT_EQ(g16.pixels[2], 1);
}

TEST(ImageDecode, JpegsMatchLibjpegTurboViaPillow) {
  for (const char* name : kJpegs) {
    SCOPED_TRACE(name);
    const Image img = read_image(image_fixture(name));
    const Tensor want = expected().tensors.at(name);
    ASSERT_EQ(img.height, want.size(0));
    ASSERT_EQ(img.width, want.size(1));
    ASSERT_EQ(img.channels, want.size(2));
    const std::vector<std::int64_t> w = want.to_int_vector();
    for (std::size_t i = 0; i < w.size(); ++i) {
      ASSERT_LE(std::abs(img.pixels[i] - w[i]), 2) << "byte " << i;
    }
  }
}

TEST(ImageDecode, CmykJpegIsRefusedClearly) {
  const std::string msg = error_of([] { read_image(image_fixture("cmyk.jpg")); });
  EXPECT_NE(msg.find("cmyk.jpg"), std::string::npos) << msg;
  EXPECT_NE(msg.find("CMYK"), std::string::npos) << msg;
}

TEST(ImageDecode, EveryTruncationIsAnError) {
  std::vector<std::string> names(std::begin(kPngs), std::end(kPngs));
  names.insert(names.end(), std::begin(kJpegs), std::end(kJpegs));
  names.push_back("cmyk.jpg");
  for (const std::string& name : names) {
    const std::string bytes = read_file(image_fixture(name));
    for (std::size_t n = 0; n < bytes.size(); ++n) {
      EXPECT_TRUE(decode_fails(bytes.substr(0, n), name)) << name << " cut to " << n << " bytes";
    }
  }
}

TEST(ImageDecode, GarbageAndCorruptionNeverCrash) {
  EXPECT_TRUE(decode_fails("", "empty.png"));
  EXPECT_TRUE(decode_fails("hello, world", "text.png"));
  EXPECT_NE(error_of([] { decode_image("GIF89a....", "anim.gif"); }).find("neither PNG nor JPEG"),
            std::string::npos);
  const std::string png = read_file(image_fixture("rgb16.png"));
  EXPECT_TRUE(decode_fails(png.substr(0, 8) + std::string(200, 'x'), "sig.png"));
  EXPECT_TRUE(decode_fails(std::string("\xff\xd8\xff", 3) + std::string(200, '\x01'), "soi.jpg"));
  // A flipped bit in IDAT data breaks the chunk CRC.
  std::string bad_crc = png;
  bad_crc[bad_crc.find("IDAT") + 6] ^= 0x10;
  EXPECT_TRUE(decode_fails(bad_crc, "crc.png"));
  // Every single-byte corruption of a PNG or JPEG either decodes or throws kiln::Error.
  for (const char* name : {"palette4_trns.png", "interlaced_rgb8.png", "rgb.jpg", "grey.jpg"}) {
    const std::string good = read_file(image_fixture(name));
    for (std::size_t i = 0; i < good.size(); ++i) {
      for (unsigned char flip : {0x01, 0x80, 0xff}) {
        std::string b = good;
        b[i] = static_cast<char>(static_cast<unsigned char>(b[i]) ^ flip);
        try {
          const Image img = decode_image(b, name);
          EXPECT_EQ(img.pixels.size(),
                    static_cast<std::size_t>(img.width) * img.height * img.channels);
        } catch (const Error&) {
        }
      }
    }
  }
}

TEST(ImageDecode, OversizedHeadersAreRefusedBeforeAllocating) {
  // A PNG whose IHDR claims 100000 x 100000 (40 GB of RGBA) with a valid CRC.
  std::string png = encode_png(random_image(2, 2, 4, 1));
  const std::size_t ihdr = png.find("IHDR");
  put_be32(png, ihdr + 4, 100000);
  put_be32(png, ihdr + 8, 100000);
  put_be32(png, ihdr + 4 + 13, crc32(png, ihdr, ihdr + 4 + 13));
  const auto t0 = std::chrono::steady_clock::now();
  const std::string msg = error_of([&] { decode_image(png, "huge.png"); });
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(2));
  EXPECT_NE(msg.find("huge.png"), std::string::npos) << msg;
  EXPECT_NE(msg.find("100000x100000"), std::string::npos) << msg;
  EXPECT_NE(msg.find("limit"), std::string::npos) << msg;

  // The same for a JPEG's frame header (SOF0: FF C0, length, precision, height, width).
  std::string jpg = read_file(image_fixture("rgb.jpg"));
  const std::size_t sof = jpg.find("\xff\xc0");
  ASSERT_NE(sof, std::string::npos);
  for (std::size_t k : {sof + 5, sof + 7}) {
    jpg[k] = static_cast<char>(0xea);
    jpg[k + 1] = static_cast<char>(0x60);  // 60000
  }
  EXPECT_TRUE(decode_fails(jpg, "huge.jpg"));
  EXPECT_NE(error_of([&] { decode_image(jpg, "huge.jpg"); }).find("60000x60000"),
            std::string::npos);

  // max_pixels is exact: 7 x 5 = 35 pixels.
  const std::string g8 = read_file(image_fixture("grey8.png"));
  EXPECT_TRUE(decode_fails(g8, "grey8.png", 34));
  EXPECT_EQ(decode_image(g8, "grey8.png", 35).width, 7);
  const std::string gj = read_file(image_fixture("grey.jpg"));
  EXPECT_TRUE(decode_fails(gj, "grey.jpg", 63));
  EXPECT_EQ(decode_image(gj, "grey.jpg", 64).width, 8);
}

TEST(ImageEncode, PngRoundTripsAndIsDeterministic) {
  test::TempDir dir;
  for (int c : {1, 3, 4}) {
    const Image img = random_image(13, 7, c, static_cast<std::uint64_t>(c));
    const std::string a = encode_png(img);
    EXPECT_EQ(a, encode_png(img));
    const Image back = decode_image(a, "mem.png");
    EXPECT_EQ(back.width, 13);
    EXPECT_EQ(back.height, 7);
    EXPECT_EQ(back.channels, c);
    EXPECT_EQ(back.pixels, img.pixels);
    const fs::path p = dir / ("img" + std::to_string(c) + ".png");
    write_png(p, img);
    EXPECT_EQ(read_file(p), a);
    EXPECT_EQ(read_image(p).pixels, img.pixels);
  }
  // The same bytes when encoded concurrently.
  const Image img = random_image(64, 48, 3, 9);
  const std::string ref = encode_png(img);
  std::vector<std::string> outs(16);
  oneapi::tbb::parallel_for(0, 16,
                            [&](int i) { outs[static_cast<std::size_t>(i)] = encode_png(img); });
  for (const std::string& o : outs) EXPECT_EQ(o, ref);
  // A smooth image compresses (the filter and deflate are actually used).
  Image smooth{256, 64, 1, {}};
  for (int y = 0; y < 64; ++y) {
    for (int x = 0; x < 256; ++x) smooth.pixels.push_back(static_cast<std::uint8_t>(x));
  }
  EXPECT_LT(encode_png(smooth).size(), smooth.pixels.size() / 10);
}

TEST(ImageEncode, BadImagesAndPaths) {
  EXPECT_THROW(encode_png(Image{}), Error);
  EXPECT_THROW(encode_png(Image{2, 2, 2, std::vector<std::uint8_t>(8)}), Error);
  EXPECT_THROW(encode_png(Image{2, 2, 3, std::vector<std::uint8_t>(11)}), Error);
  test::TempDir dir;
  EXPECT_THROW(write_png(dir / "missing" / "x.png", random_image(2, 2, 1, 1)), Error);
  EXPECT_TRUE(fs::is_empty(dir.path()));
  const std::string msg = error_of([&] { read_image(dir / "nope.png"); });
  EXPECT_NE(msg.find("nope.png"), std::string::npos) << msg;
}

TEST(ImageConvert, Channels) {
  Image rgb{2, 1, 3, {255, 0, 0, 10, 20, 30}};
  const Image grey = convert_channels(rgb, 1);
  EXPECT_EQ(grey.pixels, (std::vector<std::uint8_t>{76, 18}));  // 0.299 * 255; 601 luma
  const Image rgba = convert_channels(rgb, 4);
  EXPECT_EQ(rgba.pixels, (std::vector<std::uint8_t>{255, 0, 0, 255, 10, 20, 30, 255}));
  EXPECT_EQ(convert_channels(rgba, 3).pixels, rgb.pixels);
  EXPECT_EQ(convert_channels(rgba, 1).pixels, grey.pixels);
  Image g{2, 1, 1, {7, 200}};
  EXPECT_EQ(convert_channels(g, 3).pixels, (std::vector<std::uint8_t>{7, 7, 7, 200, 200, 200}));
  EXPECT_EQ(convert_channels(g, 4).pixels,
            (std::vector<std::uint8_t>{7, 7, 7, 255, 200, 200, 200, 255}));
  EXPECT_EQ(convert_channels(convert_channels(g, 3), 1).pixels, g.pixels);
  EXPECT_EQ(convert_channels(g, 1).pixels, g.pixels);
  EXPECT_THROW(convert_channels(g, 2), Error);
  EXPECT_THROW(convert_channels(Image{}, 3), Error);
}

TEST(ImageResize, BilinearAndArea) {
  // 1-d ramp [0, 255] -> 4 pixels: centres at -0.25 (clamped), 0.25, 0.75, 1.25 (clamped).
  const Image up = resize_image(Image{2, 1, 1, {0, 255}}, 4, 1);
  EXPECT_EQ(up.pixels, (std::vector<std::uint8_t>{0, 64, 191, 255}));
  // Shrinking 8x8 -> 2x2 averages 4x4 blocks.
  Image big = random_image(8, 8, 3, 4);
  const Image small = resize_image(big, 2, 2);
  for (int by = 0; by < 2; ++by) {
    for (int bx = 0; bx < 2; ++bx) {
      for (int k = 0; k < 3; ++k) {
        int sum = 0;
        for (int y = 0; y < 4; ++y) {
          for (int x = 0; x < 4; ++x) sum += big.at(by * 4 + y, bx * 4 + x)[k];
        }
        EXPECT_NEAR(small.at(by, bx)[k], sum / 16.0, 0.5 + 1e-4);
      }
    }
  }
  // Constant images stay constant at any scale; 2x shrink is bilinear (pairs averaged).
  Image flat{9, 5, 4, std::vector<std::uint8_t>(9 * 5 * 4, 77)};
  for (auto [w, h] : {std::pair{2, 3}, std::pair{31, 17}, std::pair{4, 5}, std::pair{9, 1}}) {
    const Image r = resize_image(flat, w, h);
    EXPECT_EQ(r.width, w);
    EXPECT_EQ(r.height, h);
    for (auto p : r.pixels) ASSERT_EQ(p, 77);
  }
  const Image half = resize_image(Image{4, 1, 1, {0, 100, 200, 250}}, 2, 1);
  EXPECT_EQ(half.pixels, (std::vector<std::uint8_t>{50, 225}));
  EXPECT_EQ(resize_image(big, 8, 8).pixels, big.pixels);
  EXPECT_THROW(resize_image(big, 0, 3), Error);
}

TEST(ImageTensor, MappingRoundingAndClamping) {
  const Image img = random_image(5, 3, 3, 8);
  const Tensor t = image_to_tensor(img);
  EXPECT_EQ(t.shape(), (Shape{3, 3, 5}));
  EXPECT_FLOAT_EQ(t.to_vector()[1], img.pixels[3] / 255.f);  // channel 0, x = 1
  EXPECT_EQ(tensor_to_image(t).pixels, img.pixels);
  EXPECT_EQ(tensor_to_image(image_to_tensor(img, -1.f, 1.f), -1.f, 1.f).pixels, img.pixels);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const Tensor x = Tensor::from_vector({-0.5f, 0.f, 0.5f, 0.998f, 1.f, 7.f, nan, 0.25f}, {1, 2, 4});
  EXPECT_EQ(tensor_to_image(x).pixels,
            (std::vector<std::uint8_t>{0, 0, 128, 254, 255, 255, 0, 64}));
  EXPECT_EQ(tensor_to_image(x * 2.f - 1.f, -1.f, 1.f).pixels,
            (std::vector<std::uint8_t>{0, 0, 128, 254, 255, 255, 0, 64}));
  EXPECT_EQ(tensor_to_image(x.to(DType::bf16)).channels, 1);
  EXPECT_THROW(tensor_to_image(Tensor::zeros({2, 3})), Error);
  EXPECT_THROW(tensor_to_image(Tensor::zeros({2, 3, 3})), Error);
  EXPECT_THROW(tensor_to_image(Tensor::zeros({3, 3, 3}), 1.f, 1.f), Error);
  EXPECT_THROW(tensor_to_image(Tensor::zeros({3, 3, 3}, DType::s32)), Error);
}

TEST(ImageTensor, BatchToImages) {
  const Tensor batch = test::random_tensor({3, 3, 4, 5}, 2, -1.f, 1.f);
  const std::vector<Image> imgs = batch_to_images(batch, -1.f, 1.f);
  ASSERT_EQ(imgs.size(), 3u);
  for (std::int64_t i = 0; i < 3; ++i) {
    EXPECT_EQ(imgs[static_cast<std::size_t>(i)].pixels,
              tensor_to_image(batch.select(0, i), -1.f, 1.f).pixels);
  }
  // A non-contiguous batch view gives the same images as its copy.
  const Tensor perm = batch.permute({0, 1, 3, 2});
  EXPECT_EQ(batch_to_images(perm, -1.f, 1.f)[1].pixels,
            batch_to_images(perm.contiguous(), -1.f, 1.f)[1].pixels);
  EXPECT_THROW(batch_to_images(Tensor::zeros({3, 4, 5})), Error);
}

TEST(ImageGrid, Geometry) {
  std::vector<Image> tiles;
  for (int i = 0; i < 5; ++i) {
    tiles.push_back(
        Image{3, 2, 1, std::vector<std::uint8_t>(6, static_cast<std::uint8_t>(10 + i))});
  }
  const Image g = make_grid(tiles, 3, 1, 99);
  EXPECT_EQ(g.width, 3 * (3 + 1) + 1);
  EXPECT_EQ(g.height, 2 * (2 + 1) + 1);
  EXPECT_EQ(g.channels, 1);
  for (int i = 0; i < 5; ++i) {
    const int x0 = 1 + (i % 3) * 4, y0 = 1 + (i / 3) * 3;
    for (int y = 0; y < 2; ++y) {
      for (int x = 0; x < 3; ++x) EXPECT_EQ(g.at(y0 + y, x0 + x)[0], 10 + i);
    }
    EXPECT_EQ(g.at(y0, x0 - 1)[0], 99);  // padding left of each tile
  }
  EXPECT_EQ(g.at(0, 0)[0], 99);
  EXPECT_EQ(g.at(4, 9)[0], 99);  // the empty sixth cell
  int pad = 0;
  for (auto p : g.pixels) pad += p == 99;
  EXPECT_EQ(pad, 13 * 7 - 5 * 6);
  // Fewer images than columns: one row just wide enough; no padding.
  const Image row = make_grid({tiles[0], tiles[1]}, 8, 0);
  EXPECT_EQ(row.width, 6);
  EXPECT_EQ(row.height, 2);
  EXPECT_THROW(make_grid({}, 2), Error);
  EXPECT_THROW(make_grid(tiles, 0), Error);
  EXPECT_THROW(make_grid({tiles[0], Image{2, 2, 1, std::vector<std::uint8_t>(4)}}, 2), Error);
  EXPECT_THROW(make_grid(tiles, 2, -1), Error);
}

}  // namespace
}  // namespace kiln
