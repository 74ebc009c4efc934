// group_norm, hand-written (oneDNN 2.6 has no group normalisation primitive) and parallelised
// with TBB over (sample, channel block) pairs.
//
// For x [N, C, *] with G groups of C/G channels, each (n, g) is normalised over its C/G
// channels and all spatial positions S, then scaled and shifted per channel:
//   y = (x - mean_ng) * rstd_ng * w_c + b_c,   rstd = 1 / sqrt(var + eps)  (biased variance)
// Backward, with xhat = (x - mean) * rstd and M = (C/G) * S:
//   dx  = rstd * (w_c dy - mean_g(w dy) - xhat * mean_g(w dy xhat))
//   dw_c = sum_{n,s} dy xhat,   db_c = sum_{n,s} dy
//
// Layouts: plain contiguous x and the oneDNN layouts convolutions produce whose innermost
// elements are channels (nChw16c, nChw8c, channels-last) are read in place, and the output and
// the input gradient keep x's layout; any other layout is made contiguous first.
//
// Numerics: per-channel sums use float lanes over chunks of positions, shifted by a per-channel
// pivot (the channel's first value) and accumulated in double; channel moments are combined
// into group moments exactly (Chan et al.). Every reduction has a fixed order, so results do
// not depend on the thread count.
#include "ops/conv_util.hpp"

#include <cmath>

