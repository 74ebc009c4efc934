// batch_norm, layer_norm and group_norm: PyTorch fixtures (including running statistics after
// two training steps), gradient checks, blocked layouts, numerics and argument validation.
#include <gtest/gtest.h>

#include "kiln/ops.hpp"
#include "sdk/ops/conv_fixture_cases.hpp"
#include "support/test_support.hpp"

namespace kiln {
namespace {

using test::conv_fx;

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

TEST(BatchNorm, TrainingMatchesPyTorchIncludingRunningStats) {
  for (const std::string name : {"bn_train", "bn_train_noaffine", "bn_train_2d"}) {
    SCOPED_TRACE(name);
    const bool affine = name != "bn_train_noaffine";
    Tensor rm = conv_fx(name + ".rm0"), rv = conv_fx(name + ".rv0");
    std::vector<std::string> inputs = {"x"};
    if (affine) inputs = {"x", "w", "b"};
    test::expect_fixture_case(name, inputs, [&](const TensorList& in) {
      return ops::batch_norm(in[0], affine ? in[1] : Tensor(), affine ? in[2] : Tensor(), rm, rv,
                             true, 0.1f, 1e-5f);
    });
    EXPECT_TRUE(test::all_close(rm, conv_fx(name + ".rm1"), 1e-5f, 1e-6f));
    EXPECT_TRUE(test::all_close(rv, conv_fx(name + ".rv1"), 1e-5f, 1e-6f));
    // Second step on other data.
    const std::uint64_t v = rm.version();
    ops::batch_norm(conv_fx(name + ".x2"), affine ? conv_fx(name + ".w") : Tensor(),
                    affine ? conv_fx(name + ".b") : Tensor(), rm, rv, true, 0.1f, 1e-5f);
    EXPECT_GT(rm.version(), v);
    EXPECT_TRUE(test::all_close(rm, conv_fx(name + ".rm2"), 1e-5f, 1e-6f));
    EXPECT_TRUE(test::all_close(rv, conv_fx(name + ".rv2"), 1e-5f, 1e-6f));
  }
}

TEST(BatchNorm, EvalMatchesPyTorchAndLeavesRunningStats) {
  Tensor rm = conv_fx("bn_eval.rm0"), rv = conv_fx("bn_eval.rv0");
  test::expect_fixture_case("bn_eval", {"x", "w", "b"}, [&](const TensorList& in) {
    return ops::batch_norm(in[0], in[1], in[2], rm, rv, false, 0.1f, 1e-5f);
  });
  EXPECT_TRUE(test::bitwise_equal(rm, conv_fx("bn_eval.rm0")));
  EXPECT_TRUE(test::bitwise_equal(rv, conv_fx("bn_eval.rv0")));
}

TEST(BatchNorm, Gradcheck) {
  Tensor x = test::random_tensor({3, 2, 3, 5}, 1).set_requires_grad();
  Tensor w = test::random_tensor({2}, 2, 0.5f, 1.5f).set_requires_grad();
  Tensor b = test::random_tensor({2}, 3).set_requires_grad();
  KILN_EXPECT_GRADCHECK(
      [](const TensorList& in) {
        return ops::batch_norm(in[0], in[1], in[2], Tensor(), Tensor(), true);
      },
      {x, w, b});
  Tensor rm = test::random_tensor({2}, 4), rv = test::random_tensor({2}, 5, 0.5f, 2.f);
  KILN_EXPECT_GRADCHECK(
      [&](const TensorList& in) { return ops::batch_norm(in[0], in[1], in[2], rm, rv, false); },
      {x, w, b});
  KILN_EXPECT_GRADCHECK(
      [](const TensorList& in) {
        return ops::batch_norm(in[0], Tensor(), in[1], Tensor(), Tensor(), true);
      },
      {x, b});
}

TEST(BatchNorm, BlockedInputKeepsLayoutAndMatchesPlain) {
  Tensor x = test::random_tensor({2, 16, 5, 7}, 1);
  Tensor wc = test::random_tensor({32, 16, 3, 3}, 2, -0.2f, 0.2f);
  Tensor h = ops::conv2d(x, wc, Tensor(), {.padding = {1, 1}});
  ASSERT_TRUE(h.is_blocked());
  h.set_requires_grad();
  Tensor hp = h.detach().contiguous().set_requires_grad();
  Tensor w = test::random_tensor({32}, 3).set_requires_grad();
  Tensor b = test::random_tensor({32}, 4).set_requires_grad();
  Tensor w2 = w.detach().clone().set_requires_grad();
  Tensor b2 = b.detach().clone().set_requires_grad();
  Tensor rm1 = Tensor::zeros({32}), rv1 = Tensor::ones({32});
  Tensor rm2 = Tensor::zeros({32}), rv2 = Tensor::ones({32});
  Tensor y = ops::batch_norm(h, w, b, rm1, rv1, true);
  EXPECT_TRUE(y.is_blocked());
  Tensor yp = ops::batch_norm(hp, w2, b2, rm2, rv2, true);
  EXPECT_TRUE(test::all_close(y, yp, 1e-5f, 1e-5f));
  EXPECT_TRUE(test::all_close(rm1, rm2, 1e-5f, 1e-6f));
  EXPECT_TRUE(test::all_close(rv1, rv2, 1e-5f, 1e-6f));
  Tensor r = test::random_tensor(y.shape(), 5);
  ops::sum(ops::mul(y, r)).backward();
  ops::sum(ops::mul(yp, r)).backward();
  EXPECT_TRUE(test::all_close(h.grad(), hp.grad(), 1e-4f, 1e-5f));
  EXPECT_TRUE(test::all_close(w.grad(), w2.grad(), 1e-4f, 1e-5f));
  EXPECT_TRUE(test::all_close(b.grad(), b2.grad(), 1e-4f, 1e-5f));
}

TEST(BatchNorm, RejectsBadArguments) {
  Tensor x = test::random_tensor({2, 3, 4, 4}, 1);
  Tensor rm = Tensor::zeros({3}), rv = Tensor::ones({3});
  EXPECT_TRUE(contains(error_of([&] { ops::batch_norm(x.flatten(), {}, {}, rm, rv, true); }),
                       "batch_norm: x must be [N, C]"));
  EXPECT_TRUE(contains(error_of([&] { ops::batch_norm(x, Tensor::ones({4}), {}, rm, rv, true); }),
                       "weight must be a floating tensor of shape [3]"));
  EXPECT_TRUE(contains(error_of([&] { ops::batch_norm(x, {}, Tensor::ones({2}), rm, rv, true); }),
                       "bias must be a floating tensor of shape [3]"));
  EXPECT_TRUE(contains(error_of([&] { ops::batch_norm(x, {}, {}, Tensor::zeros({4}), rv, true); }),
                       "running_mean must be a contiguous f32 tensor of shape [3]"));
  EXPECT_TRUE(contains(error_of([&] { ops::batch_norm(x, {}, {}, rm, Tensor(), true); }),
                       "give both running_mean and running_var"));
  EXPECT_TRUE(contains(error_of([&] { ops::batch_norm(x, {}, {}, {}, {}, false); }),
                       "evaluation mode needs running_mean"));
  EXPECT_TRUE(
      contains(error_of([&] {
                 ops::batch_norm(test::random_tensor({1, 3, 1, 1}, 1), {}, {}, rm, rv, true);
               }),
               "more than one value per channel"));
  EXPECT_TRUE(contains(error_of([&] { ops::batch_norm(x, {}, {}, rm, rv, true, 1.5f); }),
                       "momentum must be in [0, 1]"));
  EXPECT_TRUE(contains(error_of([&] { ops::batch_norm(x, {}, {}, rm, rv, true, 0.1f, -1.f); }),
                       "eps must be finite and non-negative"));
}

TEST(LayerNorm, MatchesPyTorch) {
  test::expect_fixture_case("ln_last", {"x", "w", "b"}, [](const TensorList& in) {
    return ops::layer_norm(in[0], 1, in[1], in[2]);
  });
  test::expect_fixture_case("ln_last2", {"x", "w", "b"}, [](const TensorList& in) {
    return ops::layer_norm(in[0], 2, in[1], in[2]);
  });
  test::expect_fixture_case("ln_noaffine", {"x"}, [](const TensorList& in) {
    return ops::layer_norm(in[0], 1, Tensor(), Tensor());
  });
}

TEST(LayerNorm, GradcheckAndStridedInput) {
  Tensor x = test::random_tensor({3, 2, 5}, 1).set_requires_grad();
  Tensor w = test::random_tensor({2, 5}, 2).set_requires_grad();
  Tensor b = test::random_tensor({2, 5}, 3).set_requires_grad();
  KILN_EXPECT_GRADCHECK(
      [](const TensorList& in) { return ops::layer_norm(in[0], 2, in[1], in[2]); }, {x, w, b});
  Tensor w1 = test::random_tensor({3}, 4).set_requires_grad();
  KILN_EXPECT_GRADCHECK(
      [](const TensorList& in) {
        return ops::layer_norm(in[0].transpose(0, 2), 1, in[1], Tensor());  // [5, 2, 3] view
      },
      {x, w1});
}

TEST(LayerNorm, RejectsBadArguments) {
  Tensor x = test::random_tensor({2, 3, 4}, 1);
  EXPECT_TRUE(contains(error_of([&] { ops::layer_norm(x, 0, {}, {}); }),
                       "normalized_dims must be between 1 and the number of dimensions of x (3)"));
  EXPECT_TRUE(contains(error_of([&] { ops::layer_norm(x, 4, {}, {}); }), "got 4"));
  EXPECT_TRUE(contains(error_of([&] { ops::layer_norm(x, 2, Tensor::ones({4}), {}); }),
                       "weight must be a floating tensor of shape [3, 4]"));
  EXPECT_TRUE(contains(error_of([&] { ops::layer_norm(x, 1, {}, Tensor::ones({3})); }),
                       "bias must be a floating tensor of shape [4]"));
  EXPECT_TRUE(contains(error_of([&] { ops::layer_norm(x.to(DType::s32), 1, {}, {}); }),
                       "x must be floating"));
}

TEST(GroupNorm, MatchesPyTorch) {
  const std::vector<std::string> xwb = {"x", "w", "b"};
  const std::vector<std::pair<std::string, std::int64_t>> cases = {
      {"gn_g3", 3}, {"gn_g1", 1}, {"gn_g6", 6}, {"gn_3d", 2}, {"gn_c16", 4}};
  for (const auto& [name, groups] : cases) {
    const std::int64_t g = groups;
    test::expect_fixture_case(
        name, xwb, [g](const TensorList& in) { return ops::group_norm(in[0], g, in[1], in[2]); });
  }
  test::expect_fixture_case("gn_noaffine", {"x"}, [](const TensorList& in) {
    return ops::group_norm(in[0], 2, Tensor(), Tensor());
  });
}

TEST(GroupNorm, Gradcheck) {
  Tensor x = test::random_tensor({2, 6, 3, 5}, 1).set_requires_grad();
  Tensor w = test::random_tensor({6}, 2).set_requires_grad();
  Tensor b = test::random_tensor({6}, 3).set_requires_grad();
  KILN_EXPECT_GRADCHECK(
      [](const TensorList& in) { return ops::group_norm(in[0], 3, in[1], in[2]); }, {x, w, b});
  KILN_EXPECT_GRADCHECK(
      [](const TensorList& in) { return ops::group_norm(in[0], 2, Tensor(), Tensor()); }, {x});
}

TEST(GroupNorm, LongSpatialExtentNormalises) {
  // Several float chunks per channel: mean 0 and variance 1 per group.
  Tensor x = ops::add_scalar(test::random_tensor({1, 2, 90, 70}, 4, -1.f, 3.f), 5.f);
  Tensor y = ops::group_norm(x, 1, Tensor(), Tensor(), 0.f);
  EXPECT_NEAR(ops::mean(y).item(), 0.f, 1e-5f);
  EXPECT_NEAR(ops::mean(ops::square(y)).item(), 1.f, 1e-5f);
}

TEST(GroupNorm, BlockedInputKeepsLayoutAndMatchesPlain) {
  // oneDNN picks nChw16c for 48 channels and channels-last for 40; groups of 3 or 5 channels
  // straddle the 16-channel blocks.
  const std::vector<std::pair<std::int64_t, std::int64_t>> cases = {
      {48, 16}, {48, 3}, {48, 48}, {40, 8}, {40, 1}};
  for (const auto& [channels, groups] : cases) {
    SCOPED_TRACE(std::to_string(channels) + " channels, " + std::to_string(groups) + " groups");
    const std::int64_t C = channels;
    Tensor x = test::random_tensor({3, 16, 5, 7}, 1);
    Tensor wc = test::random_tensor({C, 16, 3, 3}, 2, -0.2f, 0.2f);
    Tensor h = ops::conv2d(x, wc, Tensor(), {.padding = {1, 1}});
    ASSERT_TRUE(h.is_blocked());
    h.set_requires_grad();
    Tensor hp = h.detach().contiguous().set_requires_grad();
    Tensor w = test::random_tensor({C}, 3).set_requires_grad();
    Tensor b = test::random_tensor({C}, 4).set_requires_grad();
    Tensor w2 = w.detach().clone().set_requires_grad();
    Tensor b2 = b.detach().clone().set_requires_grad();
    Tensor y = ops::group_norm(h, groups, w, b);
    EXPECT_TRUE(y.is_blocked());
    Tensor yp = ops::group_norm(hp, groups, w2, b2);
    EXPECT_TRUE(test::all_close(y, yp, 1e-5f, 1e-5f));
    Tensor r = test::random_tensor(y.shape(), 5);
    ops::sum(ops::mul(y, r)).backward();
    ops::sum(ops::mul(yp, r)).backward();
    EXPECT_TRUE(test::all_close(h.grad(), hp.grad(), 1e-4f, 1e-5f));
    EXPECT_TRUE(test::all_close(w.grad(), w2.grad(), 1e-4f, 1e-5f));
    EXPECT_TRUE(test::all_close(b.grad(), b2.grad(), 1e-4f, 1e-5f));
    // The next conv reads the blocked output directly.
    Tensor wn = test::random_tensor({8, C, 1, 1}, 6);
    EXPECT_TRUE(test::all_close(ops::conv2d(y, wn), ops::conv2d(yp, wn), 1e-5f, 1e-5f));
  }
}

TEST(GroupNorm, LargeMeanIsStable) {
  // Statistics are shifted by a per-channel pivot, so a large common offset costs no accuracy.
  Tensor x = test::random_tensor({2, 4, 9, 9}, 1);
  Tensor y = ops::group_norm(x, 2, Tensor(), Tensor());
  Tensor y_off = ops::group_norm(ops::add_scalar(x, 1000.f), 2, Tensor(), Tensor());
  EXPECT_TRUE(test::all_close(y_off, y, 1e-3f, 1e-3f));
}

TEST(GroupNorm, DeterministicAcrossRuns) {
  Tensor x = test::random_tensor({4, 64, 17, 13}, 1).set_requires_grad();
  Tensor w = test::random_tensor({64}, 2).set_requires_grad();
  auto run = [&] {
    x.zero_grad();
    w.zero_grad();
    Tensor y = ops::group_norm(x, 8, w, Tensor());
    ops::sum(ops::mul(y, test::random_tensor(y.shape(), 3))).backward();
    return TensorList{y, x.grad(), w.grad()};
  };
  const TensorList a = run(), b = run();
  for (std::size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(test::bitwise_equal(a[i], b[i])) << i;
}

TEST(GroupNorm, RejectsBadArguments) {
  Tensor x = test::random_tensor({2, 6, 4, 4}, 1);
  EXPECT_TRUE(contains(error_of([&] { ops::group_norm(x, 4, {}, {}); }),
                       "x has 6 channels, which 4 groups do not divide"));
  EXPECT_TRUE(
      contains(error_of([&] { ops::group_norm(x, 0, {}, {}); }), "groups must be at least 1"));
  EXPECT_TRUE(contains(error_of([&] { ops::group_norm(x.flatten(), 1, {}, {}); }),
                       "x must be [N, C, ...]"));
  EXPECT_TRUE(contains(error_of([&] { ops::group_norm(x, 2, Tensor::ones({3}), {}); }),
                       "weight must be a floating tensor of shape [6]"));
  EXPECT_TRUE(
      contains(error_of([&] { ops::group_norm(x, 2, {}, {}, -1.f); }), "eps must be finite"));
}

}  // namespace
}  // namespace kiln
