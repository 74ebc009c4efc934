// Datasets and the batch loader.
//
//   auto train = kiln::data::load_fashion_mnist("/usr/share/datasets/fashion-mnist", "train");
//   kiln::data::DataLoader loader(train, {.batch_size = 128, .shuffle = true, .seed = 42});
//   for (int64_t b = 0; b < loader.batches_per_epoch(); ++b) {
//     kiln::data::Batch batch = loader.get(/*epoch=*/0, b);  // {"image": [128,1,28,28], "label": [128]}
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

// An IDX file (the MNIST format; .gz handled): u8/s8/s32/f32/f64 data with its dimensions.
// Every malformed header (bad magic, unknown type code, dims that disagree with the file size,
// absurd dims) is a kiln::Error naming the file.
KILN_API Tensor read_idx(const std::filesystem::path& path);
// Images from an IDX image file ([N, H, W] u8) and optional labels ([N] u8).
KILN_API std::shared_ptr<ImageDataset> load_idx_images(const std::filesystem::path& images,
                                                       const std::filesystem::path& labels);
// Fashion-MNIST (or MNIST) as Debian ships it: `dir` holds {train,t10k}-{images-idx3,labels-idx1}
// -ubyte[.gz]; split is "train" or "test".
KILN_API std::shared_ptr<ImageDataset> load_fashion_mnist(const std::filesystem::path& dir,
                                                          const std::string& split);
// A folder of PNG/JPEG images: class subfolders (sorted, label = position) or a flat folder
// (label 0). Images are converted to `channels` and resized to height x width when those are
// positive (otherwise all images must share the first one's size).
KILN_API std::shared_ptr<ImageDataset> load_image_folder(const std::filesystem::path& dir,
                                                         int channels, int height, int width);
// Fashion-MNIST's class names, in label order.
KILN_API const std::vector<std::string>& fashion_mnist_classes();

}  // namespace kiln::data
