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
// Precision: f32, or bf16 when x or the weight is bf16 or the options ask for bf16 (src and
// weights computed in bf16, f32 accumulation and f32 output; an f32 operand is converted as part
// of its reorder, and an f32 weight's packed bf16 copy is cached like any packed weight).
// Gradients come back in the dtype of their input.
//
// Activation: fused as a post-op when no gradient is needed or when its gradient can be computed
// from the output (relu, leaky relu with a positive slope, tanh, sigmoid); otherwise applied as a
// separate op, as `linear` does.
#include <algorithm>
#include <array>
#include <vector>

#include "ops/conv_transpose_narrow.hpp"
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
  // Deconvolution only: the activation, in place on the output (see `separate_epilogue`).
  dnnl::primitive epilogue;
};

// oneDNN 2.6 computes a deconvolution's bias and post-ops in slow reference loops after its jit
// kernel: with a bias, a forward pass of [128,32,14,14] -> [128,1,28,28] took 6.2 ms against
// 2.6 ms without, and training 6.7 against 3.4 ms (one thread, 2026-12-04). So a deconvolution
// runs bare, then a binary primitive adds the bias (per-channel broadcast, jit on blocked
// layouts) with the activation as its post-op, or an eltwise primitive applies the activation
// alone; and the bias gradient is a reduction of dz (`conv_backward`). oneDNN's own binary and
// reduction primitives are reference loops for a per-channel vector against a blocked tensor,
// so the bias add and its gradient are hand-written over the layout (`for_channel_runs`), and
// the activation is oneDNN's jit eltwise primitive in place.
template <bool T>
constexpr bool separate_epilogue = T;

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
    constexpr bool sep = separate_epilogue<T>;
    typename Traits<T>::Fwd::desc d(
        prop, Traits<T>::alg, any_desc(g.src_shape(), g.cdt), any_desc(g.wei_shape(), g.cdt),
        sep ? memory::desc() : bias_desc(g), any_desc(g.dst_shape(), DType::f32), g.stride, g.dil,
        g.pad_l, g.pad_r);
    dnnl::primitive_attr attr;
    if (!sep) attr.set_post_ops(detail::act_post_ops(g.act, g.alpha));
    typename Traits<T>::Fwd::primitive_desc pd(d, attr, dnnl_engine());
    const dnnl::engine& eng = dnnl_engine();
    FwdEntry<T> e{pd,
                  typename Traits<T>::Fwd(pd),
                  memory(pd.src_desc(), eng, nullptr),
                  memory(pd.weights_desc(), eng, nullptr),
                  g.bias && !sep ? memory(pd.bias_desc(), eng, nullptr) : memory(),
                  memory(pd.dst_desc(), eng, nullptr),
                  dnnl::primitive()};
    if (sep && g.act != Act::none) {
      const detail::EltwiseAlg a = detail::eltwise_alg(g.act, g.alpha);
      dnnl::eltwise_forward::primitive_desc epd(
          dnnl::eltwise_forward::desc(dnnl::prop_kind::forward_inference, a.fwd, pd.dst_desc(),
                                      a.alpha, a.beta),
          eng);
      e.epilogue = dnnl::eltwise_forward(epd);
    }
    return e;
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
    const memory::desc db = g.bias && !separate_epilogue<T>
                                ? memory::desc({g.oc}, memory::data_type::f32, tag::a)
                                : memory::desc();
    typename Traits<T>::BwdWeights::desc d(
        Traits<T>::alg, any_desc(g.src_shape(), g.cdt), any_desc(g.wei_shape(), DType::f32), db,
        any_desc(g.dst_shape(), g.cdt), g.stride, g.dil, g.pad_l, g.pad_r);
    typename Traits<T>::BwdWeights::primitive_desc pd(d, dnnl_engine(), hint);
    const dnnl::engine& eng = dnnl_engine();
    return BwdWeightsEntry<T>{
        pd,
        typename Traits<T>::BwdWeights(pd),
        memory(pd.src_desc(), eng, nullptr),
        memory(pd.diff_weights_desc(), eng, nullptr),
        g.bias && !separate_epilogue<T> ? memory(pd.diff_bias_desc(), eng, nullptr) : memory(),
        memory(pd.diff_dst_desc(), eng, nullptr)};
  });
}

