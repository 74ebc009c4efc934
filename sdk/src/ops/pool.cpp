// max_pool2d, avg_pool2d and upsample_nearest2d on oneDNN's pooling and resampling primitives,
// forward and backward. They read the input in whatever layout it has (plain or a blocked
// layout from a convolution) and return the output in the matching layout, so a conv -> pool
// -> conv chain never reorders. Gradients are returned in the input's layout.
//
// Pooling follows PyTorch's floor mode: out = (in + 2 * padding - kernel) / stride + 1. Max
// pooling ignores padded positions; average pooling divides by kernel_h * kernel_w when
// count_include_pad is set and by the number of in-bounds positions otherwise.
#include "ops/conv_util.hpp"

namespace kiln::ops {
namespace {

using dnnl::memory;

struct PoolFwd {
  dnnl::pooling_forward::primitive_desc pd;
  dnnl::pooling_forward prim;
  memory src, dst, ws;
};
struct PoolBwd {
  dnnl::pooling_backward::primitive_desc pd;
  dnnl::pooling_backward prim;
  memory diff_src, diff_dst, ws;
};

struct PoolGeom {
  dnnl::algorithm alg;
  memory::desc src_md;  // the input's layout
  Shape dst_shape;
  memory::dims stride, kernel, pad_l, pad_r;

