// matmul and linear on oneDNN's matmul primitive.
//
// linear: weights are described to oneDNN with format `any`, so it picks its packed layout; the
// packed copy is cached on the weight's storage until the optimiser writes the weight again.
// Bias and activation are fused as post-ops (the activation only when its gradient can be
// computed from the output, or when no gradient is needed).
//
// bf16: when either operand (or the weight) is bf16, both operands are computed in bf16 with f32
// accumulation; the result is f32.
#include <algorithm>
#include <cstring>
#include <string>

#include "ops/op_util.hpp"

namespace kiln::ops {
namespace {

using dnnl::memory;

struct MatmulEntry {
  dnnl::matmul prim;
  memory src, wei, bias, dst;
  memory::desc wei_user;  // the weight layout as the caller holds it (linear only)
  // oneDNN only has its reference kernel for these operand strides (e.g. a broadcast operand
  // with stride 0): copying the operands dense first is far faster.
  bool dense_fallback = false;
};

void add_desc(PrimitiveKey& k, const Tensor& t) {
  k.add(static_cast<std::int64_t>(t.dtype())).add(t.shape()).add(t.strides());
}

// Computes C = A B for plain tensors of equal rank >= 2 whose batch dims already agree.
// `a`/`b` may be strided views; falls back to dense copies if oneDNN rejects the strides.
Tensor matmul_plain(const Tensor& a_in, const Tensor& b_in) {
  Tensor a = a_in, b = b_in;
  if (a.dtype() != b.dtype()) {
    a = a.to(DType::bf16);
    b = b.to(DType::bf16);
  }
  Shape out_shape = a.shape();
  out_shape.back() = b.shape().back();
  Tensor c = Tensor::empty(out_shape, DType::f32);
  if (c.numel() == 0) return c;
  if (a.size(-1) == 0) return c.zero_();
  for (int attempt = 0; attempt < 2; ++attempt) {
    PrimitiveKey key;
    key.add(1);
    add_desc(key, a);
    add_desc(key, b);
    thread_local PrimitiveCache<MatmulEntry> cache;
    MatmulEntry* e = nullptr;
    try {
      e = &cache.get(key, [&] {
        const memory::desc amd = dnnl_desc(a), bmd = dnnl_desc(b), cmd = dnnl_desc(c);
        dnnl::matmul::desc d(amd, bmd, cmd);
        dnnl::matmul::primitive_desc pd(d, dnnl_engine());
        if (attempt == 0 && std::string(pd.impl_info_str()).rfind("ref", 0) == 0 &&
            !(a.is_contiguous() && b.is_contiguous())) {
          MatmulEntry fallback;
          fallback.dense_fallback = true;
          return fallback;
        }
        return MatmulEntry{dnnl::matmul(pd), memory(amd, dnnl_engine(), nullptr),
                           memory(bmd, dnnl_engine(), nullptr), memory(),
                           memory(cmd, dnnl_engine(), nullptr), memory::desc()};
      });
    } catch (const dnnl::error&) {
      if (attempt == 1) throw;
      a = a.contiguous();
      b = b.contiguous();
      continue;
    }
    if (e->dense_fallback) {
      a = a.contiguous();
      b = b.contiguous();
      continue;
    }
    e->src.set_data_handle(a.raw_data());
    e->wei.set_data_handle(b.raw_data());
    e->dst.set_data_handle(c.raw_data());
    execute(e->prim, {{DNNL_ARG_SRC, e->src}, {DNNL_ARG_WEIGHTS, e->wei}, {DNNL_ARG_DST, e->dst}});
    break;
  }
  return c;
}

Tensor matmul_nograd(const Tensor& a_in, const Tensor& b_in) {
  Tensor a = a_in.is_blocked() ? a_in.contiguous() : a_in;
  Tensor b = b_in.is_blocked() ? b_in.contiguous() : b_in;
  const Shape& as = a.shape();
  const Shape& bs = b.shape();
  // Batch dims broadcast; matrices are the last two.
  const Shape abatch(as.begin(), as.end() - 2), bbatch(bs.begin(), bs.end() - 2);
  const Shape batch = detail::broadcast_shape(abatch, bbatch, "matmul");
  const std::int64_t m = as[as.size() - 2], n = bs.back();
  // B without batch (or all-ones batch) and A row-contiguous: fold A's batch into M.
  if (shape_numel(bbatch) == 1 && !abatch.empty() && a.is_contiguous()) {
    Tensor a2 = a.reshape({-1, as.back()});
    Tensor b2 = b.reshape({bs[bs.size() - 2], n});
    Shape out = batch;
    out.push_back(m);
    out.push_back(n);
    return matmul_plain(a2, b2).reshape(out);
  }
  Shape afull = batch, bfull = batch;
  afull.push_back(m);
  afull.push_back(as.back());
  bfull.push_back(bs[bs.size() - 2]);
  bfull.push_back(n);
  Tensor ae = a.shape() == afull ? a : a.expand(afull).contiguous();
  Tensor be = b.shape() == bfull ? b : b.expand(bfull).contiguous();
  return matmul_plain(ae, be);
}

}  // namespace

Tensor matmul(const Tensor& a_in, const Tensor& b_in) {
  detail::require_defined(a_in, "matmul", "a");
  detail::require_defined(b_in, "matmul", "b");
  for (const Tensor* t : {&a_in, &b_in}) {
    KILN_CHECK(t->dtype() == DType::f32 || t->dtype() == DType::bf16,
               "matmul: operands must be f32 or bf16, got ", dtype_name(t->dtype()));
  }
  KILN_CHECK(a_in.dim() >= 1 && b_in.dim() >= 1, "matmul: operands must have at least one "
             "dimension, got ", shape_str(a_in.shape()), " and ", shape_str(b_in.shape()));
  const bool a_vec = a_in.dim() == 1, b_vec = b_in.dim() == 1;
  Tensor a = a_vec ? a_in.unsqueeze(0) : a_in;
  Tensor b = b_vec ? b_in.unsqueeze(1) : b_in;
  KILN_CHECK(a.size(-1) == b.size(-2), "matmul: inner dimensions differ: ", shape_str(a_in.shape()),
             " x ", shape_str(b_in.shape()));
  Tensor out;
  {
    NoGradGuard ng;
    out = matmul_nograd(a.detach(), b.detach());
  }
  if (needs_grad({a, b})) {
    record("matmul", {a, b}, {&out},
           [ad = a.detach(), bd = b.detach(), ga = a.requires_grad(), gb = b.requires_grad()](
               const TensorList& g) {
             Tensor gad, gbd;
             if (ga) gad = sum_to(matmul(g[0], bd.transpose(-1, -2)), ad.shape());
             if (gb) gbd = sum_to(matmul(ad.transpose(-1, -2), g[0]), bd.shape());
             if (gad.defined() && gad.dtype() != ad.dtype()) gad = gad.to(ad.dtype());
             if (gbd.defined() && gbd.dtype() != bd.dtype()) gbd = gbd.to(bd.dtype());
             return TensorList{gad, gbd};
           });
  }
  if (a_vec) out = out.squeeze(-2);
  if (b_vec) out = out.squeeze(-1);
  return out;
}

namespace {

// y[M, N] = act(x[M, K] W[N, K]^T + b) on the matmul primitive with packed weights.
Tensor linear_forward(const Tensor& x2, const Tensor& w, const Tensor& b, Act act, float alpha) {
  const std::int64_t m = x2.size(0), k = x2.size(1), n = w.size(0);
  const bool low = x2.dtype() == DType::bf16 || w.dtype() == DType::bf16;
  const DType cdt = low ? DType::bf16 : DType::f32;
  Tensor x = x2.dtype() == cdt ? x2 : x2.to(cdt);
  Tensor y = Tensor::empty({m, n}, DType::f32);
  if (m == 0) return y;
  PrimitiveKey key;
  key.add(2).add(m).add(k).add(n).add(static_cast<std::int64_t>(cdt)).add(x.strides());
  key.add(static_cast<std::int64_t>(w.dtype())).add(b.defined() ? 1 : 0);
  key.add(static_cast<std::int64_t>(act)).add(static_cast<std::int64_t>(alpha * 1e6f));
  thread_local PrimitiveCache<MatmulEntry> cache;
  MatmulEntry& e = cache.get(key, [&] {
    const memory::desc src_md = dnnl_desc(x);
    const memory::desc wei_any({k, n}, to_dnnl(cdt), memory::format_tag::any);
    const memory::desc dst_md({m, n}, memory::data_type::f32, memory::format_tag::ab);
    const memory::desc bias_md =
        b.defined() ? memory::desc({1, n}, memory::data_type::f32, memory::format_tag::ab)
                    : memory::desc();
    dnnl::primitive_attr attr;
    attr.set_post_ops(detail::act_post_ops(act, alpha));
    dnnl::matmul::desc d = b.defined() ? dnnl::matmul::desc(src_md, wei_any, bias_md, dst_md)
                                       : dnnl::matmul::desc(src_md, wei_any, dst_md);
    dnnl::matmul::primitive_desc pd(d, attr, dnnl_engine());
    return MatmulEntry{dnnl::matmul(pd), memory(src_md, dnnl_engine(), nullptr),
                       memory(pd.weights_desc(), dnnl_engine(), nullptr),
                       b.defined() ? memory(bias_md, dnnl_engine(), nullptr) : memory(),
                       memory(dst_md, dnnl_engine(), nullptr),
                       memory::desc({k, n}, to_dnnl(w.dtype()), {1, k})};
  });
  // W [N, K] row-major is W^T [K, N] with strides {1, K}; reorder (cached) into the packed layout.
  Tensor wt = w.detach().transpose(0, 1);
  Tensor packed = reorder_cached(wt, e.wei.get_desc());
  e.src.set_data_handle(x.raw_data());
  e.wei.set_data_handle(packed.raw_data());
  e.dst.set_data_handle(y.raw_data());
  std::unordered_map<int, memory> args = {
      {DNNL_ARG_SRC, e.src}, {DNNL_ARG_WEIGHTS, e.wei}, {DNNL_ARG_DST, e.dst}};
  Tensor bf;
  if (b.defined()) {
    bf = b.dtype() == DType::f32 ? b.contiguous() : b.to(DType::f32);
    e.bias.set_data_handle(bf.raw_data());
    args.emplace(DNNL_ARG_BIAS, e.bias);
  }
  execute(e.prim, args);
  return y;
}

}  // namespace

Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b, const LinearOptions& opts) {
  detail::require_defined(x, "linear", "x");
  detail::require_dim(w, 2, "linear", "weight", "[out, in]");
  KILN_CHECK(x.dim() >= 1, "linear: x must have at least one dimension");
  KILN_CHECK(x.size(-1) == w.size(1), "linear: x has ", x.size(-1), " features (shape ",
             shape_str(x.shape()), ") but the weight expects ", w.size(1), " (shape ",
             shape_str(w.shape()), ")");
  for (const Tensor* t : {&x, &w}) {
    KILN_CHECK(t->dtype() == DType::f32 || t->dtype() == DType::bf16,
               "linear: x and weight must be f32 or bf16, got ", dtype_name(t->dtype()));
  }
  if (b.defined()) {
    KILN_CHECK(b.dim() == 1 && b.size(0) == w.size(0), "linear: bias must be [", w.size(0),
               "], got ", shape_str(b.shape()));
  }
  const bool grad = needs_grad({x, w, b});
  const bool fuse = !grad || detail::act_backward_from_output(opts.act, opts.act_alpha);
  const Act fused_act = fuse ? opts.act : Act::none;

  const std::int64_t in = x.size(-1), out_features = w.size(0);
  Shape out_shape = x.shape();
  out_shape.back() = out_features;
  Tensor x2 = x.reshape({-1, in});
  if (!x2.is_contiguous()) x2 = x2.contiguous();
  Tensor y2;
  {
    NoGradGuard ng;
    y2 = linear_forward(x2.detach(), w, b.defined() ? b.detach() : b, fused_act, opts.act_alpha);
  }
  if (grad) {
    record("linear", {x2, w, b}, {&y2},
           [xd = x2.detach(), wd = w.detach(), yd = y2.detach(), has_b = b.defined(), fused_act,
            alpha = opts.act_alpha, gx = x2.requires_grad(), gw = w.requires_grad(),
            gb = b.defined() && b.requires_grad()](const TensorList& g) {
             Tensor dz = detail::activation_backward(g[0], yd, fused_act, alpha);
             Tensor dx, dw, db;
             if (gx) {
               dx = matmul(dz, wd.dtype() == DType::f32 ? wd : wd.to(DType::f32));
               if (xd.dtype() != DType::f32) dx = dx.to(xd.dtype());
             }
             if (gw) {
               dw = matmul(dz.transpose(0, 1), xd);
               if (wd.dtype() != DType::f32) dw = dw.to(wd.dtype());
             }
             if (gb && has_b) db = sum(dz, {0});
             return TensorList{dx, dw, db};
           });
  }
  Tensor y = y2.reshape(out_shape);
  if (!fuse) y = activation(y, opts.act, opts.act_alpha);
  return y;
}

}  // namespace kiln::ops
