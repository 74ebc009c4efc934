#include "metrics.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "kiln/autograd.hpp"
#include "kiln/error.hpp"
#include "kiln/ops.hpp"
#include "kiln/random.hpp"
#include "kiln/tensor.hpp"

namespace kiln_eval {

using kiln::Tensor;

FeatureStats feature_stats(const float* x, std::int64_t n, std::int64_t d) {
  KILN_CHECK(n >= 2, "eval: feature statistics need at least 2 samples, got ", n);
  FeatureStats s;
  s.n = n;
  s.d = d;
  s.mean.assign(static_cast<std::size_t>(d), 0.0);
  for (std::int64_t i = 0; i < n; ++i) {
    for (std::int64_t j = 0; j < d; ++j) s.mean[j] += x[i * d + j];
  }
  for (double& m : s.mean) m /= static_cast<double>(n);
  s.cov.assign(static_cast<std::size_t>(d * d), 0.0);
  std::vector<double> c(static_cast<std::size_t>(d));
  for (std::int64_t i = 0; i < n; ++i) {
    for (std::int64_t j = 0; j < d; ++j) c[j] = x[i * d + j] - s.mean[j];
    for (std::int64_t a = 0; a < d; ++a) {
      const double ca = c[a];
      if (ca == 0.0) continue;
      double* row = s.cov.data() + a * d;
      for (std::int64_t b = a; b < d; ++b) row[b] += ca * c[b];
    }
  }
  for (std::int64_t a = 0; a < d; ++a) {
    for (std::int64_t b = a; b < d; ++b) {
      const double v = s.cov[a * d + b] / static_cast<double>(n - 1);
      s.cov[a * d + b] = v;
      s.cov[b * d + a] = v;
    }
  }
  return s;
}

// Cyclic Jacobi rotations until the off-diagonal mass is negligible.
void symmetric_eigen(std::vector<double> a, std::int64_t d, std::vector<double>& values,
                     std::vector<double>& vectors) {
  KILN_CHECK(static_cast<std::int64_t>(a.size()) == d * d, "eval: matrix size mismatch");
  vectors.assign(static_cast<std::size_t>(d * d), 0.0);
  for (std::int64_t i = 0; i < d; ++i) vectors[i * d + i] = 1.0;
  auto A = [&](std::int64_t i, std::int64_t j) -> double& { return a[i * d + j]; };
  double total = 0;
  for (double v : a) total += v * v;
  for (int sweep = 0; sweep < 100; ++sweep) {
    double off = 0;
    for (std::int64_t i = 0; i < d; ++i) {
      for (std::int64_t j = i + 1; j < d; ++j) off += A(i, j) * A(i, j);
    }
    if (off <= 1e-30 * total || off == 0.0) break;
    for (std::int64_t p = 0; p < d; ++p) {
      for (std::int64_t q = p + 1; q < d; ++q) {
        const double apq = A(p, q);
        if (std::abs(apq) < 1e-300) continue;
        const double theta = (A(q, q) - A(p, p)) / (2 * apq);
        const double t =
            (theta >= 0 ? 1.0 : -1.0) / (std::abs(theta) + std::sqrt(theta * theta + 1));
        const double c = 1 / std::sqrt(t * t + 1), s = t * c;
        for (std::int64_t k = 0; k < d; ++k) {  // columns p, q
          const double akp = A(k, p), akq = A(k, q);
          A(k, p) = c * akp - s * akq;
          A(k, q) = s * akp + c * akq;
        }
        for (std::int64_t k = 0; k < d; ++k) {  // rows p, q
          const double apk = A(p, k), aqk = A(q, k);
          A(p, k) = c * apk - s * aqk;
          A(q, k) = s * apk + c * aqk;
        }
        for (std::int64_t k = 0; k < d; ++k) {
          double* row = vectors.data() + k * d;
          const double vp = row[p], vq = row[q];
          row[p] = c * vp - s * vq;
          row[q] = s * vp + c * vq;
        }
      }
    }
  }
  std::vector<std::int64_t> order(static_cast<std::size_t>(d));
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(),
            [&](std::int64_t x, std::int64_t y) { return A(x, x) < A(y, y); });
  values.resize(static_cast<std::size_t>(d));
  std::vector<double> sorted(static_cast<std::size_t>(d * d));
  for (std::int64_t c = 0; c < d; ++c) {
    values[c] = A(order[c], order[c]);
    for (std::int64_t r = 0; r < d; ++r) sorted[r * d + c] = vectors[r * d + order[c]];
  }
  vectors = std::move(sorted);
}