namespace kiln::ops {
namespace {

using dnnl::memory;

using detail::channel_inner_layout;
using detail::ChannelLayout;

constexpr std::int64_t kChunk = 256;  // positions summed in float before adding to double

// Kernels over L adjacent lanes of a [s][ld] block (L a compile-time width so the lane loop
// vectorises): per-lane sums of (a - pivot) and (a - pivot)^2.
template <int L>
void lane_moments(const float* p, std::int64_t s, std::int64_t ld, const float* pivot, double* s1,
                  double* s2) {
  for (int j = 0; j < L; ++j) s1[j] = s2[j] = 0;
  for (std::int64_t b = 0; b < s; b += kChunk) {
    const std::int64_t e = std::min(s, b + kChunk);
    float a1[L] = {}, a2[L] = {};
    for (std::int64_t i = b; i < e; ++i) {
      for (int j = 0; j < L; ++j) {
        const float v = p[i * ld + j] - pivot[j];
        a1[j] += v;
        a2[j] += v * v;
      }
    }
    for (int j = 0; j < L; ++j) {
      s1[j] += a1[j];
      s2[j] += a2[j];
    }
  }
}

// Per-lane sums of dy and dy * (x - mu).
template <int L>
void lane_grad_sums(const float* dy, const float* x, std::int64_t s, std::int64_t ld,
                    const float* mu, double* sdy, double* sdyx) {
  for (int j = 0; j < L; ++j) sdy[j] = sdyx[j] = 0;
  for (std::int64_t b = 0; b < s; b += kChunk) {
    const std::int64_t e = std::min(s, b + kChunk);
    float a1[L] = {}, a2[L] = {};
    for (std::int64_t i = b; i < e; ++i) {
      for (int j = 0; j < L; ++j) {
        const float g = dy[i * ld + j];
        a1[j] += g;
        a2[j] += g * (x[i * ld + j] - mu[j]);
      }
    }
    for (int j = 0; j < L; ++j) {
      sdy[j] += a1[j];
      sdyx[j] += a2[j];
    }
  }
}

// out = a * u + k1 * v + k0 per lane (v may be null).
template <int L>
void lane_affine(float* out, const float* u, const float* v, std::int64_t s, std::int64_t ld,
                 const float* a, const float* k1, const float* k0) {
  if (v == nullptr) {
    for (std::int64_t i = 0; i < s; ++i) {
      for (int j = 0; j < L; ++j) out[i * ld + j] = a[j] * u[i * ld + j] + k0[j];
    }
    return;
  }
  for (std::int64_t i = 0; i < s; ++i) {
    for (int j = 0; j < L; ++j) {
      out[i * ld + j] = a[j] * u[i * ld + j] + k1[j] * v[i * ld + j] + k0[j];
    }
  }
}

// The same three kernels for one contiguous channel (plain layouts), 16 float lanes wide.
void row_moments(const float* p, std::int64_t s, float pivot, double& s1, double& s2) {
  constexpr int L = 16;
  s1 = s2 = 0;
  for (std::int64_t b = 0; b < s; b += kChunk * L) {
    const std::int64_t e = std::min(s, b + kChunk * L);
    float a1[L] = {}, a2[L] = {};
    std::int64_t i = b;
    for (; i + L <= e; i += L) {
      for (int j = 0; j < L; ++j) {
        const float v = p[i + j] - pivot;
        a1[j] += v;
        a2[j] += v * v;
      }
    }
    for (; i < e; ++i) {
      const float v = p[i] - pivot;
      a1[0] += v;
      a2[0] += v * v;
    }
    for (int j = 0; j < L; ++j) {
      s1 += a1[j];
      s2 += a2[j];
    }
  }
}

void row_grad_sums(const float* dy, const float* x, std::int64_t s, float mu, double& sdy,
                   double& sdyx) {
  constexpr int L = 16;
  sdy = sdyx = 0;
  for (std::int64_t b = 0; b < s; b += kChunk * L) {
    const std::int64_t e = std::min(s, b + kChunk * L);
    float a1[L] = {}, a2[L] = {};
    std::int64_t i = b;
    for (; i + L <= e; i += L) {
      for (int j = 0; j < L; ++j) {
        a1[j] += dy[i + j];
        a2[j] += dy[i + j] * (x[i + j] - mu);
      }
    }
    for (; i < e; ++i) {
      a1[0] += dy[i];
      a2[0] += dy[i] * (x[i] - mu);
    }
    for (int j = 0; j < L; ++j) {
      sdy += a1[j];
      sdyx += a2[j];
    }
  }
}

void row_affine(float* out, const float* u, const float* v, std::int64_t s, float a, float k1,
                float k0) {
  if (v == nullptr) {
    for (std::int64_t i = 0; i < s; ++i) out[i] = a * u[i] + k0;
    return;
  }
  for (std::int64_t i = 0; i < s; ++i) out[i] = a * u[i] + k1 * v[i] + k0;
}

// A run of lanes [j0, j0 + width) inside a block, width in {16, 8, 4, 2, 1}.
struct LaneChunk {
  std::int64_t j0;
  int width;
};

std::vector<LaneChunk> lane_chunks(std::int64_t blk) {
  std::vector<LaneChunk> out;
  std::int64_t j = 0;
  for (; j + 16 <= blk; j += 16) out.push_back({j, 16});
  for (int w : {8, 4, 2, 1}) {
    if (j + w <= blk) {
      out.push_back({j, w});
      j += w;
    }
  }
  return out;
}

// Calls f(std::integral_constant<int, W>) for the chunk's width W.
template <typename F>
void with_width(int width, F&& f) {
  switch (width) {
    case 16:
      f(std::integral_constant<int, 16>{});
      break;
    case 8:
      f(std::integral_constant<int, 8>{});
      break;
    case 4:
      f(std::integral_constant<int, 4>{});
      break;
    case 2:
      f(std::integral_constant<int, 2>{});
      break;
    default:
      f(std::integral_constant<int, 1>{});
      break;
  }
}

// Runs row(n, c) for plain layouts or lanes(n, block, chunk) otherwise, over all work units in
// parallel. Each unit owns its outputs, so the results do not depend on the scheduling.
template <typename Row, typename Lanes>
void for_units(const ChannelLayout& l, const std::vector<LaneChunk>& chunks, Row row, Lanes lanes) {
  const std::int64_t per_unit = l.blk == 1 ? l.s : l.s * 16;
  const std::int64_t grain = std::max<std::int64_t>(1, 16384 / std::max<std::int64_t>(1, per_unit));
  if (l.blk == 1) {
    detail::parallel_range(l.n * l.c, grain, [&](std::int64_t b, std::int64_t e) {
      for (std::int64_t t = b; t < e; ++t) row(t / l.c, t % l.c);
    });
    return;
  }
  const auto nch = static_cast<std::int64_t>(chunks.size());
  detail::parallel_range(l.n * l.cb * nch, grain, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t t = b; t < e; ++t) {
      const std::int64_t u = t / nch;
      lanes(u / l.cb, u % l.cb, chunks[static_cast<std::size_t>(t % nch)]);
    }
  });
}

