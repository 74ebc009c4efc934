// Datasets and the batch loader.
//
//   auto train = kiln::data::load_fashion_mnist("/usr/share/datasets/fashion-mnist", "train");
//   kiln::data::DataLoader loader(train, {.batch_size = 128, .shuffle = true, .seed = 42});
//   for (int64_t b = 0; b < loader.batches_per_epoch(); ++b) {
//     kiln::data::Batch batch = loader.get(/*epoch=*/0, b);  // {"image": [128,1,28,28], "label":
//     [128]}
//   }
//
// The order of epoch e is a pure function of (seed, e), so batch (e, b) can be recomputed after a
// restart: that is how training resumes exactly. The loader prefetches the next batches on TBB
// while the caller computes.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kiln/export.hpp"
#include "kiln/tensor.hpp"

namespace kiln::data {

using Batch = TensorMap;

class KILN_API Dataset {
 public:
  virtual ~Dataset() = default;
  virtual std::int64_t size() const = 0;
  // The examples at `indices`, stacked along a new first dimension. Must be deterministic and
  // safe to call from several threads at once.
  virtual Batch get_batch(const std::vector<std::int64_t>& indices) const = 0;
  virtual std::string describe() const { return "dataset of " + std::to_string(size()); }
};

// A view of another dataset restricted to `indices` (in that order).
KILN_API std::shared_ptr<Dataset> subset(std::shared_ptr<const Dataset> base,
                                         std::vector<std::int64_t> indices);
// Deterministic split: a shuffled (seeded) `fraction` goes to the second dataset.
KILN_API std::pair<std::shared_ptr<Dataset>, std::shared_ptr<Dataset>> random_split(
    std::shared_ptr<const Dataset> base, double fraction, std::uint64_t seed);

struct LoaderOptions {
  std::int64_t batch_size = 64;
  bool shuffle = true;
  bool drop_last = true;
  std::uint64_t seed = 0;
  int prefetch = 2;  // batches prepared ahead on TBB
};

class KILN_API DataLoader {
 public:
  DataLoader(std::shared_ptr<const Dataset> dataset, const LoaderOptions& opts);
  ~DataLoader();
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  std::int64_t batches_per_epoch() const;
  // Indices of batch b of epoch e: a pure function of (seed, e, b).
  std::vector<std::int64_t> batch_indices(std::int64_t epoch, std::int64_t batch) const;
  // Batch b of epoch e; batches requested in order are prefetched.
  Batch get(std::int64_t epoch, std::int64_t batch);
  const Dataset& dataset() const { return *dataset_; }
  const LoaderOptions& options() const { return opts_; }

 private:
  struct Impl;
  std::shared_ptr<const Dataset> dataset_;
  LoaderOptions opts_;
  std::unique_ptr<Impl> impl_;
};

// ---------------------------------------------------------------- images with class labels
// Images are held as u8 and delivered as {"image": [B, C, H, W] f32 in [0, 1],
// "label": [B] s64, "index": [B] s64}.
class KILN_API ImageDataset : public Dataset {
 public:
  ImageDataset(Tensor images_u8_nchw, Tensor labels_s64, std::vector<std::string> class_names,
               std::string source);
  std::int64_t size() const override;
  Batch get_batch(const std::vector<std::int64_t>& indices) const override;
  std::string describe() const override;
  const Tensor& images() const { return images_; }  // u8 [N, C, H, W]
  const Tensor& labels() const { return labels_; }  // s64 [N]
  const std::vector<std::string>& class_names() const { return classes_; }
  std::int64_t channels() const { return images_.size(1); }
  std::int64_t height() const { return images_.size(2); }
  std::int64_t width() const { return images_.size(3); }

 private:
  Tensor images_, labels_;
  std::vector<std::string> classes_;
  std::string source_;
};

// An IDX file (the MNIST format), plain or gzip (recognised by content, not by name), as a tensor
// of its dimensions: u8 -> u8, s8 -> s8, s16 and s32 -> s32, f32 -> f32, f64 -> f32. Every
// malformed file (bad magic, unknown type code, 0 or more than 8 dims, dims that disagree with
// the data, absurd dims, truncated or corrupt gzip) is a kiln::Error naming the file; sizes are
// checked before anything large is allocated.
KILN_API Tensor read_idx(const std::filesystem::path& path);
// Images from an IDX image file ([N, H, W] or [N, C, H, W] u8) and labels ([N] integers; an
// empty path gives all-zero labels and no class names). Class names are "0" .. "<max label>".
KILN_API std::shared_ptr<ImageDataset> load_idx_images(const std::filesystem::path& images,
                                                       const std::filesystem::path& labels);
// Fashion-MNIST (or MNIST) as Debian ships it: `dir` holds {train,t10k}-{images-idx3,labels-idx1}
// -ubyte[.gz]; split is "train" or "test" ("t10k" accepted). Class names are
// fashion_mnist_classes(). A missing file is an error listing the names looked for.
KILN_API std::shared_ptr<ImageDataset> load_fashion_mnist(const std::filesystem::path& dir,
                                                          const std::string& split);
// A folder of PNG/JPEG images (*.png, *.jpg, *.jpeg, any case): class subfolders (sorted by name,
// label = position, images found recursively inside each) or a flat folder (label 0, one class
// named after the folder). Names starting with '.' are skipped. Images are converted to
// `channels` (1, 3 or 4; 0 = the first image's) and resized to height x width when both are
// positive (otherwise all images must share the first one's size). Images within a class are in
// path order; decoding runs in parallel. Errors (no images, an empty class folder, images both
// beside and inside class folders, a bad image, sizes that differ) name the folder or file.
KILN_API std::shared_ptr<ImageDataset> load_image_folder(const std::filesystem::path& dir,
                                                         int channels, int height, int width);
// Fashion-MNIST's class names, in label order.
KILN_API const std::vector<std::string>& fashion_mnist_classes();

}  // namespace kiln::data