std::vector<double> sqrtm_psd(const std::vector<double>& a, std::int64_t d) {
  std::vector<double> w, v;
  symmetric_eigen(a, d, w, v);
  std::vector<double> out(static_cast<std::size_t>(d * d), 0.0);
  for (std::int64_t k = 0; k < d; ++k) {
    const double s = std::sqrt(std::max(0.0, w[k]));
    if (s == 0.0) continue;
    for (std::int64_t i = 0; i < d; ++i) {
      const double vik = v[i * d + k] * s;
      for (std::int64_t j = 0; j < d; ++j) out[i * d + j] += vik * v[j * d + k];
    }
  }
  return out;
}

namespace {
std::vector<double> matmul(const std::vector<double>& a, const std::vector<double>& b,
                           std::int64_t d) {
  std::vector<double> c(static_cast<std::size_t>(d * d), 0.0);
  for (std::int64_t i = 0; i < d; ++i) {
    for (std::int64_t k = 0; k < d; ++k) {
      const double aik = a[i * d + k];
      if (aik == 0.0) continue;
      for (std::int64_t j = 0; j < d; ++j) c[i * d + j] += aik * b[k * d + j];
    }
  }
  return c;
}
}  // namespace

double trace_sqrt_product(const std::vector<double>& a, const std::vector<double>& b,
                          std::int64_t d) {
  const std::vector<double> ra = sqrtm_psd(a, d);
  std::vector<double> m = matmul(matmul(ra, b, d), ra, d);
  for (std::int64_t i = 0; i < d; ++i) {  // symmetrise away rounding
    for (std::int64_t j = i + 1; j < d; ++j) {
      const double v = 0.5 * (m[i * d + j] + m[j * d + i]);
      m[i * d + j] = m[j * d + i] = v;
    }
  }
  std::vector<double> w, v;
  symmetric_eigen(m, d, w, v);
  double t = 0;
  for (double x : w) t += std::sqrt(std::max(0.0, x));
  return t;
}

double frechet_distance(const FeatureStats& a, const FeatureStats& b) {
  KILN_CHECK(a.d == b.d, "eval: feature sizes differ (", a.d, " and ", b.d, ")");
  const std::int64_t d = a.d;
  double dist = 0, tr = 0;
  for (std::int64_t i = 0; i < d; ++i) {
    dist += (a.mean[i] - b.mean[i]) * (a.mean[i] - b.mean[i]);
    tr += a.cov[i * d + i] + b.cov[i * d + i];
  }
  return dist + tr - 2 * trace_sqrt_product(a.cov, b.cov, d);
}

