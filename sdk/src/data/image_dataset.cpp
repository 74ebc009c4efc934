// ImageDataset and its loaders: IDX (MNIST / Fashion-MNIST) and folders of PNG / JPEG images.
#include <algorithm>
#include <cctype>
#include <exception>
#include <filesystem>

#include <oneapi/tbb/parallel_for.h>

#include "kiln/data.hpp"
#include "kiln/image.hpp"
#include "ops/op_util.hpp"

namespace kiln::data {

namespace fs = std::filesystem;

namespace {
Tensor labels_to_s64(const Tensor& labels, const char* what) {
  KILN_CHECK(labels.defined(), what, ": labels are undefined");
  const DType t = labels.dtype();
  KILN_CHECK(t == DType::s64 || t == DType::s32 || t == DType::u8 || t == DType::s8, what,
             ": labels must be integers, got ", dtype_name(t));
  Tensor l = t == DType::s64 ? labels : labels.to(DType::s64);
  return l.contiguous();
}

std::vector<std::string> numbered_classes(const Tensor& labels_s64) {
  std::int64_t max_label = -1;
  const std::int64_t* p = labels_s64.data<std::int64_t>();
  for (std::int64_t i = 0; i < labels_s64.numel(); ++i) max_label = std::max(max_label, p[i]);
  std::vector<std::string> names;
  for (std::int64_t k = 0; k <= max_label; ++k) names.push_back(std::to_string(k));
  return names;
}

bool is_hidden(const fs::path& p) {
  const std::string n = p.filename().string();
  return !n.empty() && n[0] == '.';
}

bool is_image_file(const fs::directory_entry& e) {
  std::error_code ec;
  if (!e.is_regular_file(ec) || is_hidden(e.path())) return false;
  std::string ext = e.path().extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg";
}

// Image files directly in `dir` (recursive: also in its subfolders), sorted by path.
std::vector<fs::path> image_files(const fs::path& dir, bool recursive) {
  std::vector<fs::path> out;
  if (recursive) {
    for (auto it = fs::recursive_directory_iterator(dir); it != fs::recursive_directory_iterator();
         ++it) {
      if (it->is_directory() && is_hidden(it->path())) {
        it.disable_recursion_pending();
        continue;
      }
      if (is_image_file(*it)) out.push_back(it->path());
    }
  } else {
    for (const auto& e : fs::directory_iterator(dir)) {
      if (is_image_file(e)) out.push_back(e.path());
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string size_str(const Image& img) {
  return std::to_string(img.width) + "x" + std::to_string(img.height) + "x" +
         std::to_string(img.channels);
}
}  // namespace

// ------------------------------------------------------------------------------ ImageDataset

ImageDataset::ImageDataset(Tensor images_u8_nchw, Tensor labels_s64,
                           std::vector<std::string> class_names, std::string source)
    : classes_(std::move(class_names)), source_(std::move(source)) {
  const std::string what = "ImageDataset '" + source_ + "'";
  KILN_CHECK(images_u8_nchw.defined(), what, ": images are undefined");
  KILN_CHECK(images_u8_nchw.dtype() == DType::u8, what, ": images must be u8, got ",
             dtype_name(images_u8_nchw.dtype()));
  KILN_CHECK(images_u8_nchw.dim() == 4, what, ": images must be 4-d [N, C, H, W], got shape ",
             shape_str(images_u8_nchw.shape()));
  images_ = images_u8_nchw.contiguous();
  labels_ = labels_to_s64(labels_s64, what.c_str());
  KILN_CHECK(labels_.dim() == 1 && labels_.size(0) == images_.size(0), what,
             ": labels must have shape [", images_.size(0), "] (one per image), got ",
             shape_str(labels_.shape()));
  const std::int64_t* l = labels_.data<std::int64_t>();
  for (std::int64_t i = 0; i < labels_.numel(); ++i) {
    KILN_CHECK(l[i] >= 0, what, ": label ", i, " is negative (", l[i], ")");
    KILN_CHECK(classes_.empty() || l[i] < static_cast<std::int64_t>(classes_.size()), what,
               ": label ", i, " is ", l[i], " but there are only ", classes_.size(), " classes");
  }
}

std::int64_t ImageDataset::size() const {
  return images_.size(0);
}

Batch ImageDataset::get_batch(const std::vector<std::int64_t>& indices) const {
  const std::int64_t n = size();
  for (std::int64_t i : indices) {
    KILN_CHECK(i >= 0 && i < n, "ImageDataset '", source_, "': index ", i, " is out of range [0, ",
               n, ")");
  }
  const std::int64_t b = static_cast<std::int64_t>(indices.size());
  const std::int64_t per = channels() * height() * width();
  Tensor image = Tensor::empty({b, channels(), height(), width()});
  Tensor label = Tensor::empty({b}, DType::s64);
  Tensor index = Tensor::empty({b}, DType::s64);
  const std::uint8_t* src = images_.data<std::uint8_t>();
  const std::int64_t* lab = labels_.data<std::int64_t>();
  float* dst = image.data<float>();
  std::int64_t* lout = label.data<std::int64_t>();
  std::int64_t* iout = index.data<std::int64_t>();
  const std::int64_t grain = std::max<std::int64_t>(1, 32768 / std::max<std::int64_t>(per, 1));
  ops::detail::parallel_range(b, grain, [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r) {
      const std::int64_t i = indices[static_cast<std::size_t>(r)];
      const std::uint8_t* s = src + i * per;
      float* d = dst + r * per;
      for (std::int64_t k = 0; k < per; ++k) d[k] = static_cast<float>(s[k]) / 255.f;
      lout[r] = lab[i];
      iout[r] = i;
    }
  });
  return {{"image", image}, {"label", label}, {"index", index}};
}

std::string ImageDataset::describe() const {
  return source_ + ": " + std::to_string(size()) + " images " + std::to_string(channels()) + "x" +
         std::to_string(height()) + "x" + std::to_string(width()) +
         (classes_.empty() ? std::string() : ", " + std::to_string(classes_.size()) + " classes");
}

// ------------------------------------------------------------------------------ loaders

std::shared_ptr<ImageDataset> load_idx_images(const fs::path& images, const fs::path& labels) {
  Tensor x = read_idx(images);
  KILN_CHECK(x.dtype() == DType::u8, "IDX images '", images.string(), "' must hold u8 pixels, got ",
             dtype_name(x.dtype()));
  KILN_CHECK(x.dim() == 3 || x.dim() == 4, "IDX images '", images.string(),
             "' must be [N, H, W] or [N, C, H, W], got shape ", shape_str(x.shape()));
  if (x.dim() == 3) x = x.reshape({x.size(0), 1, x.size(1), x.size(2)});
  Tensor y;
  std::vector<std::string> classes;
  if (labels.empty()) {
    y = Tensor::zeros({x.size(0)}, DType::s64);
  } else {
    Tensor raw = read_idx(labels);
    KILN_CHECK(raw.dtype() == DType::u8 || raw.dtype() == DType::s8 || raw.dtype() == DType::s32,
               "IDX labels '", labels.string(), "' must be integers, got ",
               dtype_name(raw.dtype()));
    KILN_CHECK(raw.dim() == 1 && raw.size(0) == x.size(0), "IDX labels '", labels.string(),
               "' have shape ", shape_str(raw.shape()), " but '", images.string(), "' holds ",
               x.size(0), " images; expected [", x.size(0), "]");
    y = labels_to_s64(raw, "load_idx_images");
    classes = numbered_classes(y);
  }
  return std::make_shared<ImageDataset>(x, y, std::move(classes), images.string());
}

std::shared_ptr<ImageDataset> load_fashion_mnist(const fs::path& dir, const std::string& split) {
  std::string prefix;
  if (split == "train") {
    prefix = "train";
  } else if (split == "test" || split == "t10k") {
    prefix = "t10k";
  } else {
    throw Error("Fashion-MNIST: unknown split '" + split + "'; use \"train\" or \"test\"");
  }
  auto find = [&](const std::string& kind) {
    const std::string base = prefix + "-" + kind + "-ubyte";
    std::vector<fs::path> tried;
    for (const std::string& n : {base + ".gz", base}) {
      const fs::path p = dir / n;
      std::error_code ec;
      if (fs::is_regular_file(p, ec)) return p;
      tried.push_back(p);
    }
    throw Error("Fashion-MNIST " + split + ": cannot find the " + kind + " file; looked for '" +
                tried[0].string() + "' and '" + tried[1].string() +
                "' (on Debian: apt install dataset-fashion-mnist, files in "
                "/usr/share/datasets/fashion-mnist)");
  };
  const fs::path images = find("images-idx3");
  const fs::path labels = find("labels-idx1");
  auto raw = load_idx_images(images, labels);
  return std::make_shared<ImageDataset>(raw->images(), raw->labels(), fashion_mnist_classes(),
                                        "Fashion-MNIST " + split + " (" + dir.string() + ")");
}

std::shared_ptr<ImageDataset> load_image_folder(const fs::path& dir, int channels, int height,
                                                int width) {
  const std::string name = dir.string();
  std::error_code ec;
  KILN_CHECK(fs::is_directory(dir, ec), "image folder '", name,
             "' does not exist or is not a folder");
  KILN_CHECK(channels == 0 || channels == 1 || channels == 3 || channels == 4, "image folder '",
             name, "': channels must be 1, 3 or 4 (or 0 to keep the first image's), got ",
             channels);
  KILN_CHECK((height > 0) == (width > 0), "image folder '", name,
             "': give both height and width to resize, or neither; got ", height, "x", width);

  // Class subfolders (sorted) or a flat folder.
  std::vector<fs::path> class_dirs;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.is_directory() && !is_hidden(e.path())) class_dirs.push_back(e.path());
  }
  std::sort(class_dirs.begin(), class_dirs.end());
  std::vector<fs::path> files;
  std::vector<std::int64_t> labels;
  std::vector<std::string> classes;
  const std::vector<fs::path> loose = image_files(dir, false);
  if (class_dirs.empty()) {
    KILN_CHECK(!loose.empty(), "image folder '", name,
               "' holds no PNG or JPEG images (looked for *.png, *.jpg, *.jpeg)");
    files = loose;
    labels.assign(files.size(), 0);
    classes.push_back(dir.filename().empty() ? dir.parent_path().filename().string()
                                             : dir.filename().string());
  } else {
    KILN_CHECK(loose.empty(), "image folder '", name, "' has class subfolders and also ",
               loose.size(), " images outside them (e.g. '",
               loose.empty() ? "" : loose[0].filename().string(),
               "'); move those into a class folder");
    for (const fs::path& cd : class_dirs) {
      const std::vector<fs::path> f = image_files(cd, true);
      KILN_CHECK(!f.empty(), "image folder '", name, "': class folder '", cd.filename().string(),
                 "' holds no PNG or JPEG images");
      for (const fs::path& p : f) {
        files.push_back(p);
        labels.push_back(static_cast<std::int64_t>(classes.size()));
      }
      classes.push_back(cd.filename().string());
    }
  }

