#include "data.hpp"

#include <filesystem>

namespace kiln::vae {

namespace fs = std::filesystem;

bool is_idx_folder(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return false;
  for (const char* n : {"train-images-idx3-ubyte", "train-images-idx3-ubyte.gz",
                        "t10k-images-idx3-ubyte", "t10k-images-idx3-ubyte.gz"}) {
    if (fs::is_regular_file(fs::path(dir) / n, ec)) return true;
  }
  return false;
}

std::string LoadedData::describe() const {
  return dataset->describe();
}

LoadedData load_data(const DataSpec& spec) {
  std::error_code ec;
  KILN_CHECK(fs::exists(spec.path, ec), "vae: the data path '", spec.path,
             "' does not exist; give a folder of Fashion-MNIST IDX files, an IDX image file "
             "or a folder of images");
  LoadedData out;
  if (is_idx_folder(spec.path)) {
    out.images = data::load_fashion_mnist(spec.path, spec.split);
  } else if (fs::is_regular_file(spec.path, ec)) {
    out.images = data::load_idx_images(spec.path, "");
  } else {
    out.images = data::load_image_folder(spec.path, spec.channels, spec.height, spec.width);
  }
  const std::vector<std::int64_t> labels = out.images->labels().to_int_vector();
  for (std::size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] == spec.exclude_class) continue;
    if (spec.limit > 0 && static_cast<std::int64_t>(out.indices.size()) >= spec.limit) continue;
    out.indices.push_back(static_cast<std::int64_t>(i));
  }
  if (spec.exclude_class >= 0) {
    const auto n_classes = static_cast<std::int64_t>(out.images->class_names().size());
    KILN_CHECK(spec.exclude_class < std::max<std::int64_t>(n_classes, 1), "vae: exclude_class ",
               spec.exclude_class, " is not a class of '", spec.path, "' (it has ", n_classes,
               " classes, 0 to ", n_classes - 1, ")");
  }
  KILN_CHECK(!out.indices.empty(), "vae: no examples left in '", spec.path, "'",
             spec.exclude_class >= 0
                 ? " after excluding class " + std::to_string(spec.exclude_class)
                 : std::string());
  if (static_cast<std::int64_t>(out.indices.size()) == out.images->size()) {
    out.dataset = out.images;
  } else {
    out.dataset = data::subset(out.images, out.indices);
  }
  return out;
}

std::vector<ParamSpec> input_params(const std::string& default_split) {
  return {
      ParamSpec::path("data",
                      "Images: a folder of Fashion-MNIST IDX files, an IDX image file, or a "
                      "folder of PNG/JPEG images"),
      ParamSpec::choice("split", default_split, {"train", "test"},
                        "Which split of an IDX folder to read"),
      ParamSpec::integer("limit", 0, "Use only the first this many images (0: all)")
          .range(0, 100000000),
  };
}

DataSpec input_spec(const Params& p) {
  DataSpec s;
  s.path = p.string("data");
  s.split = p.string("split");
  s.limit = p.integer("limit");
  return s;
}

}  // namespace kiln::vae