// Per-channel moment sums {s1, s2, pivot} for every (n, c).
void channel_moments(const ChannelLayout& l, const std::vector<LaneChunk>& chunks, const float* x,
                     std::vector<double>& s1, std::vector<double>& s2, std::vector<float>& pivot) {
  for_units(
      l, chunks,
      [&](std::int64_t ni, std::int64_t c) {
        const float* p = l.at(x, ni, c);
        const auto k = static_cast<std::size_t>(ni * l.c + c);
        pivot[k] = p[0];
        row_moments(p, l.s, p[0], s1[k], s2[k]);
      },
      [&](std::int64_t ni, std::int64_t b, const LaneChunk& ch) {
        const float* p = l.at(x, ni, b) + ch.j0;
        with_width(ch.width, [&](auto w) {
          constexpr int W = decltype(w)::value;
          double a1[W], a2[W];
          float piv[W];
          for (int j = 0; j < W; ++j) piv[j] = p[j];
          lane_moments<W>(p, l.s, l.blk, piv, a1, a2);
          for (int j = 0; j < W; ++j) {
            const std::int64_t c = b * l.blk + ch.j0 + j;
            if (c >= l.c) break;
            const auto k = static_cast<std::size_t>(ni * l.c + c);
            s1[k] = a1[j];
            s2[k] = a2[j];
            pivot[k] = piv[j];
          }
        });
      });
}

// Per-(n, c) sums of dy and dy * (x - mean of c's group).
void channel_grad_sums(const ChannelLayout& l, const std::vector<LaneChunk>& chunks,
                       const float* dy, const float* x, const std::vector<float>& mean,
                       std::int64_t groups, std::vector<double>& sdy, std::vector<double>& sdyx) {
  const std::int64_t cpg = l.c / groups;
  auto mean_of = [&](std::int64_t ni, std::int64_t c) {
    return mean[static_cast<std::size_t>(ni * groups + std::min(c, l.c - 1) / cpg)];
  };
  for_units(
      l, chunks,
      [&](std::int64_t ni, std::int64_t c) {
        const auto k = static_cast<std::size_t>(ni * l.c + c);
        row_grad_sums(l.at(dy, ni, c), l.at(x, ni, c), l.s, mean_of(ni, c), sdy[k], sdyx[k]);
      },
      [&](std::int64_t ni, std::int64_t b, const LaneChunk& ch) {
        with_width(ch.width, [&](auto w) {
          constexpr int W = decltype(w)::value;
          float mu[W];
          for (int j = 0; j < W; ++j) mu[j] = mean_of(ni, b * l.blk + ch.j0 + j);
          double a1[W], a2[W];
          lane_grad_sums<W>(l.at(dy, ni, b) + ch.j0, l.at(x, ni, b) + ch.j0, l.s, l.blk, mu, a1,
                            a2);
          for (int j = 0; j < W; ++j) {
            const std::int64_t c = b * l.blk + ch.j0 + j;
            if (c >= l.c) break;
            const auto k = static_cast<std::size_t>(ni * l.c + c);
            sdy[k] = a1[j];
            sdyx[k] = a2[j];
          }
        });
      });
}

// out = a * u + k1 * v + k0 with per-(n, c) coefficients (v may be null); padded lanes get 0.
void apply_affine(const ChannelLayout& l, const std::vector<LaneChunk>& chunks, float* out,
                  const float* u, const float* v, const std::vector<float>& a,
                  const std::vector<float>& k1, const std::vector<float>& k0) {
  for_units(
      l, chunks,
      [&](std::int64_t ni, std::int64_t c) {
        const auto k = static_cast<std::size_t>(ni * l.c + c);
        row_affine(l.at(out, ni, c), l.at(u, ni, c), v != nullptr ? l.at(v, ni, c) : nullptr, l.s,
                   a[k], k1[k], k0[k]);
      },
      [&](std::int64_t ni, std::int64_t b, const LaneChunk& ch) {
        with_width(ch.width, [&](auto w) {
          constexpr int W = decltype(w)::value;
          float la[W], l1[W], l0[W];
          for (int j = 0; j < W; ++j) {
            const std::int64_t c = b * l.blk + ch.j0 + j;
            const bool in = c < l.c;
            const auto k = static_cast<std::size_t>(ni * l.c + (in ? c : 0));
            la[j] = in ? a[k] : 0.f;
            l1[j] = in ? k1[k] : 0.f;
            l0[j] = in ? k0[k] : 0.f;
          }
          lane_affine<W>(l.at(out, ni, b) + ch.j0, l.at(u, ni, b) + ch.j0,
                         v != nullptr ? l.at(v, ni, b) + ch.j0 : nullptr, l.s, l.blk, la, l1, l0);
        });
      });
}

struct GnStats {
  std::vector<float> mean, rstd;  // [N * G]
};

