#include <gtest/gtest.h>

#include "kiln/ops.hpp"
#include "support/test_support.hpp"

namespace kiln {
namespace {

// Reference product in double.
Tensor naive_matmul(const Tensor& a, const Tensor& b) {
  const std::int64_t m = a.size(0), k = a.size(1), n = b.size(1);
  const auto va = a.contiguous().to_vector(), vb = b.contiguous().to_vector();
  std::vector<float> c(static_cast<std::size_t>(m * n));
  for (std::int64_t i = 0; i < m; ++i)
    for (std::int64_t j = 0; j < n; ++j) {
      double acc = 0;
      for (std::int64_t p = 0; p < k; ++p) acc += double(va[i * k + p]) * vb[p * n + j];
      c[static_cast<std::size_t>(i * n + j)] = static_cast<float>(acc);
    }
  return Tensor::from_vector(c, {m, n});
}

TEST(Matmul, MatchesNaiveIncludingTransposedViews) {
  Tensor a = test::random_tensor({5, 7}, 1);
  Tensor b = test::random_tensor({7, 3}, 2);
  EXPECT_TRUE(test::all_close(ops::matmul(a, b), naive_matmul(a, b), 1e-5f, 1e-5f));
  Tensor bt = test::random_tensor({3, 7}, 3);
  EXPECT_TRUE(test::all_close(ops::matmul(a, bt.transpose(0, 1)),
                              naive_matmul(a, bt.transpose(0, 1)), 1e-5f, 1e-5f));
}

TEST(Matmul, BatchedBroadcastAndVectors) {
  Tensor a = test::random_tensor({2, 3, 4, 5}, 1);
  Tensor b = test::random_tensor({3, 5, 6}, 2);
  Tensor c = ops::matmul(a, b);
  ASSERT_EQ(c.shape(), (Shape{2, 3, 4, 6}));
  Tensor c12 = c.select(0, 1).select(0, 2);
  EXPECT_TRUE(test::all_close(c12, naive_matmul(a.select(0, 1).select(0, 2), b.select(0, 2)), 1e-5f,
                              1e-5f));
  EXPECT_EQ(ops::matmul(test::random_tensor({5}, 1), test::random_tensor({5, 2}, 2)).shape(),
            (Shape{2}));
  EXPECT_THROW(ops::matmul(a, test::random_tensor({4, 6}, 1)), Error);
}

TEST(Matmul, Gradients) {
  Tensor a = test::random_tensor({2, 3, 4}, 1).set_requires_grad();
  Tensor b = test::random_tensor({4, 5}, 2).set_requires_grad();
  KILN_EXPECT_GRADCHECK([](const TensorList& in) { return ops::matmul(in[0], in[1]); }, {a, b});
  Tensor c = test::random_tensor({2, 5, 4}, 3).set_requires_grad();
  KILN_EXPECT_GRADCHECK(
      [](const TensorList& in) { return ops::matmul(in[0], in[1].transpose(1, 2)); }, {a, c});
}

TEST(Linear, FusedBiasAndActivation) {
  Tensor x = test::random_tensor({3, 2, 6}, 1).set_requires_grad();
  Tensor w = test::random_tensor({4, 6}, 2).set_requires_grad();
  Tensor b = test::random_tensor({4}, 3).set_requires_grad();
  Tensor y = ops::linear(x, w, b);
  Tensor ref = ops::matmul(x, w.transpose(0, 1)) + b;
  EXPECT_TRUE(test::all_close(y, ref, 1e-5f, 1e-6f));
  for (ops::Act act : {ops::Act::none, ops::Act::relu, ops::Act::tanh, ops::Act::gelu_tanh}) {
    KILN_EXPECT_GRADCHECK(
        [act](const TensorList& in) { return ops::linear(in[0], in[1], in[2], {.act = act}); },
        {x, w, b});
  }
  EXPECT_THROW(ops::linear(x, test::random_tensor({4, 5}, 1)), Error);
}

TEST(Linear, Bf16WeightsCloseToF32) {
  Tensor x = test::random_tensor({8, 64}, 1);
  Tensor w = test::random_tensor({32, 64}, 2);
  Tensor y32 = ops::linear(x, w);
  Tensor y16 = ops::linear(x, w.to(DType::bf16));
  EXPECT_EQ(y16.dtype(), DType::f32);
  EXPECT_TRUE(test::all_close(y16, y32, 2e-2f, 5e-2f));
}

TEST(Linear, PackedWeightCacheSeesInPlaceUpdates) {
  Tensor x = test::random_tensor({2, 8}, 1);
  Tensor w = test::random_tensor({3, 8}, 2);
  Tensor y1 = ops::linear(x, w);
  w.fill_(0.f);  // bumps the version: the packed copy must be refreshed
  EXPECT_EQ(ops::sum(ops::abs(ops::linear(x, w))).item(), 0.f);
  (void)y1;
}

}  // namespace
}  // namespace kiln
