// Images: format detection, channel conversion, resizing, tensor conversion and grids.
#include "kiln/image.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "io/image_codec.hpp"
#include "kiln/autograd.hpp"
#include "kiln/file_io.hpp"
#include "ops/op_util.hpp"

namespace kiln {

namespace detail {

void check_image(const Image& img, const char* what) {
  KILN_CHECK(img.width > 0 && img.height > 0, what, ": the image is empty (", img.width, "x",
             img.height, ")");
  KILN_CHECK(img.channels == 1 || img.channels == 3 || img.channels == 4, what,
             ": images have 1, 3 or 4 channels, got ", img.channels);
  const std::size_t want =
      static_cast<std::size_t>(img.width) * static_cast<std::size_t>(img.height) * img.channels;
  KILN_CHECK(img.pixels.size() == want, what, ": a ", img.width, "x", img.height, "x", img.channels,
             " image needs ", want, " bytes of pixels, got ", img.pixels.size());
}

void check_pixel_budget(std::int64_t width, std::int64_t height, std::int64_t max_pixels,
                        const std::string& name, const char* format) {
  KILN_CHECK(width > 0 && height > 0, format, " '", name, "' has an empty size ", width, "x",
             height);
  KILN_CHECK(width <= max_pixels && height <= max_pixels && width * height <= max_pixels, format,
             " '", name, "' is ", width, "x", height, " = ", width * height,
             " pixels, more than the limit of ", max_pixels,
             " (raise max_pixels if the image is genuine)");
  // Image holds int sizes.
  KILN_CHECK(width <= 0x7fffffff && height <= 0x7fffffff, format, " '", name, "' is too large");
}

}  // namespace detail

namespace {
std::string first_bytes(const std::string& bytes) {
  std::string out;
  char buf[4];
  for (std::size_t i = 0; i < std::min<std::size_t>(bytes.size(), 8); ++i) {
    std::snprintf(buf, sizeof(buf), "%02x", static_cast<unsigned char>(bytes[i]));
    out += (i > 0 ? " " : "") + std::string(buf);
  }
  return out;
}

std::uint8_t to_u8(float v) {  // v already scaled to [0, 255]: round half up, clamp, NaN -> 0
  if (!(v > 0.f)) return 0;
  if (v >= 255.f) return 255;
  return static_cast<std::uint8_t>(v + 0.5f);
}

// Resampling weights along one axis: for output o, taps [start[o], start[o+1]) of (index, weight).
struct Axis {
  std::vector<std::size_t> start;
  std::vector<int> index;
  std::vector<float> weight;
};

Axis make_axis(int src, int dst) {
  Axis a;
  a.start.push_back(0);
  const double scale = static_cast<double>(src) / dst;
  for (int o = 0; o < dst; ++o) {
    if (scale > 2.0) {
      // Area average over the source interval [o * scale, (o + 1) * scale).
      const double lo = o * scale, hi = (o + 1) * scale;
      const int first = static_cast<int>(std::floor(lo));
      const int last = std::min(src - 1, static_cast<int>(std::ceil(hi)) - 1);
      for (int i = first; i <= last; ++i) {
        const double cover = std::min<double>(hi, i + 1) - std::max<double>(lo, i);
        if (cover <= 0) continue;
        a.index.push_back(i);
        a.weight.push_back(static_cast<float>(cover / scale));
      }
    } else {
      // Bilinear with pixel centres aligned (align_corners = false), clamped at the edges.
      const double centre = std::clamp((o + 0.5) * scale - 0.5, 0.0, static_cast<double>(src - 1));
      const int i0 = static_cast<int>(std::floor(centre));
      const int i1 = std::min(i0 + 1, src - 1);
      const float w1 = static_cast<float>(centre - i0);
      a.index.push_back(i0);
      a.weight.push_back(1.f - w1);
      if (i1 != i0 && w1 > 0.f) {
        a.index.push_back(i1);
        a.weight.push_back(w1);
      }
    }
    a.start.push_back(a.index.size());
  }
  return a;
}
}  // namespace

Image decode_image(const std::string& bytes, const std::string& name, std::int64_t max_pixels) {
  KILN_CHECK(max_pixels > 0, "decode_image: max_pixels must be > 0, got ", max_pixels);
  KILN_CHECK(!bytes.empty(), "image '", name, "' is empty (0 bytes)");
  if (detail::is_png(bytes)) return detail::decode_png(bytes, name, max_pixels);
  if (detail::is_jpeg(bytes)) return detail::decode_jpeg(bytes, name, max_pixels);
  throw Error("image '" + name + "' is neither PNG nor JPEG (it starts with bytes " +
              first_bytes(bytes) + ")");
}

Image read_image(const std::filesystem::path& path, std::int64_t max_pixels) {
  return decode_image(read_file(path), path.string(), max_pixels);
}

std::string encode_png(const Image& img) {
  return detail::encode_png_bytes(img);
}

void write_png(const std::filesystem::path& path, const Image& img) {
  write_file_atomic(path, encode_png(img));
}

Image convert_channels(const Image& img, int channels) {
  detail::check_image(img, "convert_channels");
  KILN_CHECK(channels == 1 || channels == 3 || channels == 4,
             "convert_channels: target must be 1, 3 or 4 channels, got ", channels);
  if (channels == img.channels) return img;
  Image out;
  out.width = img.width;
  out.height = img.height;
  out.channels = channels;
  const std::size_t n = static_cast<std::size_t>(img.width) * img.height;
  out.pixels.resize(n * channels);
  const std::uint8_t* s = img.pixels.data();
  std::uint8_t* d = out.pixels.data();
  const int sc = img.channels;
  for (std::size_t i = 0; i < n; ++i, s += sc, d += channels) {
    if (channels == 1) {
      // ITU-R 601 luma (alpha dropped).
      d[0] = static_cast<std::uint8_t>((299u * s[0] + 587u * s[1] + 114u * s[2] + 500u) / 1000u);
    } else {
      if (sc == 1) {
        d[0] = d[1] = d[2] = s[0];
      } else {
        d[0] = s[0];
        d[1] = s[1];
        d[2] = s[2];
      }
      if (channels == 4) d[3] = sc == 4 ? s[3] : 255;
    }
  }
  return out;
}

Image resize_image(const Image& img, int width, int height) {
  detail::check_image(img, "resize_image");
  KILN_CHECK(width > 0 && height > 0, "resize_image: target size must be positive, got ", width,
             "x", height);
  if (width == img.width && height == img.height) return img;
  const int c = img.channels;
  const Axis ax = make_axis(img.width, width), ay = make_axis(img.height, height);
  // Horizontal pass into f32 rows [src height][width * c], then vertical pass.
  const std::size_t row = static_cast<std::size_t>(width) * c;
  std::vector<float> tmp(static_cast<std::size_t>(img.height) * row);
  ops::detail::parallel_range(img.height, 16, [&](std::int64_t y0, std::int64_t y1) {
    for (std::int64_t y = y0; y < y1; ++y) {
      const std::uint8_t* src = img.pixels.data() + static_cast<std::size_t>(y) * img.width * c;
      float* dst = tmp.data() + static_cast<std::size_t>(y) * row;
      for (int x = 0; x < width; ++x) {
        for (int k = 0; k < c; ++k) {
          float acc = 0.f;
          for (std::size_t t = ax.start[x]; t < ax.start[x + 1]; ++t) {
            acc += ax.weight[t] * src[static_cast<std::size_t>(ax.index[t]) * c + k];
          }
          dst[static_cast<std::size_t>(x) * c + k] = acc;
        }
      }
    }
  });
  Image out;
  out.width = width;
  out.height = height;
  out.channels = c;
  out.pixels.resize(static_cast<std::size_t>(height) * row);
  ops::detail::parallel_range(height, 16, [&](std::int64_t y0, std::int64_t y1) {
    std::vector<float> acc(row);
    for (std::int64_t y = y0; y < y1; ++y) {
      std::fill(acc.begin(), acc.end(), 0.f);
      for (std::size_t t = ay.start[y]; t < ay.start[y + 1]; ++t) {
        const float w = ay.weight[t];
        const float* src = tmp.data() + static_cast<std::size_t>(ay.index[t]) * row;
        for (std::size_t i = 0; i < row; ++i) acc[i] += w * src[i];
      }
      std::uint8_t* dst = out.pixels.data() + static_cast<std::size_t>(y) * row;
      for (std::size_t i = 0; i < row; ++i) dst[i] = to_u8(acc[i]);
    }
  });
  return out;
}

Image tensor_to_image(const Tensor& chw, float lo, float hi) {
  ops::detail::require_dim(chw, 3, "tensor_to_image", "the tensor", "[C, H, W]");
  KILN_CHECK(std::isfinite(lo) && std::isfinite(hi) && hi > lo,
             "tensor_to_image: the value range must have hi > lo, got [", lo, ", ", hi, "]");
  const std::int64_t c = chw.size(0), h = chw.size(1), w = chw.size(2);
  KILN_CHECK(c == 1 || c == 3 || c == 4, "tensor_to_image: expected 1, 3 or 4 channels, got shape ",
             shape_str(chw.shape()));
  KILN_CHECK(h > 0 && w > 0 && h <= 0x7fffffff && w <= 0x7fffffff,
             "tensor_to_image: bad image size in shape ", shape_str(chw.shape()));
  NoGradGuard no_grad;
  const Tensor x = ops::detail::as_f32(chw.detach(), "tensor_to_image", "the tensor");
  Image img;
  img.width = static_cast<int>(w);
  img.height = static_cast<int>(h);
  img.channels = static_cast<int>(c);
  img.pixels.resize(static_cast<std::size_t>(c * h * w));
  const float* p = x.data<float>();
  const float range = hi - lo;
  ops::detail::parallel_range(h, 32, [&](std::int64_t y0, std::int64_t y1) {
    for (std::int64_t y = y0; y < y1; ++y) {
      for (std::int64_t k = 0; k < c; ++k) {
        const float* src = p + (k * h + y) * w;
        std::uint8_t* dst = img.pixels.data() + static_cast<std::size_t>(y * w * c + k);
        for (std::int64_t xx = 0; xx < w; ++xx) {
          // As torchvision's save_image: clamp((x - lo) / (hi - lo), 0, 1) * 255 + 0.5, truncated.
          dst[xx * c] = to_u8((src[xx] - lo) / range * 255.f);
        }
      }
    }
  });
  return img;
}

Tensor image_to_tensor(const Image& img, float lo, float hi) {
  detail::check_image(img, "image_to_tensor");
  KILN_CHECK(std::isfinite(lo) && std::isfinite(hi), "image_to_tensor: the value range [", lo, ", ",
             hi, "] must be finite");
  const std::int64_t c = img.channels, h = img.height, w = img.width;
  Tensor t = Tensor::empty({c, h, w});
  float* p = t.data<float>();
  const float range = hi - lo;
  for (std::int64_t k = 0; k < c; ++k) {
    for (std::int64_t y = 0; y < h; ++y) {
      const std::uint8_t* src = img.pixels.data() + static_cast<std::size_t>(y * w * c + k);
      float* dst = p + (k * h + y) * w;
      for (std::int64_t x = 0; x < w; ++x)
        dst[x] = lo + static_cast<float>(src[x * c]) / 255.f * range;
    }
  }
  return t;
}

std::vector<Image> batch_to_images(const Tensor& nchw, float lo, float hi) {
  ops::detail::require_dim(nchw, 4, "batch_to_images", "the batch", "[N, C, H, W]");
  NoGradGuard no_grad;
  const Tensor x = ops::detail::as_f32(nchw.detach(), "batch_to_images", "the batch");
  std::vector<Image> out(static_cast<std::size_t>(x.size(0)));
  ops::detail::parallel_range(x.size(0), 1, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t i = b; i < e; ++i)
      out[static_cast<std::size_t>(i)] = tensor_to_image(x.select(0, i), lo, hi);
  });
  return out;
}

