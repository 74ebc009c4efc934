// PNG and JPEG codecs behind kiln/image.hpp (internal).
#pragma once

#include <cstdint>
#include <string>

#include "kiln/image.hpp"

namespace kiln::detail {

// Throws kiln::Error naming `what` unless img is a well-formed 1/3/4-channel image.
void check_image(const Image& img, const char* what);
// "<w>x<h>" with the pixel count, for messages about max_pixels.
void check_pixel_budget(std::int64_t width, std::int64_t height, std::int64_t max_pixels,
                        const std::string& name, const char* format);

bool is_png(const std::string& bytes);
bool is_jpeg(const std::string& bytes);
// Decoders: 8-bit output with 1 (grey), 3 (RGB) or 4 (RGBA) channels. Malformed or truncated
// input, and images above max_pixels (checked from the header, before any pixel buffer exists),
// throw kiln::Error naming `name`.
Image decode_png(const std::string& bytes, const std::string& name, std::int64_t max_pixels);
Image decode_jpeg(const std::string& bytes, const std::string& name, std::int64_t max_pixels);
std::string encode_png_bytes(const Image& img);

}  // namespace kiln::detail
