// Checks of the flow's mathematics, built against the installed SDK like the plugin itself:
//   * the inverse undoes the forward pass (sampling is the exact inverse of scoring);
//   * the log-determinant the flow adds up equals log|det J| of its Jacobian, computed here by
//     central differences and an LU decomposition in double precision;
//   * the dequantisation's log-determinant and bits/dim of a flat density are what the formulas
//     give by hand.
// Exit code 0 when every check passes; each failure is printed.
#include <cmath>
#include <cstdio>
#include <vector>

#include "flow_model.hpp"
#include "kiln/autograd.hpp"
#include "kiln/random.hpp"

namespace {

int failures = 0;

void check(bool ok, const char* what, double got, double want) {
  std::printf("%s %s: got %.6g, want %.6g\n", ok ? "PASS" : "FAIL", what, got, want);
  if (!ok) ++failures;
}

// log|det A| of a row-major n x n matrix, by LU with partial pivoting.
double log_abs_det(std::vector<double> a, int n) {
  double sum = 0;
  for (int c = 0; c < n; ++c) {
    int pivot = c;
    for (int r = c + 1; r < n; ++r) {
      if (std::fabs(a[r * n + c]) > std::fabs(a[pivot * n + c])) pivot = r;
    }
    if (pivot != c) {
      for (int k = 0; k < n; ++k) std::swap(a[c * n + k], a[pivot * n + k]);
    }
    const double d = a[c * n + c];
    sum += std::log(std::fabs(d));
    for (int r = c + 1; r < n; ++r) {
      const double f = a[r * n + c] / d;
      if (f == 0) continue;
      for (int k = c; k < n; ++k) a[r * n + k] -= f * a[c * n + k];
    }
  }
  return sum;
}

}  // namespace

int main() {
  using kiln::Tensor;
  kiln::NoGradGuard no_grad;
  flow::RealNVP model({.hidden = 4, .checker_layers = 2, .channel_layers = 2}, 1);
  // Away from the identity it starts as: every parameter gets some noise.
  kiln::Generator gen(3);
  for (auto& [name, p] : model.named_parameters()) {
    Tensor noise = Tensor::randn(p.shape(), gen) * 0.3f;
    p.copy_(p + noise);
  }
  constexpr int kSide = flow::RealNVP::kSide, kDim = kSide * kSide;
  const Tensor y = Tensor::randn({1, 1, kSide, kSide}, gen);

  // Inverse.
  Tensor logdet = Tensor::zeros({1});
  const Tensor z = model.forward(y, logdet);
  const Tensor back = model.sample(z);  // sample() maps back to pixels: compare in logit space
  {
    // sample() ends with sigmoid and rescaling; undo them to compare with y.
    const std::vector<float> x = back.to_vector();
    double worst = 0;
    const std::vector<float> yv = y.to_vector();
    for (int i = 0; i < kDim; ++i) {
      const double p = 0.05 + 0.9 * x[i];
      const double yi = std::log(p) - std::log1p(-p);
      // Pixels clamped to [0, 1] cannot be undone; y ~ N(0, 1) rarely reaches the clamp.
      if (x[i] > 0 && x[i] < 1) worst = std::max(worst, std::fabs(yi - yv[i]));
    }
    check(worst < 1e-3, "inverse(forward(y)) == y, worst |difference|", worst, 0);
  }

  // log-determinant against the Jacobian by central differences: column j is
  // (f(y + h e_j) - f(y - h e_j)) / 2h, all 2 * 784 perturbed inputs in one batch.
  const float h = 1e-2f;
  Tensor batch = Tensor::empty({2 * kDim, 1, kSide, kSide});
  const std::vector<float> yv = y.to_vector();
  float* b = batch.data<float>();
  for (int j = 0; j < kDim; ++j) {
    for (int k = 0; k < kDim; ++k) {
      b[(2 * j) * kDim + k] = yv[k] + (k == j ? h : 0.f);
      b[(2 * j + 1) * kDim + k] = yv[k] - (k == j ? h : 0.f);
    }
  }
  Tensor unused = Tensor::zeros({2 * kDim});
  const std::vector<float> out = model.forward(batch, unused).contiguous().to_vector();
  std::vector<double> jac(static_cast<std::size_t>(kDim) * kDim);
  for (int j = 0; j < kDim; ++j) {
    for (int i = 0; i < kDim; ++i) {
      jac[static_cast<std::size_t>(i) * kDim + j] =
          (double(out[(2 * j) * kDim + i]) - double(out[(2 * j + 1) * kDim + i])) / (2.0 * h);
    }
  }
  const double want = log_abs_det(jac, kDim);
  const double got = logdet.item();
  check(std::fabs(got - want) < 0.05 + 1e-3 * std::fabs(want),
        "log|det dz/dy| summed by the flow vs LU of the numerical Jacobian", got, want);
  check(std::fabs(want) > 1.0, "the test flow is not volume-preserving (|log det| > 1)",
        std::fabs(want), 1.0);

  // Dequantisation: a pixel of level k becomes x = (k + u) / 256; y = logit(0.05 + 0.9 x).
  const Tensor img = Tensor::full({1, 1, kSide, kSide}, 51.f / 255.f);  // level 51
  const Tensor u = Tensor::full({1, 1, kSide, kSide}, 0.5f);
  const flow::Dequantised d = flow::dequantise(img, u);
  const double x = 51.5 / 256, p = 0.05 + 0.9 * x;
  check(std::fabs(d.y.to_vector()[0] - (std::log(p) - std::log1p(-p))) < 1e-5, "logit of level 51",
        d.y.to_vector()[0], std::log(p) - std::log1p(-p));
  const double ld = kDim * (std::log(0.9) - std::log(p) - std::log1p(-p));
  check(std::fabs(d.logdet.item() - ld) < 1e-3 * std::fabs(ld), "dequantisation log|det|",
        d.logdet.item(), ld);
  // An untrained flow is the identity (last convolutions start at zero): bits/dim is then
  // -log2 N(y; 0, 1) / D - log2|dy/dx| / D + 8, by hand for this constant image.
  flow::RealNVP fresh({.hidden = 4, .checker_layers = 2, .channel_layers = 2}, 1);
  const double yv0 = std::log(p) - std::log1p(-p);
  const double nats = 0.5 * yv0 * yv0 + 0.5 * std::log(2 * M_PI) - ld / kDim;
  const double bpd_want = nats / std::log(2.0) + 8;
  const double bpd_got = fresh.bits_per_dim(d).item();
  check(std::fabs(bpd_got - bpd_want) < 1e-3, "bits/dim of the identity flow", bpd_got, bpd_want);

  std::printf("%s\n", failures ? "flow_test: FAILED" : "flow_test: all passed");
  return failures ? 1 : 0;
}
