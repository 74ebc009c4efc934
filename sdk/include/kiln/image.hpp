// 8-bit images: PNG/JPEG decoding, PNG encoding, tensor conversion and grids.
//
//   kiln::Image img = kiln::read_image("photo.jpg");            // HWC, 1/3/4 channels
//   kiln::Tensor x = kiln::image_to_tensor(img);                // [C, H, W] f32 in [0, 1]
//   std::vector<kiln::Image> tiles = kiln::batch_to_images(samples, -1.f, 1.f);  // [N,C,H,W]
//   kiln::write_png("grid.png", kiln::make_grid(tiles, /*columns=*/8));
//
// Decoding refuses images larger than `max_pixels` before allocating (a clear kiln::Error), and
// every malformed or truncated file is a kiln::Error naming the path. PNG output is deterministic:
// the same pixels always give the same bytes (8-bit, Paeth filter on every row, zlib level 6,
// Z_FILTERED, no timestamps). Writing is atomic.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "kiln/export.hpp"
#include "kiln/tensor.hpp"

namespace kiln {

struct Image {
  int width = 0;
  int height = 0;
  int channels = 0;                  // 1 (grey), 3 (RGB) or 4 (RGBA)
  std::vector<std::uint8_t> pixels;  // row-major HWC, height * width * channels bytes

  bool empty() const { return pixels.empty(); }
  std::uint8_t* at(int y, int x) {
    return pixels.data() + (static_cast<std::size_t>(y) * width + x) * channels;
  }
  const std::uint8_t* at(int y, int x) const {
    return pixels.data() + (static_cast<std::size_t>(y) * width + x) * channels;
  }
};

// PNG or JPEG, detected from the file's first bytes. PNG: any bit depth and colour type; 16-bit
// samples are rounded to 8 bits ((v * 255 + 32895) >> 16), palettes expanded, transparency
// (alpha channel or tRNS) gives RGBA, grey + alpha gives RGBA, interlacing is undone. JPEG:
// greyscale (1 channel) or YCbCr/RGB (3 channels) with the exact integer IDCT; CMYK is refused.
// Truncated JPEG data and corrupt entropy-coded data are errors (libjpeg would only warn).
KILN_API Image read_image(const std::filesystem::path& path,
                          std::int64_t max_pixels = 64ll * 1024 * 1024);
KILN_API Image decode_image(const std::string& bytes, const std::string& name,
                            std::int64_t max_pixels = 64ll * 1024 * 1024);
KILN_API std::string encode_png(const Image& img);
KILN_API void write_png(const std::filesystem::path& path, const Image& img);

// Converts to `channels` (1 <-> 3 <-> 4): RGB -> grey is ITU-R 601 luma
// (299 R + 587 G + 114 B) / 1000 rounded; grey -> RGB replicates; an added alpha is 255; a
// removed alpha is dropped (not composited).
KILN_API Image convert_channels(const Image& img, int channels);
// Bilinear resize with pixel centres aligned (as torch's interpolate with align_corners=False,
// edges clamped); along an axis shrunk by more than 2x, the average over each output pixel's
// source area instead. Results are rounded to the nearest integer.
KILN_API Image resize_image(const Image& img, int width, int height);

// [C, H, W] floating tensor (C = 1, 3 or 4) to an image: as torchvision's save_image,
// pixel = floor(clamp((x - lo) / (hi - lo), 0, 1) * 255 + 0.5); NaN gives 0.
KILN_API Image tensor_to_image(const Tensor& chw, float lo = 0.f, float hi = 1.f);
// [C, H, W] f32 with pixel values mapped from [0, 255] to [lo, hi]: lo + p / 255 * (hi - lo)
// (exactly p / 255 for [0, 1], as torchvision's ToTensor).
KILN_API Tensor image_to_tensor(const Image& img, float lo = 0.f, float hi = 1.f);
KILN_API std::vector<Image> batch_to_images(const Tensor& nchw, float lo = 0.f, float hi = 1.f);

// Tiles equally sized images row by row, `columns` per row, with `padding` pixels of
// `pad_value` between and around them (in every channel, as torchvision's make_grid). With n
// images: min(columns, n) columns, ceil(n / columns) rows; unused cells hold pad_value.
KILN_API Image make_grid(const std::vector<Image>& images, int columns, int padding = 2,
                         std::uint8_t pad_value = 0);

}  // namespace kiln
