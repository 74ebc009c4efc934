// Element-wise arithmetic with numpy broadcasting. Memory-bound, so hand-written loops
// parallelised with TBB: the fast paths (same shape, scalar operand, row/column broadcast) are
// flat loops the compiler vectorises; the general case walks rows with per-operand strides.
//
// Operands in a oneDNN layout (a convolution's output, e.g. channels-last or nChw16c) keep it
// when the op can run in it: the same shape (the other operand is reordered into the layout
// if it differs), or a per-channel / per-(sample, channel) operand such as a bias [1, C, 1, 1]
// or an embedding [N, C, 1, 1] against a channel-innermost layout. Otherwise both would be made
// plain first, and the next convolution would reorder the plain result back.
#include <cmath>

#include "ops/conv_util.hpp"
#include "ops/op_util.hpp"

namespace kiln::ops {
namespace {

using detail::as_f32;
using detail::parallel_range;

constexpr std::int64_t kGrain = 1 << 15;

// Strides (elements) of `t` (contiguous, shape s) broadcast to `out` (0 on broadcast dims).
Shape broadcast_strides(const Shape& s, const Shape& out) {
  Shape st(out.size(), 0);
  const Shape cs = contiguous_strides(s);
  const std::size_t lead = out.size() - s.size();
  for (std::size_t i = 0; i < s.size(); ++i) {
    st[lead + i] = s[i] == 1 ? 0 : cs[i];
  }
  return st;
}

// The number of bytes of `md` equals that of its elements: a blocked layout without padding.
bool dense_desc(const dnnl::memory::desc& md, std::int64_t numel) {
  return md.get_size() == static_cast<std::size_t>(numel) * sizeof(float);
}

// a and b in the layout of the blocked one of them (see the file comment), or an undefined
// tensor when the case is not one this handles.
template <typename F>
Tensor blocked_binary(const Tensor& a, const Tensor& b, const Shape& out_shape, F f) {
  if (a.dtype() != DType::f32 || b.dtype() != DType::f32) return Tensor();
  const std::int64_t n = shape_numel(out_shape);
  if (a.shape() == b.shape()) {
    const dnnl::memory::desc md = dnnl_desc(a.is_blocked() ? a : b);
    if (!dense_desc(md, n)) return Tensor();
    const Tensor ra = detail::to_desc(a, md), rb = detail::to_desc(b, md);
    Tensor out = empty_for_desc(md, out_shape);
    const auto* pa = static_cast<const float*>(ra.raw_data());
    const auto* pb = static_cast<const float*>(rb.raw_data());
    auto* po = static_cast<float*>(out.raw_data());
    parallel_range(n, kGrain, [&](std::int64_t s, std::int64_t e) {
      for (std::int64_t i = s; i < e; ++i) po[i] = f(pa[i], pb[i]);
    });
    return out;
  }
  // One operand holds every element (`big`, in a channel-innermost layout), the other one value
  // per channel and / or sample.
  const bool a_big = a.is_blocked() && a.shape() == out_shape;
  const Tensor& big = a_big ? a : b;
  const Tensor& small = a_big ? b : a;
  detail::ChannelLayout l;
  if (!big.is_blocked() || big.shape() != out_shape || !detail::channel_inner_layout(big, l) ||
      l.cb * l.blk != l.c || !dense_desc(dnnl_desc(big), n)) {
    return Tensor();
  }
  const Shape& ss = small.shape();
  const std::size_t nd = out_shape.size();
  if (ss.size() > nd) return Tensor();
  std::int64_t per_n = 0, per_c = 0;  // element strides of `small` over samples and channels
  for (std::size_t i = 0; i < ss.size(); ++i) {
    const std::size_t k = nd - ss.size() + i;
    if (ss[i] == 1) continue;
    if (k == 1) {
      per_c = 1;
    } else if (k != 0) {
      return Tensor();  // varies over a spatial dimension
    }
  }
  if (ss.size() == nd && ss[0] != 1) per_n = per_c != 0 ? l.c : 1;
  const Tensor sc = small.contiguous();
  const float* pv = sc.data<float>();
  Tensor out = empty_for_desc(dnnl_desc(big), out_shape);
  const auto* px = static_cast<const float*>(big.raw_data());
  auto* po = static_cast<float*>(out.raw_data());
  const std::int64_t unit = l.s * l.blk;  // elements of one (sample, channel block)
  parallel_range(l.n * l.cb, std::max<std::int64_t>(1, kGrain / std::max<std::int64_t>(unit, 1)),
                 [&](std::int64_t s, std::int64_t e) {
                   std::vector<float> v(static_cast<std::size_t>(l.blk));
                   for (std::int64_t u = s; u < e; ++u) {
                     const std::int64_t ni = u / l.cb, cb = u % l.cb;
                     for (std::int64_t j = 0; j < l.blk; ++j) {
                       v[static_cast<std::size_t>(j)] = pv[ni * per_n + (cb * l.blk + j) * per_c];
                     }
                     const float* x = px + u * unit;
                     float* o = po + u * unit;
                     const float* vv = v.data();
                     for (std::int64_t i = 0; i < l.s; ++i) {
                       for (std::int64_t j = 0; j < l.blk; ++j) {
                         o[i * l.blk + j] =
                             a_big ? f(x[i * l.blk + j], vv[j]) : f(vv[j], x[i * l.blk + j]);
                       }
                     }
                   }
                 });
  return out;
}

template <typename F>
Tensor binary_kernel(const Tensor& a_in, const Tensor& b_in, const char* name, F f) {
  if (a_in.defined() && b_in.defined() && (a_in.is_blocked() || b_in.is_blocked())) {
    Tensor r =
        blocked_binary(a_in, b_in, detail::broadcast_shape(a_in.shape(), b_in.shape(), name), f);
    if (r.defined()) return r;
  }
  Tensor a = as_f32(a_in, name, "a");
  Tensor b = as_f32(b_in, name, "b");
  const Shape out_shape = detail::broadcast_shape(a.shape(), b.shape(), name);
  Tensor out = Tensor::empty(out_shape, DType::f32);
  const std::int64_t n = out.numel();
  const float* pa = a.data<float>();
  const float* pb = b.data<float>();
  float* po = out.data<float>();
  if (a.shape() == b.shape()) {
    parallel_range(n, kGrain, [&](std::int64_t s, std::int64_t e) {
      for (std::int64_t i = s; i < e; ++i) po[i] = f(pa[i], pb[i]);
    });
    return out;
  }
  if (b.numel() == 1 && a.numel() == n) {
    const float sb = pb[0];
    parallel_range(n, kGrain, [&](std::int64_t s, std::int64_t e) {
      for (std::int64_t i = s; i < e; ++i) po[i] = f(pa[i], sb);
    });
    return out;
  }
  if (a.numel() == 1 && b.numel() == n) {
    const float sa = pa[0];
    parallel_range(n, kGrain, [&](std::int64_t s, std::int64_t e) {
      for (std::int64_t i = s; i < e; ++i) po[i] = f(sa, pb[i]);
    });
    return out;
  }
  // General case: iterate rows of the innermost dimension.
  const std::size_t nd = out_shape.size();
  const Shape sa = broadcast_strides(a.shape(), out_shape);
  const Shape sb = broadcast_strides(b.shape(), out_shape);
  const std::int64_t inner = out_shape[nd - 1];
  const std::int64_t rows = inner == 0 ? 0 : n / inner;
  const std::int64_t ia = sa[nd - 1], ib = sb[nd - 1];
  parallel_range(rows, std::max<std::int64_t>(1, kGrain / std::max<std::int64_t>(inner, 1)),
                 [&](std::int64_t s, std::int64_t e) {
                   for (std::int64_t row = s; row < e; ++row) {
                     std::int64_t rem = row, oa = 0, ob = 0;
                     for (std::size_t k = nd - 1; k-- > 0;) {
                       const std::int64_t idx = rem % out_shape[k];
                       rem /= out_shape[k];
                       oa += idx * sa[k];
                       ob += idx * sb[k];
                     }
                     const float* ra = pa + oa;
                     const float* rb = pb + ob;
                     float* ro = po + row * inner;
                     if (ia == 1 && ib == 1) {
                       for (std::int64_t i = 0; i < inner; ++i) ro[i] = f(ra[i], rb[i]);
                     } else if (ia == 1 && ib == 0) {
                       const float vb = rb[0];
                       for (std::int64_t i = 0; i < inner; ++i) ro[i] = f(ra[i], vb);
                     } else if (ia == 0 && ib == 1) {
                       const float va = ra[0];
                       for (std::int64_t i = 0; i < inner; ++i) ro[i] = f(va, rb[i]);
                     } else {
                       for (std::int64_t i = 0; i < inner; ++i) ro[i] = f(ra[i * ia], rb[i * ib]);
                     }
                   }
                 });
  return out;
}

template <typename F>
Tensor unary_kernel(const Tensor& x_in, const char* name, F f) {
  if (x_in.defined() && x_in.is_blocked() && x_in.dtype() == DType::f32 &&
      dense_desc(dnnl_desc(x_in), x_in.numel())) {
    Tensor out = empty_for_desc(dnnl_desc(x_in), x_in.shape());
    const auto* px = static_cast<const float*>(x_in.raw_data());
    auto* po = static_cast<float*>(out.raw_data());
    parallel_range(x_in.numel(), kGrain, [&](std::int64_t s, std::int64_t e) {
      for (std::int64_t i = s; i < e; ++i) po[i] = f(px[i]);
    });
    return out;
  }
  Tensor x = as_f32(x_in, name, "x");
  Tensor out = Tensor::empty(x.shape(), DType::f32);
  const float* px = x.data<float>();
  float* po = out.data<float>();
  parallel_range(x.numel(), kGrain, [&](std::int64_t s, std::int64_t e) {
    for (std::int64_t i = s; i < e; ++i) po[i] = f(px[i]);
  });
  return out;
}

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) {
  Tensor out = binary_kernel(a, b, "add", [](float x, float y) { return x + y; });
  if (needs_grad({a, b})) {
    record("add", {a, b}, {&out}, [sa = a.shape(), sb = b.shape()](const TensorList& g) {
      return TensorList{sum_to(g[0], sa), sum_to(g[0], sb)};
    });
  }
  return out;
}

Tensor sub(const Tensor& a, const Tensor& b) {
  Tensor out = binary_kernel(a, b, "sub", [](float x, float y) { return x - y; });
  if (needs_grad({a, b})) {
    record("sub", {a, b}, {&out},
           [sa = a.shape(), sb = b.shape(), gb = b.requires_grad()](const TensorList& g) {
             return TensorList{sum_to(g[0], sa), gb ? sum_to(neg(g[0]), sb) : Tensor()};
           });
  }
  return out;
}

Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor out = binary_kernel(a, b, "mul", [](float x, float y) { return x * y; });
  if (needs_grad({a, b})) {
    record("mul", {a, b}, {&out},
           [ad = a.detach(), bd = b.detach(), ga = a.requires_grad(),
            gb = b.requires_grad()](const TensorList& g) {
             return TensorList{ga ? sum_to(mul(g[0], bd), ad.shape()) : Tensor(),
                               gb ? sum_to(mul(g[0], ad), bd.shape()) : Tensor()};
           });
  }
  return out;
}

