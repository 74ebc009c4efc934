// Reductions. Hand-written: the shapes that matter (whole tensor, rows, bias gradients over N/H/W)
// are small or memory-bound, and oneDNN 2.6's reduction falls back to a slow reference kernel
// for many layouts. The input is viewed as [outer, reduced, inner] after moving the reduced
// dimensions together.
#include <algorithm>
#include <limits>
#include <numeric>

#include "ops/op_util.hpp"

namespace kiln::ops {
namespace {

using detail::parallel_range;

std::vector<std::int64_t> normalise_dims(const std::vector<std::int64_t>& dims, std::int64_t nd,
                                         const char* op) {
  std::vector<std::int64_t> out;
  for (std::int64_t d : dims) out.push_back(wrap_dim(d, nd, op));
  std::sort(out.begin(), out.end());
  KILN_CHECK(std::adjacent_find(out.begin(), out.end()) == out.end(), op,
             ": a dimension is listed twice");
  return out;
}

Shape reduced_shape(const Shape& s, const std::vector<std::int64_t>& dims, bool keepdim) {
  Shape out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const bool red = std::binary_search(dims.begin(), dims.end(), static_cast<std::int64_t>(i));
    if (!red) {
      out.push_back(s[i]);
    } else if (keepdim) {
      out.push_back(1);
    }
  }
  return out;
}

// Sums x (f32 contiguous) over the sorted `dims`; result has keepdim shape.
Tensor sum_kernel(const Tensor& x, const std::vector<std::int64_t>& dims) {
  const Shape& s = x.shape();
  const auto nd = static_cast<std::int64_t>(s.size());
  const Shape keep = reduced_shape(s, dims, true);
  Tensor src = x;
  std::int64_t first = dims.front(), last = dims.back();
  if (last - first + 1 != static_cast<std::int64_t>(dims.size())) {
    // Move the reduced dims to the end so they are contiguous.
    std::vector<std::int64_t> order;
    for (std::int64_t i = 0; i < nd; ++i) {
      if (!std::binary_search(dims.begin(), dims.end(), i)) order.push_back(i);
    }
    order.insert(order.end(), dims.begin(), dims.end());
    src = x.permute(order).contiguous();
    first = nd - static_cast<std::int64_t>(dims.size());
    last = nd - 1;
  }
  const Shape& ss = src.shape();
  std::int64_t outer = 1, red = 1, inner = 1;
  for (std::int64_t i = 0; i < nd; ++i) {
    const std::int64_t v = ss[static_cast<std::size_t>(i)];
    if (i < first) {
      outer *= v;
    } else if (i <= last) {
      red *= v;
    } else {
      inner *= v;
    }
  }
  Tensor out = Tensor::empty(keep, DType::f32);
  const float* p = src.data<float>();
  float* o = out.data<float>();
  if (inner == 1) {
    if (outer == 1) {
      // One long reduction: split into chunks, sum the partials.
      const std::int64_t chunk = 1 << 16;
      const std::int64_t nchunks = (red + chunk - 1) / chunk;
      std::vector<float> partial(static_cast<std::size_t>(std::max<std::int64_t>(nchunks, 1)), 0.f);
      parallel_range(nchunks, 1, [&](std::int64_t b, std::int64_t e) {
        for (std::int64_t c = b; c < e; ++c) {
          const std::int64_t lo = c * chunk, hi = std::min(red, lo + chunk);
          partial[static_cast<std::size_t>(c)] = detail::sum_floats(p + lo, hi - lo);
        }
      });
      o[0] = detail::sum_floats(partial.data(), static_cast<std::int64_t>(partial.size()));
      return out;
    }
    parallel_range(outer, std::max<std::int64_t>(1, 16384 / std::max<std::int64_t>(red, 1)),
                   [&](std::int64_t b, std::int64_t e) {
                     for (std::int64_t r = b; r < e; ++r)
                       o[r] = detail::sum_floats(p + r * red, red);
                   });
    return out;
  }
  // Reduce the middle axis: accumulate rows of `inner` (vectorises over inner).
  parallel_range(outer * ((inner + 255) / 256), 1, [&](std::int64_t b, std::int64_t e) {
    const std::int64_t tiles = (inner + 255) / 256;
    std::vector<float> acc(256);
    for (std::int64_t t = b; t < e; ++t) {
      const std::int64_t oi = t / tiles, tile = t % tiles;
      const std::int64_t lo = tile * 256, n = std::min<std::int64_t>(256, inner - lo);
      std::fill(acc.begin(), acc.begin() + n, 0.f);
      const float* base = p + oi * red * inner + lo;
      for (std::int64_t r = 0; r < red; ++r) {
        const float* row = base + r * inner;
        for (std::int64_t i = 0; i < n; ++i) acc[static_cast<std::size_t>(i)] += row[i];
      }
      std::copy(acc.begin(), acc.begin() + n, o + oi * inner + lo);
    }
  });
  return out;
}

}  // namespace

