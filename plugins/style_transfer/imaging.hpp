// Image helpers of the style_transfer plugin: loading, sizes, float resizing, colour transfer, the
// memory bound, rolling (jitter).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "kiln/image.hpp"
#include "kiln/tensor.hpp"

namespace kiln::style {

// The largest image (in pixels) any task decodes; larger files are refused before decoding.
inline constexpr std::int64_t kMaxDecodePixels = 256ll * 1024 * 1024;
// A number as "%.6g" (for metrics text and table cells).
std::string fmt6g(double v);

// PNG or JPEG as RGB (grey replicated, alpha dropped). `key` names the parameter in errors.
// Refuses images above `max_pixels` before decoding them.
Image load_rgb(const std::filesystem::path& path, const std::string& key, std::int64_t max_pixels);
// The images of `path`: the file itself, or the PNG/JPEG files of a folder (sorted by name).
std::vector<std::filesystem::path> list_images(const std::filesystem::path& path,
                                               const std::string& key);

// (width, height) with the longer side `long_side` and the aspect ratio kept (0: unchanged).
std::pair<int, int> fit_long_side(int width, int height, std::int64_t long_side);

// RGB image -> [1, 3, H, W] f32 in [0, 1], resized to (width, height) when they differ.
Tensor image_batch(const Image& img, int width = 0, int height = 0);
// [1, 3, H, W] (values clamped to [0, 1]) -> 8-bit RGB image.
Image batch_image(const Tensor& x);

// Bilinear resize of [N, C, H, W] f32 (align_corners = false, as torch's interpolate), not
// differentiable; for coarse-to-fine upsampling and octaves.
Tensor resize_bilinear(const Tensor& x, int width, int height);

// Keeps the luminance (Y of YIQ) of `stylised` and takes the chrominance (I, Q) of `content`
// (same size, [1, 3, H, W]): the style's textures in the content's original colours.
Tensor transfer_luminance(const Tensor& stylised, const Tensor& content);

// Throws kiln::Error when `bytes` exceeds memory_limit_mb, naming the size, the estimate and the
// limit: "<task>: an output of WxH pixels needs about X MB (what), above memory_limit_mb = L".
void check_memory(const std::string& task, int width, int height, double bytes,
                  std::int64_t memory_limit_mb, const std::string& what);

// Circular shift of [N, C, H, W] by (dy, dx) pixels (plain copy, not recorded).
Tensor roll(const Tensor& x, int dy, int dx);

}  // namespace kiln::style