Image make_grid(const std::vector<Image>& images, int columns, int padding,
                std::uint8_t pad_value) {
  KILN_CHECK(!images.empty(), "make_grid: no images given");
  KILN_CHECK(columns > 0, "make_grid: columns must be > 0, got ", columns);
  KILN_CHECK(padding >= 0, "make_grid: padding must be >= 0, got ", padding);
  const Image& first = images.front();
  detail::check_image(first, "make_grid");
  for (std::size_t i = 1; i < images.size(); ++i) {
    const Image& im = images[i];
    KILN_CHECK(
        im.width == first.width && im.height == first.height && im.channels == first.channels,
        "make_grid: image ", i, " is ", im.width, "x", im.height, "x", im.channels,
        " but image 0 is ", first.width, "x", first.height, "x", first.channels,
        "; all tiles must have the same size and channels");
    detail::check_image(im, "make_grid");
  }
  const std::int64_t n = static_cast<std::int64_t>(images.size());
  const std::int64_t cols = std::min<std::int64_t>(columns, n);
  const std::int64_t rows = (n + cols - 1) / cols;
  const std::int64_t gw = cols * (first.width + padding) + padding;
  const std::int64_t gh = rows * (first.height + padding) + padding;
  KILN_CHECK(gw <= 0x7fffffff && gh <= 0x7fffffff && gw * gh <= (std::int64_t{1} << 31),
             "make_grid: the grid would be ", gw, "x", gh, " pixels, too large");
  Image grid;
  grid.width = static_cast<int>(gw);
  grid.height = static_cast<int>(gh);
  grid.channels = first.channels;
  grid.pixels.assign(static_cast<std::size_t>(gw * gh * first.channels), pad_value);
  const std::size_t tile_row = static_cast<std::size_t>(first.width) * first.channels;
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int64_t x0 = padding + (i % cols) * (first.width + padding);
    const std::int64_t y0 = padding + (i / cols) * (first.height + padding);
    const Image& im = images[static_cast<std::size_t>(i)];
    for (int y = 0; y < first.height; ++y) {
      std::copy_n(im.at(y, 0), tile_row, grid.at(static_cast<int>(y0 + y), static_cast<int>(x0)));
    }
  }
  return grid;
}

}  // namespace kiln
