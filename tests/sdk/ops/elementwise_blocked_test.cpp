// Element-wise ops on oneDNN layouts (channels-last, nChw16c): the result equals the plain
// computation bit for bit, keeps the layout where the op can run in it, and falls back to plain
// data otherwise (padded blocks, a broadcast over spatial dimensions).
#include <gtest/gtest.h>

#include <functional>

#include "kiln/dnnl_interop.hpp"
#include "kiln/ops.hpp"
#include "support/test_support.hpp"

namespace kiln {
namespace {

using tag = dnnl::memory::format_tag;

Tensor in_layout(const Tensor& t, tag layout) {
  return reorder_to(t, dnnl::memory::desc(to_dims(t.shape()), to_dnnl(t.dtype()), layout));
}

::testing::AssertionResult exact(const Tensor& t, const Tensor& u) {
  return test::all_close(t, u, 0.f, 0.f);
}

using Binary = std::function<Tensor(const Tensor&, const Tensor&)>;

const std::vector<std::pair<const char*, Binary>>& binaries() {
  static const std::vector<std::pair<const char*, Binary>> ops = {
      {"add", [](const Tensor& a, const Tensor& b) { return ops::add(a, b); }},
      {"sub", [](const Tensor& a, const Tensor& b) { return ops::sub(a, b); }},
      {"mul", [](const Tensor& a, const Tensor& b) { return ops::mul(a, b); }},
      {"div", [](const Tensor& a, const Tensor& b) { return ops::div(a, b); }},
      {"maximum", [](const Tensor& a, const Tensor& b) { return ops::maximum(a, b); }},
  };
  return ops;
}

TEST(ElementwiseBlocked, SameShapeKeepsTheLayoutAndMatchesPlain) {
  const Tensor a = test::random_tensor({2, 32, 5, 3}, 1);
  const Tensor b = test::random_tensor({2, 32, 5, 3}, 2, 0.5f, 2.f);
  for (tag la : {tag::nhwc, tag::nChw16c}) {
    for (tag lb : {tag::nchw, tag::nhwc, tag::nChw16c}) {
      const Tensor ba = in_layout(a, la), bb = in_layout(b, lb);
      ASSERT_TRUE(ba.is_blocked());
      for (const auto& [name, f] : binaries()) {
        const Tensor ref = f(a, b);
        const Tensor y = f(ba, bb);
        EXPECT_TRUE(y.is_blocked()) << name;
        EXPECT_TRUE(exact(y.contiguous(), ref)) << name;
        // Plain on the left, blocked on the right: the plain one is reordered instead.
        const Tensor z = f(bb, ba);
        EXPECT_TRUE(z.is_blocked()) << name;
        EXPECT_TRUE(exact(z.contiguous(), f(b, a))) << name;
      }
    }
  }
}

TEST(ElementwiseBlocked, PerChannelOperandsRunInTheLayout) {
  const Tensor a = test::random_tensor({3, 32, 4, 5}, 3);
  for (const Shape& s : std::vector<Shape>{
           {3, 32, 1, 1}, {1, 32, 1, 1}, {32, 1, 1}, {3, 1, 1, 1}, {1}, {1, 1, 1, 1}}) {
    const Tensor v = test::random_tensor(s, 4, 0.5f, 2.f);
    for (tag la : {tag::nhwc, tag::nChw16c, tag::nChw8c}) {
      const Tensor ba = in_layout(a, la);
      for (const auto& [name, f] : binaries()) {
        const Tensor y = f(ba, v);
        EXPECT_TRUE(y.is_blocked()) << name << " " << shape_str(s);
        EXPECT_TRUE(exact(y.contiguous(), f(a, v))) << name << " " << shape_str(s);
        const Tensor z = f(v, ba);  // the per-channel operand on the left
        EXPECT_TRUE(z.is_blocked()) << name << " " << shape_str(s);
        EXPECT_TRUE(exact(z.contiguous(), f(v, a))) << name << " " << shape_str(s);
      }
    }
  }
}

TEST(ElementwiseBlocked, OtherCasesFallBackToPlainData) {
  // 24 channels in blocks of 16: padded, so the result is computed on plain data.
  const Tensor a = test::random_tensor({2, 24, 3, 3}, 5);
  const Tensor b = test::random_tensor({2, 24, 3, 3}, 6, 0.5f, 2.f);
  const Tensor pa = in_layout(a, tag::nChw16c);
  ASSERT_TRUE(pa.is_blocked());
  const Tensor y = ops::div(pa, b);
  EXPECT_FALSE(y.is_blocked());
  EXPECT_TRUE(exact(y, ops::div(a, b)));
  EXPECT_TRUE(exact(ops::mul_scalar(pa, 3.f), ops::mul_scalar(a, 3.f)));
  // A broadcast over the spatial dimensions.
  const Tensor hw = test::random_tensor({1, 1, 3, 3}, 7);
  const Tensor c = in_layout(b, tag::nhwc);
  const Tensor z = ops::sub(c, hw);
  EXPECT_FALSE(z.is_blocked());
  EXPECT_TRUE(exact(z, ops::sub(b, hw)));
  // bf16 operands are converted to plain f32 as before.
  const Tensor bb = in_layout(b.to(DType::bf16), tag::nhwc);
  EXPECT_TRUE(exact(ops::add(bb, a), ops::add(b.to(DType::bf16).to(DType::f32), a)));
}

TEST(ElementwiseBlocked, UnaryOpsKeepTheLayout) {
  const Tensor a = test::random_tensor({2, 32, 3, 4}, 8, 0.1f, 2.f);
  const Tensor ba = in_layout(a, tag::nhwc);
  for (const auto& f : std::vector<std::function<Tensor(const Tensor&)>>{
           [](const Tensor& t) { return ops::mul_scalar(t, -2.5f); },
           [](const Tensor& t) { return ops::add_scalar(t, 0.75f); },
           [](const Tensor& t) { return ops::sqrt(t); },
           [](const Tensor& t) { return ops::log(t); },
       }) {
    const Tensor y = f(ba);
    EXPECT_TRUE(y.is_blocked());
    EXPECT_TRUE(exact(y.contiguous(), f(a)));
  }
}

TEST(ElementwiseBlocked, GradientsMatchPlain) {
  const Tensor a0 = test::random_tensor({2, 16, 3, 3}, 9);
  const Tensor e0 = test::random_tensor({2, 16, 1, 1}, 10, 0.5f, 2.f);
  const Tensor r = test::random_tensor({2, 16, 3, 3}, 11);
  auto grads = [&](bool blocked) {
    Tensor a = (blocked ? in_layout(a0, tag::nhwc) : a0.clone()).set_requires_grad();
    Tensor e = e0.clone().set_requires_grad();
    Tensor h = ops::div(ops::add(ops::mul(a, e), a), e);
    ops::sum(ops::mul(h, r)).backward();
    return TensorList{h.contiguous(), a.grad().contiguous(), e.grad()};
  };
  const TensorList fast = grads(true), ref = grads(false);
  for (std::size_t i = 0; i < ref.size(); ++i) {
    EXPECT_TRUE(test::all_close(fast[i], ref[i], 1e-6f, 1e-6f)) << "tensor " << i;
  }
}

}  // namespace
}  // namespace kiln
