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
#include <array>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "ops/gemv.hpp"
#include "ops/op_util.hpp"

namespace kiln::ops {
namespace {

using dnnl::memory;

// linear's memo of packed weights, so a call on a weight it has seen skips building the
// transposed view and the reorder_cached lookup (descriptor build, compare, mutex). `src` is held
// weakly and compared by owner, which is safe against a freed storage's address being reused:
// the weak reference keeps the control block alive. `packed` is owned by src's derived copies
// (reorder_cached), so a dropped copy expires the slot.
struct PackedWeightSlot {
  std::weak_ptr<Storage> src;
  std::int64_t offset = 0, stride0 = 0, stride1 = 0;
  std::uint64_t version = 0;
  std::weak_ptr<Storage> packed;
  void* data = nullptr;  // the packed weight's first byte, valid while `packed` is alive
};

struct MatmulEntry {
  dnnl::matmul prim;
  memory src, wei, bias, dst;
  memory::desc wei_user;  // the weight layout as the caller holds it (linear only)
  // oneDNN only has its reference kernel for these operand strides (e.g. a broadcast operand
  // with stride 0): copying the operands dense first is far faster.
  bool dense_fallback = false;
  // Execution arguments over the memory objects above (linear only): built once, since
  // set_data_handle updates the objects these handles share.
  std::unordered_map<int, memory> args;
  std::array<PackedWeightSlot, 8> packed;  // linear only; round-robin replacement
  std::size_t next_slot = 0;
  // The data pointers last given to src, wei, bias and dst (linear only): set_data_handle is a
  // library call, skipped when a pointer is unchanged (x and the weight usually are).
  std::array<void*, 4> bound{};
};

// mem.set_data_handle(p) unless p is already bound.
void bind(memory& mem, void*& bound, void* p) {
  if (p != bound) {
    mem.set_data_handle(p);
    bound = p;
  }
}

// The packed copy of W^T for entry `e`, from the memo or else from reorder_cached (then memoised).
// Returns the data pointer and keeps the storage alive in `hold` for the duration of the call.
void* packed_weight(MatmulEntry& e, const Tensor& w, std::shared_ptr<Storage>& hold) {
  const TensorImpl& wi = *w.impl();
  const bool plain = !wi.blocked;
  const std::uint64_t version = wi.storage->version.load();
  if (plain) {
    for (PackedWeightSlot& s : e.packed) {
      if (s.data == nullptr || s.src.owner_before(wi.storage) || wi.storage.owner_before(s.src)) {
        continue;
      }
      if (s.offset != wi.offset || s.stride0 != wi.strides[0] || s.stride1 != wi.strides[1] ||
          s.version != version) {
        continue;
      }
      hold = s.packed.lock();
      if (hold) return s.data;
    }
  }
  // W [N, K] row-major is W^T [K, N] with strides {1, K}; reorder (cached) into the packed layout.
  Tensor packed = reorder_cached(w.detach().transpose(0, 1), e.wei.get_desc());
  hold = packed.impl()->storage;
  if (plain) {
    PackedWeightSlot& s = e.packed[e.next_slot++ % e.packed.size()];
    s = PackedWeightSlot{wi.storage, wi.offset, wi.strides[0],    wi.strides[1],
                         version,    hold,      packed.raw_data()};
  }
  return packed.raw_data();
}

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
        return MatmulEntry{dnnl::matmul(pd),
                           memory(amd, dnnl_engine(), nullptr),
                           memory(bmd, dnnl_engine(), nullptr),
                           memory(),
                           memory(cmd, dnnl_engine(), nullptr),
                           memory::desc()};
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
  KILN_CHECK(a_in.dim() >= 1 && b_in.dim() >= 1,
             "matmul: operands must have at least one "
             "dimension, got ",
             shape_str(a_in.shape()), " and ", shape_str(b_in.shape()));
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
           [ad = a.detach(), bd = b.detach(), ga = a.requires_grad(),
            gb = b.requires_grad()](const TensorList& g) {
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

struct LinearThreadState {
  PrimitiveKey key;  // reused: no allocation per call
  PrimitiveCache<MatmulEntry> cache;
};

// One thread-local lookup per call: GCC re-resolves a function-local thread_local (through
// __tls_get_addr in a shared library) at each use, 13 times per linear call.
[[gnu::noinline]] LinearThreadState& linear_thread_state() {
  thread_local LinearThreadState state;
  return state;
}

// y[M, N] = act(x[M, K] W[N, K]^T + b) on the matmul primitive with packed weights.
// x2 is plain, dense and 2-d, w is 2-d, b is [N] or undefined; records nothing. This is the
// per-call path of every linear layer, so it reads the tensors' fields directly and allocates
// only the output (bench/overhead_bench.cpp measures it against a bare primitive call).
Tensor linear_forward(const Tensor& x2, const Tensor& w, const Tensor& b, Act act, float alpha) {
  const TensorImpl& wi = *w.impl();
  const std::int64_t m = x2.impl()->shape[0], k = x2.impl()->shape[1], n = wi.shape[0];
  // A few rows (decoding): stream the weight as it is held, no packed copy (gemv.cpp).
  // (x bf16 with an f32 weight keeps the bf16 GEMM, which rounds the weight too.)
  if (m > 0 && (x2.impl()->dtype == DType::f32 || wi.dtype == DType::bf16) &&
      detail::small_m_linear_applies(m, wi)) {
    Tensor y(make_impl(Shape{m, n}, DType::f32));
    const Tensor xf = x2.impl()->dtype == DType::f32 ? x2 : x2.to(DType::f32);
    Tensor b_f32;
    if (b.defined()) b_f32 = b.contiguous().to(DType::f32);
    detail::small_m_linear(static_cast<const float*>(xf.raw_data()), m, k, wi,
                           b_f32.defined() ? static_cast<const float*>(b_f32.raw_data()) : nullptr,
                           static_cast<float*>(y.raw_data()));
    return act == Act::none ? y : activation(y, act, alpha);
  }
  const bool low = x2.impl()->dtype == DType::bf16 || wi.dtype == DType::bf16;
  const DType cdt = low ? DType::bf16 : DType::f32;
  Tensor x_cast;  // x2 converted to the compute type, when it is not already
  if (x2.impl()->dtype != cdt) x_cast = x2.to(cdt);
  const TensorImpl& xi = x_cast.defined() ? *x_cast.impl() : *x2.impl();
  Tensor y(make_impl(Shape{m, n}, DType::f32));
  if (m == 0) return y;
  LinearThreadState& ts = linear_thread_state();
  PrimitiveKey& key = ts.key;
  key.v.clear();
  key.add(2).add(m).add(k).add(n).add(static_cast<std::int64_t>(cdt)).add(xi.strides);
  key.add(static_cast<std::int64_t>(wi.dtype)).add(b.defined() ? 1 : 0);
  key.add(static_cast<std::int64_t>(act)).add(static_cast<std::int64_t>(alpha * 1e6f));
  MatmulEntry& e = ts.cache.get(key, [&] {
    const memory::desc src_md = dnnl_desc(x_cast.defined() ? x_cast : x2);
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
    MatmulEntry entry{dnnl::matmul(pd),
                      memory(src_md, dnnl_engine(), nullptr),
                      memory(pd.weights_desc(), dnnl_engine(), nullptr),
                      b.defined() ? memory(bias_md, dnnl_engine(), nullptr) : memory(),
                      memory(dst_md, dnnl_engine(), nullptr),
                      memory::desc({k, n}, to_dnnl(wi.dtype), {1, k})};
    entry.args = {
        {DNNL_ARG_SRC, entry.src}, {DNNL_ARG_WEIGHTS, entry.wei}, {DNNL_ARG_DST, entry.dst}};
    if (b.defined()) entry.args.emplace(DNNL_ARG_BIAS, entry.bias);
    return entry;
  });
  std::shared_ptr<Storage> packed;
  bind(e.wei, e.bound[1], packed_weight(e, w, packed));
  bind(e.src, e.bound[0], xi.data());
  bind(e.dst, e.bound[3], y.impl()->data());
  Tensor b_f32;  // b as dense f32, when it is not already
  if (const TensorImpl* bi = b.impl()) {
    if (bi->dtype != DType::f32) {
      b_f32 = b.to(DType::f32);
    } else if (bi->blocked || !is_contiguous_layout(bi->shape, bi->strides)) {
      b_f32 = b.contiguous();
    }
    bind(e.bias, e.bound[2], b_f32.defined() ? b_f32.impl()->data() : bi->data());
  }
  execute(e.prim, e.args);
  return y;
}

// linear's argument checks, with their messages.
void check_linear_args(const Tensor& x, const Tensor& w, const Tensor& b) {
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
}

// The same conditions as check_linear_args, tested on the fields without building messages.
bool linear_args_ok(const TensorImpl* x, const TensorImpl* w, const TensorImpl* b) {
  const auto floating = [](DType t) { return t == DType::f32 || t == DType::bf16; };
  return x != nullptr && w != nullptr && w->shape.size() == 2 && !x->shape.empty() &&
         x->shape.back() == w->shape[1] && floating(x->dtype) && floating(w->dtype) &&
         (b == nullptr || (b->shape.size() == 1 && b->shape[0] == w->shape[0]));
}

}  // namespace

Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b, const LinearOptions& opts) {
  const TensorImpl* xi = x.impl();
  const TensorImpl* wi = w.impl();
  const TensorImpl* bi = b.impl();
  if (!linear_args_ok(xi, wi, bi)) check_linear_args(x, w, b);  // throws the precise message
  const bool grad =
      grad_enabled() && (xi->requires_grad || wi->requires_grad || (bi && bi->requires_grad));
  const bool fuse = !grad || detail::act_backward_from_output(opts.act, opts.act_alpha);
  const Act fused_act = fuse ? opts.act : Act::none;

  // A dense 2-d x (the common case) is used as it is: no reshape view on the per-call path.
  const bool flat = xi->shape.size() == 2;
  Tensor x2 = x;
  if (!flat) x2 = x2.reshape({-1, xi->shape.back()});
  if (x2.impl()->blocked || !is_contiguous_layout(x2.impl()->shape, x2.impl()->strides)) {
    x2 = x2.contiguous();
  }
  Tensor y2;
  {
    // linear_forward records nothing itself, but its dtype conversions would when grad is on.
    std::optional<NoGradGuard> ng;
    if (grad) ng.emplace();
    y2 = linear_forward(x2, w, b, fused_act, opts.act_alpha);
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
  Tensor y = std::move(y2);
  if (!flat) {
    Shape out_shape = xi->shape;
    out_shape.back() = wi->shape[0];
    y = y.reshape(out_shape);
  }
  if (!fuse) y = activation(y, opts.act, opts.act_alpha);
  return y;
}

}  // namespace kiln::ops
