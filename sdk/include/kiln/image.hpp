// 8-bit images: PNG/JPEG decoding, PNG encoding, tensor conversion and grids.
//
//   kiln::Image img = kiln::read_image("photo.jpg");            // HWC, 1/3/4 channels
//   kiln::Tensor x = kiln::image_to_tensor(img);                // [C, H, W] f32 in [0, 1]
//   std::vector<kiln::Image> tiles = kiln::batch_to_images(samples, -1.f, 1.f);  // [N,C,H,W]
//   kiln::write_png("grid.png", kiln::make_grid(tiles, /*columns=*/8));
//
// Decoding refuses images larger than `max_pixels` before allocating (a clear kiln::Error), and
// every malformed file is a kiln::Error naming the path. PNG output is deterministic: the same
// pixels always give the same bytes. Writing is atomic.
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
  int channels = 0;  // 1 (grey), 3 (RGB) or 4 (RGBA)
  std::vector<std::uint8_t> pixels;  // row-major HWC, height * width * channels bytes

  bool empty() const { return pixels.empty(); }
  std::uint8_t* at(int y, int x) {
    return pixels.data() + (static_cast<std::size_t>(y) * width + x) * channels;
  }
  const std::uint8_t* at(int y, int x) const {
    return pixels.data() + (static_cast<std::size_t>(y) * width + x) * channels;
  }
};

// PNG or JPEG, detected from the file's first bytes.
KILN_API Image read_image(const std::filesystem::path& path,
                          std::int64_t max_pixels = 64ll * 1024 * 1024);
KILN_API Image decode_image(const std::string& bytes, const std::string& name,
                            std::int64_t max_pixels = 64ll * 1024 * 1024);
KILN_API std::string encode_png(const Image& img);
KILN_API void write_png(const std::filesystem::path& path, const Image& img);

// Converts to `channels` (1 <-> 3 <-> 4; luminance as ITU-R 601 for RGB -> grey).
KILN_API Image convert_channels(const Image& img, int channels);
// Bilinear resize (area-averaging when shrinking by more than 2x).
KILN_API Image resize_image(const Image& img, int width, int height);

// [C, H, W] f32 with values mapped from [lo, hi] to [0, 255], rounded and clamped.
KILN_API Image tensor_to_image(const Tensor& chw, float lo = 0.f, float hi = 1.f);
// [C, H, W] f32 with pixel values mapped from [0, 255] to [lo, hi].
KILN_API Tensor image_to_tensor(const Image& img, float lo = 0.f, float hi = 1.f);
KILN_API std::vector<Image> batch_to_images(const Tensor& nchw, float lo = 0.f, float hi = 1.f);

// Tiles equally sized images row by row, `columns` per row, with `padding` pixels of
// `pad_value` between and around them.
KILN_API Image make_grid(const std::vector<Image>& images, int columns, int padding = 2,
                         std::uint8_t pad_value = 0);

}  // namespace kiln
