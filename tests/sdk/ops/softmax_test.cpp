#include <gtest/gtest.h>

#include <cmath>

#include "kiln/dnnl_interop.hpp"
#include "sdk/ops/parity.hpp"

namespace kiln {
namespace {

TEST(Softmax, MatchesPyTorchOverEachDim) {
  for (int d = 0; d < 3; ++d) {
    test::expect_parity("softmax_" + std::to_string(d), {"x"},
                        [d](const TensorList& in) { return ops::softmax(in[0], d); });
    test::expect_parity("log_softmax_" + std::to_string(d), {"x"},
                        [d](const TensorList& in) { return ops::log_softmax(in[0], d); });
  }
  test::expect_parity("softmax_wide", {"x"},
                      [](const TensorList& in) { return ops::softmax(in[0]); });
}

TEST(Softmax, GradientsOnOddShapes) {
  Tensor x = test::random_tensor({3, 5, 3}, 11, -2.f, 2.f).set_requires_grad();
  for (std::int64_t d : {0, 1, -1}) {
    KILN_EXPECT_GRADCHECK([d](const TensorList& in) { return ops::softmax(in[0], d); }, {x});
    KILN_EXPECT_GRADCHECK([d](const TensorList& in) { return ops::log_softmax(in[0], d); }, {x});
  }
  // A strided (transposed) input.
  Tensor y = test::random_tensor({4, 3}, 12).set_requires_grad();
  KILN_EXPECT_GRADCHECK(
      [](const TensorList& in) { return ops::log_softmax(in[0].transpose(0, 1), 1); }, {y});
}

TEST(Softmax, StableForLargeInputsAndNormalised) {
  Tensor x = Tensor::from_vector({1000.f, 1001.f, 999.f, -1000.f, 0.f, 1000.f}, {2, 3});
  const auto p = ops::softmax(x, 1).to_vector();
  const auto lp = ops::log_softmax(x, 1).to_vector();
  for (float v : p) EXPECT_TRUE(std::isfinite(v));
  for (float v : lp) EXPECT_TRUE(std::isfinite(v));
  EXPECT_NEAR(p[0] + p[1] + p[2], 1.f, 1e-6);
  EXPECT_NEAR(p[4], 0.f, 1e-6);
  EXPECT_NEAR(lp[5], 0.f, 1e-4);  // inputs of magnitude 1000 have an ulp of 6e-5
  EXPECT_NEAR(lp[3], -2000.f, 1e-2);
  // A 0-d tensor is a one-element distribution.
  EXPECT_EQ(ops::softmax(Tensor::scalar(3.f)).item(), 1.f);
  EXPECT_EQ(ops::softmax(Tensor::scalar(3.f)).dim(), 0);
}

TEST(Softmax, BlockedLayoutAlongChannels) {
  // A conv-style blocked tensor (nChw16c) is accepted as is; softmax over channels matches the
  // plain computation, and so does its gradient.
  Tensor x = test::random_tensor({2, 16, 3, 3}, 13, -2.f, 2.f);
  const dnnl::memory::desc blocked({2, 16, 3, 3}, dnnl::memory::data_type::f32,
                                   dnnl::memory::format_tag::nChw16c);
  Tensor xb = reorder_to(x, blocked).set_requires_grad();
  ASSERT_TRUE(xb.is_blocked());
  Tensor y = ops::softmax(xb, 1);
  EXPECT_TRUE(test::all_close(y.contiguous(), ops::softmax(x, 1), 1e-5f, 1e-6f));
  Tensor r = test::random_tensor({2, 16, 3, 3}, 14);
  ops::sum(ops::mul(y, r)).backward();
  Tensor xp = x.clone().set_requires_grad();
  ops::sum(ops::mul(ops::softmax(xp, 1), r)).backward();
  EXPECT_TRUE(test::all_close(xb.grad().contiguous(), xp.grad(), 1e-4f, 1e-6f));
}

TEST(Softmax, RejectsBadArguments) {
  EXPECT_THROW(ops::softmax(Tensor::zeros({2, 3}, DType::s32)), Error);
  EXPECT_THROW(ops::softmax(Tensor::zeros({2, 3}), 2), Error);
  EXPECT_THROW(ops::log_softmax(Tensor::zeros({2, 3}), -3), Error);
  EXPECT_THROW(ops::softmax(Tensor()), Error);
  try {
    ops::log_softmax(Tensor::zeros({2}, DType::u8));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("log_softmax"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace kiln
