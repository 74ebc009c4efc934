// Where the eval plugin reads images from: a generate stage's folder (its manifest.jsonl, or the
// shard manifests, give the files and the requested labels), a manifest file, a folder of
// PNG/JPEG images (flat, or class subfolders named by label number or Fashion-MNIST class
// name), a Fashion-MNIST folder (its test split), or an IDX image file (labels from the matching
// labels-idx1 file beside it when there is one). Images are made grey and 28x28.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "kiln/tensor.hpp"

namespace kiln_eval {

struct ImageSet {
  kiln::Tensor images;               // [N, 1, 28, 28] f32 in [0, 1]
  std::vector<std::int64_t> labels;  // per image; -1 where unknown
  std::vector<std::string> sources;  // file path, or "<file>#<index>" for IDX images
  std::string description;           // for messages: what was read
  bool any_label() const;
};

// max_images > 0 keeps the first max_images (in manifest / file / index order).
ImageSet load_image_set(const std::filesystem::path& path, std::int64_t max_images,
                        const std::string& key);

// Label number of a class name ("3", or a Fashion-MNIST name such as "Dress"); -1 if neither.
std::int64_t parse_label(const std::string& s);

}  // namespace kiln_eval
