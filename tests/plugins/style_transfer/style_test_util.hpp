// Helpers for the style_transfer tests: a TaskContext, task creation with resolved parameters,
// the shipped images, and writing small images.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <memory>
#include <string>

#include "common.hpp"
#include "kiln/image.hpp"
#include "kiln/plugin.hpp"
#include "support/test_support.hpp"

namespace kiln::style::test {
namespace fs = std::filesystem;

inline const fs::path kAssets = KILN_STYLE_ASSETS;
inline const std::string kContent = (kAssets / "content" / "landscape.png").string();
inline const std::string kStyle = (kAssets / "style" / "waves.png").string();

class Ctx final : public TaskContext {
 public:
  explicit Ctx(fs::path dir, std::uint64_t seed = 1) : dir_(std::move(dir)), seed_(seed) {}
  std::string stage_id() const override { return "test"; }
  fs::path work_dir() const override { return dir_; }
  std::uint64_t seed() const override { return seed_; }
  DType precision() const override { return DType::f32; }
  void progress(std::int64_t d, std::int64_t, const std::string&) override { last_progress = d; }
  bool cancelled() const override { return false; }
  void stream_text(std::string_view) override {}
  std::int64_t last_progress = 0;

 private:
  fs::path dir_;
  std::uint64_t seed_;
};

// Parameters of `spec` completed with its defaults.
inline Params resolve(const TaskSpec& spec, std::map<std::string, ParamValue> given) {
  return Params::resolve(spec.params, Params(std::move(given)));
}

// Small settings that keep a random net cheap.
inline std::map<std::string, ParamValue> tiny_net() {
  return {{"random_levels", std::int64_t{2}}, {"random_width", std::int64_t{8}}};
}

inline std::map<std::string, ParamValue> merge(std::map<std::string, ParamValue> a,
                                               const std::map<std::string, ParamValue>& b) {
  for (const auto& [k, v] : b) a[k] = v;
  return a;
}

inline const Artifact* find(const std::vector<Artifact>& arts, ArtifactKind kind) {
  for (const auto& a : arts) {
    if (a.kind == kind) return &a;
  }
  return nullptr;
}

// Expects `fn` to throw kiln::Error whose message contains every one of `parts`.
template <typename Fn>
void expect_error(Fn fn, std::initializer_list<std::string> parts) {
  try {
    fn();
    ADD_FAILURE() << "no kiln::Error thrown";
  } catch (const Error& e) {
    const std::string m = e.what();
    for (const auto& p : parts) EXPECT_NE(m.find(p), std::string::npos) << m << "\n  lacks: " << p;
  }
}

}  // namespace kiln::style::test
