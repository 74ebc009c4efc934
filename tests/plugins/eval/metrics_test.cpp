// The eval plugin's metrics against numpy references (tests/fixtures/gen/eval_metrics_fixture.py)
// and against properties that hold exactly.
#include "metrics.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "kiln/random.hpp"
#include "support/test_support.hpp"

namespace kiln_eval {
namespace {

using kiln::Tensor;

struct Fixture {
  kiln::Safetensors st = kiln::test::load_fixture("eval_metrics.safetensors");
  const Tensor& t(const std::string& k) const { return st.tensors.at(k); }
  double expected(const std::string& k) const { return std::stod(st.metadata.at(k)); }
};

double fid_of(const Tensor& a, const Tensor& b) {
  const FeatureStats sa = feature_stats(a.data<float>(), a.size(0), a.size(1));
  const FeatureStats sb = feature_stats(b.data<float>(), b.size(0), b.size(1));
  return frechet_distance(sa, sb);
}

TEST(EvalMetrics, FidMatchesNumpy) {
  Fixture f;
  // Full-rank covariances agree to rounding. With fewer samples than dimensions the product of
  // the covariances has zero eigenvalues that both methods see as rounding noise of order 1e-15,
  // whose square roots (~3e-8 each) differ: agreement to 1e-7 relative there.
  for (const std::string c : {"fid", "fid_relu", "fid_singular"}) {
    const double want = f.expected(c);
    const double tol = (c == "fid_singular" ? 1e-7 : 1e-9) * std::abs(want);
    EXPECT_NEAR(fid_of(f.t(c + ".a"), f.t(c + ".b")), want, tol) << c;
  }
}

TEST(EvalMetrics, FidOfASetWithItselfIsZeroAndIsSymmetric) {
  Fixture f;
  const Tensor& a = f.t("fid.a");
  const Tensor& b = f.t("fid.b");
  EXPECT_NEAR(fid_of(a, a), 0.0, 1e-9);
  EXPECT_NEAR(fid_of(a, b), fid_of(b, a), 1e-9 * fid_of(a, b));
}

TEST(EvalMetrics, SymmetricEigenReconstructsTheMatrixAndSqrtmSquaresBack) {
  const std::int64_t d = 24;
  kiln::Philox rng(3);
  std::vector<double> m(d * d), a(d * d, 0.0);
  for (double& v : m) v = rng.normal();
  for (std::int64_t i = 0; i < d; ++i)  // a = m m^T, PSD; rank-deficient in one direction
    for (std::int64_t j = 0; j < d; ++j)
      for (std::int64_t k = 0; k + 1 < d; ++k) a[i * d + j] += m[i * d + k] * m[j * d + k];
  std::vector<double> w, v;
  symmetric_eigen(a, d, w, v);
  for (std::int64_t i = 0; i < d; ++i) {
    for (std::int64_t j = 0; j < d; ++j) {
      double r = 0;
      for (std::int64_t k = 0; k < d; ++k) r += v[i * d + k] * w[k] * v[j * d + k];
      EXPECT_NEAR(r, a[i * d + j], 1e-9 * (1 + std::abs(a[i * d + j])));
    }
  }
  EXPECT_NEAR(w[0], 0.0, 1e-9);  // the missing direction
  const std::vector<double> s = sqrtm_psd(a, d);
  for (std::int64_t i = 0; i < d; ++i) {
    for (std::int64_t j = 0; j < d; ++j) {
      double r = 0;
      for (std::int64_t k = 0; k < d; ++k) r += s[i * d + k] * s[k * d + j];
      EXPECT_NEAR(r, a[i * d + j], 1e-8 * (1 + std::abs(a[i * d + j])));
    }
  }
}

TEST(EvalMetrics, KidMatchesNumpyOnOneSubsetOfAllRows) {
  Fixture f;
  const Tensor& x = f.t("kid.x");
  const Tensor& y = f.t("kid.y");
  const Kid k = kernel_inception_distance(x.data<float>(), x.size(0), y.data<float>(), y.size(0),
                                          x.size(1), 1000, 1, 7);
  EXPECT_EQ(k.subset_size, 150);
  EXPECT_NEAR(k.mean, f.expected("kid"), 1e-4 * std::abs(f.expected("kid")));
  EXPECT_EQ(k.std, 0.0);
  // Several subsets: a spread, and the same answer for the same seed.
  const Kid a = kernel_inception_distance(x.data<float>(), 150, y.data<float>(), 150, 12, 50, 8, 1);
  const Kid b = kernel_inception_distance(x.data<float>(), 150, y.data<float>(), 150, 12, 50, 8, 1);
  EXPECT_EQ(a.mean, b.mean);
  EXPECT_GT(a.std, 0.0);
}

TEST(EvalMetrics, KnnPrecisionRecallMatchNumpy) {
  Fixture f;
  const Tensor& real = f.t("pr.real");
  const Tensor& fake = f.t("pr.fake");
  const PrecisionRecall pr = knn_precision_recall(real.data<float>(), real.size(0),
                                                  fake.data<float>(), fake.size(0), 8, 3);
  EXPECT_DOUBLE_EQ(pr.precision, f.expected("pr.precision"));
  EXPECT_DOUBLE_EQ(pr.recall, f.expected("pr.recall"));
  // A set against itself is fully covered both ways.
  const PrecisionRecall same = knn_precision_recall(real.data<float>(), real.size(0),
                                                    real.data<float>(), real.size(0), 8, 3);
  EXPECT_EQ(same.precision, 1.0);
  EXPECT_EQ(same.recall, 1.0);
  EXPECT_THROW(knn_precision_recall(real.data<float>(), 3, fake.data<float>(), 3, 8, 3),
               kiln::Error);
}

TEST(EvalMetrics, ClassifierScoreMatchesNumpyAndItsBounds) {
  Fixture f;
  const Tensor& p = f.t("score.probs");
  EXPECT_NEAR(classifier_score(p.data<float>(), p.size(0), p.size(1)), f.expected("score"),
              1e-5 * f.expected("score"));
  // One-hot predictions spread evenly over c classes score c; identical predictions score 1.
  std::vector<float> onehot(40 * 4, 0.f), same(40 * 4, 0.25f);
  for (int i = 0; i < 40; ++i) onehot[i * 4 + i % 4] = 1.f;
  EXPECT_NEAR(classifier_score(onehot.data(), 40, 4), 4.0, 1e-12);
  EXPECT_NEAR(classifier_score(same.data(), 40, 4), 1.0, 1e-12);
}

TEST(EvalMetrics, TooFewSamplesForStatisticsIsAnError) {
  const float one[3] = {1, 2, 3};
  EXPECT_THROW(feature_stats(one, 1, 3), kiln::Error);
}

}  // namespace
}  // namespace kiln_eval
