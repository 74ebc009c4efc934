// layer_norm on oneDNN's layer normalisation primitives, forward and backward.
//
// oneDNN normalises over the last dimension only, so x [..., d1, ..., dk] is viewed as
// [M, D] with D = d1 * ... * dk (a plain dense view, no copy when x is contiguous); weight and
// bias [d1, ..., dk] are likewise flattened to [D]. Statistics use the biased variance, as
// PyTorch does.
#include "ops/conv_util.hpp"

#include <cmath>

namespace kiln::ops {
namespace {

using dnnl::memory;
using flags = dnnl::normalization_flags;

struct LnFwd {
  dnnl::layer_normalization_forward::primitive_desc pd;
  dnnl::layer_normalization_forward prim;
  memory src, dst, mean, var, scale, shift;
};
struct LnBwd {
  dnnl::layer_normalization_backward::primitive_desc pd;
  dnnl::layer_normalization_backward prim;
  memory src, mean, var, diff_dst, scale, shift, diff_src, diff_scale, diff_shift;
};

struct LnGeom {
  std::int64_t m, d;
  float eps;
  flags f;
  memory::desc md() const {
    return memory::desc({m, d}, memory::data_type::f32, memory::format_tag::ab);
  }
  PrimitiveKey key(int kind) const {
    PrimitiveKey k;
    k.add(kind).add(m).add(d).add(detail::float_key(eps)).add(static_cast<std::int64_t>(f));
    return k;
  }
  bool scale() const { return (f & flags::use_scale) != flags::none; }
  bool shift() const { return (f & flags::use_shift) != flags::none; }
};

memory mem_or_empty(bool on, const memory::desc& md) {
  return on ? memory(md, dnnl_engine(), nullptr) : memory();
}

LnFwd& ln_fwd_entry(const LnGeom& g, bool training) {
  thread_local PrimitiveCache<LnFwd> cache;
  return cache.get(g.key(training ? 0 : 1), [&] {
    dnnl::layer_normalization_forward::desc d(
        training ? dnnl::prop_kind::forward_training : dnnl::prop_kind::forward_inference, g.md(),
        g.eps, g.f);
    dnnl::layer_normalization_forward::primitive_desc pd(d, dnnl_engine());
    const dnnl::engine& eng = dnnl_engine();
    return LnFwd{pd,
                 dnnl::layer_normalization_forward(pd),
                 memory(g.md(), eng, nullptr),
                 memory(pd.dst_desc(), eng, nullptr),
                 memory(pd.mean_desc(), eng, nullptr),
                 memory(pd.variance_desc(), eng, nullptr),
                 mem_or_empty(g.scale(), pd.weights_desc()),
                 mem_or_empty(g.shift(), pd.weights_desc())};
  });
}

LnBwd& ln_bwd_entry(const LnGeom& g) {
  thread_local PrimitiveCache<LnBwd> cache;
  return cache.get(g.key(2), [&] {
    const LnFwd& f = ln_fwd_entry(g, true);
    const bool affine = g.scale() || g.shift();
    dnnl::layer_normalization_backward::desc d(
        affine ? dnnl::prop_kind::backward : dnnl::prop_kind::backward_data, g.md(), g.md(),
        f.pd.mean_desc(), g.eps, g.f);
    dnnl::layer_normalization_backward::primitive_desc pd(d, dnnl_engine(), f.pd);
    const dnnl::engine& eng = dnnl_engine();
    const memory::desc wmd = f.pd.weights_desc();
    return LnBwd{pd,
                 dnnl::layer_normalization_backward(pd),
                 memory(g.md(), eng, nullptr),
                 memory(pd.mean_desc(), eng, nullptr),
                 memory(pd.variance_desc(), eng, nullptr),
                 memory(pd.diff_dst_desc(), eng, nullptr),
                 mem_or_empty(g.scale(), wmd),
                 mem_or_empty(g.shift(), wmd),
                 memory(pd.diff_src_desc(), eng, nullptr),
                 mem_or_empty(g.scale(), wmd),
                 mem_or_empty(g.shift(), wmd)};
  });
}

}  // namespace

Tensor layer_norm(const Tensor& x_in, std::int64_t normalized_dims, const Tensor& weight,
                  const Tensor& bias, float eps) {
  constexpr const char* op = "layer_norm";
  detail::require_defined(x_in, op, "x");
  KILN_CHECK(is_floating(x_in.dtype()), op, ": x must be floating, got ", dtype_name(x_in.dtype()));
  KILN_CHECK(normalized_dims >= 1 && normalized_dims <= x_in.dim(), op,
             ": normalized_dims must be between 1 and the number of dimensions of x (", x_in.dim(),
             "), got ", normalized_dims);
  const Shape& xs = x_in.shape();
  const Shape norm_shape(xs.end() - normalized_dims, xs.end());
  for (const auto& [t, arg] : {std::pair{&weight, "weight"}, std::pair{&bias, "bias"}}) {
    if (!t->defined()) continue;
    KILN_CHECK(t->shape() == norm_shape && is_floating(t->dtype()), op, ": ", arg,
               " must be a floating tensor of shape ", shape_str(norm_shape), " (the last ",
               normalized_dims, " dimensions of x ", shape_str(xs), "), got ", t->to_string());
  }
  KILN_CHECK(eps >= 0.f && std::isfinite(eps), op, ": eps must be finite and non-negative, got ",
             eps);
  const std::int64_t d = shape_numel(norm_shape);
  KILN_CHECK(d > 0, op, ": the normalised dimensions ", shape_str(norm_shape), " are empty");
  if (x_in.numel() == 0) return Tensor::zeros(xs);

  Tensor x2 = x_in.dtype() == DType::f32 ? x_in : x_in.to(DType::f32);
  x2 = x2.reshape({-1, d});
  if (!x2.is_contiguous()) x2 = x2.contiguous();
  const Tensor w = weight.defined() ? detail::f32_vector(weight) : Tensor();
  const Tensor b = bias.defined() ? detail::f32_vector(bias) : Tensor();
  LnGeom g;
  g.m = x2.size(0);
  g.d = d;
  g.eps = eps;
  g.f = flags::none;
  if (w.defined()) g.f |= flags::use_scale;
  if (b.defined()) g.f |= flags::use_shift;
  const bool grad = needs_grad({x2, weight, bias});

  Tensor y2, mean, var;
  {
    NoGradGuard ng;
    LnFwd& e = ln_fwd_entry(g, grad);
    y2 = Tensor::empty({g.m, g.d});
    mean = Tensor::empty({g.m});
    var = Tensor::empty({g.m});
    e.src.set_data_handle(x2.raw_data());
    e.dst.set_data_handle(y2.raw_data());
    std::unordered_map<int, memory> args = {{DNNL_ARG_SRC, e.src}, {DNNL_ARG_DST, e.dst}};
    if (grad) {
      e.mean.set_data_handle(mean.raw_data());
      e.var.set_data_handle(var.raw_data());
      args.emplace(DNNL_ARG_MEAN, e.mean);
      args.emplace(DNNL_ARG_VARIANCE, e.var);
    }
    if (w.defined()) {
      e.scale.set_data_handle(w.raw_data());
      args.emplace(DNNL_ARG_SCALE, e.scale);
    }
    if (b.defined()) {
      e.shift.set_data_handle(b.raw_data());
      args.emplace(DNNL_ARG_SHIFT, e.shift);
    }
    execute(e.prim, args);
  }
  if (grad) {
    record(op, {x2, weight, bias}, {&y2},
           [g, xd = x2.detach(), w, b, mean, var, gw = weight.defined() && weight.requires_grad(),
            gb = bias.defined() && bias.requires_grad(), norm_shape,
            wdt = weight.defined() ? weight.dtype() : DType::f32,
            bdt = bias.defined() ? bias.dtype() : DType::f32](const TensorList& gr) {
             LnBwd& e = ln_bwd_entry(g);
             const Tensor dy = detail::to_desc(gr[0], e.pd.diff_dst_desc());
             Tensor dx = Tensor::empty({g.m, g.d});
             Tensor dw = g.scale() ? Tensor::empty({g.d}) : Tensor();
             Tensor db = g.shift() ? Tensor::empty({g.d}) : Tensor();
             e.src.set_data_handle(xd.raw_data());
             e.mean.set_data_handle(mean.raw_data());
             e.var.set_data_handle(var.raw_data());
             e.diff_dst.set_data_handle(dy.raw_data());
             e.diff_src.set_data_handle(dx.raw_data());
             std::unordered_map<int, memory> args = {{DNNL_ARG_SRC, e.src},
                                                     {DNNL_ARG_MEAN, e.mean},
                                                     {DNNL_ARG_VARIANCE, e.var},
                                                     {DNNL_ARG_DIFF_DST, e.diff_dst},
                                                     {DNNL_ARG_DIFF_SRC, e.diff_src}};
             if (g.scale()) {
               e.scale.set_data_handle(w.raw_data());
               e.diff_scale.set_data_handle(dw.raw_data());
               args.emplace(DNNL_ARG_SCALE, e.scale);
               args.emplace(DNNL_ARG_DIFF_SCALE, e.diff_scale);
             }
             if (g.shift()) {
               // oneDNN 2.6 lists the shift as an input of the backward pass too.
               e.shift.set_data_handle(b.raw_data());
               e.diff_shift.set_data_handle(db.raw_data());
               args.emplace(DNNL_ARG_SHIFT, e.shift);
               args.emplace(DNNL_ARG_DIFF_SHIFT, e.diff_shift);
             }
             execute(e.prim, args);
             Tensor gwt, gbt;
             if (gw) gwt = (wdt == DType::f32 ? dw : dw.to(wdt)).reshape(norm_shape);
             if (gb) gbt = (bdt == DType::f32 ? db : db.to(bdt)).reshape(norm_shape);
             return TensorList{dx, gwt, gbt};
           });
  }
  return y2.reshape(xs);
}

}  // namespace kiln::ops
