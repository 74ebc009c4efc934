// Helpers shared by the op implementations (internal).
#pragma once

#include <cstdint>
#include <functional>

#include <oneapi/tbb/parallel_for.h>

#include "core/tensor_impl.hpp"
#include "kiln/autograd.hpp"
#include "kiln/dnnl_interop.hpp"
#include "kiln/ops.hpp"

namespace kiln::ops::detail {

// Throws "op: argument is undefined" when t is undefined.
void require_defined(const Tensor& t, const char* op, const char* arg);
// Throws unless t is floating; returns t converted to plain contiguous f32.
Tensor as_f32(const Tensor& t, const char* op, const char* arg);
// Throws unless t has exactly `nd` dimensions.
void require_dim(const Tensor& t, std::int64_t nd, const char* op, const char* arg,
                 const char* layout);

// numpy broadcasting of two shapes; throws naming op when incompatible.
Shape broadcast_shape(const Shape& a, const Shape& b, const char* op);

// Runs fn(begin, end) over [0, n): serially when n <= grain, otherwise on the calling thread's
// OpenMP team (the threads oneDNN's primitives run on) in pieces of (grain/2, grain] items whose
// boundaries depend on n and grain only. fn runs concurrently on disjoint pieces; an exception
// thrown by fn is rethrown here.
void parallel_range(std::int64_t n, std::int64_t grain,
                    const std::function<void(std::int64_t, std::int64_t)>& fn);

// oneDNN eltwise algorithm and its alpha/beta for an activation.
struct EltwiseAlg {
  dnnl::algorithm fwd;
  dnnl::algorithm bwd;  // possibly a *_use_dst_for_bwd variant
  bool bwd_uses_dst;
  float alpha;
  float beta;
};
EltwiseAlg eltwise_alg(Act act, float alpha);
// True when the activation's gradient can be computed from its output alone (so it may be fused
// into a primitive even when a gradient is needed).
bool act_backward_from_output(Act act, float alpha);
// dL/dz given dL/dy and y = act(z) (for acts where act_backward_from_output holds) or z.
Tensor activation_backward(const Tensor& grad_y, const Tensor& saved, Act act, float alpha);
// Post-ops attribute fusing `act` (empty when Act::none).
dnnl::post_ops act_post_ops(Act act, float alpha);

// Sum of n floats with several independent accumulators (vectorisable, less rounding error).
float sum_floats(const float* p, std::int64_t n);

}  // namespace kiln::ops::detail