Tensor div(const Tensor& a, const Tensor& b) {
  Tensor out = binary_kernel(a, b, "div", [](float x, float y) { return x / y; });
  if (needs_grad({a, b})) {
    record("div", {a, b}, {&out},
           [bd = b.detach(), od = out.detach(), sa = a.shape(), ga = a.requires_grad(),
            gb = b.requires_grad()](const TensorList& g) {
             Tensor g_over_b = div(g[0], bd);
             return TensorList{ga ? sum_to(g_over_b, sa) : Tensor(),
                               gb ? sum_to(neg(mul(g_over_b, od)), bd.shape()) : Tensor()};
           });
  }
  return out;
}

Tensor add_scalar(const Tensor& a, float s) {
  Tensor out = unary_kernel(a, "add_scalar", [s](float x) { return x + s; });
  if (needs_grad({a})) {
    record("add_scalar", {a}, {&out}, [](const TensorList& g) { return TensorList{g[0]}; });
  }
  return out;
}

Tensor mul_scalar(const Tensor& a, float s) {
  Tensor out = unary_kernel(a, "mul_scalar", [s](float x) { return x * s; });
  if (needs_grad({a})) {
    record("mul_scalar", {a}, {&out},
           [s](const TensorList& g) { return TensorList{mul_scalar(g[0], s)}; });
  }
  return out;
}