// A stretch of an f32 [N, C, H, W] tensor holding channels c0 .. c0+nc-1 at n positions, `step`
// floats apart: a plain layout has runs of one channel (nc = 1, step = the W stride), a
// channel-blocked one (nChw8c, nChw16c) runs of one block (nc = the block size, or fewer for the
// last block when C is not a multiple; its padding channels are left alone). Runs come grouped
// by channel block, blocks in order.
struct ChannelRun {
  std::int64_t c0, nc, step;
  float* p;
  std::int64_t n;
};

std::vector<ChannelRun> channel_runs(const Tensor& t) {
  const memory::desc md = dnnl_desc(t);
  const auto& d = md.data;
  float* base = static_cast<float*>(t.raw_data()) + d.offset0;
  const std::int64_t N = t.size(0), C = t.size(1), H = t.size(2), W = t.size(3);
  const auto& blk = d.format_desc.blocking;
  const std::int64_t* st = blk.strides;
  std::vector<ChannelRun> runs;
  if (blk.inner_nblks == 1 && blk.inner_idxs[0] == 1 && blk.inner_blks[0] <= 64 &&
      st[3] == blk.inner_blks[0] && st[2] == W * st[3]) {
    const std::int64_t B = blk.inner_blks[0];
    for (std::int64_t cb = 0; cb * B < C; ++cb) {
      for (std::int64_t n = 0; n < N; ++n) {
        runs.push_back({cb * B, std::min(B, C - cb * B), B, base + n * st[0] + cb * st[1], H * W});
      }
    }
    return runs;
  }
  KILN_CHECK(blk.inner_nblks == 0,
             "conv_transpose2d: unexpected output layout for the bias "
             "(please report this as a bug)");
  // A plane whose rows follow each other (nchw, nhwc) is one run; otherwise one run per row.
  const bool whole_planes = st[2] == W * st[3];
  runs.reserve(static_cast<std::size_t>(C * N * (whole_planes ? 1 : H)));
  for (std::int64_t c = 0; c < C; ++c) {
    for (std::int64_t n = 0; n < N; ++n) {
      float* plane = base + n * st[0] + c * st[1];
      if (whole_planes) {
        runs.push_back({c, 1, st[3], plane, H * W});
        continue;
      }
      for (std::int64_t h = 0; h < H; ++h) runs.push_back({c, 1, st[3], plane + h * st[2], W});
    }
  }
  return runs;
}

// y[n, c, h, w] += bias[c], in y's layout.
void add_channel_bias(const Tensor& y, const float* bias) {
  const std::vector<ChannelRun> runs = channel_runs(y);
  if (runs.empty()) return;
  const std::int64_t per = runs.front().n * runs.front().nc;
  detail::parallel_range(static_cast<std::int64_t>(runs.size()),
                         std::max<std::int64_t>(1, 32768 / std::max<std::int64_t>(per, 1)),
                         [&](std::int64_t b, std::int64_t e) {
                           for (std::int64_t r = b; r < e; ++r) {
                             const ChannelRun& u = runs[static_cast<std::size_t>(r)];
                             const float* bc = bias + u.c0;
                             for (std::int64_t i = 0; i < u.n; ++i) {
                               float* q = u.p + i * u.step;
                               for (std::int64_t j = 0; j < u.nc; ++j) q[j] += bc[j];
                             }
                           }
                         });
}

