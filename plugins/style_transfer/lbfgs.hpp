// L-BFGS (Nocedal & Wright, "Numerical Optimization", algorithms 7.4 and 7.5) over a flat vector.
//
//   Lbfgs opt(n, {.history = 10});
//   auto f = [&](const std::vector<float>& x, std::vector<float>& g) { ...; return loss; };
//   for (int it = 0; it < 100; ++it) opt.iterate(x, f);
//
// Each iteration computes the direction d = -H g with the two-loop recursion over the last
// `history` pairs (s = x_{k+1} - x_k, y = g_{k+1} - g_k), starting from H0 = (s.y / y.y) I of the
// newest pair. The first iteration (and any restart) uses d = -g scaled by min(1, 1 / |g|_1), as
// PyTorch's LBFGS does, so the first step has a sensible length.
//
// Step length:
//   * line_search = true: backtracking (Armijo): t = lr, halved until
//     f(x + t d) <= f(x) + 1e-4 t g.d, at most 20 evaluations; if none is accepted the history is
//     dropped and the iteration ends where it started (the next one restarts from -g).
//   * line_search = false: a fixed step t = lr, one evaluation per iteration (PyTorch's LBFGS
//     with line_search_fn=None, max_iter=1).
// A pair is stored only when s.y > 1e-10 (curvature condition), which keeps H positive definite.
// When d is not a descent direction (g.d >= 0) the history is dropped and d = -g.
// Vectors are f32; dot products accumulate in double.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <vector>

namespace kiln::style {

struct LbfgsOptions {
  int history = 10;
  double lr = 1.0;
  bool line_search = true;
  double c1 = 1e-4;
  int max_line_search = 20;
};

class Lbfgs {
 public:
  // Returns f(x) and writes its gradient into g (already sized n).
  using Objective = std::function<double(const std::vector<float>& x, std::vector<float>& g)>;

  Lbfgs(std::int64_t n, LbfgsOptions opts);
  // One iteration from x (updated in place). Returns f at the new x.
  double iterate(std::vector<float>& x, const Objective& f);
  std::int64_t evaluations() const { return evals_; }
  std::size_t pairs() const { return s_.size(); }

 private:
  void direction(std::vector<float>& d) const;

  std::int64_t n_;
  LbfgsOptions o_;
  bool have_f_ = false;
  double f_ = 0;
  std::vector<float> g_;
  std::deque<std::vector<float>> s_, y_;
  std::deque<double> rho_;
  std::int64_t evals_ = 0;
};

}  // namespace kiln::style
