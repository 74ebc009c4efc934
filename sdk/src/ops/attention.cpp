// Scaled dot-product attention: softmax(q k^T * scale + mask) v, with an optional causal mask
// offset by Lk - Lq (so a block of new queries appended to a KV cache sees every cached key).
//
// Two implementations:
//  * matmul path (training, prefill, and any query block longer than kDirectMaxLq): S = q k^T on
//    oneDNN's batched matmul (k may be a strided view of a cache: no copy), a hand-written row
//    kernel applies scale, mask and causal limit and turns S into probabilities P in place, and
//    O = P v is a second batched matmul. P is kept for the backward:
//      dV = P^T dO,  dP = dO V^T,  dZ = P * (dP - rowsum(dP * P)),
//      dQ = dZ K * scale,  dK = dZ^T Q * scale,  dMask = dZ summed to the mask's shape.
//  * direct path (no gradient, Lq <= kDirectMaxLq: cached decoding): one fused pass per query
//    row reads K once for the scores and V once for the weighted sum, without materialising S
//    and without building any primitive, so a growing Lk costs nothing per step beyond the
//    reads. K and V may be f32 or bf16 (a bf16 cache is read as is).
//
// Rows with no admissible key (every score -inf) give zeros, not NaN.
#include <cmath>
#include <limits>

#include "ops/op_util.hpp"
#include "ops/vec_math.hpp"