GnStats group_stats(const ChannelLayout& l, const std::vector<LaneChunk>& chunks, const float* x,
                    std::int64_t groups, float eps) {
  const auto nc = static_cast<std::size_t>(l.n * l.c);
  std::vector<double> s1(nc), s2(nc);
  std::vector<float> pivot(nc);
  channel_moments(l, chunks, x, s1, s2, pivot);
  const std::int64_t cpg = l.c / groups;
  const double sd = static_cast<double>(l.s);
  GnStats st;
  st.mean.resize(static_cast<std::size_t>(l.n * groups));
  st.rstd.resize(st.mean.size());
  for (std::int64_t ni = 0; ni < l.n; ++ni) {
    for (std::int64_t g = 0; g < groups; ++g) {
      double mean = 0;
      for (std::int64_t c = g * cpg; c < (g + 1) * cpg; ++c) {
        const auto k = static_cast<std::size_t>(ni * l.c + c);
        mean += pivot[k] + s1[k] / sd;
      }
      mean /= static_cast<double>(cpg);
      double m2 = 0;
      for (std::int64_t c = g * cpg; c < (g + 1) * cpg; ++c) {
        const auto k = static_cast<std::size_t>(ni * l.c + c);
        const double mc = pivot[k] + s1[k] / sd;
        m2 += (s2[k] - s1[k] * s1[k] / sd) + sd * (mc - mean) * (mc - mean);
      }
      const double var = std::max(0.0, m2 / (static_cast<double>(cpg) * sd));
      const auto k = static_cast<std::size_t>(ni * groups + g);
      st.mean[k] = static_cast<float>(mean);
      st.rstd[k] = static_cast<float>(1.0 / std::sqrt(var + static_cast<double>(eps)));
    }
  }
  return st;
}

// The layout to compute in: x itself when plain contiguous or channel-innermost, else a copy.
Tensor layout_for(const Tensor& x_in, ChannelLayout& l) {
  if (x_in.is_blocked() && channel_inner_layout(x_in, l)) return x_in;
  Tensor x = x_in.is_contiguous() ? x_in : x_in.contiguous();
  l.n = x.size(0);
  l.c = x.size(1);
  l.cb = l.c;
  l.blk = 1;
  l.s = x.numel() / std::max<std::int64_t>(1, l.n * l.c);
  return x;
}

}  // namespace