namespace {

// Rows `idx` of x [*, d] as an f32 tensor [idx.size(), d].
Tensor gather_rows(const float* x, const std::vector<std::int64_t>& idx, std::int64_t d) {
  Tensor t = Tensor::empty({static_cast<std::int64_t>(idx.size()), d});
  float* p = t.data<float>();
  for (std::size_t r = 0; r < idx.size(); ++r) std::copy_n(x + idx[r] * d, d, p + r * d);
  return t;
}

// `m` distinct indices of [0, n) (partial Fisher-Yates), from rng.
std::vector<std::int64_t> draw_subset(std::int64_t n, std::int64_t m, kiln::Philox& rng) {
  std::vector<std::int64_t> all(static_cast<std::size_t>(n));
  std::iota(all.begin(), all.end(), 0);
  for (std::int64_t i = 0; i < m; ++i) {
    const auto j = i + static_cast<std::int64_t>(rng.below(static_cast<std::uint64_t>(n - i)));
    std::swap(all[i], all[j]);
  }
  all.resize(static_cast<std::size_t>(m));
  return all;
}

// Sum of (x.y / d + 1)^3 over a Gram matrix, optionally without its diagonal.
double kernel_sum(const Tensor& gram, std::int64_t d, bool skip_diagonal) {
  const std::int64_t r = gram.size(0), c = gram.size(1);
  const float* g = gram.data<float>();
  double s = 0;
  for (std::int64_t i = 0; i < r; ++i) {
    for (std::int64_t j = 0; j < c; ++j) {
      if (skip_diagonal && i == j) continue;
      const double k = static_cast<double>(g[i * c + j]) / static_cast<double>(d) + 1.0;
      s += k * k * k;
    }
  }
  return s;
}

}  // namespace

Kid kernel_inception_distance(const float* x, std::int64_t n, const float* y, std::int64_t m,
                              std::int64_t d, std::int64_t subset_size, std::int64_t subsets,
                              std::uint64_t seed) {
  const std::int64_t s = std::min({subset_size, n, m});
  KILN_CHECK(s >= 2, "eval: KID needs at least 2 samples in each set");
  KILN_CHECK(subsets >= 1, "eval: KID needs at least one subset");
  kiln::NoGradGuard ng;
  std::vector<double> values;
  for (std::int64_t k = 0; k < subsets; ++k) {
    kiln::Philox rx(seed, static_cast<std::uint64_t>(k), 0),
        ry(seed, static_cast<std::uint64_t>(k), 1);
    const Tensor a = gather_rows(x, draw_subset(n, s, rx), d);
    const Tensor b = gather_rows(y, draw_subset(m, s, ry), d);
    const Tensor kxx = kiln::ops::matmul(a, a.transpose(0, 1)).contiguous();
    const Tensor kyy = kiln::ops::matmul(b, b.transpose(0, 1)).contiguous();
    const Tensor kxy = kiln::ops::matmul(a, b.transpose(0, 1)).contiguous();
    const double ss = static_cast<double>(s);
    const double mmd = kernel_sum(kxx, d, true) / (ss * (ss - 1)) +
                       kernel_sum(kyy, d, true) / (ss * (ss - 1)) -
                       2 * kernel_sum(kxy, d, false) / (ss * ss);
    values.push_back(mmd);
  }
  Kid out;
  out.subset_size = s;
  for (double v : values) out.mean += v;
  out.mean /= static_cast<double>(values.size());
  for (double v : values) out.std += (v - out.mean) * (v - out.mean);
  out.std = std::sqrt(out.std / static_cast<double>(values.size()));
  return out;
}

