// linear's per-call fast path: the memo of packed weights (keyed by the weight's storage, offset,
// strides and version), the field-level argument test in front of the full checks, and the
// bias / input layouts it accepts without copies. Results are compared with matmul + add.
#include <gtest/gtest.h>

#include <vector>

#include "kiln/ops.hpp"
#include "support/test_support.hpp"

namespace kiln {
namespace {

Tensor reference(const Tensor& x, const Tensor& w, const Tensor& b) {
  Tensor y = ops::matmul(x.to(DType::f32), w.to(DType::f32).transpose(0, 1));
  return b.defined() ? y + b.to(DType::f32) : y;
}

TEST(LinearFastPath, FreshWeightsOfOneShapeAreNeverConfused) {
  // Weights created and freed in turn usually reuse the same heap addresses; each result must
  // still come from its own weight.
  Tensor x = test::random_tensor({2, 16}, 1);
  for (std::uint64_t seed = 10; seed < 30; ++seed) {
    Tensor w = test::random_tensor({16, 16}, seed);
    EXPECT_TRUE(test::all_close(ops::linear(x, w), reference(x, w, Tensor()), 1e-5f, 1e-5f))
        << "seed " << seed;
  }
}

TEST(LinearFastPath, ManyLiveWeightsOfOneShapeInTurn) {
  // More weights of one shape than the memo holds, used round after round.
  Tensor x = test::random_tensor({3, 8}, 1);
  std::vector<Tensor> ws;
  for (std::uint64_t i = 0; i < 11; ++i) ws.push_back(test::random_tensor({5, 8}, 100 + i));
  for (int round = 0; round < 3; ++round) {
    for (const Tensor& w : ws) {
      EXPECT_TRUE(test::all_close(ops::linear(x, w), reference(x, w, Tensor()), 1e-5f, 1e-5f));
    }
  }
}

TEST(LinearFastPath, ViewsOfOneStorageAreDistinctWeights) {
  Tensor x = test::random_tensor({2, 6}, 1);
  Tensor big = test::random_tensor({12, 6}, 2);
  Tensor top = big.slice(0, 0, 4), bottom = big.slice(0, 4, 8);  // same storage, other offsets
  Tensor strided = big.slice(0, 0, 8, 2);                        // same shape, other strides
  Tensor transposed = test::random_tensor({6, 4}, 3).transpose(0, 1);
  for (int round = 0; round < 2; ++round) {
    for (const Tensor& w : {top, bottom, strided, transposed}) {
      EXPECT_TRUE(test::all_close(ops::linear(x, w), reference(x, w, Tensor()), 1e-5f, 1e-5f));
    }
  }
}

TEST(LinearFastPath, InPlaceWritesThroughAnotherViewRefreshThePackedCopy) {
  Tensor x = test::random_tensor({2, 8}, 1);
  Tensor big = test::random_tensor({6, 8}, 2);
  Tensor w = big.slice(0, 0, 3);
  Tensor y1 = ops::linear(x, w);
  EXPECT_TRUE(test::all_close(y1, reference(x, w, Tensor()), 1e-5f, 1e-5f));
  big.slice(0, 1, 2).fill_(0.5f);  // writes row 1 of w through a different view
  EXPECT_TRUE(test::all_close(ops::linear(x, w), reference(x, w, Tensor()), 1e-5f, 1e-5f));
}

TEST(LinearFastPath, BiasAndInputLayouts) {
  Tensor w = test::random_tensor({4, 6}, 2);
  Tensor b_strided = test::random_tensor({8}, 3).slice(0, 0, 8, 2);  // [4], stride 2
  Tensor b_bf16 = test::random_tensor({4}, 4).to(DType::bf16);
  Tensor x_t = test::random_tensor({6, 3}, 5).transpose(0, 1);  // [3, 6], not contiguous
  Tensor x_3d = test::random_tensor({2, 3, 6}, 6);
  EXPECT_TRUE(
      test::all_close(ops::linear(x_t, w, b_strided), reference(x_t, w, b_strided), 1e-5f, 1e-5f));
  EXPECT_TRUE(
      test::all_close(ops::linear(x_t, w, b_bf16), reference(x_t, w, b_bf16), 1e-5f, 1e-5f));
  Tensor y3 = ops::linear(x_3d, w, b_strided);
  ASSERT_EQ(y3.shape(), (Shape{2, 3, 4}));
  EXPECT_TRUE(test::all_close(y3.reshape({6, 4}), reference(x_3d.reshape({6, 6}), w, b_strided),
                              1e-5f, 1e-5f));
}

TEST(LinearFastPath, GradientsWithTheFastPathWarm) {
  // The same shapes once without and once with grad: the cached primitive and packed weight
  // from the no-grad call must not change what backward sees.
  Tensor x = test::random_tensor({3, 5}, 1);
  Tensor w = test::random_tensor({4, 5}, 2);
  Tensor b = test::random_tensor({4}, 3);
  {
    NoGradGuard ng;
    (void)ops::linear(x, w, b);
  }
  x.set_requires_grad();
  w.set_requires_grad();
  b.set_requires_grad();
  KILN_EXPECT_GRADCHECK([](const TensorList& in) { return ops::linear(in[0], in[1], in[2]); },
                        {x, w, b});
}

TEST(LinearFastPath, BadArgumentsStillGetTheFullMessages) {
  Tensor w = test::random_tensor({4, 6}, 2);
  auto message = [](const auto& fn) {
    try {
      fn();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message([&] { ops::linear(Tensor(), w); }).find("linear: x is undefined"),
            std::string::npos);
  EXPECT_NE(message([&] { ops::linear(Tensor::scalar(1.f), w); }).find("at least one dimension"),
            std::string::npos);
  EXPECT_NE(message([&] {
              ops::linear(test::random_tensor({2, 5}, 1), w);
            }).find("x has 5 features (shape [2, 5]) but the weight expects 6"),
            std::string::npos);
  EXPECT_NE(message([&] {
              ops::linear(test::random_tensor({2, 6}, 1), w.reshape({24}));
            }).find("weight must be 2-d"),
            std::string::npos);
  EXPECT_NE(message([&] {
              ops::linear(test::random_tensor({2, 6}, 1), w, test::random_tensor({5}, 3));
            }).find("bias must be [4], got [5]"),
            std::string::npos);
  EXPECT_NE(message([&] {
              ops::linear(Tensor::zeros({2, 6}, DType::s32), w);
            }).find("must be f32 or bf16, got s32"),
            std::string::npos);
}

}  // namespace
}  // namespace kiln