Tensor neg(const Tensor& a) {
  return mul_scalar(a, -1.f);
}

Tensor exp(const Tensor& a) {
  Tensor out = unary_kernel(a, "exp", [](float x) { return std::exp(x); });
  if (needs_grad({a})) {
    record("exp", {a}, {&out},
           [od = out.detach()](const TensorList& g) { return TensorList{mul(g[0], od)}; });
  }
  return out;
}

Tensor log(const Tensor& a) {
  Tensor out = unary_kernel(a, "log", [](float x) { return std::log(x); });
  if (needs_grad({a})) {
    record("log", {a}, {&out},
           [ad = a.detach()](const TensorList& g) { return TensorList{div(g[0], ad)}; });
  }
  return out;
}

Tensor sqrt(const Tensor& a) {
  Tensor out = unary_kernel(a, "sqrt", [](float x) { return std::sqrt(x); });
  if (needs_grad({a})) {
    record("sqrt", {a}, {&out}, [od = out.detach()](const TensorList& g) {
      return TensorList{div(g[0], mul_scalar(od, 2.f))};
    });
  }
  return out;
}

Tensor square(const Tensor& a) {
  Tensor out = unary_kernel(a, "square", [](float x) { return x * x; });
  if (needs_grad({a})) {
    record("square", {a}, {&out}, [ad = a.detach()](const TensorList& g) {
      return TensorList{mul(g[0], mul_scalar(ad, 2.f))};
    });
  }
  return out;
}

