// conv2d and conv_transpose2d on oneDNN's convolution and deconvolution primitives, forward and
// backward (data, weights and bias).
//
// Layouts: the primitives are created with format `any` for src, weights and dst, so oneDNN
// picks its blocked layouts (e.g. nChw16c). The output keeps that layout (`empty_for_desc`) and
// the next conv / norm / activation reads it without a reorder; an input is reordered only when
// its layout differs from the one the primitive wants. Weights are reordered into the packed
// layout once and cached on the weight's storage until its version changes (`reorder_cached`).
//
// Weights: PyTorch's conv weight [O, I/G, kh, kw] is oneDNN's (g)oihw; PyTorch's transposed-conv
// weight [I, O/G, kh, kw] is described to oneDNN as the strided view "(g)iohw", i.e. oneDNN
// deconvolution weights [G, O/G, I/G, kh, kw] with the i and o strides swapped. No data moves
// except the (cached) reorder into the packed layout.
//
// Precision: f32, or bf16 when x or the weight is bf16 (src and weights computed in bf16, f32
// accumulation and f32 output; an f32 operand is converted as part of its reorder). Gradients
// come back in the dtype of their input.
//
// Activation: fused as a post-op when no gradient is needed or when its gradient can be computed
// from the output (relu, leaky relu with a positive slope, tanh, sigmoid); otherwise applied as a
// separate op, as `linear` does.
#include <array>

#include "ops/conv_util.hpp"

namespace kiln::ops {
namespace {

using dnnl::memory;
using tag = memory::format_tag;

template <bool Transposed>
struct Traits;
template <>
struct Traits<false> {
  using Fwd = dnnl::convolution_forward;
  using BwdData = dnnl::convolution_backward_data;
  using BwdWeights = dnnl::convolution_backward_weights;
  static constexpr dnnl::algorithm alg = dnnl::algorithm::convolution_direct;
  static constexpr const char* name = "conv2d";
};
template <>
struct Traits<true> {
  using Fwd = dnnl::deconvolution_forward;
  using BwdData = dnnl::deconvolution_backward_data;
  using BwdWeights = dnnl::deconvolution_backward_weights;
  static constexpr dnnl::algorithm alg = dnnl::algorithm::deconvolution_direct;
  static constexpr const char* name = "conv_transpose2d";
};

// Everything that determines the primitives of one (transposed) convolution. For a transposed
// convolution, ic/oc are its own input/output channels (oneDNN's deconvolution convention).
struct ConvGeom {
  bool transposed = false;
  std::int64_t n = 0, ic = 0, ih = 0, iw = 0, oc = 0, oh = 0, ow = 0, kh = 0, kw = 0, groups = 1;
  memory::dims stride, dil, pad_l, pad_r;  // dil in oneDNN's convention (dilation - 1)
  DType cdt = DType::f32;                  // src and weights inside the primitive
  DType xdt = DType::f32;                  // the caller's x (diff_src is returned in it)
  bool bias = false;
  Act act = Act::none;
  float alpha = 0.f;

