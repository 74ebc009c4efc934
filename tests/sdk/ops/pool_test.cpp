// max_pool2d, avg_pool2d and upsample_nearest2d: PyTorch fixtures, gradient checks, blocked
// layouts and argument validation.
#include <gtest/gtest.h>

#include "kiln/ops.hpp"
#include "sdk/ops/conv_fixture_cases.hpp"
#include "support/test_support.hpp"

namespace kiln {
namespace {

using ops::Pool2dOptions;

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}
bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

TEST(Pool2d, MatchesPyTorch) {
  test::expect_fixture_case("maxpool_k3s2p1", {"x"}, [](const TensorList& in) {
    return ops::max_pool2d(in[0], {.kernel = {3, 3}, .stride = {2, 2}, .padding = {1, 1}});
  });
  test::expect_fixture_case("maxpool_k2", {"x"}, [](const TensorList& in) {
    return ops::max_pool2d(in[0], {.kernel = {2, 2}});
  });
  test::expect_fixture_case("maxpool_rect", {"x"}, [](const TensorList& in) {
    return ops::max_pool2d(in[0], {.kernel = {3, 2}, .stride = {1, 2}, .padding = {1, 0}});
  });
  test::expect_fixture_case("avgpool_incl", {"x"}, [](const TensorList& in) {
    return ops::avg_pool2d(in[0], {.kernel = {3, 3}, .stride = {2, 2}, .padding = {1, 1}});
  });
  test::expect_fixture_case("avgpool_excl", {"x"}, [](const TensorList& in) {
    return ops::avg_pool2d(
        in[0], {.kernel = {3, 3}, .stride = {2, 2}, .padding = {1, 1}, .count_include_pad = false});
  });
  test::expect_fixture_case("avgpool_k2", {"x"}, [](const TensorList& in) {
    return ops::avg_pool2d(in[0], {.kernel = {2, 2}});
  });
}

TEST(Upsample, MatchesPyTorch) {
  test::expect_fixture_case("upsample2", {"x"},
                            [](const TensorList& in) { return ops::upsample_nearest2d(in[0], 2); });
  test::expect_fixture_case("upsample3", {"x"},
                            [](const TensorList& in) { return ops::upsample_nearest2d(in[0], 3); });
}

TEST(Pool2d, GradcheckOddShapes) {
  Tensor x = test::random_tensor({2, 3, 7, 5}, 11).set_requires_grad();
  for (bool include_pad : {true, false}) {
    KILN_EXPECT_GRADCHECK(
        [include_pad](const TensorList& in) {
          return ops::avg_pool2d(in[0], {.kernel = {3, 2},
                                         .stride = {2, 1},
                                         .padding = {1, 1},
                                         .count_include_pad = include_pad});
        },
        {x});
  }
  // Max pooling: values spaced well apart so the finite differences never swap a maximum.
  std::vector<float> v(2 * 3 * 7 * 5);
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>((i * 37) % v.size()) * 0.05f;
  Tensor xm = Tensor::from_vector(v, {2, 3, 7, 5}).set_requires_grad();
  KILN_EXPECT_GRADCHECK(
      [](const TensorList& in) {
        return ops::max_pool2d(in[0], {.kernel = {3, 3}, .stride = {2, 2}, .padding = {1, 1}});
      },
      {xm});
  KILN_EXPECT_GRADCHECK([](const TensorList& in) { return ops::upsample_nearest2d(in[0], 2); },
                        {x});
}

TEST(Pool2d, BlockedInputKeepsLayoutAndMatchesPlain) {
  Tensor x = test::random_tensor({2, 16, 9, 7}, 1);
  Tensor w = test::random_tensor({32, 16, 3, 3}, 2, -0.2f, 0.2f);
  Tensor h = ops::conv2d(x, w, Tensor(), {.padding = {1, 1}});
  ASSERT_TRUE(h.is_blocked());
  h.set_requires_grad();
  Tensor hp = h.detach().contiguous().set_requires_grad();
  const Pool2dOptions o{.kernel = {3, 3}, .stride = {2, 2}, .padding = {1, 1}};
  using Fn = std::function<Tensor(const Tensor&)>;
  const std::vector<std::pair<std::string, Fn>> cases = {
      {"max", [&](const Tensor& t) { return ops::max_pool2d(t, o); }},
      {"avg", [&](const Tensor& t) { return ops::avg_pool2d(t, o); }},
      {"upsample", [](const Tensor& t) { return ops::upsample_nearest2d(t, 2); }}};
  for (const auto& [name, fn] : cases) {
    h.zero_grad();
    hp.zero_grad();
    Tensor y = fn(h);
    EXPECT_TRUE(y.is_blocked()) << name;
    Tensor yp = fn(hp);
    EXPECT_TRUE(test::all_close(y, yp, 0.f, 0.f)) << name;
    Tensor r = test::random_tensor(y.shape(), 3);
    ops::sum(ops::mul(y, r)).backward();
    ops::sum(ops::mul(yp, r)).backward();
    EXPECT_TRUE(test::all_close(h.grad(), hp.grad(), 1e-6f, 1e-6f)) << name;
  }
}

TEST(Pool2d, StrideZeroMeansKernelAndBf16Works) {
  Tensor x = test::random_tensor({1, 2, 6, 4}, 1);
  EXPECT_EQ(ops::max_pool2d(x, {.kernel = {2, 2}}).shape(), (Shape{1, 2, 3, 2}));
  Tensor y32 = ops::avg_pool2d(x, {.kernel = {3, 2}, .stride = {1, 1}});
  EXPECT_EQ(y32.shape(), (Shape{1, 2, 4, 3}));
  Tensor y16 = ops::avg_pool2d(x.to(DType::bf16), {.kernel = {3, 2}, .stride = {1, 1}});
  EXPECT_EQ(y16.dtype(), DType::bf16);
  EXPECT_TRUE(test::all_close(y16, y32, 1e-2f, 1e-2f));
}

TEST(Pool2d, RejectsBadArguments) {
  Tensor x = test::random_tensor({2, 3, 5, 5}, 1);
  EXPECT_TRUE(contains(error_of([&] { ops::max_pool2d(x.select(0, 0), {}); }),
                       "max_pool2d: x must be 4-d"));
  EXPECT_TRUE(contains(error_of([&] {
                         ops::avg_pool2d(x, {.kernel = {0, 2}});
                       }),
                       "kernel must be at least 1"));
  EXPECT_TRUE(contains(error_of([&] {
                         ops::max_pool2d(x, {.kernel = {2, 2}, .stride = {-1, 1}});
                       }),
                       "stride must be positive"));
  EXPECT_TRUE(contains(error_of([&] {
                         ops::max_pool2d(x, {.kernel = {3, 3}, .padding = {2, 0}});
                       }),
                       "padding must be between 0 and half the kernel size"));
  EXPECT_TRUE(contains(error_of([&] {
                         ops::avg_pool2d(x, {.kernel = {6, 2}});
                       }),
                       "larger than the padded input"));
  EXPECT_TRUE(
      contains(error_of([&] { ops::max_pool2d(x.to(DType::s32), {}); }), "must be f32 or bf16"));
  EXPECT_TRUE(contains(error_of([&] { ops::upsample_nearest2d(x, 0); }),
                       "scale must be an integer between 1 and 1024, got 0"));
  EXPECT_TRUE(contains(error_of([&] { ops::upsample_nearest2d(x.select(0, 0), 2); }),
                       "upsample_nearest2d: x must be 4-d"));
}

}  // namespace
}  // namespace kiln
