// batch_norm on oneDNN's batch normalisation primitives, forward and backward.
//
// The primitive reads the input in its own layout (plain or blocked from a convolution) and
// writes the output in the same layout, so conv -> batch_norm -> activation -> conv never
// reorders. Training uses the batch statistics (biased variance) and then updates the running
// statistics in place as PyTorch does:
//   running_mean = (1 - momentum) * running_mean + momentum * mean
//   running_var  = (1 - momentum) * running_var  + momentum * var * count / (count - 1)
// with count = N * H * W. Evaluation normalises with the running statistics, and its backward
// treats them as constants.
#include "ops/conv_util.hpp"

#include <cmath>

namespace kiln::ops {
namespace {

using dnnl::memory;
using flags = dnnl::normalization_flags;

struct BnFwd {
  dnnl::batch_normalization_forward::primitive_desc pd;
  dnnl::batch_normalization_forward prim;
  memory src, dst, mean, var, scale, shift;
};
struct BnBwd {
  dnnl::batch_normalization_backward::primitive_desc pd;
  dnnl::batch_normalization_backward prim;
  memory src, mean, var, diff_dst, scale, shift, diff_src, diff_scale, diff_shift;
};

struct BnGeom {
  memory::desc md;
  float eps;
  flags f;
  PrimitiveKey key(int kind) const {
    PrimitiveKey k;
    k.add(kind).add(detail::float_key(eps)).add(static_cast<std::int64_t>(f));
    detail::add_md(k, md);
    return k;
  }
  bool scale() const { return (f & flags::use_scale) != flags::none; }
  bool shift() const { return (f & flags::use_shift) != flags::none; }
};

memory mem_or_empty(bool on, const memory::desc& md) {
  return on ? memory(md, dnnl_engine(), nullptr) : memory();
}

BnFwd& bn_fwd_entry(const BnGeom& g, bool training) {
  thread_local PrimitiveCache<BnFwd> cache;
  return cache.get(g.key(training ? 0 : 1), [&] {
    dnnl::batch_normalization_forward::desc d(
        training ? dnnl::prop_kind::forward_training : dnnl::prop_kind::forward_inference, g.md,
        g.eps, g.f);
    dnnl::batch_normalization_forward::primitive_desc pd(d, dnnl_engine());
    const dnnl::engine& eng = dnnl_engine();
    return BnFwd{pd,
                 dnnl::batch_normalization_forward(pd),
                 memory(g.md, eng, nullptr),
                 memory(pd.dst_desc(), eng, nullptr),
                 memory(pd.mean_desc(), eng, nullptr),
                 memory(pd.variance_desc(), eng, nullptr),
                 mem_or_empty(g.scale(), pd.weights_desc()),
                 mem_or_empty(g.shift(), pd.weights_desc())};
  });
}

BnBwd& bn_bwd_entry(const BnGeom& g) {
  thread_local PrimitiveCache<BnBwd> cache;
  return cache.get(g.key(2), [&] {
    const BnFwd& f = bn_fwd_entry(g, true);
    const bool affine = g.scale() || g.shift();
    dnnl::batch_normalization_backward::desc d(
        affine ? dnnl::prop_kind::backward : dnnl::prop_kind::backward_data, g.md, g.md, g.eps,
        g.f);
    dnnl::batch_normalization_backward::primitive_desc pd(d, dnnl_engine(), f.pd);
    const dnnl::engine& eng = dnnl_engine();
    const memory::desc wmd = f.pd.weights_desc();
    return BnBwd{pd,
                 dnnl::batch_normalization_backward(pd),
                 memory(g.md, eng, nullptr),
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

void check_stat(const Tensor& t, std::int64_t c, const char* arg) {
  KILN_CHECK(t.dtype() == DType::f32 && t.dim() == 1 && t.size(0) == c && t.is_contiguous(),
             "batch_norm: ", arg, " must be a contiguous f32 tensor of shape [", c, "], got ",
             t.to_string());
}

}  // namespace

Tensor batch_norm(const Tensor& x_in, const Tensor& weight, const Tensor& bias,
                  const Tensor& running_mean, const Tensor& running_var, bool training,
                  float momentum, float eps) {
  constexpr const char* op = "batch_norm";
  detail::require_defined(x_in, op, "x");
  KILN_CHECK(x_in.dim() >= 2 && x_in.dim() <= 5, op,
             ": x must be [N, C], [N, C, L], [N, C, H, W] or [N, C, D, H, W], got shape ",
             shape_str(x_in.shape()));
  KILN_CHECK(is_floating(x_in.dtype()), op, ": x must be floating, got ", dtype_name(x_in.dtype()));
  const std::int64_t c = x_in.size(1);
  KILN_CHECK(c > 0, op, ": x has no channels, shape ", shape_str(x_in.shape()));
  for (const auto& [t, arg] : {std::pair{&weight, "weight"}, std::pair{&bias, "bias"}}) {
    if (!t->defined()) continue;
    KILN_CHECK(t->dim() == 1 && t->size(0) == c && is_floating(t->dtype()), op, ": ", arg,
               " must be a floating tensor of shape [", c, "] (one value per channel), got ",
               t->to_string());
  }
  KILN_CHECK(running_mean.defined() == running_var.defined(), op,
             ": give both running_mean and running_var, or neither");
  if (running_mean.defined()) {
    check_stat(running_mean, c, "running_mean");
    check_stat(running_var, c, "running_var");
  }
  KILN_CHECK(training || running_mean.defined(), op,
             ": evaluation mode needs running_mean and running_var");
  KILN_CHECK(eps >= 0.f && std::isfinite(eps), op, ": eps must be finite and non-negative, got ",
             eps);
  KILN_CHECK(momentum >= 0.f && momentum <= 1.f, op, ": momentum must be in [0, 1], got ",
             momentum);
  const std::int64_t count = x_in.numel() / c;
  if (training) {
    KILN_CHECK(count > 1, op, ": training needs more than one value per channel, got x of shape ",
               shape_str(x_in.shape()));
  }
  if (x_in.numel() == 0) return Tensor::zeros(x_in.shape());

  Tensor x = x_in;
  if (x.dtype() != DType::f32) x = x.to(DType::f32);
  x = detail::dense_or_blocked(x);
  const Tensor w = weight.defined() ? detail::f32_vector(weight) : Tensor();
  const Tensor b = bias.defined() ? detail::f32_vector(bias) : Tensor();
  BnGeom g;
  g.md = dnnl_desc(x);
  g.eps = eps;
  g.f = flags::none;
  if (!training) g.f |= flags::use_global_stats;
  if (w.defined()) g.f |= flags::use_scale;
  if (b.defined()) g.f |= flags::use_shift;
  const bool grad = needs_grad({x, weight, bias});

  Tensor y, mean, var;
  {
    NoGradGuard ng;
    BnFwd& e = bn_fwd_entry(g, training || grad);
    y = empty_for_desc(e.pd.dst_desc(), x.shape());
    if (training) {
      mean = Tensor::empty({c});
      var = Tensor::empty({c});
    } else {
      // Copies: the backward must see the statistics used here even if they change later.
      mean = grad ? running_mean.clone() : running_mean;
      var = grad ? running_var.clone() : running_var;
    }
    e.src.set_data_handle(x.raw_data());
    e.dst.set_data_handle(y.raw_data());
    e.mean.set_data_handle(mean.raw_data());
    e.var.set_data_handle(var.raw_data());
    std::unordered_map<int, memory> args = {{DNNL_ARG_SRC, e.src},
                                            {DNNL_ARG_DST, e.dst},
                                            {DNNL_ARG_MEAN, e.mean},
                                            {DNNL_ARG_VARIANCE, e.var}};
    if (w.defined()) {
      e.scale.set_data_handle(w.raw_data());
      args.emplace(DNNL_ARG_SCALE, e.scale);
    }
    if (b.defined()) {
      e.shift.set_data_handle(b.raw_data());
      args.emplace(DNNL_ARG_SHIFT, e.shift);
    }
    execute(e.prim, args);
    if (training && running_mean.defined()) {
      const float* pm = mean.data<float>();
      const float* pv = var.data<float>();
      float* rm = running_mean.data<float>();
      float* rv = running_var.data<float>();
      const float unbias = static_cast<float>(count) / static_cast<float>(count - 1);
      for (std::int64_t i = 0; i < c; ++i) {
        rm[i] = (1.f - momentum) * rm[i] + momentum * pm[i];
        rv[i] = (1.f - momentum) * rv[i] + momentum * pv[i] * unbias;
      }
      running_mean.bump_version();
      running_var.bump_version();
    }
  }
  if (grad) {
    record(op, {x, weight, bias}, {&y},
           [g, xd = x.detach(), w, b, mean, var, gw = weight.defined() && weight.requires_grad(),
            gb = bias.defined() && bias.requires_grad(),
            wdt = weight.defined() ? weight.dtype() : DType::f32,
            bdt = bias.defined() ? bias.dtype() : DType::f32](const TensorList& gr) {
             BnBwd& e = bn_bwd_entry(g);
             const Tensor dy = detail::to_desc(gr[0], e.pd.diff_dst_desc());
             Tensor dx = empty_for_desc(e.pd.diff_src_desc(), xd.shape());
             const std::int64_t ch = xd.size(1);
             Tensor dw = g.scale() ? Tensor::empty({ch}) : Tensor();
             Tensor db = g.shift() ? Tensor::empty({ch}) : Tensor();
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
             return TensorList{dx, gw ? (wdt == DType::f32 ? dw : dw.to(wdt)) : Tensor(),
                               gb ? (bdt == DType::f32 ? db : db.to(bdt)) : Tensor()};
           });
  }
  return y;
}

}  // namespace kiln::ops
