// Shared helpers for Kiln's tests: finite-difference gradient checks, PyTorch fixtures and
// temporary folders.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "kiln/autograd.hpp"
#include "kiln/ops.hpp"
#include "kiln/safetensors.hpp"
#include "kiln/tensor.hpp"

namespace kiln::test {

// Checks the analytic gradient of L = sum(fn(inputs) * R) (R a fixed random projection) with
// respect to every input that requires grad, against central finite differences computed in
// f32 with step `eps`. Passes when |analytic - numeric| <= atol + rtol * |numeric| element-wise.
// Returns a description of the first mismatch, or "" on success.
std::string gradcheck(const std::function<Tensor(const TensorList&)>& fn, TensorList inputs,
                      float eps = 1e-3f, float atol = 2e-3f, float rtol = 2e-2f);

// EXPECT-style wrapper.
#define KILN_EXPECT_GRADCHECK(...)                                    \
  do {                                                                \
    const std::string kiln_gc = ::kiln::test::gradcheck(__VA_ARGS__); \
    EXPECT_TRUE(kiln_gc.empty()) << kiln_gc;                          \
  } while (0)

// Max element-wise |a - b| / (|b| + 1) style comparison: true when every element satisfies
// |a - b| <= atol + rtol * |b|. `what` names the comparison in the failure message.
::testing::AssertionResult all_close(const Tensor& a, const Tensor& b, float rtol = 1e-4f,
                                     float atol = 1e-5f);

// A fixture file written by tests/fixtures/gen/*.py (run with /usr/bin/python3).
Safetensors load_fixture(const std::string& name);
std::filesystem::path fixture_path(const std::string& name);

// A fresh temporary folder removed when the object dies.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

// A tensor of `shape` with values from a fixed seed, uniform in [lo, hi).
Tensor random_tensor(const Shape& shape, std::uint64_t seed, float lo = -1.f, float hi = 1.f);

}  // namespace kiln::test
