// softmax and log_softmax on oneDNN's softmax_v2 primitive (algorithms softmax_accurate and
// softmax_log), forward and backward, over any dimension: the axis is handed to the primitive,
// so no transpose is needed. Plain strided views are made dense first; blocked layouts (e.g. a
// conv output in nChw16c) are passed through and the result keeps that layout.
#include "ops/op_util.hpp"

namespace kiln::ops {
namespace {

using dnnl::memory;

struct SoftmaxFwd {
  dnnl::softmax_v2_forward prim;
  memory src, dst;
};
struct SoftmaxBwd {
  dnnl::softmax_v2_backward prim;
  memory dst, diff_dst, diff_src;
};

PrimitiveKey softmax_key(int tag, bool log, int axis, const memory::desc& md) {
  PrimitiveKey k;
  k.add(tag).add(log ? 1 : 0).add(axis);
  // The descriptor's bytes identify its layout fully.
  const auto* raw = reinterpret_cast<const std::int64_t*>(&md.data);
  for (std::size_t i = 0; i < sizeof(md.data) / sizeof(std::int64_t); ++i) k.add(raw[i]);
  return k;
}

dnnl::algorithm softmax_alg(bool log) {
  return log ? dnnl::algorithm::softmax_log : dnnl::algorithm::softmax_accurate;
}

dnnl::softmax_v2_forward::primitive_desc forward_pd(bool log, int axis, const memory::desc& md) {
  dnnl::softmax_v2_forward::desc d(dnnl::prop_kind::forward_training, softmax_alg(log), md, md,
                                   axis);
  return dnnl::softmax_v2_forward::primitive_desc(d, dnnl_engine());
}

Tensor softmax_forward(const Tensor& x, bool log, int axis) {
  const memory::desc md = dnnl_desc(x);
  thread_local PrimitiveCache<SoftmaxFwd> cache;
  SoftmaxFwd& e = cache.get(softmax_key(0, log, axis, md), [&] {
    auto pd = forward_pd(log, axis, md);
    return SoftmaxFwd{dnnl::softmax_v2_forward(pd), memory(md, dnnl_engine(), nullptr),
                      memory(pd.dst_desc(), dnnl_engine(), nullptr)};
  });
  Tensor y = empty_for_desc(e.dst.get_desc(), x.shape());
  e.src.set_data_handle(x.raw_data());
  e.dst.set_data_handle(y.raw_data());
  execute(e.prim, {{DNNL_ARG_SRC, e.src}, {DNNL_ARG_DST, e.dst}});
  return y;
}

// dL/dx from dL/dy and y (the softmax or log-softmax output).
Tensor softmax_backward(const Tensor& grad_y, const Tensor& y, bool log, int axis) {
  const memory::desc md = dnnl_desc(y);
  Tensor g = reorder_to(grad_y.dtype() == y.dtype() ? grad_y : grad_y.to(y.dtype()), md);
  thread_local PrimitiveCache<SoftmaxBwd> cache;
  SoftmaxBwd& e = cache.get(softmax_key(1, log, axis, md), [&] {
    auto fpd = forward_pd(log, axis, md);
    dnnl::softmax_v2_backward::desc d(softmax_alg(log), md, md, md, axis);
    dnnl::softmax_v2_backward::primitive_desc pd(d, dnnl_engine(), fpd);
    return SoftmaxBwd{dnnl::softmax_v2_backward(pd), memory(md, dnnl_engine(), nullptr),
                      memory(md, dnnl_engine(), nullptr),
                      memory(pd.diff_src_desc(), dnnl_engine(), nullptr)};
  });
  Tensor gx = empty_for_desc(e.diff_src.get_desc(), y.shape());
  e.dst.set_data_handle(y.raw_data());
  e.diff_dst.set_data_handle(g.raw_data());
  e.diff_src.set_data_handle(gx.raw_data());
  execute(
      e.prim,
      {{DNNL_ARG_DST, e.dst}, {DNNL_ARG_DIFF_DST, e.diff_dst}, {DNNL_ARG_DIFF_SRC, e.diff_src}});
  return gx;
}

Tensor softmax_impl(const Tensor& x_in, std::int64_t dim, bool log) {
  const char* op = log ? "log_softmax" : "softmax";
  detail::require_defined(x_in, op, "x");
  KILN_CHECK(x_in.dtype() == DType::f32 || x_in.dtype() == DType::bf16, op,
             ": x must be f32 or bf16, got ", dtype_name(x_in.dtype()));
  // A 0-d tensor is a single-element distribution over dimension 0.
  const Tensor x0 = x_in.dim() == 0 ? x_in.reshape({1}) : x_in;
  const int axis = static_cast<int>(wrap_dim(dim, x0.dim(), op));
  Tensor x = x0.is_blocked() ? x0 : x0.contiguous();
  Tensor y;
  if (x.numel() == 0) {
    y = Tensor::empty(x.shape(), x.dtype());
  } else {
    NoGradGuard ng;
    y = softmax_forward(x.detach(), log, axis);
  }
  if (needs_grad({x})) {
    record(op, {x}, {&y}, [yd = y.detach(), log, axis](const TensorList& g) {
      if (yd.numel() == 0) return TensorList{Tensor::zeros(yd.shape(), yd.dtype())};
      return TensorList{softmax_backward(g[0], yd, log, axis)};
    });
  }
  return x_in.dim() == 0 ? y.reshape({}) : y;
}

}  // namespace

Tensor softmax(const Tensor& x, std::int64_t dim) {
  return softmax_impl(x, dim, false);
}
Tensor log_softmax(const Tensor& x, std::int64_t dim) {
  return softmax_impl(x, dim, true);
}

}  // namespace kiln::ops
