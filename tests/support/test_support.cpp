#include "support/test_support.hpp"

#include <unistd.h>

#include <cmath>
#include <sstream>

#include "kiln/random.hpp"

namespace kiln::test {
namespace fs = std::filesystem;

Tensor random_tensor(const Shape& shape, std::uint64_t seed, float lo, float hi) {
  Generator g(seed);
  return Tensor::rand(shape, g, lo, hi);
}

std::string gradcheck(const std::function<Tensor(const TensorList&)>& fn, TensorList inputs,
                      float eps, float atol, float rtol) {
  // Analytic gradients.
  for (Tensor& t : inputs) {
    if (t.defined() && t.requires_grad()) t.zero_grad();
  }
  Tensor out = fn(inputs);
  Tensor proj = random_tensor(out.shape(), 12345, -1.f, 1.f);
  Tensor loss = ops::sum(ops::mul(out, proj));
  loss.backward();
  const std::vector<float> pv = proj.to_vector();
  auto project = [&](const Tensor& y) {
    const std::vector<float> v = y.to_vector();
    double acc = 0;
    for (std::size_t j = 0; j < v.size(); ++j) acc += static_cast<double>(v[j]) * pv[j];
    return acc;
  };
  std::ostringstream report;
  for (std::size_t k = 0; k < inputs.size(); ++k) {
    Tensor& x = inputs[k];
    if (!x.defined() || !x.requires_grad()) continue;
    Tensor analytic = x.grad();
    if (!analytic.defined()) analytic = Tensor::zeros(x.shape());
    const std::vector<float> a = analytic.to_vector();
    float* p = x.data<float>();
    for (std::int64_t i = 0; i < x.numel(); ++i) {
      const float orig = p[i];
      double lp, lm;
      {
        NoGradGuard ng;
        p[i] = orig + eps;
        x.bump_version();
        lp = project(fn(inputs));
        p[i] = orig - eps;
        x.bump_version();
        lm = project(fn(inputs));
        p[i] = orig;
        x.bump_version();
      }
      const double numeric = (lp - lm) / (2.0 * eps);
      const double diff = std::fabs(a[static_cast<std::size_t>(i)] - numeric);
      if (!(diff <= atol + rtol * std::fabs(numeric))) {
        report << "input " << k << " " << shape_str(x.shape()) << " element " << i << ": analytic "
               << a[static_cast<std::size_t>(i)] << " vs numeric " << numeric;
        return report.str();
      }
    }
  }
  return "";
}

::testing::AssertionResult all_close(const Tensor& a, const Tensor& b, float rtol, float atol) {
  if (a.shape() != b.shape()) {
    return ::testing::AssertionFailure()
           << "shapes differ: " << shape_str(a.shape()) << " vs " << shape_str(b.shape());
  }
  const std::vector<float> va = a.to_vector(), vb = b.to_vector();
  double worst = 0;
  std::size_t worst_i = 0;
  for (std::size_t i = 0; i < va.size(); ++i) {
    const double d = std::fabs(static_cast<double>(va[i]) - vb[i]);
    const double excess = d - (atol + rtol * std::fabs(vb[i]));
    if (excess > worst || std::isnan(va[i]) != std::isnan(vb[i])) {
      worst = std::isnan(excess) ? 1e30 : excess;
      worst_i = i;
    }
  }
  if (worst > 0) {
    return ::testing::AssertionFailure()
           << "element " << worst_i << " of " << shape_str(a.shape()) << ": " << va[worst_i]
           << " vs expected " << vb[worst_i] << " (rtol " << rtol << ", atol " << atol << ")";
  }
  return ::testing::AssertionSuccess();
}

fs::path fixture_path(const std::string& name) {
  return fs::path(KILN_FIXTURE_DIR) / name;
}

Safetensors load_fixture(const std::string& name) {
  return load_safetensors(fixture_path(name));
}

TempDir::TempDir() {
  static int counter = 0;
  path_ = fs::temp_directory_path() /
          ("kiln-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
  fs::remove_all(path_);
  fs::create_directories(path_);
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

}  // namespace kiln::test
