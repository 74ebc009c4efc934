// safetensors (https://github.com/huggingface/safetensors): Kiln's checkpoint format, readable by
// PyTorch / Hugging Face tooling.
//
//   kiln::save_safetensors("model.safetensors", model.state_dict(), {{"kiln.plugin", "vae"}});
//   kiln::Safetensors f = kiln::load_safetensors("model.safetensors");
//   kiln::Tensor w = f.tensors.at("encoder.conv1.weight");
//   std::string plugin = f.metadata.at("kiln.plugin");
//
// Reads F32, BF16, F16 (converted to f32 unless keep_f16), I32, I64, U8, I8. A malformed file
// (truncated, header size that lies, bad JSON, unknown dtype, offsets outside the data,
// overlapping tensors, absurd dimensions) throws kiln::Error naming the file and the problem,
// before allocating anything large. Writing is atomic (temporary file + rename).
#pragma once

#include <filesystem>
#include <map>
#include <string>

#include "kiln/export.hpp"
#include "kiln/tensor.hpp"

namespace kiln {

struct Safetensors {
  TensorMap tensors;
  std::map<std::string, std::string> metadata;
};

struct SafetensorsReadOptions {
  bool keep_f16 = false;  // keep F16 tensors as DType::f16 instead of converting to f32
};

KILN_API Safetensors load_safetensors(const std::filesystem::path& path,
                                      const SafetensorsReadOptions& opts = {});
// Parses a whole file already in memory; `name` is used in error messages.
KILN_API Safetensors parse_safetensors(const std::string& bytes, const std::string& name,
                                       const SafetensorsReadOptions& opts = {});
// Only the header: names, dtypes, shapes and metadata (tensors hold no data: undefined).
KILN_API std::map<std::string, std::string> read_safetensors_metadata(
    const std::filesystem::path& path);

KILN_API void save_safetensors(const std::filesystem::path& path, const TensorMap& tensors,
                               const std::map<std::string, std::string>& metadata = {});
KILN_API std::string serialize_safetensors(const TensorMap& tensors,
                                           const std::map<std::string, std::string>& metadata = {});

}  // namespace kiln