// db[c] = the sum of dz[n, c, h, w] over n, h and w, read in dz's layout: per run in float
// lanes, runs added in double, channel groups in parallel (each group's order is fixed, so the
// result does not depend on the thread count).
Tensor bias_grad(const Tensor& dz, const ConvGeom& g, DType bdt) {
  const Tensor d = dz.dtype() == DType::f32 ? dz : dz.to(DType::f32);
  const std::vector<ChannelRun> runs = channel_runs(d);  // grouped by channel block
  std::vector<std::size_t> starts;                       // first run of each channel group
  for (std::size_t r = 0; r < runs.size(); ++r) {
    if (r == 0 || runs[r].c0 != runs[r - 1].c0) starts.push_back(r);
  }
  starts.push_back(runs.size());
  Tensor db = Tensor::empty({g.oc});
  auto* out = static_cast<float*>(db.raw_data());
  detail::parallel_range(static_cast<std::int64_t>(starts.size()) - 1, 1,
                         [&](std::int64_t b, std::int64_t e) {
                           for (std::int64_t k = b; k < e; ++k) {
                             double acc[64] = {};
                             const std::size_t lo = starts[static_cast<std::size_t>(k)];
                             const std::size_t hi = starts[static_cast<std::size_t>(k) + 1];
                             for (std::size_t r = lo; r < hi; ++r) {
                               const ChannelRun& u = runs[r];
                               float lanes[64] = {};
                               for (std::int64_t i = 0; i < u.n; ++i) {
                                 const float* q = u.p + i * u.step;
                                 for (std::int64_t j = 0; j < u.nc; ++j) lanes[j] += q[j];
                               }
                               for (std::int64_t j = 0; j < u.nc; ++j) acc[j] += lanes[j];
                             }
                             for (std::int64_t j = 0; j < runs[lo].nc; ++j)
                               out[runs[lo].c0 + j] = static_cast<float>(acc[j]);
                           }
                         });
  return bdt == DType::f32 ? db : db.to(bdt);
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
  if (g.bias) bf = detail::f32_vector(b);
  if (g.bias && !separate_epilogue<T>) {
    e.bias.set_data_handle(bf.raw_data());
    args.emplace(DNNL_ARG_BIAS, e.bias);
  }
  execute(e.prim, args);
  if constexpr (separate_epilogue<T>) {
    if (g.bias) add_channel_bias(y, static_cast<const float*>(bf.raw_data()));
    if (g.act != Act::none) execute(e.epilogue, {{DNNL_ARG_SRC, e.dst}, {DNNL_ARG_DST, e.dst}});
  }
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
  if constexpr (separate_epilogue<T>) {
    if (need_b && g.bias) out[2] = bias_grad(dz, g, bdt);
    need_b = false;
  }
  if (need_w || (need_b && g.bias)) {
    BwdWeightsEntry<T>& e = bwd_weights_entry<T>(g);
    Tensor d = dy_as(e.pd.diff_dst_desc());
    Tensor s = detail::to_desc(src, e.pd.src_desc());
    Tensor dw_packed = empty_for_desc(e.pd.diff_weights_desc(), g.wei_shape());
    const bool prim_bias = g.bias && !separate_epilogue<T>;
    Tensor db = prim_bias ? Tensor::empty({g.oc}) : Tensor();
    e.src.set_data_handle(s.raw_data());
    e.diff_dst.set_data_handle(d.raw_data());
    e.diff_wei.set_data_handle(dw_packed.raw_data());
    std::unordered_map<int, memory> args = {{DNNL_ARG_SRC, e.src},
                                            {DNNL_ARG_DIFF_DST, e.diff_dst},
                                            {DNNL_ARG_DIFF_WEIGHTS, e.diff_wei}};
    if (prim_bias) {
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
                   DType precision, const std::array<std::int64_t, 2>& stride,
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
  KILN_CHECK(precision == DType::f32 || precision == DType::bf16, op,
             ": precision must be f32 or bf16, got ", dtype_name(precision));
  return x.dtype() == DType::bf16 || w.dtype() == DType::bf16 || precision == DType::bf16
             ? DType::bf16
             : DType::f32;
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
  g.cdt = check_common(op, x, w, b, o.precision, o.stride, o.padding, o.dilation, o.groups);
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
  g.cdt = check_common(op, x, w, b, o.precision, o.stride, o.padding, o.dilation, o.groups);
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
  // Few output channels: a GEMM and col2im (conv_transpose_narrow.cpp).
  const detail::NarrowTransposeGeom ng{
      .groups = g.groups,
      .oc = g.oc,
      .f32 = g.cdt == DType::f32 && (!b.defined() || b.dtype() == DType::f32),
      .oh = g.oh,
      .ow = g.ow,
      .sh = o.stride[0],
      .sw = o.stride[1],
      .ph = o.padding[0],
      .pw = o.padding[1],
      .dh = o.dilation[0],
      .dw = o.dilation[1]};
  if (detail::narrow_transpose_applies(ng)) {
    return detail::conv_transpose2d_narrow(x, w, b, ng, o.act, o.act_alpha);
  }
  return conv_apply<true>(x, w, b, g, o.act, o.act_alpha);
}

}  // namespace kiln::ops
