// Activations on oneDNN's eltwise primitives, forward and backward. They accept blocked layouts
// (so conv -> norm -> activation -> conv chains never reorder) and return the input's layout.
#include <cmath>

#include "ops/op_util.hpp"

namespace kiln::ops {
namespace {

struct EltwiseFwd {
  dnnl::eltwise_forward prim;
  dnnl::memory src, dst;
};
struct EltwiseBwd {
  dnnl::eltwise_backward prim;
  dnnl::memory data, diff_dst, diff_src;
};

PrimitiveKey eltwise_key(int tag, dnnl::algorithm alg, float alpha, const dnnl::memory::desc& md) {
  PrimitiveKey k;
  k.add(tag).add(static_cast<std::int64_t>(alg)).add(static_cast<std::int64_t>(alpha * 1e6f));
  // The descriptor's bytes identify its layout fully.
  const auto* raw = reinterpret_cast<const std::int64_t*>(&md.data);
  for (std::size_t i = 0; i < sizeof(md.data) / sizeof(std::int64_t); ++i) k.add(raw[i]);
  return k;
}

Tensor eltwise_forward(const Tensor& x, const detail::EltwiseAlg& a) {
  const dnnl::memory::desc md = dnnl_desc(x);
  thread_local PrimitiveCache<EltwiseFwd> cache;
  EltwiseFwd& e = cache.get(eltwise_key(0, a.fwd, a.alpha, md), [&] {
    dnnl::eltwise_forward::desc d(dnnl::prop_kind::forward_training, a.fwd, md, a.alpha, a.beta);
    dnnl::eltwise_forward::primitive_desc pd(d, dnnl_engine());
    return EltwiseFwd{dnnl::eltwise_forward(pd), dnnl::memory(md, dnnl_engine(), nullptr),
                      dnnl::memory(pd.dst_desc(), dnnl_engine(), nullptr)};
  });
  Tensor y = empty_for_desc(e.dst.get_desc(), x.shape());
  e.src.set_data_handle(x.raw_data());
  e.dst.set_data_handle(y.raw_data());
  execute(e.prim, {{DNNL_ARG_SRC, e.src}, {DNNL_ARG_DST, e.dst}});
  return y;
}

// diff_src given diff_dst and either the output (bwd_uses_dst) or the input.
Tensor eltwise_backward(const Tensor& grad_y, const Tensor& saved, const detail::EltwiseAlg& a) {
  const dnnl::memory::desc md = dnnl_desc(saved);
  Tensor g = reorder_to(grad_y.dtype() == saved.dtype() ? grad_y : grad_y.to(saved.dtype()), md);
  thread_local PrimitiveCache<EltwiseBwd> cache;
  EltwiseBwd& e = cache.get(eltwise_key(1, a.bwd, a.alpha, md), [&] {
    dnnl::eltwise_forward::desc fd(dnnl::prop_kind::forward_training, a.fwd, md, a.alpha, a.beta);
    dnnl::eltwise_forward::primitive_desc fpd(fd, dnnl_engine());
    dnnl::eltwise_backward::desc bd(a.bwd, md, md, a.alpha, a.beta);
    dnnl::eltwise_backward::primitive_desc pd(bd, dnnl_engine(), fpd);
    return EltwiseBwd{dnnl::eltwise_backward(pd), dnnl::memory(md, dnnl_engine(), nullptr),
                      dnnl::memory(md, dnnl_engine(), nullptr),
                      dnnl::memory(pd.diff_src_desc(), dnnl_engine(), nullptr)};
  });
  Tensor gx = empty_for_desc(e.diff_src.get_desc(), saved.shape());
  e.data.set_data_handle(saved.raw_data());
  e.diff_dst.set_data_handle(g.raw_data());
  e.diff_src.set_data_handle(gx.raw_data());
  execute(e.prim, {{a.bwd_uses_dst ? DNNL_ARG_DST : DNNL_ARG_SRC, e.data},
                   {DNNL_ARG_DIFF_DST, e.diff_dst},
                   {DNNL_ARG_DIFF_SRC, e.diff_src}});
  return gx;
}

}  // namespace

namespace detail {
Tensor activation_backward(const Tensor& grad_y, const Tensor& saved, Act act, float alpha) {
  if (act == Act::none) return grad_y;
  return eltwise_backward(grad_y, saved, eltwise_alg(act, alpha));
}
}  // namespace detail

Tensor activation(const Tensor& x_in, Act act, float alpha) {
  detail::require_defined(x_in, "activation", "x");
  if (act == Act::none) return x_in;
  KILN_CHECK(x_in.dtype() == DType::f32 || x_in.dtype() == DType::bf16,
             "activation: x must be f32 or bf16, got ", dtype_name(x_in.dtype()));
  // Plain strided views (e.g. a slice) are made dense; blocked layouts pass through.
  Tensor x = x_in.is_blocked() ? x_in : x_in.contiguous();
  const detail::EltwiseAlg a = detail::eltwise_alg(act, alpha);
  Tensor y;
  {
    NoGradGuard ng;
    y = eltwise_forward(x.detach(), a);
  }
  if (needs_grad({x})) {
    Tensor saved = a.bwd_uses_dst ? y.detach() : x.detach();
    record("activation", {x}, {&y}, [saved, a](const TensorList& g) {
      return TensorList{eltwise_backward(g[0], saved, a)};
    });
  }
  return y;
}

Tensor relu(const Tensor& x) {
  return activation(x, Act::relu);
}
Tensor leaky_relu(const Tensor& x, float slope) {
  return activation(x, Act::leaky_relu, slope);
}
Tensor tanh(const Tensor& x) {
  return activation(x, Act::tanh);
}
Tensor sigmoid(const Tensor& x) {
  return activation(x, Act::sigmoid);
}
Tensor gelu(const Tensor& x, bool tanh_approximation) {
  return activation(x, tanh_approximation ? Act::gelu_tanh : Act::gelu);
}
Tensor silu(const Tensor& x) {
  return activation(x, Act::silu);
}

Tensor softplus(const Tensor& x_in) {
  // log(1 + e^x), computed stably as max(x, 0) + log1p(e^-|x|); d/dx = sigmoid(x).
  Tensor x = detail::as_f32(x_in, "softplus", "x");
  Tensor y = Tensor::empty(x.shape());
  const float* px = x.data<float>();
  float* py = y.data<float>();
  detail::parallel_range(x.numel(), 1 << 14, [&](std::int64_t s, std::int64_t e) {
    for (std::int64_t i = s; i < e; ++i) {
      py[i] = std::max(px[i], 0.f) + std::log1p(std::exp(-std::fabs(px[i])));
    }
  });
  if (needs_grad({x_in})) {
    record("softplus", {x_in}, {&y},
           [xd = x.detach()](const TensorList& g) { return TensorList{mul(g[0], sigmoid(xd))}; });
  }
  return y;
}

}  // namespace kiln::ops
