#include <gtest/gtest.h>

#include "kiln/dnnl_interop.hpp"
#include "sdk/ops/parity.hpp"

namespace kiln {
namespace {

TEST(Shape, MatchesPyTorch) {
  test::expect_parity("concat_1", {"a", "b", "c"},
                      [](const TensorList& in) { return ops::concat(in, 1); });
  test::expect_parity("concat_0", {"a", "b"},
                      [](const TensorList& in) { return ops::concat(in, 0); });
  test::expect_parity("concat_last", {"a", "b"},
                      [](const TensorList& in) { return ops::concat(in, -1); });
  test::expect_parity_multi("split_1", {"x"}, [](const TensorList& in) {
    return ops::split(in[0], {2, 3, 1}, 1);
  });
  test::expect_parity_multi("chunk_0", {"x"},
                            [](const TensorList& in) { return ops::chunk(in[0], 3, 0); });
  test::expect_parity("stack_1", {"a", "b", "c"},
                      [](const TensorList& in) { return ops::stack(in, 1); });
  test::expect_parity("stack_last", {"a", "b"},
                      [](const TensorList& in) { return ops::stack(in, -1); });
}

TEST(Shape, Gradients) {
  Tensor a = test::random_tensor({2, 3, 5}, 1).set_requires_grad();
  Tensor b = test::random_tensor({2, 1, 5}, 2).set_requires_grad();
  KILN_EXPECT_GRADCHECK([](const TensorList& in) { return ops::concat(in, 1); }, {a, b});
  Tensor c = test::random_tensor({2, 4, 5}, 3).set_requires_grad();
  KILN_EXPECT_GRADCHECK(
      [](const TensorList& in) {
        TensorList p = ops::split(in[0], {1, 3}, 1);
        return ops::add(ops::mul_scalar(p[0], 2.f), ops::sum(p[1], {1}, true));
      },
      {c});
  Tensor d = test::random_tensor({2, 5}, 4).set_requires_grad();
  Tensor e = test::random_tensor({2, 5}, 5).set_requires_grad();
  KILN_EXPECT_GRADCHECK(
      [](const TensorList& in) {
        return ops::stack({in[0], ops::square(in[1])}, 1);
      },
      {d, e});
  KILN_EXPECT_GRADCHECK([](const TensorList& in) { return ops::chunk(in[0], 3, 1)[2]; }, {d});
}

TEST(Shape, UnusedSplitPiecesGetZeroGradient) {
  Tensor x = test::random_tensor({5, 3}, 5).set_requires_grad();
  TensorList parts = ops::split(x, {2, 3}, 0);
  ops::sum(parts[1]).backward();
  const auto g = x.grad().to_vector();
  for (int i = 0; i < 15; ++i) EXPECT_EQ(g[static_cast<std::size_t>(i)], i < 6 ? 0.f : 1.f);
}

TEST(Shape, SplitAndChunkAreViewsWithPyTorchSizes) {
  Tensor x = Tensor::arange(10).reshape({5, 2});
  TensorList c = ops::chunk(x, 4, 0);  // ceil(5/4) = 2 -> 2, 2, 1
  ASSERT_EQ(c.size(), 3u);
  EXPECT_EQ(c[0].shape(), (Shape{2, 2}));
  EXPECT_EQ(c[2].shape(), (Shape{1, 2}));
  EXPECT_TRUE(c[1].shares_storage(x));
  EXPECT_EQ(c[2].to_vector(), (std::vector<float>{8, 9}));
  EXPECT_EQ(ops::chunk(Tensor::zeros({0, 2}), 3, 0).size(), 3u);
  EXPECT_EQ(ops::chunk(x, 2, 1).size(), 2u);
  TensorList s = ops::split(x, {0, 5}, 0);
  EXPECT_EQ(s[0].numel(), 0);
}

TEST(Shape, ConcatValuesStridedAndIntegers) {
  Tensor a = Tensor::arange(6).reshape({2, 3});
  Tensor b = Tensor::arange(4).reshape({2, 2}) + 100.f;
  EXPECT_EQ(ops::concat({a, b}, 1).to_vector(),
            (std::vector<float>{0, 1, 2, 100, 101, 3, 4, 5, 102, 103}));
  // A transposed (strided) input.
  Tensor t = Tensor::arange(6).reshape({3, 2}).transpose(0, 1);
  EXPECT_EQ(ops::concat({a, t}, 0).to_vector(),
            (std::vector<float>{0, 1, 2, 3, 4, 5, 0, 2, 4, 1, 3, 5}));
  Tensor i1 = Tensor::from_ints({1, 2}, {2}), i2 = Tensor::from_ints({3}, {1});
  Tensor ci = ops::concat({i1, i2}, 0);
  EXPECT_EQ(ci.dtype(), DType::s64);
  EXPECT_EQ(ci.to_int_vector(), (std::vector<std::int64_t>{1, 2, 3}));
  EXPECT_EQ(ops::stack({i1, i1}, 0).shape(), (Shape{2, 2}));
  // A large concat along dim 0 (few outer rows, parallel copy).
  Tensor big1 = test::random_tensor({300000}, 6), big2 = test::random_tensor({200001}, 7);
  Tensor big = ops::concat({big1, big2}, 0);
  EXPECT_TRUE(test::all_close(big.slice(0, 300000, 500001), big2, 0.f, 0.f));
}

TEST(Shape, ConcatOfBlockedTensorsAlongChannels) {
  const dnnl::memory::desc md16({2, 16, 3, 3}, dnnl::memory::data_type::f32,
                                dnnl::memory::format_tag::nChw16c);
  Tensor a = test::random_tensor({2, 16, 3, 3}, 8), b = test::random_tensor({2, 16, 3, 3}, 9);
  Tensor ab = reorder_to(a, md16).set_requires_grad();
  Tensor bb = reorder_to(b, md16).set_requires_grad();
  Tensor y = ops::concat({ab, bb}, 1);
  EXPECT_EQ(y.shape(), (Shape{2, 32, 3, 3}));
  EXPECT_TRUE(test::all_close(y.contiguous(), ops::concat({a, b}, 1), 0.f, 0.f));
  // Mixed blocked and plain.
  Tensor c = test::random_tensor({2, 5, 3, 3}, 10);
  EXPECT_TRUE(
      test::all_close(ops::concat({ab, c}, 1).contiguous(), ops::concat({a, c}, 1), 0.f, 0.f));
  Tensor r = test::random_tensor({2, 32, 3, 3}, 11);
  ops::sum(ops::mul(y, r)).backward();
  EXPECT_TRUE(test::all_close(ab.grad().contiguous(), r.slice(1, 0, 16), 0.f, 0.f));
  EXPECT_TRUE(test::all_close(bb.grad().contiguous(), r.slice(1, 16, 32), 0.f, 0.f));
}

TEST(Shape, RejectsBadArguments) {
  Tensor a = Tensor::zeros({2, 3});
  EXPECT_THROW(ops::concat({}, 0), Error);
  EXPECT_THROW(ops::concat({a, Tensor::zeros({3, 3})}, 1), Error);
  EXPECT_THROW(ops::concat({a, Tensor::zeros({2, 3}, DType::s32)}, 0), Error);
  EXPECT_THROW(ops::concat({a, Tensor::zeros({2, 3, 1})}, 0), Error);
  EXPECT_THROW(ops::concat({a, a}, 2), Error);
  EXPECT_THROW(ops::concat({Tensor::scalar(1.f)}, 0), Error);
  EXPECT_THROW(ops::split(a, {1, 1}, 1), Error);
  EXPECT_THROW(ops::split(a, {4, -1}, 1), Error);
  EXPECT_THROW(ops::chunk(a, 0, 0), Error);
  EXPECT_THROW(ops::stack({a, Tensor::zeros({3, 2})}, 0), Error);
  EXPECT_THROW(ops::stack({a}, 3), Error);
  try {
    ops::concat({a, Tensor::zeros({3, 4})}, 1);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("concat"), std::string::npos) << m;
    EXPECT_NE(m.find("[3, 4]"), std::string::npos) << m;
  }
}

}  // namespace
}  // namespace kiln