Tensor group_norm(const Tensor& x_in, std::int64_t groups, const Tensor& weight, const Tensor& bias,
                  float eps) {
  constexpr const char* op = "group_norm";
  detail::require_defined(x_in, op, "x");
  KILN_CHECK(x_in.dim() >= 2, op, ": x must be [N, C, ...], got shape ", shape_str(x_in.shape()));
  KILN_CHECK(is_floating(x_in.dtype()), op, ": x must be floating, got ", dtype_name(x_in.dtype()));
  const std::int64_t c = x_in.size(1);
  KILN_CHECK(groups >= 1, op, ": groups must be at least 1, got ", groups);
  KILN_CHECK(c % groups == 0, op, ": x has ", c, " channels, which ", groups,
             " groups do not divide (shape ", shape_str(x_in.shape()), ")");
  for (const auto& [t, arg] : {std::pair{&weight, "weight"}, std::pair{&bias, "bias"}}) {
    if (!t->defined()) continue;
    KILN_CHECK(t->dim() == 1 && t->size(0) == c && is_floating(t->dtype()), op, ": ", arg,
               " must be a floating tensor of shape [", c, "] (one value per channel), got ",
               t->to_string());
  }
  KILN_CHECK(eps >= 0.f && std::isfinite(eps), op, ": eps must be finite and non-negative, got ",
             eps);
  if (x_in.numel() == 0) return Tensor::zeros(x_in.shape());

  Tensor xf = x_in.dtype() == DType::f32 ? x_in : x_in.to(DType::f32);
  ChannelLayout l;
  Tensor x = layout_for(xf, l);
  const Tensor w = weight.defined() ? detail::f32_vector(weight) : Tensor();
  const Tensor b = bias.defined() ? detail::f32_vector(bias) : Tensor();
  const bool grad = needs_grad({x, weight, bias});

  const float* px = static_cast<const float*>(x.raw_data());
  const std::vector<LaneChunk> chunks = lane_chunks(l.blk);
  const GnStats st = group_stats(l, chunks, px, groups, eps);
  const std::int64_t cpg = c / groups;
  const auto nc = static_cast<std::size_t>(l.n * c);
  std::vector<float> a(nc), k0(nc), none(nc, 0.f);
  const float* pw = w.defined() ? w.data<float>() : nullptr;
  const float* pb = b.defined() ? b.data<float>() : nullptr;
  for (std::int64_t ni = 0; ni < l.n; ++ni) {
    for (std::int64_t ci = 0; ci < c; ++ci) {
      const auto k = static_cast<std::size_t>(ni * c + ci);
      const auto gk = static_cast<std::size_t>(ni * groups + ci / cpg);
      a[k] = st.rstd[gk] * (pw ? pw[ci] : 1.f);
      k0[k] = (pb ? pb[ci] : 0.f) - st.mean[gk] * a[k];
    }
  }
  Tensor y = empty_for_desc(dnnl_desc(x), x.shape());
  apply_affine(l, chunks, static_cast<float*>(y.raw_data()), px, nullptr, a, none, k0);

  if (grad) {
    record(op, {x, weight, bias}, {&y},
           [l, chunks, groups, xd = x.detach(), w, st, gx = x.requires_grad(),
            gw = weight.defined() && weight.requires_grad(),
            gb = bias.defined() && bias.requires_grad(),
            wdt = weight.defined() ? weight.dtype() : DType::f32,
            bdt = bias.defined() ? bias.dtype() : DType::f32](const TensorList& gr) {
             const Tensor dy = detail::to_desc(gr[0], dnnl_desc(xd));
             const float* pdy = static_cast<const float*>(dy.raw_data());
             const float* pxd = static_cast<const float*>(xd.raw_data());
             const std::int64_t ch = l.c, cpg_ = ch / groups;
             const auto n_c = static_cast<std::size_t>(l.n * ch);
             std::vector<double> sdy(n_c), sdyx(n_c);
             channel_grad_sums(l, chunks, pdy, pxd, st.mean, groups, sdy, sdyx);
             const float* wv = w.defined() ? w.data<float>() : nullptr;
             TensorList out(3);
             if (gx) {
               // dx = (rstd w_c) dy + k1 x + k0, with k1, k0 per group.
               std::vector<float> ca(n_c), c1(n_c), c0(n_c);
               const double m = static_cast<double>(cpg_) * static_cast<double>(l.s);
               for (std::int64_t ni = 0; ni < l.n; ++ni) {
                 for (std::int64_t g = 0; g < groups; ++g) {
                   double sa = 0, sb = 0;
                   for (std::int64_t cc = g * cpg_; cc < (g + 1) * cpg_; ++cc) {
                     const auto k = static_cast<std::size_t>(ni * ch + cc);
                     const double wc = wv ? wv[cc] : 1.0;
                     sa += wc * sdy[k];
                     sb += wc * sdyx[k];
                   }
                   const auto gk = static_cast<std::size_t>(ni * groups + g);
                   const double r = st.rstd[gk], mu = st.mean[gk];
                   const double k1 = -r * r * r * sb / m;
                   const double kc = -r * sa / m - k1 * mu;
                   for (std::int64_t cc = g * cpg_; cc < (g + 1) * cpg_; ++cc) {
                     const auto k = static_cast<std::size_t>(ni * ch + cc);
                     ca[k] = static_cast<float>(r * (wv ? wv[cc] : 1.0));
                     c1[k] = static_cast<float>(k1);
                     c0[k] = static_cast<float>(kc);
                   }
                 }
               }
               Tensor dx = empty_for_desc(dnnl_desc(xd), xd.shape());
               apply_affine(l, chunks, static_cast<float*>(dx.raw_data()), pdy, pxd, ca, c1, c0);
               out[0] = dx;
             }
             if (gw) {
               Tensor dw = Tensor::empty({ch});
               float* p = dw.data<float>();
               for (std::int64_t cc = 0; cc < ch; ++cc) {
                 double acc = 0;
                 for (std::int64_t ni = 0; ni < l.n; ++ni) {
                   const auto gk = static_cast<std::size_t>(ni * groups + cc / cpg_);
                   acc += st.rstd[gk] * sdyx[static_cast<std::size_t>(ni * ch + cc)];
                 }
                 p[cc] = static_cast<float>(acc);
               }
               out[1] = wdt == DType::f32 ? dw : dw.to(wdt);
             }
             if (gb) {
               Tensor db = Tensor::empty({ch});
               float* p = db.data<float>();
               for (std::int64_t cc = 0; cc < ch; ++cc) {
                 double acc = 0;
                 for (std::int64_t ni = 0; ni < l.n; ++ni)
                   acc += sdy[static_cast<std::size_t>(ni * ch + cc)];
                 p[cc] = static_cast<float>(acc);
               }
               out[2] = bdt == DType::f32 ? db : db.to(bdt);
             }
             return out;
           });
  }
  return y;
}

}  // namespace kiln::ops
