// Embedding lookup: out[..., :] = weight[ids[...], :]. A row gather (memcpy per id), parallel
// over ids. The backward scatters-adds the output gradient into a dense [V, D] gradient without
// atomics: positions are sorted by (id, position), and each distinct id's row is summed by one
// task in position order, so the result is bitwise the same for any thread count.
#include <algorithm>
#include <cstring>

#include "ops/op_util.hpp"

namespace kiln::ops {
namespace {

// ids as int64 values, row-major.
std::vector<std::int64_t> id_values(const Tensor& ids) {
  const Tensor c = ids.contiguous();
  const std::int64_t n = c.numel();
  std::vector<std::int64_t> v(static_cast<std::size_t>(n));
  if (c.dtype() == DType::s64) {
    if (n > 0) std::memcpy(v.data(), c.data<std::int64_t>(), static_cast<std::size_t>(n) * 8);
  } else {
    const std::int32_t* p = c.data<std::int32_t>();
    for (std::int64_t i = 0; i < n; ++i) v[static_cast<std::size_t>(i)] = p[i];
  }
  return v;
}

// dL/dweight [V, D] (f32) from dL/dout viewed as [N, D].
Tensor scatter_add_rows(const std::vector<std::int64_t>& ids, const Tensor& grad_out,
                        std::int64_t vocab, std::int64_t dim) {
  Tensor gw = Tensor::empty({vocab, dim}, DType::f32);
  float* pw = gw.data<float>();
  detail::parallel_range(vocab * dim, 1 << 16,
                         [&](std::int64_t b, std::int64_t e) { std::fill(pw + b, pw + e, 0.f); });
  const auto n = static_cast<std::int64_t>(ids.size());
  if (n == 0 || dim == 0) return gw;
  const Tensor g = grad_out.to(DType::f32).contiguous();
  const float* pg = g.data<float>();
  // Positions ordered by (id, position); segments of equal id.
  std::vector<std::int64_t> order(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) order[static_cast<std::size_t>(i)] = i;
  std::sort(order.begin(), order.end(), [&](std::int64_t a, std::int64_t b) {
    const std::int64_t ia = ids[static_cast<std::size_t>(a)], ib = ids[static_cast<std::size_t>(b)];
    return ia != ib ? ia < ib : a < b;
  });
  std::vector<std::int64_t> starts;
  for (std::int64_t i = 0; i < n; ++i) {
    if (i == 0 || ids[static_cast<std::size_t>(order[static_cast<std::size_t>(i)])] !=
                      ids[static_cast<std::size_t>(order[static_cast<std::size_t>(i - 1)])]) {
      starts.push_back(i);
    }
  }
  starts.push_back(n);
  const auto segments = static_cast<std::int64_t>(starts.size()) - 1;
  detail::parallel_range(segments, std::max<std::int64_t>(1, 8192 / dim),
                         [&](std::int64_t b, std::int64_t e) {
                           for (std::int64_t s = b; s < e; ++s) {
                             const std::int64_t lo = starts[static_cast<std::size_t>(s)];
                             const std::int64_t hi = starts[static_cast<std::size_t>(s + 1)];
                             const std::int64_t id =
                                 ids[static_cast<std::size_t>(order[static_cast<std::size_t>(lo)])];
                             float* row = pw + id * dim;
                             for (std::int64_t k = lo; k < hi; ++k) {
                               const float* src = pg + order[static_cast<std::size_t>(k)] * dim;
                               for (std::int64_t d = 0; d < dim; ++d) row[d] += src[d];
                             }
                           }
                         });
  return gw;
}

}  // namespace

Tensor embedding(const Tensor& ids, const Tensor& weight_in) {
  detail::require_defined(ids, "embedding", "ids");
  detail::require_dim(weight_in, 2, "embedding", "weight", "[V, D]");
  KILN_CHECK(ids.dtype() == DType::s32 || ids.dtype() == DType::s64,
             "embedding: ids must be s32 or s64 integer tensors, got ", dtype_name(ids.dtype()));
  KILN_CHECK(weight_in.dtype() == DType::f32 || weight_in.dtype() == DType::bf16,
             "embedding: weight must be f32 or bf16, got ", dtype_name(weight_in.dtype()));
  const std::int64_t vocab = weight_in.size(0), dim = weight_in.size(1);
  const std::vector<std::int64_t> values = id_values(ids);
  for (std::size_t i = 0; i < values.size(); ++i) {
    const std::int64_t id = values[i];
    KILN_CHECK(id >= 0 && id < vocab, "embedding: id ", id, " (at flat position ", i,
               " of ids with shape ", shape_str(ids.shape()),
               ") is out of range for a table of V = ", vocab, " rows; ids must be in [0, ", vocab,
               ")");
  }
  // Rows must be dense; a transposed or strided weight is copied once.
  Tensor w = weight_in.detach();
  if (w.is_blocked() || (dim > 1 && w.strides()[1] != 1)) w = w.contiguous();
  const std::int64_t row_stride = vocab > 1 ? w.strides()[0] : dim;
  Shape out_shape = ids.shape();
  out_shape.push_back(dim);
  Tensor out = Tensor::empty(out_shape, w.dtype());
  const auto es = static_cast<std::int64_t>(dtype_size(w.dtype()));
  const char* src = static_cast<const char*>(w.raw_data());
  char* dst = static_cast<char*>(out.raw_data());
  const auto n = static_cast<std::int64_t>(values.size());
  if (dim > 0) {
    detail::parallel_range(
        n, std::max<std::int64_t>(1, 16384 / dim), [&](std::int64_t b, std::int64_t e) {
          for (std::int64_t i = b; i < e; ++i) {
            std::memcpy(dst + i * dim * es,
                        src + values[static_cast<std::size_t>(i)] * row_stride * es,
                        static_cast<std::size_t>(dim * es));
          }
        });
  }
  if (needs_grad({weight_in})) {
    record("embedding", {weight_in}, {&out},
           [values, vocab, dim, dt = weight_in.dtype()](const TensorList& g) {
             Tensor gw = scatter_add_rows(values, g[0], vocab, dim);
             return TensorList{dt == DType::f32 ? gw : gw.to(dt)};
           });
  }
  return out;
}

}  // namespace kiln::ops