  Shape src_shape() const { return {n, ic, ih, iw}; }
  Shape dst_shape() const { return {n, oc, oh, ow}; }
  Shape wei_shape() const {
    if (groups == 1) return {oc, ic, kh, kw};
    return {groups, oc / groups, ic / groups, kh, kw};
  }
  PrimitiveKey key(int kind) const {
    PrimitiveKey k;
    k.add(transposed ? 2 : 1).add(kind).add(src_shape()).add(oc).add(oh).add(ow).add(kh).add(kw);
    k.add(groups).add(stride[0]).add(stride[1]).add(dil[0]).add(dil[1]).add(pad_l[0]);
    k.add(pad_l[1]).add(pad_r[0]).add(pad_r[1]).add(static_cast<std::int64_t>(cdt));
    k.add(static_cast<std::int64_t>(xdt)).add(bias ? 1 : 0).add(static_cast<std::int64_t>(act));
    k.add(detail::float_key(alpha));
    return k;
  }
};

// The caller's weight viewed with oneDNN's weight dims ([G,] O, I, kh, kw), without a copy.
Tensor weight_view(const Tensor& w, const ConvGeom& g) {
  Tensor wd = w.detach();
  if (g.groups == 1) return g.transposed ? wd.transpose(0, 1) : wd;
  if (!wd.is_contiguous()) wd = wd.contiguous();
  const std::int64_t G = g.groups;
  if (!g.transposed) return wd.view({G, g.oc / G, g.ic / G, g.kh, g.kw});
  return wd.view({G, g.ic / G, g.oc / G, g.kh, g.kw}).permute({0, 2, 1, 3, 4});
}

template <bool T>
struct FwdEntry {
  typename Traits<T>::Fwd::primitive_desc pd;
  typename Traits<T>::Fwd prim;
  memory src, wei, bias, dst;
};

template <bool T>
struct BwdDataEntry {
  typename Traits<T>::BwdData::primitive_desc pd;
  typename Traits<T>::BwdData prim;
  memory diff_src, wei, diff_dst;
};

template <bool T>
struct BwdWeightsEntry {
  typename Traits<T>::BwdWeights::primitive_desc pd;
  typename Traits<T>::BwdWeights prim;
  memory src, diff_wei, diff_bias, diff_dst;
};

memory::desc any_desc(const Shape& s, DType t) {
  return memory::desc(to_dims(s), to_dnnl(t), tag::any);
}

memory::desc bias_desc(const ConvGeom& g) {
  return g.bias ? memory::desc({g.oc}, memory::data_type::f32, tag::a) : memory::desc();
}

template <bool T>
FwdEntry<T>& fwd_entry(const ConvGeom& g, bool training) {
  thread_local PrimitiveCache<FwdEntry<T>> cache;
  return cache.get(g.key(training ? 0 : 1), [&] {
    const auto prop =
        training ? dnnl::prop_kind::forward_training : dnnl::prop_kind::forward_inference;
    typename Traits<T>::Fwd::desc d(
        prop, Traits<T>::alg, any_desc(g.src_shape(), g.cdt), any_desc(g.wei_shape(), g.cdt),
        bias_desc(g), any_desc(g.dst_shape(), DType::f32), g.stride, g.dil, g.pad_l, g.pad_r);
    dnnl::primitive_attr attr;
    attr.set_post_ops(detail::act_post_ops(g.act, g.alpha));
    typename Traits<T>::Fwd::primitive_desc pd(d, attr, dnnl_engine());
    const dnnl::engine& eng = dnnl_engine();
    return FwdEntry<T>{pd,
                       typename Traits<T>::Fwd(pd),
                       memory(pd.src_desc(), eng, nullptr),
                       memory(pd.weights_desc(), eng, nullptr),
                       g.bias ? memory(pd.bias_desc(), eng, nullptr) : memory(),
                       memory(pd.dst_desc(), eng, nullptr)};
  });
}

template <bool T>
BwdDataEntry<T>& bwd_data_entry(const ConvGeom& g) {
  thread_local PrimitiveCache<BwdDataEntry<T>> cache;
  return cache.get(g.key(2), [&] {
    const auto& hint = fwd_entry<T>(g, true).pd;
    typename Traits<T>::BwdData::desc d(
        Traits<T>::alg, any_desc(g.src_shape(), g.xdt), any_desc(g.wei_shape(), g.cdt),
        any_desc(g.dst_shape(), g.cdt), g.stride, g.dil, g.pad_l, g.pad_r);
    typename Traits<T>::BwdData::primitive_desc pd(d, dnnl_engine(), hint);
    const dnnl::engine& eng = dnnl_engine();
    return BwdDataEntry<T>{
        pd, typename Traits<T>::BwdData(pd), memory(pd.diff_src_desc(), eng, nullptr),
        memory(pd.weights_desc(), eng, nullptr), memory(pd.diff_dst_desc(), eng, nullptr)};
  });
}

template <bool T>
BwdWeightsEntry<T>& bwd_weights_entry(const ConvGeom& g) {
  thread_local PrimitiveCache<BwdWeightsEntry<T>> cache;
  return cache.get(g.key(3), [&] {
    const auto& hint = fwd_entry<T>(g, true).pd;
    const memory::desc db =
        g.bias ? memory::desc({g.oc}, memory::data_type::f32, tag::a) : memory::desc();
    typename Traits<T>::BwdWeights::desc d(
        Traits<T>::alg, any_desc(g.src_shape(), g.cdt), any_desc(g.wei_shape(), DType::f32), db,
        any_desc(g.dst_shape(), g.cdt), g.stride, g.dil, g.pad_l, g.pad_r);
    typename Traits<T>::BwdWeights::primitive_desc pd(d, dnnl_engine(), hint);
    const dnnl::engine& eng = dnnl_engine();
    return BwdWeightsEntry<T>{pd,
                              typename Traits<T>::BwdWeights(pd),
                              memory(pd.src_desc(), eng, nullptr),
                              memory(pd.diff_weights_desc(), eng, nullptr),
                              g.bias ? memory(pd.diff_bias_desc(), eng, nullptr) : memory(),
                              memory(pd.diff_dst_desc(), eng, nullptr)};
  });
}

// y = act(conv(x, w) + b). `src_used` receives x as the primitive read it (reordered if needed).
template <bool T>
Tensor conv_run(const Tensor& x, const Tensor& w, const Tensor& b, const ConvGeom& g, bool training,
                Tensor* src_used) {
  if (g.n == 0) return Tensor::zeros(g.dst_shape());
  FwdEntry<T>& e = fwd_entry<T>(g, training);
  Tensor src = detail::to_desc(x, e.pd.src_desc());
  Tensor wp = reorder_cached(weight_view(w, g), e.pd.weights_desc());
  Tensor y = empty_for_desc(e.pd.dst_desc(), g.dst_shape());
  e.src.set_data_handle(src.raw_data());
  e.wei.set_data_handle(wp.raw_data());
  e.dst.set_data_handle(y.raw_data());
  std::unordered_map<int, memory> args = {
      {DNNL_ARG_SRC, e.src}, {DNNL_ARG_WEIGHTS, e.wei}, {DNNL_ARG_DST, e.dst}};
  Tensor bf;
  if (g.bias) {
    bf = detail::f32_vector(b);
    e.bias.set_data_handle(bf.raw_data());
    args.emplace(DNNL_ARG_BIAS, e.bias);
  }
  execute(e.prim, args);
  if (src_used != nullptr) *src_used = src;
  return y;
}

// Gradients {dx, dw, db} given dz = dL/d(conv output before the activation).
template <bool T>
TensorList conv_backward(const ConvGeom& g, const Tensor& dz, const Tensor& src, const Tensor& w,
                         bool need_x, bool need_w, bool need_b, DType bdt) {
  TensorList out(3);
  if (g.n == 0) {
    if (need_x) out[0] = Tensor::zeros(g.src_shape(), g.xdt);
    if (need_w) out[1] = Tensor::zeros(w.shape(), w.dtype());
    if (need_b) out[2] = Tensor::zeros({g.oc}, bdt);
    return out;
  }
  // dz reordered once per distinct layout the backward primitives ask for.
  Tensor dy;
  auto dy_as = [&](const memory::desc& md) {
    if (!dy.defined() || dnnl_desc(dy) != md) dy = detail::to_desc(dz, md);
    return dy;
  };
  if (need_x) {
    BwdDataEntry<T>& e = bwd_data_entry<T>(g);
    Tensor d = dy_as(e.pd.diff_dst_desc());
    Tensor wp = reorder_cached(weight_view(w, g), e.pd.weights_desc());
    Tensor dx = empty_for_desc(e.pd.diff_src_desc(), g.src_shape());
    e.diff_dst.set_data_handle(d.raw_data());
    e.wei.set_data_handle(wp.raw_data());
    e.diff_src.set_data_handle(dx.raw_data());
    execute(e.prim, {{DNNL_ARG_DIFF_DST, e.diff_dst},
                     {DNNL_ARG_WEIGHTS, e.wei},
                     {DNNL_ARG_DIFF_SRC, e.diff_src}});
    out[0] = dx;
  }
  if (need_w || (need_b && g.bias)) {
    BwdWeightsEntry<T>& e = bwd_weights_entry<T>(g);
    Tensor d = dy_as(e.pd.diff_dst_desc());
    Tensor s = detail::to_desc(src, e.pd.src_desc());
    Tensor dw_packed = empty_for_desc(e.pd.diff_weights_desc(), g.wei_shape());
    Tensor db = g.bias ? Tensor::empty({g.oc}) : Tensor();
    e.src.set_data_handle(s.raw_data());
    e.diff_dst.set_data_handle(d.raw_data());
    e.diff_wei.set_data_handle(dw_packed.raw_data());
    std::unordered_map<int, memory> args = {{DNNL_ARG_SRC, e.src},
                                            {DNNL_ARG_DIFF_DST, e.diff_dst},
                                            {DNNL_ARG_DIFF_WEIGHTS, e.diff_wei}};
    if (g.bias) {
      e.diff_bias.set_data_handle(db.raw_data());
      args.emplace(DNNL_ARG_DIFF_BIAS, e.diff_bias);
    }
    execute(e.prim, args);
    if (need_w) {
      Tensor dw = Tensor::empty(w.shape());
      Tensor view = weight_view(dw, g);
      detail::reorder_into(e.pd.diff_weights_desc(), dw_packed.raw_data(), dnnl_desc(view),
                           view.raw_data());
      out[1] = w.dtype() == DType::f32 ? dw : dw.to(w.dtype());
    }
    if (need_b) out[2] = bdt == DType::f32 ? db : db.to(bdt);
  }
  return out;
}

// Forward, autograd record and (when it cannot be fused) the separate activation.
template <bool T>
Tensor conv_apply(const Tensor& x, const Tensor& w, const Tensor& b, ConvGeom g, Act act,
                  float alpha) {
  const bool grad = needs_grad({x, w, b});
  const bool fuse = !grad || detail::act_backward_from_output(act, alpha);
  g.act = fuse ? act : Act::none;
  g.alpha = fuse ? alpha : 0.f;
  const bool gw = grad && w.requires_grad();
  const bool gb = grad && b.defined() && b.requires_grad();
  Tensor src_used, y;
  {
    NoGradGuard ng;
    // The weights/bias backward primitive reads x; keep it only when that pass will run.
    y = conv_run<T>(x.detach(), w, b.defined() ? b.detach() : b, g, grad,
                    gw || gb ? &src_used : nullptr);
  }
  if (grad) {
    record(Traits<T>::name, {x, w, b}, {&y},
           [g, src = src_used, wd = w.detach(), yd = g.act == Act::none ? Tensor() : y.detach(),
            gx = x.requires_grad(), gw, gb,
            bdt = b.defined() ? b.dtype() : DType::f32](const TensorList& gr) {
             const Tensor dz = detail::activation_backward(gr[0], yd, g.act, g.alpha);
             return conv_backward<T>(g, dz, src, wd, gx, gw, gb, bdt);
           });
  }
  if (!fuse) y = activation(y, act, alpha);
  return y;
}

// Checks shared by both ops; returns the dtype the primitive computes in.
DType check_common(const char* op, const Tensor& x, const Tensor& w, const Tensor& b,
                   const std::array<std::int64_t, 2>& stride,
                   const std::array<std::int64_t, 2>& padding,
                   const std::array<std::int64_t, 2>& dilation, std::int64_t groups) {
  detail::require_dim(x, 4, op, "x", "[N, C, H, W]");
  detail::require_dim(w, 4, op, "weight", "[C, C, kh, kw]");
  for (const auto& [t, arg] : {std::pair{&x, "x"}, std::pair{&w, "weight"}}) {
    KILN_CHECK(t->dtype() == DType::f32 || t->dtype() == DType::bf16, op, ": ", arg,
               " must be f32 or bf16, got ", dtype_name(t->dtype()));
  }
  KILN_CHECK(x.size(1) > 0 && x.size(2) > 0 && x.size(3) > 0, op,
             ": x must have at least one channel, row and column, got shape ",
             shape_str(x.shape()));
  KILN_CHECK(w.size(0) > 0 && w.size(1) > 0 && w.size(2) > 0 && w.size(3) > 0, op,
             ": weight has an empty dimension: ", shape_str(w.shape()));
  KILN_CHECK(groups >= 1, op, ": groups must be at least 1, got ", groups);
  for (int i = 0; i < 2; ++i) {
    KILN_CHECK(stride[i] >= 1, op, ": stride must be at least 1, got {", stride[0], ", ", stride[1],
               "}");
    KILN_CHECK(padding[i] >= 0, op, ": padding must be non-negative, got {", padding[0], ", ",
               padding[1], "}");
    KILN_CHECK(dilation[i] >= 1, op, ": dilation must be at least 1, got {", dilation[0], ", ",
               dilation[1], "}");
  }
  if (b.defined()) {
    KILN_CHECK(b.dtype() == DType::f32 || b.dtype() == DType::bf16, op,
               ": bias must be f32 or bf16, got ", dtype_name(b.dtype()));
  }
  return x.dtype() == DType::bf16 || w.dtype() == DType::bf16 ? DType::bf16 : DType::f32;
}

void check_bias(const char* op, const Tensor& b, std::int64_t out_channels) {
  if (!b.defined()) return;
  KILN_CHECK(b.dim() == 1 && b.size(0) == out_channels, op, ": bias must be [", out_channels,
             "] (one value per output channel), got ", shape_str(b.shape()));
}

}  // namespace

Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& b, const Conv2dOptions& o) {
  constexpr const char* op = "conv2d";
  ConvGeom g;
  g.cdt = check_common(op, x, w, b, o.stride, o.padding, o.dilation, o.groups);
  g.xdt = x.dtype();
  g.n = x.size(0);
  g.ic = x.size(1);
  g.ih = x.size(2);
  g.iw = x.size(3);
  g.oc = w.size(0);
  g.kh = w.size(2);
  g.kw = w.size(3);
  g.groups = o.groups;
  KILN_CHECK(g.ic % g.groups == 0, op, ": x has ", g.ic, " channels, which groups=", g.groups,
             " does not divide");
  KILN_CHECK(g.oc % g.groups == 0, op, ": weight has ", g.oc,
             " output channels, which groups=", g.groups, " does not divide (weight shape ",
             shape_str(w.shape()), ")");
  KILN_CHECK(w.size(1) * g.groups == g.ic, op, ": weight ", shape_str(w.shape()),
             " expects in_channels/groups = ", w.size(1), " (", w.size(1) * g.groups,
             " input channels with groups=", g.groups, ") but x has ", g.ic, " channels (shape ",
             shape_str(x.shape()), ")");
  check_bias(op, b, g.oc);
  const std::int64_t in[2] = {g.ih, g.iw}, k[2] = {g.kh, g.kw};
  std::int64_t out[2];
  for (int i = 0; i < 2; ++i) {
    const std::int64_t extent = o.dilation[i] * (k[i] - 1) + 1;
    const std::int64_t padded = in[i] + 2 * o.padding[i];
    KILN_CHECK(extent <= padded, op, ": the kernel ", g.kh, "x", g.kw, " with dilation {",
               o.dilation[0], ", ", o.dilation[1], "} spans ", extent, " ",
               i == 0 ? "rows" : "columns", ", more than the padded input has (", padded, " = ",
               in[i], " + 2 x padding ", o.padding[i], "); x shape ", shape_str(x.shape()));
    out[i] = (padded - extent) / o.stride[i] + 1;
  }
  g.oh = out[0];
  g.ow = out[1];
  g.stride = {o.stride[0], o.stride[1]};
  g.dil = {o.dilation[0] - 1, o.dilation[1] - 1};
  g.pad_l = {o.padding[0], o.padding[1]};
  // oneDNN accepts the right padding that makes (in + pl + pr - extent) / stride + 1 == out in
  // integer division: the same as the left one, with the leftover rows simply not read.
  g.pad_r = g.pad_l;
  g.bias = b.defined();
  return conv_apply<false>(x, w, b, g, o.act, o.act_alpha);
}