  // The first image fixes channels and size when they are not given.
  auto prepare = [&](Image img) {
    if (channels > 0) img = convert_channels(img, channels);
    if (height > 0) img = resize_image(img, width, height);
    return img;
  };
  const Image first = prepare(read_image(files[0]));
  const std::int64_t n = static_cast<std::int64_t>(files.size());
  const std::int64_t c = first.channels, h = first.height, w = first.width;
  Tensor images = Tensor::empty({n, c, h, w}, DType::u8);
  std::uint8_t* out = images.data<std::uint8_t>();
  std::vector<std::exception_ptr> errors(files.size());
  auto store = [&](std::int64_t i, const Image& img) {
    std::uint8_t* d = out + i * c * h * w;
    for (std::int64_t k = 0; k < c; ++k) {
      for (std::int64_t p = 0; p < h * w; ++p)
        d[k * h * w + p] = img.pixels[static_cast<std::size_t>(p * c + k)];
    }
  };
  store(0, first);
  oneapi::tbb::parallel_for(std::int64_t{1}, n, [&](std::int64_t i) {
    try {
      Image img = read_image(files[static_cast<std::size_t>(i)]);
      if (channels == 0 && img.channels != c) img = convert_channels(img, static_cast<int>(c));
      img = prepare(std::move(img));
      KILN_CHECK(img.width == w && img.height == h, "image folder '", name, "': '",
                 files[static_cast<std::size_t>(i)].string(), "' is ", size_str(img), " but '",
                 files[0].string(), "' is ", size_str(first),
                 "; give a height and width to resize them all");
      store(i, img);
    } catch (...) {
      errors[static_cast<std::size_t>(i)] = std::current_exception();
    }
  });
  for (const auto& e : errors) {
    if (e) std::rethrow_exception(e);  // the first failing file in sorted order
  }
  return std::make_shared<ImageDataset>(images, Tensor::from_ints(labels, {n}), std::move(classes),
                                        name);
}

const std::vector<std::string>& fashion_mnist_classes() {
  static const std::vector<std::string> names = {"T-shirt/top", "Trouser",   "Pullover", "Dress",
                                                 "Coat",        "Sandal",    "Shirt",    "Sneaker",
                                                 "Bag",         "Ankle boot"};
  return names;
}

}  // namespace kiln::data
