#include <gtest/gtest.h>

#include <cmath>

#include "sdk/ops/parity.hpp"

namespace kiln {
namespace {

using ops::Reduction;

const std::vector<std::pair<std::string, Reduction>> kReductions = {
    {"none", Reduction::none}, {"mean", Reduction::mean}, {"sum", Reduction::sum}};

TEST(Loss, BinaryCrossEntropyMatchesPyTorch) {
  for (const auto& [name, red] : kReductions) {
    test::expect_parity("bce_" + name, {"p", "t"},
                        [red](const TensorList& in) { return ops::bce_loss(in[0], in[1], red); });
    test::expect_parity("bce_logits_" + name, {"x", "t"}, [red](const TensorList& in) {
      return ops::bce_with_logits(in[0], in[1], red);
    });
    test::expect_parity("kl_" + name, {"mu", "lv"}, [red](const TensorList& in) {
      return ops::gaussian_kl(in[0], in[1], red);
    });
  }
}

TEST(Loss, CrossEntropyMatchesPyTorch) {
  for (const auto& [name, red] : kReductions) {
    for (int s : {0, 2}) {
      const std::string tag = name + "_s" + std::to_string(s);
      const float eps = static_cast<float>(s) / 10.f;
      test::expect_parity("ce_" + tag, {"x", "t"}, [red, eps](const TensorList& in) {
        return ops::cross_entropy(in[0], in[1], red, -100, eps);
      });
      test::expect_parity("ce3d_" + tag, {"x", "t"}, [red, eps](const TensorList& in) {
        return ops::cross_entropy(in[0], in[1], red, 7, eps);
      });
    }
  }
  test::expect_parity("ce_wide", {"x", "t"},
                      [](const TensorList& in) { return ops::cross_entropy(in[0], in[1]); });
}

TEST(Loss, GradientsOnOddShapes) {
  Tensor p = test::random_tensor({3, 7}, 1, 0.1f, 0.9f).set_requires_grad();
  Tensor t = test::random_tensor({3, 7}, 2, 0.f, 1.f).set_requires_grad();
  Tensor x = test::random_tensor({3, 7}, 3, -3.f, 3.f).set_requires_grad();
  for (const auto& [name, red] : kReductions) {
    SCOPED_TRACE(name);
    KILN_EXPECT_GRADCHECK([red](const TensorList& in) { return ops::bce_loss(in[0], in[1], red); },
                          {p, t});
    KILN_EXPECT_GRADCHECK(
        [red](const TensorList& in) { return ops::bce_with_logits(in[0], in[1], red); }, {x, t});
    KILN_EXPECT_GRADCHECK(
        [red](const TensorList& in) { return ops::gaussian_kl(in[0], in[1], red); }, {x, p});
  }
  Tensor logits = test::random_tensor({5, 3, 2, 3}, 4, -2.f, 2.f).set_requires_grad();
  Tensor target = Tensor::from_ints(
      {0, 1, 2, 2, 1, 0, 1, 1, -1, 0, 2, 2, 1, 0, 0, 2, 2, 1, 0, 1, 2, 0, 0, 1, 1, 2, -1, 0, 1, 2},
      {5, 2, 3});
  Tensor flat = test::random_tensor({5, 11}, 5, -2.f, 2.f).set_requires_grad();
  Tensor flat_t = Tensor::from_ints({10, 0, 3, -1, 7}, {5}, DType::s32);
  for (const auto& [name, red] : kReductions) {
    for (float eps : {0.f, 0.3f}) {
      SCOPED_TRACE(name + " eps " + std::to_string(eps));
      KILN_EXPECT_GRADCHECK(
          [&, red, eps](const TensorList& in) {
            return ops::cross_entropy(in[0], target, red, -1, eps);
          },
          {logits});
      KILN_EXPECT_GRADCHECK(
          [&, red, eps](const TensorList& in) {
            return ops::cross_entropy(in[0], flat_t, red, -1, eps);
          },
          {flat});
    }
  }
}

TEST(Loss, NumericalEdgeCases) {
  // log clamped at -100, as PyTorch: a confident wrong prediction costs 100, not inf.
  Tensor p = Tensor::from_vector({0.f, 1.f}, {2});
  Tensor t = Tensor::from_vector({1.f, 0.f}, {2});
  EXPECT_FLOAT_EQ(ops::bce_loss(p, t, Reduction::sum).item(), 200.f);
  Tensor pg = p.clone().set_requires_grad();
  ops::bce_loss(pg, t).backward();
  for (float g : pg.grad().to_vector()) EXPECT_TRUE(std::isfinite(g));
  // bce_with_logits is stable for large |x|.
  Tensor x = Tensor::from_vector({100.f, -100.f, 100.f}, {3});
  Tensor y = Tensor::from_vector({1.f, 0.f, 0.f}, {3});
  const auto l = ops::bce_with_logits(x, y, Reduction::none).to_vector();
  EXPECT_NEAR(l[0], 0.f, 1e-6);
  EXPECT_NEAR(l[1], 0.f, 1e-6);
  EXPECT_NEAR(l[2], 100.f, 1e-4);
  // cross_entropy with huge logits.
  Tensor big = Tensor::from_vector({1000.f, 0.f, -1000.f, 1000.f}, {2, 2});
  const auto ce =
      ops::cross_entropy(big, Tensor::from_ints({0, 0}, {2}), Reduction::none).to_vector();
  EXPECT_NEAR(ce[0], 0.f, 1e-6);
  EXPECT_NEAR(ce[1], 2000.f, 1e-2);
  // u8 targets (labels straight from an IDX file) are accepted.
  EXPECT_NEAR(ops::cross_entropy(big, Tensor::from_ints({0, 1}, {2}, DType::u8)).item(), 0.f, 1e-6);
  // A single [C] example with a 0-d target.
  Tensor one = Tensor::from_vector({0.f, 0.f, 0.f, 0.f}, {4});
  EXPECT_NEAR(ops::cross_entropy(one, Tensor::from_ints({2}, {})).item(), std::log(4.f), 1e-6);
  // Every target ignored: the mean is 0/0 = NaN, as in PyTorch; the sum is 0.
  Tensor ign = Tensor::from_ints({-100, -100}, {2});
  EXPECT_TRUE(std::isnan(ops::cross_entropy(big, ign).item()));
  EXPECT_EQ(ops::cross_entropy(big, ign, Reduction::sum).item(), 0.f);
  // gaussian_kl of the prior is 0; mean divides by the batch size.
  EXPECT_EQ(ops::gaussian_kl(Tensor::zeros({4, 3}), Tensor::zeros({4, 3})).item(), 0.f);
  Tensor mu = Tensor::ones({4, 3});
  EXPECT_FLOAT_EQ(ops::gaussian_kl(mu, Tensor::zeros({4, 3})).item(), 1.5f);
  EXPECT_FLOAT_EQ(ops::gaussian_kl(mu, Tensor::zeros({4, 3}), Reduction::sum).item(), 6.f);
}

// bce_with_logits and its gradient against the formulas in double precision, over logits from
// tiny to saturating, at sizes that put elements both in full SIMD lanes and in the tail.
TEST(Loss, BceWithLogitsMatchesDoublePrecisionEverywhere) {
  std::vector<float> xs, ts;
  for (int i = -3000; i <= 3000; ++i) {
    const float x = static_cast<float>(i) * 0.01f;  // [-30, 30]
    xs.push_back(x);
    ts.push_back(static_cast<float>((i * 7919) % 11) / 10.f);  // targets in [0, 1]
  }
  for (const float x : {1e-30f, -1e-30f, 1e-8f, -1e-8f, 87.f, -87.f, 95.f, -95.f, 500.f}) {
    xs.push_back(x);
    ts.push_back(0.25f);
  }
  const auto n = static_cast<std::int64_t>(xs.size());  // 6010: not a multiple of 8
  Tensor x = Tensor::from_vector(xs, {n}).set_requires_grad();
  Tensor t = Tensor::from_vector(ts, {n});
  Tensor l = ops::bce_with_logits(x, t, Reduction::none);
  ops::sum(l).backward();
  const auto got = l.to_vector(), grad = x.grad().to_vector();
  for (std::int64_t i = 0; i < n; ++i) {
    const double xd = xs[static_cast<std::size_t>(i)], td = ts[static_cast<std::size_t>(i)];
    const double want = std::max(xd, 0.0) - xd * td + std::log1p(std::exp(-std::fabs(xd)));
    const double dwant = 1.0 / (1.0 + std::exp(-xd)) - td;
    // A float evaluation's error is a few ulps of its largest term, not of the result: for
    // x = 4.75, t = 0.9 the result 0.48 is the difference of 4.75 and 4.275 (whether x t is
    // rounded depends on FMA contraction, which differs between builds).
    const double scale = std::max(xd, 0.0) + std::fabs(xd * td) + 1.0;
    EXPECT_NEAR(got[static_cast<std::size_t>(i)], want, 3e-7 * scale)
        << "x = " << xd << ", t = " << td;
    EXPECT_NEAR(grad[static_cast<std::size_t>(i)], dwant, 2e-7) << "x = " << xd << ", t = " << td;
  }
}

TEST(Loss, RejectsBadArguments) {
  Tensor logits = Tensor::zeros({3, 4});
  EXPECT_THROW(ops::cross_entropy(logits, Tensor::from_ints({0, 1}, {2})), Error);
  EXPECT_THROW(ops::cross_entropy(logits, Tensor::zeros({3})), Error);
  EXPECT_THROW(
      ops::cross_entropy(logits, Tensor::from_ints({0, 1, 2}, {3}), Reduction::mean, -100, 1.5f),
      Error);
  EXPECT_THROW(ops::cross_entropy(Tensor::zeros({3, 0}), Tensor::from_ints({0, 0, 0}, {3})), Error);
  try {
    ops::cross_entropy(logits, Tensor::from_ints({0, 4, 1}, {3}));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("target 4"), std::string::npos) << m;
    EXPECT_NE(m.find("[0, 4)"), std::string::npos) << m;
  }
  EXPECT_THROW(ops::cross_entropy(logits, Tensor::from_ints({0, -5, 1}, {3})), Error);
  EXPECT_THROW(ops::bce_loss(Tensor::full({2}, 1.5f), Tensor::zeros({2})), Error);
  EXPECT_THROW(ops::bce_loss(Tensor::full({2}, 0.5f), Tensor::zeros({3})), Error);
  EXPECT_THROW(ops::bce_with_logits(Tensor::zeros({2}), Tensor::zeros({2, 1})), Error);
  EXPECT_THROW(ops::gaussian_kl(Tensor::zeros({2}), Tensor::zeros({3})), Error);
  EXPECT_THROW(ops::gaussian_kl(Tensor::scalar(0.f), Tensor::scalar(0.f)), Error);
  EXPECT_THROW(ops::bce_with_logits(Tensor::zeros({2}, DType::s32), Tensor::zeros({2})), Error);
}

}  // namespace
}  // namespace kiln
