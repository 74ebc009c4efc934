#include "imaging.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "kiln/error.hpp"

namespace kiln::style {
namespace fs = std::filesystem;

namespace {
bool is_image_file(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg";
}
}  // namespace

std::string fmt6g(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

Image load_rgb(const fs::path& path, const std::string& key, std::int64_t max_pixels) {
  KILN_CHECK(fs::is_regular_file(path), "style_transfer: '", key, "' = '", path.string(),
             "' is not a file");
  Image img = read_image(path, max_pixels);
  return img.channels == 3 ? img : convert_channels(img, 3);
}

std::vector<fs::path> list_images(const fs::path& path, const std::string& key) {
  std::vector<fs::path> out;
  if (fs::is_directory(path)) {
    for (const auto& e : fs::directory_iterator(path)) {
      if (e.is_regular_file() && is_image_file(e.path()) &&
          e.path().filename().string().rfind('.', 0) != 0) {
        out.push_back(e.path());
      }
    }
    std::sort(out.begin(), out.end());
    KILN_CHECK(!out.empty(), "style_transfer: '", key, "' = '", path.string(),
               "' is a folder without PNG or JPEG images");
  } else {
    KILN_CHECK(fs::is_regular_file(path), "style_transfer: '", key, "' = '", path.string(),
               "' is neither an image file nor a folder");
    out.push_back(path);
  }
  return out;
}

std::pair<int, int> fit_long_side(int width, int height, std::int64_t long_side) {
  if (long_side <= 0) return {width, height};
  const double s = static_cast<double>(long_side) / std::max(width, height);
  return {std::max(1, static_cast<int>(std::lround(width * s))),
          std::max(1, static_cast<int>(std::lround(height * s)))};
}

Tensor image_batch(const Image& img, int width, int height) {
  if (width > 0 && height > 0 && (width != img.width || height != img.height)) {
    return image_to_tensor(resize_image(img, width, height)).unsqueeze(0);
  }
  return image_to_tensor(img).unsqueeze(0);
}

Image batch_image(const Tensor& x) {
  KILN_CHECK(x.dim() == 4 && x.size(0) == 1, "style_transfer: expected [1, C, H, W], got ",
             shape_str(x.shape()));
  return tensor_to_image(x.select(0, 0).contiguous(), 0.f, 1.f);
}

Tensor resize_bilinear(const Tensor& x_in, int width, int height) {
  const Tensor x = x_in.contiguous();
  const std::int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  if (h == height && w == width) return x.clone();
  Tensor y = Tensor::empty({n, c, height, width});
  const float* src = x.data<float>();
  float* dst = y.data<float>();
  const double sy = static_cast<double>(h) / height, sx = static_cast<double>(w) / width;
  std::vector<std::int64_t> x0(width), x1(width);
  std::vector<float> fx(width);
  for (int j = 0; j < width; ++j) {
    const double p = std::max(0.0, (j + 0.5) * sx - 0.5);
    x0[j] = std::min<std::int64_t>(static_cast<std::int64_t>(p), w - 1);
    x1[j] = std::min<std::int64_t>(x0[j] + 1, w - 1);
    fx[j] = static_cast<float>(p - static_cast<double>(x0[j]));
  }
  for (std::int64_t p = 0; p < n * c; ++p) {
    const float* s = src + p * h * w;
    float* d = dst + p * height * width;
    for (int i = 0; i < height; ++i) {
      const double q = std::max(0.0, (i + 0.5) * sy - 0.5);
      const std::int64_t y0 = std::min<std::int64_t>(static_cast<std::int64_t>(q), h - 1);
      const std::int64_t y1 = std::min<std::int64_t>(y0 + 1, h - 1);
      const float fy = static_cast<float>(q - static_cast<double>(y0));
      for (int j = 0; j < width; ++j) {
        const float a = s[y0 * w + x0[j]] * (1 - fx[j]) + s[y0 * w + x1[j]] * fx[j];
        const float b = s[y1 * w + x0[j]] * (1 - fx[j]) + s[y1 * w + x1[j]] * fx[j];
        d[i * width + j] = a * (1 - fy) + b * fy;
      }
    }
  }
  return y;
}

Tensor transfer_luminance(const Tensor& stylised, const Tensor& content) {
  const Tensor a = stylised.contiguous(), b = content.contiguous();
  KILN_CHECK(a.shape() == b.shape() && a.dim() == 4 && a.size(1) == 3,
             "style_transfer: colour transfer needs two [N, 3, H, W] images of one size, got ",
             shape_str(a.shape()), " and ", shape_str(b.shape()));
  Tensor out = Tensor::empty(a.shape());
  const std::int64_t hw = a.size(2) * a.size(3);
  for (std::int64_t n = 0; n < a.size(0); ++n) {
    const float* s = a.data<float>() + n * 3 * hw;
    const float* c = b.data<float>() + n * 3 * hw;
    float* o = out.data<float>() + n * 3 * hw;
    for (std::int64_t p = 0; p < hw; ++p) {
      const float y = 0.299f * s[p] + 0.587f * s[hw + p] + 0.114f * s[2 * hw + p];
      const float i = 0.596f * c[p] - 0.274f * c[hw + p] - 0.322f * c[2 * hw + p];
      const float q = 0.211f * c[p] - 0.523f * c[hw + p] + 0.312f * c[2 * hw + p];
      o[p] = std::clamp(y + 0.956f * i + 0.621f * q, 0.f, 1.f);
      o[hw + p] = std::clamp(y - 0.272f * i - 0.647f * q, 0.f, 1.f);
      o[2 * hw + p] = std::clamp(y - 1.106f * i + 1.703f * q, 0.f, 1.f);
    }
  }
  return out;
}

void check_memory(const std::string& task, int width, int height, double bytes,
                  std::int64_t memory_limit_mb, const std::string& what) {
  const double mb = bytes / (1024.0 * 1024.0);
  if (mb <= static_cast<double>(memory_limit_mb)) return;
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.0f", mb);
  throw Error(task + ": an output of " + std::to_string(width) + "x" + std::to_string(height) +
              " pixels needs about " + buf + " MB (" + what +
              "), above memory_limit_mb = " + std::to_string(memory_limit_mb) +
              "; lower 'size' (the output's longer side) or raise memory_limit_mb");
}

Tensor roll(const Tensor& x_in, int dy, int dx) {
  const Tensor x = x_in.contiguous();
  const std::int64_t h = x.size(2), w = x.size(3), planes = x.size(0) * x.size(1);
  Tensor y = Tensor::empty(x.shape());
  const float* s = x.data<float>();
  float* d = y.data<float>();
  for (std::int64_t p = 0; p < planes; ++p) {
    for (std::int64_t i = 0; i < h; ++i) {
      const std::int64_t ti = ((i + dy) % h + h) % h;
      for (std::int64_t j = 0; j < w; ++j) {
        const std::int64_t tj = ((j + dx) % w + w) % w;
        d[p * h * w + ti * w + tj] = s[p * h * w + i * w + j];
      }
    }
  }
  return y;
}

}  // namespace kiln::style