Tensor abs(const Tensor& a) {
  Tensor out = unary_kernel(a, "abs", [](float x) { return std::fabs(x); });
  if (needs_grad({a})) {
    record("abs", {a}, {&out}, [ad = a.detach()](const TensorList& g) {
      Tensor sign =
          unary_kernel(ad, "abs", [](float x) { return x > 0.f ? 1.f : (x < 0.f ? -1.f : 0.f); });
      return TensorList{mul(g[0], sign)};
    });
  }
  return out;
}

Tensor pow(const Tensor& a, float e) {
  Tensor out = unary_kernel(a, "pow", [e](float x) { return std::pow(x, e); });
  if (needs_grad({a})) {
    record("pow", {a}, {&out}, [ad = a.detach(), e](const TensorList& g) {
      Tensor d = unary_kernel(ad, "pow", [e](float x) { return e * std::pow(x, e - 1.f); });
      return TensorList{mul(g[0], d)};
    });
  }
  return out;
}

Tensor clamp(const Tensor& a, float lo, float hi) {
  KILN_CHECK(lo <= hi, "clamp: lower bound ", lo, " is above upper bound ", hi);
  Tensor out = unary_kernel(a, "clamp", [lo, hi](float x) { return std::clamp(x, lo, hi); });
  if (needs_grad({a})) {
    record("clamp", {a}, {&out}, [ad = a.detach(), lo, hi](const TensorList& g) {
      Tensor m =
          unary_kernel(ad, "clamp", [lo, hi](float x) { return x >= lo && x <= hi ? 1.f : 0.f; });
      return TensorList{mul(g[0], m)};
    });
  }
  return out;
}

