// Sample-quality metrics on feature vectors (rows of row-major [n, d] float arrays).
//
//   FID   |mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^(1/2))      (Heusel et al. 2017)
//         with tr((S_a S_b)^(1/2)) computed as the sum of the square roots of the eigenvalues of
//         the symmetric PSD matrix S_a^(1/2) S_b S_a^(1/2) (same eigenvalues as S_a S_b), by a
//         Jacobi eigensolver in double; covariances are unbiased (divide by n - 1), as
//         pytorch-fid's np.cov.
//   KID   unbiased MMD^2 with the kernel k(x, y) = (x.y / d + 1)^3, averaged over `subsets`
//         random subsets of `subset_size` rows of each set (Binkowski et al. 2018, as
//         torch-fidelity); subsets drawn without replacement from Philox(seed, s, 0 / 1).
//   k-NN precision / recall (Kynkaanniemi et al. 2019): a sample is inside a set's manifold when
//         it lies within the distance from some member to that member's k-th nearest neighbour
//         (the member itself not counted). precision = share of generated samples inside the
//         reference manifold; recall = share of reference samples inside the generated one.
//   classifier score   exp(mean_i KL(p(y|x_i) || p(y))) over class probabilities (the
//         Inception Score's formula with the evaluation classifier).
#pragma once

#include <cstdint>
#include <vector>

namespace kiln_eval {

struct FeatureStats {
  std::int64_t n = 0, d = 0;
  std::vector<double> mean;  // [d]
  std::vector<double> cov;   // [d, d], unbiased
};
FeatureStats feature_stats(const float* x, std::int64_t n, std::int64_t d);

// Eigen-decomposition of the symmetric [d, d] matrix `a`: eigenvalues (ascending) and
// eigenvectors as the columns of `vectors` (row-major [d, d]).
void symmetric_eigen(std::vector<double> a, std::int64_t d, std::vector<double>& values,
                     std::vector<double>& vectors);
// The PSD square root of a symmetric matrix (negative eigenvalues, rounding noise, clipped to 0).
std::vector<double> sqrtm_psd(const std::vector<double>& a, std::int64_t d);
// tr((a b)^(1/2)) for symmetric PSD a, b.
double trace_sqrt_product(const std::vector<double>& a, const std::vector<double>& b,
                          std::int64_t d);

double frechet_distance(const FeatureStats& a, const FeatureStats& b);

struct Kid {
  double mean = 0, std = 0;
  std::int64_t subset_size = 0;
};
Kid kernel_inception_distance(const float* x, std::int64_t n, const float* y, std::int64_t m,
                              std::int64_t d, std::int64_t subset_size, std::int64_t subsets,
                              std::uint64_t seed);

struct PrecisionRecall {
  double precision = 0, recall = 0;
};
PrecisionRecall knn_precision_recall(const float* real, std::int64_t n_real, const float* fake,
                                     std::int64_t n_fake, std::int64_t d, std::int64_t k);

// probs: [n, c] rows summing to 1.
double classifier_score(const float* probs, std::int64_t n, std::int64_t c);

}  // namespace kiln_eval