  PrimitiveKey key(int kind) const {
    PrimitiveKey k;
    k.add(kind).add(static_cast<std::int64_t>(alg)).add(dst_shape);
    for (const auto* v : {&stride, &kernel, &pad_l, &pad_r}) k.add(Shape(v->begin(), v->end()));
    detail::add_md(k, src_md);
    return k;
  }
};

PoolFwd& pool_fwd_entry(const PoolGeom& g, bool training) {
  thread_local PrimitiveCache<PoolFwd> cache;
  return cache.get(g.key(training ? 0 : 1), [&] {
    const memory::desc dst_any(to_dims(g.dst_shape), g.src_md.data_type(), memory::format_tag::any);
    dnnl::pooling_forward::desc d(
        training ? dnnl::prop_kind::forward_training : dnnl::prop_kind::forward_inference, g.alg,
        g.src_md, dst_any, g.stride, g.kernel, g.pad_l, g.pad_r);
    dnnl::pooling_forward::primitive_desc pd(d, dnnl_engine());
    const dnnl::engine& eng = dnnl_engine();
    const memory::desc ws_md = pd.workspace_desc();
    return PoolFwd{pd, dnnl::pooling_forward(pd), memory(g.src_md, eng, nullptr),
                   memory(pd.dst_desc(), eng, nullptr),
                   ws_md.get_size() > 0 ? memory(ws_md, eng, nullptr) : memory()};
  });
}

PoolBwd& pool_bwd_entry(const PoolGeom& g) {
  thread_local PrimitiveCache<PoolBwd> cache;
  return cache.get(g.key(2), [&] {
    PoolFwd& f = pool_fwd_entry(g, true);
    dnnl::pooling_backward::desc d(g.alg, g.src_md, f.pd.dst_desc(), g.stride, g.kernel, g.pad_l,
                                   g.pad_r);
    dnnl::pooling_backward::primitive_desc pd(d, dnnl_engine(), f.pd);
    const dnnl::engine& eng = dnnl_engine();
    const memory::desc ws_md = pd.workspace_desc();
    return PoolBwd{pd, dnnl::pooling_backward(pd), memory(pd.diff_src_desc(), eng, nullptr),
                   memory(pd.diff_dst_desc(), eng, nullptr),
                   ws_md.get_size() > 0 ? memory(ws_md, eng, nullptr) : memory()};
  });
}

Tensor pool2d(const Tensor& x_in, const Pool2dOptions& o, bool is_max, const char* op) {
  detail::require_dim(x_in, 4, op, "x", "[N, C, H, W]");
  KILN_CHECK(x_in.dtype() == DType::f32 || x_in.dtype() == DType::bf16, op,
             ": x must be f32 or bf16, got ", dtype_name(x_in.dtype()));
  std::array<std::int64_t, 2> stride = o.stride;
  for (int i = 0; i < 2; ++i) {
    KILN_CHECK(o.kernel[i] >= 1, op, ": kernel must be at least 1, got {", o.kernel[0], ", ",
               o.kernel[1], "}");
    KILN_CHECK(stride[i] >= 0, op, ": stride must be positive (or 0 for the kernel size), got {",
               o.stride[0], ", ", o.stride[1], "}");
    if (stride[i] == 0) stride[i] = o.kernel[i];
    KILN_CHECK(o.padding[i] >= 0 && 2 * o.padding[i] <= o.kernel[i], op,
               ": padding must be between 0 and half the kernel size, got padding {", o.padding[0],
               ", ", o.padding[1], "} for kernel {", o.kernel[0], ", ", o.kernel[1], "}");
  }
  Shape out_shape = x_in.shape();
  for (int i = 0; i < 2; ++i) {
    const std::int64_t in = x_in.size(2 + i), padded = in + 2 * o.padding[i];
    KILN_CHECK(o.kernel[i] <= padded, op, ": the kernel {", o.kernel[0], ", ", o.kernel[1],
               "} is larger than the padded input (", padded, " ", i == 0 ? "rows" : "columns",
               "); x shape ", shape_str(x_in.shape()));
    out_shape[static_cast<std::size_t>(2 + i)] = (padded - o.kernel[i]) / stride[i] + 1;
  }
  if (x_in.numel() == 0) return Tensor::zeros(out_shape, x_in.dtype());
  const Tensor x = detail::dense_or_blocked(x_in);
  PoolGeom g;
  g.alg = is_max ? dnnl::algorithm::pooling_max
                 : (o.count_include_pad ? dnnl::algorithm::pooling_avg_include_padding
                                        : dnnl::algorithm::pooling_avg_exclude_padding);
  g.src_md = dnnl_desc(x);
  g.dst_shape = out_shape;
  g.stride = {stride[0], stride[1]};
  g.kernel = {o.kernel[0], o.kernel[1]};
  g.pad_l = {o.padding[0], o.padding[1]};
  g.pad_r = g.pad_l;  // floor mode: oneDNN accepts the symmetric padding (see conv2d)
  const bool grad = needs_grad({x});
  Tensor y, ws;
  {
    NoGradGuard ng;
    PoolFwd& e = pool_fwd_entry(g, grad);
    y = empty_for_desc(e.pd.dst_desc(), out_shape);
    e.src.set_data_handle(x.raw_data());
    e.dst.set_data_handle(y.raw_data());
    std::unordered_map<int, memory> args = {{DNNL_ARG_SRC, e.src}, {DNNL_ARG_DST, e.dst}};
    if (e.ws) {
      ws = Tensor::empty({static_cast<std::int64_t>(e.ws.get_desc().get_size())}, DType::u8);
      e.ws.set_data_handle(ws.raw_data());
      args.emplace(DNNL_ARG_WORKSPACE, e.ws);
    }
    execute(e.prim, args);
  }
  if (grad) {
    record(op, {x}, {&y}, [g, ws, in_shape = x.shape()](const TensorList& gr) {
      PoolBwd& e = pool_bwd_entry(g);
      Tensor dy = detail::to_desc(gr[0], e.pd.diff_dst_desc());
      Tensor dx = empty_for_desc(e.pd.diff_src_desc(), in_shape);
      e.diff_dst.set_data_handle(dy.raw_data());
      e.diff_src.set_data_handle(dx.raw_data());
      std::unordered_map<int, memory> args = {{DNNL_ARG_DIFF_DST, e.diff_dst},
                                              {DNNL_ARG_DIFF_SRC, e.diff_src}};
      if (e.ws) {
        e.ws.set_data_handle(ws.raw_data());
        args.emplace(DNNL_ARG_WORKSPACE, e.ws);
      }
      execute(e.prim, args);
      return TensorList{dx};
    });
  }
  return y;
}

struct ResampleFwd {
  dnnl::resampling_forward::primitive_desc pd;
  dnnl::resampling_forward prim;
  memory src, dst;
};
struct ResampleBwd {
  dnnl::resampling_backward::primitive_desc pd;
  dnnl::resampling_backward prim;
  memory diff_src, diff_dst;
};

ResampleFwd& resample_fwd_entry(const memory::desc& src_md, const Shape& dst_shape, bool training) {
  PrimitiveKey key;
  key.add(training ? 0 : 1).add(dst_shape);
  detail::add_md(key, src_md);
  thread_local PrimitiveCache<ResampleFwd> cache;
  return cache.get(key, [&] {
    const memory::desc dst_any(to_dims(dst_shape), src_md.data_type(), memory::format_tag::any);
    dnnl::resampling_forward::desc d(
        training ? dnnl::prop_kind::forward_training : dnnl::prop_kind::forward_inference,
        dnnl::algorithm::resampling_nearest, src_md, dst_any);
    dnnl::resampling_forward::primitive_desc pd(d, dnnl_engine());
    return ResampleFwd{pd, dnnl::resampling_forward(pd), memory(src_md, dnnl_engine(), nullptr),
                       memory(pd.dst_desc(), dnnl_engine(), nullptr)};
  });
}

ResampleBwd& resample_bwd_entry(const memory::desc& src_md, const Shape& dst_shape) {
  PrimitiveKey key;
  key.add(2).add(dst_shape);
  detail::add_md(key, src_md);
  thread_local PrimitiveCache<ResampleBwd> cache;
  return cache.get(key, [&] {
    ResampleFwd& f = resample_fwd_entry(src_md, dst_shape, true);
    dnnl::resampling_backward::desc d(dnnl::algorithm::resampling_nearest, src_md, f.pd.dst_desc());
    dnnl::resampling_backward::primitive_desc pd(d, dnnl_engine(), f.pd);
    return ResampleBwd{pd, dnnl::resampling_backward(pd),
                       memory(pd.diff_src_desc(), dnnl_engine(), nullptr),
                       memory(pd.diff_dst_desc(), dnnl_engine(), nullptr)};
  });
}

}  // namespace

Tensor max_pool2d(const Tensor& x, const Pool2dOptions& opts) {
  return pool2d(x, opts, true, "max_pool2d");
}

Tensor avg_pool2d(const Tensor& x, const Pool2dOptions& opts) {
  return pool2d(x, opts, false, "avg_pool2d");
}

Tensor upsample_nearest2d(const Tensor& x_in, std::int64_t scale) {
  constexpr const char* op = "upsample_nearest2d";
  detail::require_dim(x_in, 4, op, "x", "[N, C, H, W]");
  KILN_CHECK(x_in.dtype() == DType::f32 || x_in.dtype() == DType::bf16, op,
             ": x must be f32 or bf16, got ", dtype_name(x_in.dtype()));
  KILN_CHECK(scale >= 1 && scale <= 1024, op, ": scale must be an integer between 1 and 1024, got ",
             scale);
  Shape out_shape = x_in.shape();
  out_shape[2] *= scale;
  out_shape[3] *= scale;
  if (x_in.numel() == 0) return Tensor::zeros(out_shape, x_in.dtype());
  const Tensor x = detail::dense_or_blocked(x_in);
  const memory::desc src_md = dnnl_desc(x);
  const bool grad = needs_grad({x});
  Tensor y;
  {
    NoGradGuard ng;
    ResampleFwd& e = resample_fwd_entry(src_md, out_shape, grad);
    y = empty_for_desc(e.pd.dst_desc(), out_shape);
    e.src.set_data_handle(x.raw_data());
    e.dst.set_data_handle(y.raw_data());
    execute(e.prim, {{DNNL_ARG_SRC, e.src}, {DNNL_ARG_DST, e.dst}});
  }
  if (grad) {
    record(op, {x}, {&y}, [src_md, out_shape, in_shape = x.shape()](const TensorList& gr) {
      ResampleBwd& e = resample_bwd_entry(src_md, out_shape);
      Tensor dy = detail::to_desc(gr[0], e.pd.diff_dst_desc());
      Tensor dx = empty_for_desc(e.pd.diff_src_desc(), in_shape);
      e.diff_dst.set_data_handle(dy.raw_data());
      e.diff_src.set_data_handle(dx.raw_data());
      execute(e.prim, {{DNNL_ARG_DIFF_DST, e.diff_dst}, {DNNL_ARG_DIFF_SRC, e.diff_src}});
      return TensorList{dx};
    });
  }
  return y;
}

}  // namespace kiln::ops
