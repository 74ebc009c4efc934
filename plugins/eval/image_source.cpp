#include "image_source.hpp"

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>

#include "kiln/data.hpp"
#include "kiln/error.hpp"
#include "kiln/image.hpp"

namespace kiln_eval {

namespace fs = std::filesystem;
using kiln::Tensor;
using json = nlohmann::json;

bool ImageSet::any_label() const {
  return std::any_of(labels.begin(), labels.end(), [](std::int64_t l) { return l >= 0; });
}

std::int64_t parse_label(const std::string& s) {
  if (!s.empty() && s.size() < 6 &&
      std::all_of(s.begin(), s.end(), [](unsigned char c) { return c >= '0' && c <= '9'; })) {
    return std::stoll(s);
  }
  const auto& names = kiln::data::fashion_mnist_classes();
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (names[i] == s) return static_cast<std::int64_t>(i);
  }
  return -1;
}

namespace {

// u8 [N, C, H, W] (or [N, H, W]) -> f32 [N, 1, 28, 28] in [0, 1]; other sizes and colours are
// converted image by image.
Tensor to_input(const Tensor& u8, std::int64_t keep) {
  const Tensor t = u8.dim() == 3 ? u8.unsqueeze(1) : u8;
  const std::int64_t n = std::min(keep, t.size(0));
  const std::int64_t c = t.size(1), h = t.size(2), w = t.size(3);
  Tensor out = Tensor::empty({n, 1, 28, 28});
  const Tensor src = t.contiguous();
  const std::uint8_t* p = src.data<std::uint8_t>();
  float* o = out.data<float>();
  for (std::int64_t i = 0; i < n; ++i) {
    if (c == 1 && h == 28 && w == 28) {
      for (std::int64_t k = 0; k < 784; ++k) o[i * 784 + k] = p[i * 784 + k] / 255.f;
      continue;
    }
    kiln::Image im;
    im.width = static_cast<int>(w);
    im.height = static_cast<int>(h);
    im.channels = static_cast<int>(c);
    im.pixels.resize(static_cast<std::size_t>(c * h * w));
    for (std::int64_t y = 0; y < h; ++y)
      for (std::int64_t x = 0; x < w; ++x)
        for (std::int64_t ch = 0; ch < c; ++ch)
          im.pixels[(y * w + x) * c + ch] = p[((i * c + ch) * h + y) * w + x];
    kiln::Image g = kiln::convert_channels(im, 1);
    if (g.width != 28 || g.height != 28) g = kiln::resize_image(g, 28, 28);
    for (std::int64_t k = 0; k < 784; ++k) o[i * 784 + k] = g.pixels[k] / 255.f;
  }
  return out;
}

void read_image_into(const fs::path& file, float* out) {
  kiln::Image im = kiln::read_image(file);
  if (im.channels != 1) im = kiln::convert_channels(im, 1);
  if (im.width != 28 || im.height != 28) im = kiln::resize_image(im, 28, 28);
  for (std::int64_t k = 0; k < 784; ++k) out[k] = im.pixels[k] / 255.f;
}

ImageSet from_manifests(const std::vector<fs::path>& files, std::int64_t max_images,
                        const std::string& key) {
  struct Entry {
    std::int64_t index;
    fs::path file;
    std::int64_t label;
  };
  std::vector<Entry> entries;
  for (const fs::path& m : files) {
    std::ifstream in(m);
    KILN_CHECK(in.good(), "eval: cannot read the manifest '", m.string(), "' ('", key, "')");
    std::string line;
    std::int64_t line_no = 0;
    while (std::getline(in, line)) {
      ++line_no;
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      json j;
      try {
        j = json::parse(line);
      } catch (const std::exception&) {
        throw kiln::Error("eval: line " + std::to_string(line_no) + " of the manifest '" +
                          m.string() + "' is not JSON; rerun the generate stage ('" + key + "')");
      }
      KILN_CHECK(j.is_object() && j.contains("path") && j["path"].is_string(), "eval: line ",
                 line_no, " of the manifest '", m.string(), "' has no \"path\" ('", key, "')");
      Entry e{j.value("index", static_cast<std::int64_t>(entries.size())),
              m.parent_path() / j["path"].get<std::string>(), -1};
      if (j.contains("info") && j["info"].is_object() && j["info"].contains("label")) {
        const json& l = j["info"]["label"];
        e.label = l.is_number_integer() ? l.get<std::int64_t>()
                  : l.is_string()       ? parse_label(l.get<std::string>())
                                        : -1;
      }
      entries.push_back(std::move(e));
    }
  }
  std::sort(entries.begin(), entries.end(),
            [](const Entry& a, const Entry& b) { return a.index < b.index; });
  if (max_images > 0 && static_cast<std::int64_t>(entries.size()) > max_images)
    entries.resize(static_cast<std::size_t>(max_images));
  ImageSet s;
  const auto n = static_cast<std::int64_t>(entries.size());
  s.images = Tensor::empty({n, 1, 28, 28});
  for (std::int64_t i = 0; i < n; ++i) {
    const Entry& e = entries[static_cast<std::size_t>(i)];
    KILN_CHECK(e.file.extension() == ".png" || e.file.extension() == ".jpg" ||
                   e.file.extension() == ".jpeg",
               "eval: the manifest entry '", e.file.string(),
               "' is not an image; evaluate needs an image generator's output ('", key, "')");
    read_image_into(e.file, s.images.data<float>() + i * 784);
    s.labels.push_back(e.label);
    s.sources.push_back(e.file.string());
  }
  s.description = std::to_string(n) + " images listed in " + files.front().string();
  return s;
}

ImageSet from_dataset(const kiln::data::ImageDataset& ds, std::int64_t max_images, bool use_labels,
                      const std::string& source) {
  const std::int64_t n = max_images > 0 ? std::min(max_images, ds.size()) : ds.size();
  ImageSet s;
  s.images = to_input(ds.images(), n);
  const std::vector<std::int64_t> labels = ds.labels().to_int_vector();
  for (std::int64_t i = 0; i < n; ++i) {
    s.labels.push_back(use_labels ? labels[i] : -1);
    s.sources.push_back(source + "#" + std::to_string(i));
  }
  s.description = std::to_string(n) + " images of " + source;
  return s;
}

bool has_file(const fs::path& dir, const std::string& stem) {
  return fs::exists(dir / stem) || fs::exists(dir / (stem + ".gz"));
}

}  // namespace