Tensor conv_transpose2d(const Tensor& x, const Tensor& w, const Tensor& b,
                        const ConvTranspose2dOptions& o) {
  constexpr const char* op = "conv_transpose2d";
  ConvGeom g;
  g.transposed = true;
  g.cdt = check_common(op, x, w, b, o.stride, o.padding, o.dilation, o.groups);
  g.xdt = x.dtype();
  g.n = x.size(0);
  g.ic = x.size(1);
  g.ih = x.size(2);
  g.iw = x.size(3);
  g.groups = o.groups;
  g.oc = w.size(1) * g.groups;
  g.kh = w.size(2);
  g.kw = w.size(3);
  KILN_CHECK(w.size(0) == g.ic, op, ": weight ", shape_str(w.shape()),
             " is [in_channels, out_channels/groups, kh, kw] with in_channels ", w.size(0),
             " but x has ", g.ic, " channels (shape ", shape_str(x.shape()), ")");
  KILN_CHECK(g.ic % g.groups == 0, op, ": x has ", g.ic, " channels, which groups=", g.groups,
             " does not divide");
  check_bias(op, b, g.oc);
  const std::int64_t in[2] = {g.ih, g.iw}, k[2] = {g.kh, g.kw};
  std::int64_t out[2];
  for (int i = 0; i < 2; ++i) {
    const std::int64_t op_i = o.output_padding[i];
    KILN_CHECK(op_i >= 0 && (op_i < o.stride[i] || op_i < o.dilation[i]), op,
               ": output_padding must be non-negative and smaller than either stride or "
               "dilation, got output_padding {",
               o.output_padding[0], ", ", o.output_padding[1], "} with stride {", o.stride[0], ", ",
               o.stride[1], "} and dilation {", o.dilation[0], ", ", o.dilation[1], "}");
    // oneDNN needs pad_r + stride > 0 with pad_r = padding - output_padding.
    KILN_CHECK(o.padding[i] - op_i + o.stride[i] > 0, op, ": output_padding ", op_i,
               " reaches past padding ", o.padding[i], " by a stride (", o.stride[i],
               ") or more; oneDNN cannot produce those output rows. Use a stride larger than "
               "output_padding - padding");
    const std::int64_t extent = o.dilation[i] * (k[i] - 1) + 1;
    out[i] = (in[i] - 1) * o.stride[i] - 2 * o.padding[i] + extent + op_i;
    KILN_CHECK(out[i] >= 1, op, ": the output would have ", out[i], " ",
               i == 0 ? "rows" : "columns", " (input ", in[i], ", stride ", o.stride[i],
               ", padding ", o.padding[i], ", kernel ", k[i], ", dilation ", o.dilation[i],
               ", output_padding ", op_i, "); reduce the padding");
  }
  g.oh = out[0];
  g.ow = out[1];
  g.stride = {o.stride[0], o.stride[1]};
  g.dil = {o.dilation[0] - 1, o.dilation[1] - 1};
  g.pad_l = {o.padding[0], o.padding[1]};
  g.pad_r = {o.padding[0] - o.output_padding[0], o.padding[1] - o.output_padding[1]};
  g.bias = b.defined();
  return conv_apply<true>(x, w, b, g, o.act, o.act_alpha);
}

}  // namespace kiln::ops
