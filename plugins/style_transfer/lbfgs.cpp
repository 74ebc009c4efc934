#include "lbfgs.hpp"

#include <algorithm>
#include <cmath>

#include "kiln/error.hpp"

namespace kiln::style {
namespace {

double dot(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) s += static_cast<double>(a[i]) * b[i];
  return s;
}

}  // namespace

Lbfgs::Lbfgs(std::int64_t n, LbfgsOptions opts) : n_(n), o_(opts) {
  KILN_CHECK(n > 0, "lbfgs: empty problem");
  KILN_CHECK(o_.history >= 1, "style_transfer: lbfgs_history must be >= 1, got ", o_.history);
  KILN_CHECK(o_.lr > 0 && std::isfinite(o_.lr),
             "style_transfer: the L-BFGS step lr must be > 0, got ", o_.lr);
  g_.assign(static_cast<std::size_t>(n), 0.f);
}

void Lbfgs::direction(std::vector<float>& d) const {
  // Two-loop recursion: d = -H g.
  const std::size_t m = s_.size();
  d.resize(g_.size());
  for (std::size_t i = 0; i < d.size(); ++i) d[i] = -g_[i];
  std::vector<double> alpha(m);
  for (std::size_t k = m; k-- > 0;) {
    alpha[k] = rho_[k] * dot(s_[k], d);
    const float a = static_cast<float>(alpha[k]);
    for (std::size_t i = 0; i < d.size(); ++i) d[i] -= a * y_[k][i];
  }
  const double gamma = dot(s_.back(), y_.back()) / dot(y_.back(), y_.back());
  for (auto& v : d) v = static_cast<float>(v * gamma);
  for (std::size_t k = 0; k < m; ++k) {
    const double beta = rho_[k] * dot(y_[k], d);
    const float c = static_cast<float>(alpha[k] - beta);
    for (std::size_t i = 0; i < d.size(); ++i) d[i] += c * s_[k][i];
  }
}

double Lbfgs::iterate(std::vector<float>& x, const Objective& f) {
  KILN_CHECK(static_cast<std::int64_t>(x.size()) == n_, "lbfgs: x has ", x.size(),
             " values, expected ", n_);
  if (!have_f_) {
    f_ = f(x, g_);
    ++evals_;
    have_f_ = true;
  }
  std::vector<float> d;
  double scale = 1.0;
  if (s_.empty()) {
    d.resize(g_.size());
    for (std::size_t i = 0; i < d.size(); ++i) d[i] = -g_[i];
    double l1 = 0;
    for (float v : g_) l1 += std::abs(v);
    scale = std::min(1.0, 1.0 / std::max(l1, 1e-30));
  } else {
    direction(d);
  }
  double gd = dot(g_, d);
  if (!(gd < 0)) {  // not a descent direction (or NaN): restart from steepest descent
    s_.clear();
    y_.clear();
    rho_.clear();
    for (std::size_t i = 0; i < d.size(); ++i) d[i] = -g_[i];
    double l1 = 0;
    for (float v : g_) l1 += std::abs(v);
    scale = std::min(1.0, 1.0 / std::max(l1, 1e-30));
    gd = dot(g_, d);
    if (!(gd < 0)) return f_;  // zero gradient: at a stationary point
  }
  std::vector<float> xn(x.size()), gn(x.size());
  double t = o_.lr * scale, fn = 0;
  bool accepted = false;
  const int tries = o_.line_search ? o_.max_line_search : 1;
  for (int k = 0; k < tries; ++k) {
    const float tf = static_cast<float>(t);
    for (std::size_t i = 0; i < x.size(); ++i) xn[i] = x[i] + tf * d[i];
    fn = f(xn, gn);
    ++evals_;
    if (!o_.line_search || (std::isfinite(fn) && fn <= f_ + o_.c1 * t * gd)) {
      accepted = true;
      break;
    }
    t *= 0.5;
  }
  if (!accepted) {
    s_.clear();
    y_.clear();
    rho_.clear();
    return f_;
  }
  std::vector<float> s(x.size()), y(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    s[i] = xn[i] - x[i];
    y[i] = gn[i] - g_[i];
  }
  const double sy = dot(s, y);
  if (sy > 1e-10) {
    if (static_cast<int>(s_.size()) == o_.history) {
      s_.pop_front();
      y_.pop_front();
      rho_.pop_front();
    }
    s_.push_back(std::move(s));
    y_.push_back(std::move(y));
    rho_.push_back(1.0 / sy);
  }
  x.swap(xn);
  g_.swap(gn);
  f_ = fn;
  return f_;
}

}  // namespace kiln::style
