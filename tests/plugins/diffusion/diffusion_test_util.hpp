// Shared by the diffusion plugin's tests: a TaskContext, tiny parameters, a trained tiny model.
#pragma once

#include <filesystem>
#include <map>
#include <string>

#include "kiln/plugin.hpp"
#include "support/test_support.hpp"
#include "tasks.hpp"

namespace diffusion::test {

inline const char* kFashion = "/usr/share/datasets/fashion-mnist";

class Context final : public kiln::TaskContext {
 public:
  explicit Context(std::filesystem::path dir, std::uint64_t seed = 5,
                   kiln::DType precision = kiln::DType::f32)
      : dir_(std::move(dir)), seed_(seed), precision_(precision) {}
  std::string stage_id() const override { return "test"; }
  std::filesystem::path work_dir() const override { return dir_; }
  std::uint64_t seed() const override { return seed_; }
  kiln::DType precision() const override { return precision_; }
  void progress(std::int64_t, std::int64_t, const std::string&) override {}
  bool cancelled() const override { return false; }
  void stream_text(std::string_view) override {}

 private:
  std::filesystem::path dir_;
  std::uint64_t seed_;
  kiln::DType precision_;
};

// Train parameters of a tiny U-Net, resolved against the spec, with `extra` overrides.
inline kiln::Params tiny_train_params(const std::map<std::string, kiln::ParamValue>& extra = {}) {
  std::map<std::string, kiln::ParamValue> v = {{"data", std::string(kFashion)},
                                               {"limit", std::int64_t{64}},
                                               {"val_images", std::int64_t{8}},
                                               {"channels", std::int64_t{8}},
                                               {"channel_mult", std::vector<std::int64_t>{1, 2}},
                                               {"res_blocks", std::int64_t{1}},
                                               {"groups", std::int64_t{4}},
                                               {"timesteps", std::int64_t{20}}};
  for (const auto& [k, x] : extra) v[k] = x;
  return kiln::Params::resolve(train_params(), kiln::Params(v));
}

inline kiln::Params generate_params_with(const std::map<std::string, kiln::ParamValue>& v) {
  return kiln::Params::resolve(generate_params(), kiln::Params(v));
}

}  // namespace diffusion::test
