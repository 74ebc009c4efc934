// linear on one or two rows (decoding), which streams a plain weight instead of running the packed
// GEMM (sdk/src/ops/gemv.cpp): against a double-precision reference for every tail of K, bias,
// bf16 weights (x rounded to bf16 like the GEMM does), activations, threads and gradients.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "kiln/autograd.hpp"
#include "kiln/ops.hpp"
#include "support/test_support.hpp"

namespace kiln {
namespace {

using ops::Act;

// y = x w^T + b in double; x rounded to bf16 first when `round_x`.
std::vector<double> reference(const Tensor& x, const Tensor& w, const Tensor& b, bool round_x) {
  const std::int64_t m = x.size(0), k = x.size(1), n = w.size(0);
  const std::vector<float> xv =
      round_x ? x.to(DType::bf16).to(DType::f32).to_vector() : x.to_vector();
  const std::vector<float> wv = w.to_vector();
  const std::vector<float> bv = b.defined() ? b.to_vector() : std::vector<float>();
  std::vector<double> y(static_cast<std::size_t>(m * n));
  for (std::int64_t r = 0; r < m; ++r) {
    for (std::int64_t j = 0; j < n; ++j) {
      double s = bv.empty() ? 0.0 : bv[static_cast<std::size_t>(j)];
      for (std::int64_t i = 0; i < k; ++i) {
        s += static_cast<double>(xv[static_cast<std::size_t>(r * k + i)]) *
             wv[static_cast<std::size_t>(j * k + i)];
      }
      y[static_cast<std::size_t>(r * n + j)] = s;
    }
  }
  return y;
}

void expect_close(const Tensor& y, const std::vector<double>& ref, double tol,
                  const std::string& what) {
  const std::vector<float> yv = y.to_vector();
  ASSERT_EQ(yv.size(), ref.size()) << what;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    ASSERT_NEAR(yv[i], ref[i], tol * (1.0 + std::fabs(ref[i]))) << what << " at " << i;
  }
}

TEST(LinearSmallM, MatchesDoubleReferenceForEveryTailOfK) {
  NoGradGuard ng;
  for (std::int64_t m : {1, 2, 3}) {  // 3 runs the GEMM: the same answers either way
    for (std::int64_t k : {1, 5, 8, 15, 16, 17, 31, 32, 33, 100, 768}) {
      for (std::int64_t n : {1, 7, 130}) {
        const Tensor x = test::random_tensor({m, k}, 1 + static_cast<std::uint64_t>(k));
        const Tensor w = test::random_tensor({n, k}, 2 + static_cast<std::uint64_t>(n));
        const Tensor b = test::random_tensor({n}, 3);
        const std::string what =
            "m " + std::to_string(m) + " k " + std::to_string(k) + " n " + std::to_string(n);
        expect_close(ops::linear(x, w, b), reference(x, w, b, false), 1e-5, what + " f32");
        expect_close(ops::linear(x, w), reference(x, w, Tensor(), false), 1e-5, what + " no bias");
        const Tensor wb = w.to(DType::bf16);
        expect_close(ops::linear(x, wb, b), reference(x, wb, b, true), 1e-5, what + " bf16");
      }
    }
  }
}

TEST(LinearSmallM, ARowsResultDoesNotDependOnTheOtherRow) {
  NoGradGuard ng;
  const Tensor x = test::random_tensor({2, 200}, 1);
  const Tensor w = test::random_tensor({50, 200}, 2);
  const Tensor b = test::random_tensor({50}, 3);
  for (DType wt : {DType::f32, DType::bf16}) {
    const Tensor wd = w.to(wt);
    const std::vector<float> both = ops::linear(x, wd, b).to_vector();
    for (std::int64_t r = 0; r < 2; ++r) {
      const std::vector<float> one = ops::linear(x.slice(0, r, r + 1), wd, b).to_vector();
      for (std::size_t j = 0; j < one.size(); ++j) {
        ASSERT_EQ(one[j], both[static_cast<std::size_t>(r) * 50 + j])
            << "row " << r << " col " << j;
      }
    }
  }
}

TEST(LinearSmallM, ManyRowsOfWeightSplitAcrossThreads) {
  // 5000 x 256 f32 is 5 MB of weights: many pieces of the parallel loop.
  NoGradGuard ng;
  const Tensor x = test::random_tensor({1, 256}, 1);
  const Tensor w = test::random_tensor({5000, 256}, 2);
  expect_close(ops::linear(x, w), reference(x, w, Tensor(), false), 1e-5, "5000 x 256");
}

TEST(LinearSmallM, ActivationsAndOtherInputLayouts) {
  NoGradGuard ng;
  const Tensor w = test::random_tensor({40, 24}, 2);
  const Tensor b = test::random_tensor({40}, 3);
  const Tensor x = test::random_tensor({1, 24}, 1);
  for (Act act : {Act::relu, Act::gelu_tanh, Act::silu, Act::tanh}) {
    const Tensor fused = ops::linear(x, w, b, {act});
    const Tensor separate = ops::activation(ops::linear(x, w, b), act);
    EXPECT_TRUE(test::all_close(fused, separate, 1e-6f, 1e-6f)) << static_cast<int>(act);
  }
  // A 1-d input, a bf16 input with bf16 weights, a bf16 input with f32 weights (the GEMM rounds
  // the weight then) and a transposed weight view (the GEMM: the kernel streams row-major only).
  const Tensor x1 = test::random_tensor({24}, 4);
  EXPECT_EQ(ops::linear(x1, w, b).shape(), (Shape{40}));
  expect_close(ops::linear(x1, w, b).reshape({1, 40}), reference(x1.reshape({1, 24}), w, b, false),
               1e-5, "1-d x");
  const Tensor xb = x.to(DType::bf16);
  expect_close(ops::linear(xb, w.to(DType::bf16), b), reference(xb, w.to(DType::bf16), b, true),
               1e-5, "bf16 x, bf16 w");
  expect_close(ops::linear(xb, w, b), reference(xb, w.to(DType::bf16), b, true), 1e-5,
               "bf16 x, f32 w");
  const Tensor wt = test::random_tensor({24, 40}, 5).transpose(0, 1);
  expect_close(ops::linear(x, wt, b), reference(x, wt.contiguous(), b, false), 1e-5,
               "transposed weight");
}

TEST(LinearSmallM, GradientsMatchFiniteDifferences) {
  Tensor x = test::random_tensor({1, 6}, 1);
  Tensor w = test::random_tensor({4, 6}, 2);
  Tensor b = test::random_tensor({4}, 3);
  x.set_requires_grad();
  w.set_requires_grad();
  b.set_requires_grad();
  KILN_EXPECT_GRADCHECK(
      [](const TensorList& in) { return ops::linear(in[0], in[1], in[2], {Act::tanh}); },
      {x, w, b});
}

}  // namespace
}  // namespace kiln
