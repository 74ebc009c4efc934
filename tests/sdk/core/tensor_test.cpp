#include "kiln/tensor.hpp"

#include <gtest/gtest.h>

#include "kiln/ops.hpp"
#include "support/test_support.hpp"

namespace kiln {
namespace {

TEST(Tensor, FactoriesAndShape) {
  Tensor t = Tensor::zeros({2, 3, 4});
  EXPECT_EQ(t.dim(), 3);
  EXPECT_EQ(t.numel(), 24);
  EXPECT_EQ(t.size(-1), 4);
  EXPECT_TRUE(t.is_contiguous());
  EXPECT_EQ(t.strides(), (Shape{12, 4, 1}));
  EXPECT_EQ(Tensor::full({2}, 3.5f).to_vector(), (std::vector<float>{3.5f, 3.5f}));
  EXPECT_FLOAT_EQ(Tensor::scalar(2.f).item(), 2.f);
  EXPECT_THROW(Tensor::from_vector({1, 2, 3}, {2, 2}), Error);
  EXPECT_THROW(Tensor::zeros({-1}), Error);
  EXPECT_THROW(Tensor::zeros({1 << 30, 1 << 30}), Error);  // absurd size refused, not allocated
  EXPECT_THROW(t.size(3), Error);
}

TEST(Tensor, ViewsShareStorage) {
  Tensor t = Tensor::arange(24).reshape({2, 3, 4});
  Tensor p = t.permute({2, 0, 1});
  EXPECT_EQ(p.shape(), (Shape{4, 2, 3}));
  EXPECT_TRUE(p.shares_storage(t));
  EXPECT_FALSE(p.is_contiguous());
  Tensor c = p.contiguous();
  EXPECT_FALSE(c.shares_storage(t));
  // element [k, i, j] of p is t[i, j, k] = 12 i + 4 j + k
  const std::vector<float> v = c.to_vector();
  EXPECT_FLOAT_EQ(v[0 * 6 + 1 * 3 + 2], 12 * 1 + 4 * 2 + 0);
  EXPECT_FLOAT_EQ(v[3 * 6 + 0 * 3 + 1], 12 * 0 + 4 * 1 + 3);

  Tensor s = t.slice(2, 1, 4, 2);  // k = 1, 3
  EXPECT_EQ(s.shape(), (Shape{2, 3, 2}));
  EXPECT_EQ(s.contiguous().to_vector()[1], 3.f);
  EXPECT_EQ(t.select(0, 1).to_vector()[0], 12.f);
  EXPECT_EQ(t.select(1, -1).shape(), (Shape{2, 4}));

  Tensor e = Tensor::from_vector({1, 2}, {2, 1}).expand({2, 3});
  EXPECT_EQ(e.to_vector(), (std::vector<float>{1, 1, 1, 2, 2, 2}));
  EXPECT_THROW(t.view({4, 6}).permute({1, 0}).view({24}), Error);
  EXPECT_EQ(t.permute({1, 0, 2}).reshape({24}).numel(), 24);
  EXPECT_THROW(t.reshape({5, -1}), Error);
  EXPECT_EQ(t.reshape({-1, 4}).shape(), (Shape{6, 4}));
  EXPECT_EQ(t.flatten(1).shape(), (Shape{2, 12}));
}

TEST(Tensor, DtypeConversions) {
  Tensor f = Tensor::from_vector({1.5f, -2.25f, 3.f, 1e-3f}, {4});
  Tensor b = f.to(DType::bf16);
  EXPECT_EQ(b.dtype(), DType::bf16);
  EXPECT_EQ(b.to_vector()[0], 1.5f);
  EXPECT_NEAR(b.to_vector()[3], 1e-3f, 1e-5f);
  Tensor h = f.to(DType::f16);
  EXPECT_EQ(h.to_vector()[1], -2.25f);
  Tensor i = Tensor::from_vector({1.4f, 2.6f, -3.5f, 300.f}, {4}).to(DType::u8);
  EXPECT_EQ(i.to_int_vector(), (std::vector<std::int64_t>{1, 3, 0, 255}));
  EXPECT_THROW(Tensor::zeros({2}).data<std::int32_t>(), Error);
}

TEST(Tensor, InPlaceBumpsVersion) {
  Tensor t = Tensor::zeros({3});
  const auto v0 = t.version();
  t.fill_(2.f);
  EXPECT_GT(t.version(), v0);
  Tensor view = t.slice(0, 1, 3);
  view.copy_(Tensor::from_vector({5, 6}, {2}));
  EXPECT_EQ(t.to_vector(), (std::vector<float>{2, 5, 6}));
}

TEST(Tensor, UndefinedIsAnErrorNotACrash) {
  Tensor u;
  EXPECT_FALSE(u.defined());
  EXPECT_THROW(u.shape(), Error);
  EXPECT_THROW(ops::add(u, Tensor::zeros({1})), Error);
}

}  // namespace
}  // namespace kiln