Tensor maximum(const Tensor& a, const Tensor& b) {
  Tensor out = binary_kernel(a, b, "maximum", [](float x, float y) { return x >= y ? x : y; });
  if (needs_grad({a, b})) {
    record("maximum", {a, b}, {&out}, [ad = a.detach(), bd = b.detach()](const TensorList& g) {
      // Ties split the gradient evenly, as PyTorch does.
      Tensor ma = binary_kernel(
          ad, bd, "maximum", [](float x, float y) { return x > y ? 1.f : (x == y ? 0.5f : 0.f); });
      Tensor ga = mul(g[0], ma);
      return TensorList{sum_to(ga, ad.shape()), sum_to(sub(g[0], ga), bd.shape())};
    });
  }
  return out;
}

Tensor minimum(const Tensor& a, const Tensor& b) {
  Tensor out = binary_kernel(a, b, "minimum", [](float x, float y) { return x <= y ? x : y; });
  if (needs_grad({a, b})) {
    record("minimum", {a, b}, {&out}, [ad = a.detach(), bd = b.detach()](const TensorList& g) {
      Tensor ma = binary_kernel(
          ad, bd, "minimum", [](float x, float y) { return x < y ? 1.f : (x == y ? 0.5f : 0.f); });
      Tensor ga = mul(g[0], ma);
      return TensorList{sum_to(ga, ad.shape()), sum_to(sub(g[0], ga), bd.shape())};
    });
  }
  return out;
}

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  detail::require_defined(cond, "where", "cond");
  Tensor c = cond.dtype() == DType::f32 ? cond : cond.to(DType::f32);
  // mask * a + (1 - mask) * b would turn inf*0 into NaN; select explicitly instead.
  const Shape shape = detail::broadcast_shape(
      detail::broadcast_shape(c.shape(), a.shape(), "where"), b.shape(), "where");
  Tensor cm = c.expand(shape).contiguous();
  Tensor ae = as_f32(a, "where", "a").expand(shape).contiguous();
  Tensor be = as_f32(b, "where", "b").expand(shape).contiguous();
  Tensor out = Tensor::empty(shape, DType::f32);
  const float* pc = cm.data<float>();
  const float* pa = ae.data<float>();
  const float* pb = be.data<float>();
  float* po = out.data<float>();
  parallel_range(out.numel(), kGrain, [&](std::int64_t s, std::int64_t e) {
    for (std::int64_t i = s; i < e; ++i) po[i] = pc[i] != 0.f ? pa[i] : pb[i];
  });
  if (needs_grad({a, b})) {
    record("where", {a, b}, {&out}, [cm, sa = a.shape(), sb = b.shape()](const TensorList& g) {
      Tensor zero = Tensor::zeros({}, DType::f32);
      return TensorList{sum_to(where(cm, g[0], zero), sa), sum_to(where(cm, zero, g[0]), sb)};
    });
  }
  return out;
}

}  // namespace kiln::ops

namespace kiln {
Tensor operator+(const Tensor& a, const Tensor& b) {
  return ops::add(a, b);
}
Tensor operator-(const Tensor& a, const Tensor& b) {
  return ops::sub(a, b);
}
Tensor operator*(const Tensor& a, const Tensor& b) {
  return ops::mul(a, b);
}
Tensor operator/(const Tensor& a, const Tensor& b) {
  return ops::div(a, b);
}
Tensor operator+(const Tensor& a, float b) {
  return ops::add_scalar(a, b);
}
Tensor operator-(const Tensor& a, float b) {
  return ops::add_scalar(a, -b);
}
Tensor operator*(const Tensor& a, float b) {
  return ops::mul_scalar(a, b);
}
Tensor operator/(const Tensor& a, float b) {
  return ops::mul_scalar(a, 1.f / b);
}
Tensor operator+(float a, const Tensor& b) {
  return ops::add_scalar(b, a);
}
Tensor operator-(float a, const Tensor& b) {
  return ops::add_scalar(ops::neg(b), a);
}
Tensor operator*(float a, const Tensor& b) {
  return ops::mul_scalar(b, a);
}
Tensor operator-(const Tensor& a) {
  return ops::neg(a);
}
}  // namespace kiln
