#include "ops/op_util.hpp"

#include <omp.h>

#include <algorithm>
#include <exception>

#include "kiln/context.hpp"

namespace kiln::ops::detail {

void require_defined(const Tensor& t, const char* op, const char* arg) {
  KILN_CHECK(t.defined(), op, ": ", arg, " is undefined");
}

Tensor as_f32(const Tensor& t, const char* op, const char* arg) {
  require_defined(t, op, arg);
  KILN_CHECK(is_floating(t.dtype()), op, ": ", arg, " must be a floating tensor, got ",
             dtype_name(t.dtype()));
  Tensor r = t.dtype() == DType::f32 ? t : t.to(DType::f32);
  return r.contiguous();
}

void require_dim(const Tensor& t, std::int64_t nd, const char* op, const char* arg,
                 const char* layout) {
  require_defined(t, op, arg);
  KILN_CHECK(t.dim() == nd, op, ": ", arg, " must be ", nd, "-d ", layout, ", got shape ",
             shape_str(t.shape()));
}

Shape broadcast_shape(const Shape& a, const Shape& b, const char* op) {
  const std::size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (std::size_t i = 0; i < n; ++i) {
    const std::int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    const std::int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    KILN_CHECK(da == db || da == 1 || db == 1, op, ": shapes ", shape_str(a), " and ", shape_str(b),
               " cannot be broadcast together");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

// Kiln's kernels run between oneDNN primitives, so they use the same OpenMP team: its workers are
// still spinning from the last primitive, whereas TBB workers would have to share the cores with
// them (docs/benchmarks.md, "Threading", measured with bench/threading_bench.cpp).
void parallel_range(std::int64_t n, std::int64_t grain,
                    const std::function<void(std::int64_t, std::int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<std::int64_t>(grain, 1);
  if (n <= grain || omp_in_parallel()) {
    fn(0, n);
    return;
  }
  const std::int64_t chunks = (n + grain - 1) / grain;
  const int threads =
      static_cast<int>(std::min<std::int64_t>(apply_thread_budget_to_this_thread(), chunks));
  if (threads <= 1) {
    fn(0, n);
    return;
  }
  // `chunks` near-equal pieces of at most `grain` items; the boundaries depend on n and grain
  // only. Each thread takes a contiguous run of them (the same run for the same shapes, which
  // keeps a tensor's halves in the same core's cache from op to op).
  std::exception_ptr error;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (std::int64_t c = 0; c < chunks; ++c) {
    try {
      fn(c * n / chunks, (c + 1) * n / chunks);
    } catch (...) {
#pragma omp critical(kiln_parallel_range_error)
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
}

EltwiseAlg eltwise_alg(Act act, float alpha) {
  using a = dnnl::algorithm;
  switch (act) {
    case Act::relu:
      return {a::eltwise_relu, a::eltwise_relu_use_dst_for_bwd, true, 0.f, 0.f};
    case Act::leaky_relu:
      if (alpha > 0.f) {
        return {a::eltwise_relu, a::eltwise_relu_use_dst_for_bwd, true, alpha, 0.f};
      }
      return {a::eltwise_relu, a::eltwise_relu, false, alpha, 0.f};
    case Act::tanh:
      return {a::eltwise_tanh, a::eltwise_tanh_use_dst_for_bwd, true, 0.f, 0.f};
    case Act::sigmoid:
      return {a::eltwise_logistic, a::eltwise_logistic_use_dst_for_bwd, true, 0.f, 0.f};
    case Act::gelu:
      return {a::eltwise_gelu_erf, a::eltwise_gelu_erf, false, 0.f, 0.f};
    case Act::gelu_tanh:
      return {a::eltwise_gelu_tanh, a::eltwise_gelu_tanh, false, 0.f, 0.f};
    case Act::silu:
      return {a::eltwise_swish, a::eltwise_swish, false, 1.f, 0.f};
    case Act::none:
      break;
  }
  throw Error("activation: Act::none has no oneDNN algorithm");
}

bool act_backward_from_output(Act act, float alpha) {
  if (act == Act::none) return true;
  return eltwise_alg(act, alpha).bwd_uses_dst;
}

dnnl::post_ops act_post_ops(Act act, float alpha) {
  dnnl::post_ops po;
  if (act != Act::none) {
    const EltwiseAlg e = eltwise_alg(act, alpha);
    po.append_eltwise(1.f, e.fwd, e.alpha, e.beta);
  }
  return po;
}

float sum_floats(const float* p, std::int64_t n) {
  // Blocks of 1024 summed in 16 float lanes (vectorised), block sums accumulated in double:
  // the error stays near that of pairwise summation for any n.
  constexpr int kLanes = 16;
  constexpr std::int64_t kBlock = 1024;
  double total = 0;
  for (std::int64_t b = 0; b < n; b += kBlock) {
    const std::int64_t e = std::min(n, b + kBlock);
    float acc[kLanes] = {};
    std::int64_t i = b;
    for (; i + kLanes <= e; i += kLanes) {
      for (int l = 0; l < kLanes; ++l) acc[l] += p[i + l];
    }
    float tail = 0.f;
    for (; i < e; ++i) tail += p[i];
    for (int w = kLanes / 2; w >= 1; w /= 2) {
      for (int l = 0; l < w; ++l) acc[l] += acc[l + w];
    }
    total += static_cast<double>(acc[0]) + tail;
  }
  return static_cast<float>(total);
}

}  // namespace kiln::ops::detail
