// Classification and likelihood losses: binary cross-entropy (on probabilities and on logits),
// cross-entropy over class logits, and the Gaussian KL term of a VAE.
//
// Each loss is a fused per-element (or per-row) kernel recorded as one node, followed by the
// reduction (sum / mean ops, which carry their own backward). Formulas follow PyTorch:
//   bce_loss:        -(t log p + (1 - t) log(1 - p)), logs clamped at -100;
//                    d/dp = (p - t) / max(p (1 - p), 1e-12)
//   bce_with_logits: max(x, 0) - x t + log(1 + e^-|x|);  d/dx = sigmoid(x) - t,  d/dt = -x
//   cross_entropy:   (1 - eps) (lse - x_t) + eps (lse - mean_c x_c), lse = log sum_c e^x_c;
//                    d/dx_c = softmax_c - (1 - eps) [c == t] - eps / C
//   gaussian_kl:     -0.5 (1 + lv - mu^2 - e^lv);  d/dmu = mu,  d/dlv = 0.5 (e^lv - 1)
#include <cmath>
#include <limits>
#include <type_traits>

#include "ops/op_util.hpp"
#include "ops/vec_math.hpp"

namespace kiln::ops {
namespace {

constexpr std::int64_t kGrain = 1 << 14;

// Sum or mean (over `count` items) of per-item losses, or the items themselves.
Tensor reduce_items(const Tensor& items, Reduction r, double count) {
  switch (r) {
    case Reduction::none:
      return items;
    case Reduction::sum:
      return sum(items);
    case Reduction::mean:
      return mul_scalar(sum(items), static_cast<float>(1.0 / count));
  }
  throw Error("loss: unknown reduction value " + std::to_string(static_cast<int>(r)));
}

void check_pair(const Tensor& a, const Tensor& b, const char* op, const char* an, const char* bn) {
  detail::require_defined(a, op, an);
  detail::require_defined(b, op, bn);
  KILN_CHECK(a.shape() == b.shape(), op, ": ", an, " shape ", shape_str(a.shape()),
             " differs from ", bn, " shape ", shape_str(b.shape()));
}

// out[i] = f(a[i], b[i]) (times g[i] when g is given) for i in [s, e). A functor callable on
// detail::VecF lanes runs kVec elements at a time, and the last few through the same vector code
// on splatted lanes, so an element's result does not depend on where a piece boundary falls.
template <typename F>
void map_pairs(const float* a, const float* b, const float* g, float* out, std::int64_t s,
               std::int64_t e, F f) {
  using detail::VecF;
  if constexpr (std::is_invocable_r_v<VecF, F, VecF, VecF>) {
    std::int64_t i = s;
    for (; i + detail::kVec <= e; i += detail::kVec) {
      VecF r = f(detail::vload(a + i), detail::vload(b + i));
      if (g) r = r * detail::vload(g + i);
      detail::vstore(out + i, r);
    }
    for (; i < e; ++i) {
      const float r = f(detail::vsplat(a[i]), detail::vsplat(b[i]))[0];
      out[i] = g ? g[i] * r : r;
    }
  } else {
    for (std::int64_t i = s; i < e; ++i) out[i] = g ? g[i] * f(a[i], b[i]) : f(a[i], b[i]);
  }
}

// One node computing loss[i] = f(a[i], b[i]); its backward multiplies the incoming gradient by
// da(a[i], b[i]) and db(a[i], b[i]). The functors take floats, or detail::VecF lanes.
template <typename F, typename DA, typename DB>
Tensor pointwise_loss(const char* op, const char* an, const char* bn, const Tensor& a_in,
                      const Tensor& b_in, F f, DA da, DB db) {
  const Tensor a = detail::as_f32(a_in.detach(), op, an);
  const Tensor b = detail::as_f32(b_in.detach(), op, bn);
  Tensor out = Tensor::empty(a.shape(), DType::f32);
  const float* pa = a.data<float>();
  const float* pb = b.data<float>();
  float* po = out.data<float>();
  detail::parallel_range(a.numel(), kGrain, [&](std::int64_t s, std::int64_t e) {
    map_pairs(pa, pb, nullptr, po, s, e, f);
  });
  if (needs_grad({a_in, b_in})) {
    record(op, {a_in, b_in}, {&out},
           [a, b, da, db, ga = a_in.requires_grad(), gb = b_in.requires_grad(), adt = a_in.dtype(),
            bdt = b_in.dtype()](const TensorList& g) {
             const Tensor gc = g[0].to(DType::f32).contiguous();
             const float* pg = gc.data<float>();
             const float* xa = a.data<float>();
             const float* xb = b.data<float>();
             auto make = [&](auto deriv, DType dt) {
               Tensor r = Tensor::empty(a.shape(), DType::f32);
               float* pr = r.data<float>();
               detail::parallel_range(a.numel(), kGrain, [&](std::int64_t s, std::int64_t e) {
                 map_pairs(xa, xb, pg, pr, s, e, deriv);
               });
               return dt == DType::f32 ? r : r.to(dt);
             };
             return TensorList{ga ? make(da, adt) : Tensor(), gb ? make(db, bdt) : Tensor()};
           });
  }
  return out;
}

float clamped_log(float x) {
  return std::max(std::log(x), -100.f);
}

// Class ids as int64 plus validation against C and ignore_index.
std::vector<std::int64_t> class_ids(const Tensor& target, std::int64_t classes,
                                    std::int64_t ignore_index) {
  const std::vector<std::int64_t> ids = target.to_int_vector();
  for (std::size_t i = 0; i < ids.size(); ++i) {
    const std::int64_t t = ids[i];
    KILN_CHECK(t == ignore_index || (t >= 0 && t < classes), "cross_entropy: target ", t,
               " (at flat position ", i, ") is not a class id in [0, ", classes,
               ") and not ignore_index (", ignore_index, ")");
  }
  return ids;
}

struct CeGeometry {
  std::int64_t n, c, inner;
};

// Per-item losses [n * inner] and log-sum-exp [n * inner] of contiguous f32 logits [n, c, inner].
void ce_forward(const float* x, const std::vector<std::int64_t>& t, const CeGeometry& g,
                std::int64_t ignore_index, float eps, float* loss, float* lse_out) {
  const float inv_c = 1.f / static_cast<float>(g.c);
  if (g.inner == 1) {
    detail::parallel_range(
        g.n, std::max<std::int64_t>(1, kGrain / g.c), [&](std::int64_t b, std::int64_t e) {
          for (std::int64_t r = b; r < e; ++r) {
            const float* row = x + r * g.c;
            const float mx = detail::max_of(row, g.c);
            const float lse = mx + std::log(detail::exp_shift_total(row, g.c, mx));
            lse_out[r] = lse;
            const std::int64_t tr = t[static_cast<std::size_t>(r)];
            if (tr == ignore_index) {
              loss[r] = 0.f;
              continue;
            }
            float l = (1.f - eps) * (lse - row[tr]);
            if (eps > 0.f) l += eps * (lse - detail::sum_floats(row, g.c) * inv_c);
            loss[r] = l;
          }
        });
    return;
  }
  // [n, c, inner]: tiles of positions along the contiguous inner dimension.
  constexpr std::int64_t kTile = 64;
  const std::int64_t tiles = (g.inner + kTile - 1) / kTile;
  detail::parallel_range(g.n * tiles, 1, [&](std::int64_t b, std::int64_t e) {
    float mx[kTile], sum[kTile], sx[kTile], ex[kTile];
    for (std::int64_t task = b; task < e; ++task) {
      const std::int64_t ni = task / tiles, lo = (task % tiles) * kTile;
      const std::int64_t w = std::min(kTile, g.inner - lo);
      const float* base = x + ni * g.c * g.inner + lo;
      for (std::int64_t i = 0; i < w; ++i) {
        mx[i] = -std::numeric_limits<float>::infinity();
        sum[i] = 0.f;
        sx[i] = 0.f;
      }
      for (std::int64_t c = 0; c < g.c; ++c) {
        const float* row = base + c * g.inner;
        for (std::int64_t i = 0; i < w; ++i) {
          mx[i] = row[i] > mx[i] ? row[i] : mx[i];
          sx[i] += row[i];
        }
      }
      for (std::int64_t c = 0; c < g.c; ++c) {
        const float* row = base + c * g.inner;
        detail::exp_sub(row, mx, ex, w);
        for (std::int64_t i = 0; i < w; ++i) sum[i] += ex[i];
      }
      for (std::int64_t i = 0; i < w; ++i) {
        const std::int64_t item = ni * g.inner + lo + i;
        const float lse = mx[i] + std::log(sum[i]);
        lse_out[item] = lse;
        const std::int64_t tr = t[static_cast<std::size_t>(item)];
        if (tr == ignore_index) {
          loss[item] = 0.f;
          continue;
        }
        loss[item] = (1.f - eps) * (lse - base[tr * g.inner + i]) + eps * (lse - sx[i] * inv_c);
      }
    }
  });
}

// dlogits[n, c, inner] = g_item * (softmax_c - (1 - eps) [c == t] - eps / C), 0 when ignored.
void ce_backward(const float* x, const float* lse, const float* gitem,
                 const std::vector<std::int64_t>& t, const CeGeometry& g, std::int64_t ignore_index,
                 float eps, float* dx) {
  const float off = eps / static_cast<float>(g.c);
  if (g.inner == 1) {
    detail::parallel_range(g.n, std::max<std::int64_t>(1, kGrain / g.c),
                           [&](std::int64_t b, std::int64_t e) {
                             for (std::int64_t r = b; r < e; ++r) {
                               const float* row = x + r * g.c;
                               float* drow = dx + r * g.c;
                               const std::int64_t tr = t[static_cast<std::size_t>(r)];
                               if (tr == ignore_index) {
                                 std::fill(drow, drow + g.c, 0.f);
                                 continue;
                               }
                               const float gr = gitem[r];
                               detail::exp_sub_scalar(row, lse[r], drow, g.c);
                               for (std::int64_t c = 0; c < g.c; ++c)
                                 drow[c] = gr * (drow[c] - off);
                               drow[tr] -= gr * (1.f - eps);
                             }
                           });
    return;
  }
  const std::int64_t inner = g.inner;
  detail::parallel_range(g.n * g.c, std::max<std::int64_t>(1, kGrain / inner),
                         [&](std::int64_t b, std::int64_t e) {
                           for (std::int64_t rc = b; rc < e; ++rc) {
                             const std::int64_t ni = rc / g.c, c = rc % g.c;
                             const float* row = x + rc * inner;
                             float* drow = dx + rc * inner;
                             const float* gi = gitem + ni * inner;
                             const float* li = lse + ni * inner;
                             const std::int64_t* ti = t.data() + ni * inner;
                             detail::exp_sub(row, li, drow, inner);
                             for (std::int64_t i = 0; i < inner; ++i) {
                               const float hit = ti[i] == c ? 1.f - eps : 0.f;
                               const float v = gi[i] * (drow[i] - off - hit);
                               drow[i] = ti[i] == ignore_index ? 0.f : v;
                             }
                           }
                         });
}

}  // namespace

Tensor bce_loss(const Tensor& prob, const Tensor& target, Reduction reduction) {
  check_pair(prob, target, "bce_loss", "prob", "target");
  {
    const Tensor p = detail::as_f32(prob.detach(), "bce_loss", "prob");
    const float* pp = p.data<float>();
    for (std::int64_t i = 0; i < p.numel(); ++i) {
      KILN_CHECK(pp[i] >= 0.f && pp[i] <= 1.f,
                 "bce_loss: prob must be in [0, 1] (apply a sigmoid "
                 "first, or use bce_with_logits), got ",
                 pp[i], " at flat position ", i);
    }
  }
  Tensor items = pointwise_loss(
      "bce_loss", "prob", "target", prob, target,
      [](float p, float t) { return -(t * clamped_log(p) + (1.f - t) * clamped_log(1.f - p)); },
      [](float p, float t) { return (p - t) / std::max(p * (1.f - p), 1e-12f); },
      [](float p, float) { return clamped_log(1.f - p) - clamped_log(p); });
  return reduce_items(items, reduction, static_cast<double>(items.numel()));
}

Tensor bce_with_logits(const Tensor& logits, const Tensor& target, Reduction reduction) {
  check_pair(logits, target, "bce_with_logits", "logits", "target");
  Tensor items = pointwise_loss(
      "bce_with_logits", "logits", "target", logits, target,
      // max(x, 0) - x t + ln(1 + e^-|x|), in SIMD lanes (vec_math.hpp).
      [](detail::VecF x, detail::VecF t) {
        const detail::VecF zero = detail::vsplat(0.f);
        const detail::VecF abs = x < zero ? -x : x;
        return (x > zero ? x : zero) - x * t + detail::vlog1p_unit(detail::vexp(-abs));
      },
      [](detail::VecF x, detail::VecF t) { return 1.f / (1.f + detail::vexp(-x)) - t; },
      [](detail::VecF x, detail::VecF) { return -x; });
  return reduce_items(items, reduction, static_cast<double>(items.numel()));
}

Tensor gaussian_kl(const Tensor& mu, const Tensor& logvar, Reduction reduction) {
  check_pair(mu, logvar, "gaussian_kl", "mu", "logvar");
  KILN_CHECK(mu.dim() >= 1, "gaussian_kl: mu and logvar need a batch dimension, got shape ",
             shape_str(mu.shape()));
  Tensor items = pointwise_loss(
      "gaussian_kl", "mu", "logvar", mu, logvar,
      [](float m, float lv) { return -0.5f * (1.f + lv - m * m - std::exp(lv)); },
      [](float m, float) { return m; },
      [](float, float lv) { return 0.5f * (std::exp(lv) - 1.f); });
  return reduce_items(items, reduction, static_cast<double>(mu.size(0)));
}

Tensor cross_entropy(const Tensor& logits_in, const Tensor& target, Reduction reduction,
                     std::int64_t ignore_index, float label_smoothing) {
  constexpr const char* op = "cross_entropy";
  detail::require_defined(logits_in, op, "logits");
  detail::require_defined(target, op, "target");
  KILN_CHECK(logits_in.dim() >= 1, op, ": logits must be [N, C] or [N, C, d1, ...], got shape ",
             shape_str(logits_in.shape()));
  KILN_CHECK(
      target.dtype() == DType::s64 || target.dtype() == DType::s32 || target.dtype() == DType::u8,
      op, ": target must hold integer class ids (s64, s32 or u8), got ",
      dtype_name(target.dtype()));
  KILN_CHECK(label_smoothing >= 0.f && label_smoothing <= 1.f, op,
             ": label_smoothing must be in [0, 1], got ", label_smoothing);
  // [C] with a 0-d target is one item.
  const bool single = logits_in.dim() == 1;
  const Tensor logits_v = single ? logits_in.unsqueeze(0) : logits_in;
  Shape expected = logits_v.shape();
  expected.erase(expected.begin() + 1);
  const Shape item_shape = single ? Shape{} : expected;
  KILN_CHECK(target.shape() == item_shape, op, ": target shape ", shape_str(target.shape()),
             " does not match logits shape ", shape_str(logits_in.shape()), " (expected ",
             shape_str(item_shape), ")");
  CeGeometry g{logits_v.size(0), logits_v.size(1), 1};
  KILN_CHECK(g.c > 0, op, ": logits have no classes (C = 0)");
  for (std::int64_t d = 2; d < logits_v.dim(); ++d) g.inner *= logits_v.size(d);
  const std::vector<std::int64_t> ids = class_ids(target, g.c, ignore_index);
  std::int64_t valid = 0;
  for (std::int64_t t : ids) valid += t != ignore_index ? 1 : 0;

  const Tensor x = detail::as_f32(logits_v.detach(), op, "logits");
  Tensor items = Tensor::empty(expected, DType::f32);
  Tensor lse = Tensor::empty(expected, DType::f32);
  if (items.numel() > 0) {
    ce_forward(x.data<float>(), ids, g, ignore_index, label_smoothing, items.data<float>(),
               lse.data<float>());
  }
  if (needs_grad({logits_v})) {
    record(op, {logits_v}, {&items},
           [x, lse, ids, g, ignore_index, label_smoothing,
            dt = logits_v.dtype()](const TensorList& grads) {
             const Tensor gi = grads[0].to(DType::f32).contiguous();
             Tensor dx = Tensor::empty(x.shape(), DType::f32);
             if (dx.numel() > 0) {
               ce_backward(x.data<float>(), lse.data<float>(), gi.data<float>(), ids, g,
                           ignore_index, label_smoothing, dx.data<float>());
             }
             return TensorList{dt == DType::f32 ? dx : dx.to(dt)};
           });
  }
  if (single) items = items.reshape({});
  return reduce_items(items, reduction, static_cast<double>(valid));
}

}  // namespace kiln::ops