namespace {

// Squared distances between rows a[i] and b[j] for a block of a: [rows, nb] row-major.
std::vector<float> sq_distances(const float* a, std::int64_t rows, const Tensor& b,
                                const std::vector<float>& b_norms, std::int64_t d) {
  const Tensor ta = Tensor::from_bytes(a, static_cast<std::size_t>(rows * d) * sizeof(float),
                                       {rows, d}, kiln::DType::f32);
  const Tensor g = kiln::ops::matmul(ta, b.transpose(0, 1)).contiguous();
  const std::int64_t nb = b.size(0);
  std::vector<float> out(static_cast<std::size_t>(rows * nb));
  const float* gp = g.data<float>();
  for (std::int64_t i = 0; i < rows; ++i) {
    double an = 0;
    for (std::int64_t k = 0; k < d; ++k) an += double(a[i * d + k]) * a[i * d + k];
    for (std::int64_t j = 0; j < nb; ++j) {
      out[i * nb + j] = std::max(0.f, static_cast<float>(an + b_norms[j] - 2.0 * gp[i * nb + j]));
    }
  }
  return out;
}

std::vector<float> row_norms(const float* x, std::int64_t n, std::int64_t d) {
  std::vector<float> out(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) {
    double s = 0;
    for (std::int64_t k = 0; k < d; ++k) s += double(x[i * d + k]) * x[i * d + k];
    out[i] = static_cast<float>(s);
  }
  return out;
}

constexpr std::int64_t kBlock = 512;

// Squared distance from each row of x to its k-th nearest other row.
std::vector<float> knn_radii(const float* x, std::int64_t n, std::int64_t d, std::int64_t k) {
  const Tensor tx = Tensor::from_bytes(x, static_cast<std::size_t>(n * d) * sizeof(float), {n, d},
                                       kiln::DType::f32);
  const std::vector<float> norms = row_norms(x, n, d);
  std::vector<float> radii(static_cast<std::size_t>(n));
  for (std::int64_t b0 = 0; b0 < n; b0 += kBlock) {
    const std::int64_t rows = std::min(kBlock, n - b0);
    std::vector<float> dist = sq_distances(x + b0 * d, rows, tx, norms, d);
    for (std::int64_t i = 0; i < rows; ++i) {
      float* row = dist.data() + i * n;
      row[b0 + i] = -1.f;  // itself: sorts first, so the k-th other is at position k
      std::nth_element(row, row + k, row + n);
      radii[b0 + i] = row[k];
    }
  }
  return radii;
}

// Share of rows of q inside the manifold of (x, radii).
double coverage(const float* q, std::int64_t nq, const float* x, std::int64_t n,
                const std::vector<float>& radii, std::int64_t d) {
  const Tensor tx = Tensor::from_bytes(x, static_cast<std::size_t>(n * d) * sizeof(float), {n, d},
                                       kiln::DType::f32);
  const std::vector<float> norms = row_norms(x, n, d);
  std::int64_t inside = 0;
  for (std::int64_t b0 = 0; b0 < nq; b0 += kBlock) {
    const std::int64_t rows = std::min(kBlock, nq - b0);
    const std::vector<float> dist = sq_distances(q + b0 * d, rows, tx, norms, d);
    for (std::int64_t i = 0; i < rows; ++i) {
      for (std::int64_t j = 0; j < n; ++j) {
        if (dist[i * n + j] <= radii[j]) {
          ++inside;
          break;
        }
      }
    }
  }
  return static_cast<double>(inside) / static_cast<double>(nq);
}

}  // namespace

PrecisionRecall knn_precision_recall(const float* real, std::int64_t n_real, const float* fake,
                                     std::int64_t n_fake, std::int64_t d, std::int64_t k) {
  KILN_CHECK(k >= 1 && k < n_real && k < n_fake, "eval: k-NN precision/recall with k = ", k,
             " needs more than k samples in each set (", n_real, " reference, ", n_fake,
             " generated)");
  kiln::NoGradGuard ng;
  PrecisionRecall pr;
  pr.precision = coverage(fake, n_fake, real, n_real, knn_radii(real, n_real, d, k), d);
  pr.recall = coverage(real, n_real, fake, n_fake, knn_radii(fake, n_fake, d, k), d);
  return pr;
}

double classifier_score(const float* probs, std::int64_t n, std::int64_t c) {
  KILN_CHECK(n >= 1, "eval: the classifier score needs samples");
  std::vector<double> marginal(static_cast<std::size_t>(c), 0.0);
  for (std::int64_t i = 0; i < n; ++i) {
    for (std::int64_t j = 0; j < c; ++j) marginal[j] += probs[i * c + j];
  }
  for (double& m : marginal) m /= static_cast<double>(n);
  double kl = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    for (std::int64_t j = 0; j < c; ++j) {
      const double p = probs[i * c + j];
      if (p > 0) kl += p * (std::log(p) - std::log(marginal[j]));
    }
  }
  return std::exp(kl / static_cast<double>(n));
}

}  // namespace kiln_eval
