// Image datasets for the vae plugin's tasks.
//
// `data` may name
//   * a folder of IDX files as Debian's dataset-fashion-mnist ships them
//     ({train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]); `split` picks train or test;
//   * an IDX image file ([N, H, W] or [N, C, H, W] u8; labels all 0);
//   * a folder of PNG/JPEG images (class subfolders, or flat).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kiln/data.hpp"
#include "kiln/plugin.hpp"

namespace kiln::vae {

struct DataSpec {
  std::string path;
  std::string split = "train";      // for IDX folders
  std::int64_t exclude_class = -1;  // drop this label (-1: keep all)
  std::int64_t limit = 0;           // first `limit` examples after the exclusion (0: all)
  int channels = 0;                 // image folders: convert to this many channels (0: as is)
  int height = 0, width = 0;        // image folders: resize (0: as is)
};

// True when `dir` holds Fashion-MNIST-style IDX files.
bool is_idx_folder(const std::string& dir);

struct LoadedData {
  std::shared_ptr<const data::ImageDataset> images;  // everything that was read
  std::shared_ptr<const data::Dataset> dataset;      // after exclusion and limit
  std::vector<std::int64_t> indices;                 // dataset row -> images row
  std::string describe() const;
};

LoadedData load_data(const DataSpec& spec);

// The `data`, `split` and `limit` parameters shared by the tasks that read images.
std::vector<ParamSpec> input_params(const std::string& default_split);
DataSpec input_spec(const Params& p);

}  // namespace kiln::vae