ImageSet load_image_set(const fs::path& path, std::int64_t max_images, const std::string& key) {
  std::error_code ec;
  KILN_CHECK(fs::exists(path, ec), "eval: '", key, "' = '", path.string(), "' does not exist");
  ImageSet s;
  if (fs::is_regular_file(path)) {
    if (path.extension() == ".jsonl") {
      s = from_manifests({path}, max_images, key);
    } else {
      // An IDX image file; labels from the labels-idx1 file beside it, if any.
      fs::path labels;
      const std::string name = path.filename().string();
      if (const auto at = name.find("images-idx3"); at != std::string::npos) {
        const fs::path sibling =
            path.parent_path() / (name.substr(0, at) + "labels-idx1" + name.substr(at + 11));
        if (fs::exists(sibling)) labels = sibling;
      }
      auto ds = kiln::data::load_idx_images(path, labels);
      s = from_dataset(*ds, max_images, !labels.empty(), path.string());
    }
  } else {
    std::vector<fs::path> manifests;
    if (fs::exists(path / "manifest.jsonl")) {
      manifests.push_back(path / "manifest.jsonl");
    } else {
      for (const auto& e : fs::directory_iterator(path)) {
        const std::string n = e.path().filename().string();
        if (n.rfind("manifest.shard-", 0) == 0 && e.path().extension() == ".jsonl")
          manifests.push_back(e.path());
      }
      std::sort(manifests.begin(), manifests.end());
    }
    if (!manifests.empty()) {
      s = from_manifests(manifests, max_images, key);
    } else if (has_file(path, "t10k-images-idx3-ubyte")) {
      auto ds = kiln::data::load_fashion_mnist(path, "test");
      s = from_dataset(*ds, max_images, true, path.string() + " (test split)");
    } else {
      auto ds = kiln::data::load_image_folder(path, 1, 28, 28);
      std::vector<std::int64_t> class_label;
      bool named = ds->class_names().size() > 1;
      for (const std::string& c : ds->class_names()) {
        class_label.push_back(parse_label(c));
        named = named && class_label.back() >= 0;
      }
      s = from_dataset(*ds, max_images, false, path.string());
      if (named) {
        const std::vector<std::int64_t> l = ds->labels().to_int_vector();
        for (std::size_t i = 0; i < s.labels.size(); ++i) s.labels[i] = class_label[l[i]];
      }
    }
  }
  KILN_CHECK(s.images.size(0) > 0, "eval: '", key, "' = '", path.string(), "' holds no images");
  return s;
}

}  // namespace kiln_eval