namespace kiln::ops {
namespace {

constexpr std::int64_t kDirectMaxLq = 16;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Strides of `t` broadcast to `full` (right-aligned): 0 where t has size 1 or lacks the dim.
Shape bcast_strides(const Tensor& t, const Shape& full) {
  Shape out(full.size(), 0);
  const std::size_t lead = full.size() - static_cast<std::size_t>(t.dim());
  for (std::size_t i = 0; i < static_cast<std::size_t>(t.dim()); ++i) {
    out[lead + i] = t.shape()[i] == 1 ? 0 : t.strides()[i];
  }
  return out;
}

// Strides of t's batch dims (all but the last two) broadcast to `batch`.
Shape batch_strides(const Tensor& t, const Shape& batch) {
  Shape full = batch;
  full.push_back(t.size(-2));
  full.push_back(t.size(-1));
  Shape st = bcast_strides(t, full);
  st.resize(batch.size());
  return st;
}

// Element offset of each batch index (row-major over `batch`) given per-dim strides.
std::vector<std::int64_t> batch_offsets(const Shape& batch, const Shape& strides) {
  const std::int64_t n = shape_numel(batch);
  std::vector<std::int64_t> offs(static_cast<std::size_t>(n));
  for (std::int64_t b = 0; b < n; ++b) {
    std::int64_t rem = b, off = 0;
    for (std::size_t k = batch.size(); k-- > 0;) {
      off += (rem % batch[k]) * strides[k];
      rem /= batch[k];
    }
    offs[static_cast<std::size_t>(b)] = off;
  }
  return offs;
}

// In place: row[j] <- softmax over j < valid of (row[j] * scale + mask[j * mstride]); entries
// j >= valid become 0. A row without any finite score becomes 0 (NaN if it holds a NaN).
void softmax_row(float* row, std::int64_t lk, std::int64_t valid, float scale, const float* mask,
                 std::int64_t mstride) {
  if (mask != nullptr && mstride == 1) {
    for (std::int64_t j = 0; j < valid; ++j) row[j] = row[j] * scale + mask[j];
  } else {
    const float m0 = mask != nullptr ? mask[0] : 0.f;
    for (std::int64_t j = 0; j < valid; ++j) row[j] = row[j] * scale + m0;
  }
  const float mx = detail::max_of(row, valid);
  if (mx == kNegInf) {
    bool nan = false;
    for (std::int64_t j = 0; j < valid; ++j) nan = nan || row[j] != row[j];
    std::fill(row, row + lk, nan ? std::numeric_limits<float>::quiet_NaN() : 0.f);
    return;
  }
  const float inv = 1.f / detail::exp_shift_sum(row, valid, mx);
  for (std::int64_t j = 0; j < valid; ++j) row[j] *= inv;
  std::fill(row + valid, row + lk, 0.f);
}

std::int64_t causal_valid(bool causal, std::int64_t i, std::int64_t lq, std::int64_t lk) {
  if (!causal) return lk;
  return std::clamp<std::int64_t>(i + (lk - lq) + 1, 0, lk);
}

// Everything both paths need to know about the shapes.
struct Geometry {
  Shape batch;  // broadcast batch dims of q, k, v (and mask)
  std::int64_t lq, lk, d, dv, nbatch;
  Shape score_shape;  // batch + [lq, lk]
};

// Mask view for the row kernels: pointer, per-batch offsets, stride along queries and keys.
struct MaskRows {
  const float* data = nullptr;
  std::vector<std::int64_t> offs;
  std::int64_t sq = 0, sk = 0;
  const float* row(std::int64_t bi, std::int64_t i) const {
    return data == nullptr ? nullptr : data + offs[static_cast<std::size_t>(bi)] + i * sq;
  }
};

MaskRows mask_rows(const Tensor& mask_f32, const Geometry& g) {
  MaskRows m;
  if (!mask_f32.defined()) return m;
  const Shape st = bcast_strides(mask_f32, g.score_shape);
  m.data = mask_f32.data<float>();
  m.offs = batch_offsets(g.batch, Shape(st.begin(), st.end() - 2));
  m.sq = st[st.size() - 2];
  m.sk = st.back();
  return m;
}

inline float to_f32(float v) {
  return v;
}
inline float to_f32(std::uint16_t v) {
  return bf16_to_f32(v);
}

inline float dot_row(const float* a, const float* b, std::int64_t n) {
  return detail::dot(a, b, n);
}
inline float dot_row(const float* a, const std::uint16_t* b, std::int64_t n) {
  return detail::dot_bf16(a, b, n);
}

// Direct path: out [nbatch * lq, dv] f32 contiguous.
template <typename T>
void direct_kernel(const Geometry& g, const Tensor& q, const Tensor& k, const Tensor& v,
                   const MaskRows& mask, bool causal, float scale, Tensor& out) {
  const auto qoffs = batch_offsets(g.batch, batch_strides(q, g.batch));
  const auto koffs = batch_offsets(g.batch, batch_strides(k, g.batch));
  const auto voffs = batch_offsets(g.batch, batch_strides(v, g.batch));
  const std::int64_t q_rs = q.strides()[static_cast<std::size_t>(q.dim() - 2)];
  const std::int64_t k_rs = k.strides()[static_cast<std::size_t>(k.dim() - 2)];
  const std::int64_t v_rs = v.strides()[static_cast<std::size_t>(v.dim() - 2)];
  const float* pq = q.data<float>();
  const T* pk = static_cast<const T*>(k.raw_data());
  const T* pv = static_cast<const T*>(v.raw_data());
  float* po = out.data<float>();
  const std::int64_t rows = g.nbatch * g.lq;
  detail::parallel_range(rows, 1, [&](std::int64_t b, std::int64_t e) {
    std::vector<float> scores(static_cast<std::size_t>(g.lk));
    for (std::int64_t r = b; r < e; ++r) {
      const std::int64_t bi = r / g.lq, i = r % g.lq;
      const float* qrow = pq + qoffs[static_cast<std::size_t>(bi)] + i * q_rs;
      const T* kb = pk + koffs[static_cast<std::size_t>(bi)];
      const T* vb = pv + voffs[static_cast<std::size_t>(bi)];
      const std::int64_t valid = causal_valid(causal, i, g.lq, g.lk);
      float* s = scores.data();
      for (std::int64_t j = 0; j < valid; ++j) s[j] = dot_row(qrow, kb + j * k_rs, g.d);
      softmax_row(s, g.lk, valid, scale, mask.row(bi, i), mask.sk);
      float* orow = po + r * g.dv;
      std::fill(orow, orow + g.dv, 0.f);
      if (valid > 0 && s[0] != s[0]) {  // NaN row
        std::fill(orow, orow + g.dv, s[0]);
        continue;
      }
      for (std::int64_t j = 0; j < valid; ++j) {
        const float p = s[j];
        if (p == 0.f) continue;
        const T* vrow = vb + j * v_rs;
        for (std::int64_t c = 0; c < g.dv; ++c) orow[c] += p * to_f32(vrow[c]);
      }
    }
  });
}

// dZ = P * (dP - rowsum(dP * P)) in place in dp (both [rows, lk] f32 contiguous).
void softmax_backward_rows(const Tensor& p, Tensor& dp, std::int64_t lk) {
  const float* pp = p.data<float>();
  float* pd = dp.data<float>();
  const std::int64_t rows = lk == 0 ? 0 : p.numel() / lk;
  detail::parallel_range(rows, std::max<std::int64_t>(1, 16384 / std::max<std::int64_t>(lk, 1)),
                         [&](std::int64_t b, std::int64_t e) {
                           for (std::int64_t r = b; r < e; ++r) {
                             const float* prow = pp + r * lk;
                             float* drow = pd + r * lk;
                             const float dot = detail::dot(prow, drow, lk);
                             for (std::int64_t j = 0; j < lk; ++j)
                               drow[j] = prow[j] * (drow[j] - dot);
                           }
                         });
}

Tensor as_dtype(const Tensor& t, DType dt) {
  return t.dtype() == dt ? t : t.to(dt);
}

// K or V for the direct path: f32 or bf16, unit stride along the last dim, not blocked.
Tensor direct_operand(const Tensor& t, DType dt) {
  Tensor r = t.is_blocked() ? t.contiguous() : t;
  if (r.dtype() != dt) r = r.to(dt);
  if (r.size(-1) > 1 && r.strides().back() != 1) r = r.contiguous();
  return r;
}

}  // namespace

Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, bool causal,
                                    const Tensor& mask, float scale_in) {
  constexpr const char* op = "scaled_dot_product_attention";
  const std::pair<const Tensor*, const char*> operands[] = {{&q, "q"}, {&k, "k"}, {&v, "v"}};
  for (const auto& [t, name] : operands) {
    detail::require_defined(*t, op, name);
    KILN_CHECK(t->dim() >= 2, op, ": ", name, " must have at least 2 dimensions [..., L, D], got ",
               shape_str(t->shape()));
    KILN_CHECK(t->dtype() == DType::f32 || t->dtype() == DType::bf16, op, ": ", name,
               " must be f32 or bf16, got ", dtype_name(t->dtype()));
  }
  KILN_CHECK(q.size(-1) == k.size(-1), op, ": q has feature size ", q.size(-1), " (shape ",
             shape_str(q.shape()), ") but k has ", k.size(-1), " (shape ", shape_str(k.shape()),
             ")");
  KILN_CHECK(k.size(-2) == v.size(-2), op, ": k has ", k.size(-2), " positions (shape ",
             shape_str(k.shape()), ") but v has ", v.size(-2), " (shape ", shape_str(v.shape()),
             ")");
  Geometry g;
  g.lq = q.size(-2);
  g.lk = k.size(-2);
  g.d = q.size(-1);
  g.dv = v.size(-1);
  KILN_CHECK(g.lk > 0, op,
             ": k and v have no positions (Lk = 0); attention needs at least one key");
  KILN_CHECK(g.d > 0, op, ": q and k have feature size 0");
  auto batch_of = [](const Tensor& t) { return Shape(t.shape().begin(), t.shape().end() - 2); };
  g.batch = detail::broadcast_shape(detail::broadcast_shape(batch_of(q), batch_of(k), op),
                                    batch_of(v), op);
  g.nbatch = shape_numel(g.batch);
  g.score_shape = g.batch;
  g.score_shape.push_back(g.lq);
  g.score_shape.push_back(g.lk);
  Tensor mask_f32;
  if (mask.defined()) {
    KILN_CHECK(is_floating(mask.dtype()), op,
               ": mask must be a floating tensor of additive "
               "scores (0 to keep, -inf to drop), got ",
               dtype_name(mask.dtype()));
    const Shape b = detail::broadcast_shape(mask.shape(), g.score_shape, op);
    KILN_CHECK(b == g.score_shape, op, ": mask of shape ", shape_str(mask.shape()),
               " does not broadcast to the scores' shape ", shape_str(g.score_shape));
    NoGradGuard ng;
    mask_f32 = detail::as_f32(mask.detach(), op, "mask");
  }
  const float scale = scale_in > 0.f ? scale_in : 1.f / std::sqrt(static_cast<float>(g.d));
  Shape out_shape = g.batch;
  out_shape.push_back(g.lq);
  out_shape.push_back(g.dv);
  const bool grad = needs_grad({q, k, v, mask});
  const MaskRows mrows = mask_rows(mask_f32, g);

  if (!grad && g.lq <= kDirectMaxLq) {
    Tensor out = Tensor::empty(out_shape, DType::f32);
    if (out.numel() == 0) return out;
    NoGradGuard ng;
    const Tensor qf = detail::as_f32(q.detach(), op, "q");
    const DType kv_dt =
        k.dtype() == DType::bf16 && v.dtype() == DType::bf16 ? DType::bf16 : DType::f32;
    const Tensor kd = direct_operand(k.detach(), kv_dt);
    const Tensor vd = direct_operand(v.detach(), kv_dt);
    if (kv_dt == DType::bf16) {
      direct_kernel<std::uint16_t>(g, qf, kd, vd, mrows, causal, scale, out);
    } else {
      direct_kernel<float>(g, qf, kd, vd, mrows, causal, scale, out);
    }
    return out;
  }

  const Tensor qd = q.detach(), kd = k.detach(), vd = v.detach();
  Tensor p, out;
  {
    NoGradGuard ng;
    p = matmul(qd, kd.transpose(-1, -2));  // f32, dense, score_shape
    float* pp = p.data<float>();
    const std::int64_t rows = g.nbatch * g.lq, lk = g.lk, lq = g.lq;
    detail::parallel_range(rows, std::max<std::int64_t>(1, 16384 / lk),
                           [&](std::int64_t b, std::int64_t e) {
                             for (std::int64_t r = b; r < e; ++r) {
                               const std::int64_t bi = r / lq, i = r % lq;
                               softmax_row(pp + r * lk, lk, causal_valid(causal, i, lq, lk), scale,
                                           mrows.row(bi, i), mrows.sk);
                             }
                           });
    out = matmul(p, vd);
  }
  if (grad) {
    record(op, {q, k, v, mask}, {&out},
           [qd, kd, vd, p, scale, lk = g.lk, mask_shape = mask.defined() ? mask.shape() : Shape{},
            mask_dt = mask.defined() ? mask.dtype() : DType::f32, gq = q.requires_grad(),
            gk = k.requires_grad(), gv = v.requires_grad(),
            gm = mask.defined() && mask.requires_grad()](const TensorList& grads) {
             // The incoming gradient may be a broadcast view (e.g. from sum()); it feeds two
             // matmuls, so make it dense once.
             const Tensor go = grads[0].contiguous();
             Tensor dq, dk, dv, dm;
             if (gv) dv = as_dtype(sum_to(matmul(p.transpose(-1, -2), go), vd.shape()), vd.dtype());
             if (gq || gk || gm) {
               Tensor dz = matmul(go, vd.transpose(-1, -2));
               softmax_backward_rows(p, dz, lk);
               if (gm) dm = as_dtype(sum_to(dz, mask_shape), mask_dt);
               if (gq) {
                 dq = as_dtype(sum_to(mul_scalar(matmul(dz, kd), scale), qd.shape()), qd.dtype());
               }
               if (gk) {
                 dk = as_dtype(
                     sum_to(mul_scalar(matmul(dz.transpose(-1, -2), qd), scale), kd.shape()),
                     kd.dtype());
               }
             }
             return TensorList{dq, dk, dv, dm};
           });
  }
  return out;
}

}  // namespace kiln::ops