Tensor sum(const Tensor& x, const std::vector<std::int64_t>& dims_in, bool keepdim) {
  Tensor xf = detail::as_f32(x, "sum", "x");
  const auto nd = xf.dim();
  std::vector<std::int64_t> dims = normalise_dims(dims_in, nd, "sum");
  if (nd == 0) dims.clear();
  Tensor out;
  if (dims.empty() || xf.numel() == 0) {
    out = dims.empty() ? xf.clone().detach()
                       : Tensor::zeros(reduced_shape(xf.shape(), dims, keepdim), DType::f32);
  } else {
    out = sum_kernel(xf, dims);
    if (!keepdim) out = out.reshape(reduced_shape(xf.shape(), dims, false));
  }
  if (needs_grad({x})) {
    const Shape keep = reduced_shape(xf.shape(), dims, true);
    record("sum", {x}, {&out}, [keep, in_shape = x.shape()](const TensorList& g) {
      return TensorList{g[0].reshape(keep).expand(in_shape)};
    });
  }
  return out;
}

Tensor sum(const Tensor& x) {
  detail::require_defined(x, "sum", "x");
  std::vector<std::int64_t> all(static_cast<std::size_t>(x.dim()));
  std::iota(all.begin(), all.end(), 0);
  return sum(x, all, false);
}

Tensor mean(const Tensor& x, const std::vector<std::int64_t>& dims_in, bool keepdim) {
  detail::require_defined(x, "mean", "x");
  const std::vector<std::int64_t> dims = normalise_dims(dims_in, x.dim(), "mean");
  std::int64_t count = 1;
  for (std::int64_t d : dims) count *= x.size(d);
  KILN_CHECK(count > 0, "mean: reducing over an empty dimension of shape ", shape_str(x.shape()));
  return mul_scalar(sum(x, dims, keepdim), 1.f / static_cast<float>(count));
}

Tensor mean(const Tensor& x) {
  detail::require_defined(x, "mean", "x");
  KILN_CHECK(x.numel() > 0, "mean: the tensor is empty");
  return mul_scalar(sum(x), 1.f / static_cast<float>(x.numel()));
}

namespace {
// Max values and their indices along `dim` (moved last).
std::pair<Tensor, Tensor> max_along(const Tensor& x, std::int64_t dim, const char* op) {
  Tensor xf = detail::as_f32(x, op, "x");
  const auto nd = xf.dim();
  KILN_CHECK(nd > 0, op, ": needs at least one dimension");
  const std::int64_t d = wrap_dim(dim, nd, op);
  const std::int64_t n = xf.size(d);
  KILN_CHECK(n > 0, op, ": dimension ", d, " is empty");
  Tensor moved = xf.transpose(d, nd - 1).contiguous();
  const std::int64_t rows = moved.numel() / n;
  Shape keep = xf.shape();
  keep[static_cast<std::size_t>(d)] = 1;
  Tensor vals = Tensor::empty({rows}, DType::f32);
  Tensor idx = Tensor::empty({rows}, DType::s64);
  const float* p = moved.data<float>();
  float* pv = vals.data<float>();
  std::int64_t* pi = idx.data<std::int64_t>();
  parallel_range(rows, std::max<std::int64_t>(1, 8192 / n), [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t r = b; r < e; ++r) {
      const float* row = p + r * n;
      std::int64_t best = 0;
      for (std::int64_t i = 1; i < n; ++i) {
        if (row[i] > row[best] || (row[i] != row[i] && row[best] == row[best])) best = i;
      }
      pv[r] = row[best];
      pi[r] = best;
    }
  });
  // rows are ordered as `moved` without its last dim, i.e. keep with dims d and nd-1 swapped.
  Shape moved_keep = moved.shape();
  moved_keep.back() = 1;
  vals = vals.reshape(moved_keep).transpose(d, nd - 1).contiguous();
  idx = idx.reshape(moved_keep).transpose(d, nd - 1).contiguous();
  return {vals, idx};
}
}  // namespace

Tensor amax(const Tensor& x, std::int64_t dim, bool keepdim) {
  auto [vals, idx] = max_along(x, dim, "amax");
  const std::int64_t d = wrap_dim(dim, x.dim(), "amax");
  Tensor out = keepdim ? vals : vals.squeeze(d);
  if (needs_grad({x})) {
    record("amax", {x}, {&out},
           [idx, d, in_shape = x.shape(), keep = vals.shape()](const TensorList& g) {
             Tensor gk = g[0].reshape(keep).contiguous();
             Tensor gx = Tensor::zeros(in_shape);
             // Scatter each gradient to the position of its maximum.
             const std::int64_t n = in_shape[static_cast<std::size_t>(d)];
             std::int64_t inner = 1;
             for (std::size_t i = static_cast<std::size_t>(d) + 1; i < in_shape.size(); ++i)
               inner *= in_shape[i];
             const std::int64_t outer = gk.numel() / inner;
             const float* pg = gk.data<float>();
             const std::int64_t* pi = idx.data<std::int64_t>();
             float* px = gx.data<float>();
             for (std::int64_t o = 0; o < outer; ++o) {
               for (std::int64_t i = 0; i < inner; ++i) {
                 const std::int64_t k = o * inner + i;
                 px[(o * n + pi[k]) * inner + i] += pg[k];
               }
             }
             return TensorList{gx};
           });
  }
  return out;
}

Tensor argmax(const Tensor& x, std::int64_t dim, bool keepdim) {
  auto [vals, idx] = max_along(x, dim, "argmax");
  (void)vals;
  return keepdim ? idx : idx.squeeze(wrap_dim(dim, x.dim(), "argmax"));
}

}  // namespace kiln::ops
