// concat / split / chunk / stack.
//
// concat: when any input holds a oneDNN blocked layout (a conv output, typically joined along
// channels in a U-Net skip connection), oneDNN's concat primitive joins them without reordering
// to plain first and the result keeps a blocked layout. Plain inputs are joined by a
// hand-written copy: the output viewed as [outer, sum(size_i) * inner] receives one contiguous
// piece per input and outer index. The backward hands each input its slice of the gradient.
//
// split / chunk return views of the input (no copy), recorded as one node with several
// outputs, whose backward concatenates the pieces' gradients (zeros for unused pieces).
#include <cstring>

#include "ops/op_util.hpp"

namespace kiln::ops {
namespace {

using dnnl::memory;

struct ConcatEntry {
  dnnl::concat prim;
  std::vector<memory> srcs;
  memory dst;
};

void add_layout(PrimitiveKey& k, const memory::desc& md) {
  const auto* raw = reinterpret_cast<const std::int64_t*>(&md.data);
  for (std::size_t i = 0; i < sizeof(md.data) / sizeof(std::int64_t); ++i) k.add(raw[i]);
}

Tensor concat_onednn(const TensorList& xs, int dim, const Shape& out_shape) {
  std::vector<memory::desc> mds;
  PrimitiveKey key;
  key.add(dim);
  for (const Tensor& x : xs) {
    mds.push_back(dnnl_desc(x));
    add_layout(key, mds.back());
  }
  thread_local PrimitiveCache<ConcatEntry> cache(256);
  ConcatEntry& e = cache.get(key, [&] {
    dnnl::concat::primitive_desc pd(dim, mds, dnnl_engine());
    ConcatEntry entry{dnnl::concat(pd), {}, memory(pd.dst_desc(), dnnl_engine(), nullptr)};
    for (const auto& md : mds) entry.srcs.emplace_back(md, dnnl_engine(), nullptr);
    return entry;
  });
  Tensor out = empty_for_desc(e.dst.get_desc(), out_shape);
  std::unordered_map<int, memory> args;
  for (std::size_t i = 0; i < xs.size(); ++i) {
    e.srcs[i].set_data_handle(xs[i].raw_data());
    args.emplace(DNNL_ARG_MULTIPLE_SRC + static_cast<int>(i), e.srcs[i]);
  }
  e.dst.set_data_handle(out.raw_data());
  args.emplace(DNNL_ARG_DST, e.dst);
  execute(e.prim, args);
  return out;
}

// Plain concat into a new contiguous tensor.
Tensor concat_plain(const TensorList& xs, std::int64_t dim, const Shape& out_shape) {
  const DType dt = xs.front().dtype();
  Tensor out = Tensor::empty(out_shape, dt);
  if (out.numel() == 0) return out;
  const auto es = static_cast<std::int64_t>(dtype_size(dt));
  std::int64_t outer = 1, inner = 1;
  for (std::int64_t i = 0; i < dim; ++i) outer *= out_shape[static_cast<std::size_t>(i)];
  for (std::size_t i = static_cast<std::size_t>(dim) + 1; i < out_shape.size(); ++i) {
    inner *= out_shape[i];
  }
  const std::int64_t out_row = out_shape[static_cast<std::size_t>(dim)] * inner * es;  // bytes
  struct Piece {
    const char* src;
    std::int64_t bytes;   // per outer index
    std::int64_t offset;  // within an output row, bytes
  };
  std::vector<Piece> pieces;
  std::int64_t offset = 0;
  for (const Tensor& x : xs) {
    const std::int64_t n = x.size(dim);
    if (n > 0) {
      if (x.is_contiguous()) {
        pieces.push_back({static_cast<const char*>(x.raw_data()), n * inner * es, offset});
      } else {
        // A strided view: copy straight into its slot of the output.
        Tensor slot = out.slice(dim, offset / (inner * es), offset / (inner * es) + n);
        strided_copy(*x.impl(), *slot.impl());
      }
    }
    offset += n * inner * es;
  }
  char* dst = static_cast<char*>(out.raw_data());
  constexpr std::int64_t kBlock = 1 << 18;  // bytes per task when few rows
  if (outer >= 8) {
    detail::parallel_range(outer,
                           std::max<std::int64_t>(1, kBlock / std::max<std::int64_t>(out_row, 1)),
                           [&](std::int64_t b, std::int64_t e) {
                             for (std::int64_t o = b; o < e; ++o) {
                               for (const Piece& p : pieces) {
                                 std::memcpy(dst + o * out_row + p.offset, p.src + o * p.bytes,
                                             static_cast<std::size_t>(p.bytes));
                               }
                             }
                           });
    return out;
  }
  for (std::int64_t o = 0; o < outer; ++o) {
    for (const Piece& p : pieces) {
      const std::int64_t blocks = (p.bytes + kBlock - 1) / kBlock;
      detail::parallel_range(blocks, 1, [&](std::int64_t b, std::int64_t e) {
        for (std::int64_t k = b; k < e; ++k) {
          const std::int64_t lo = k * kBlock, n = std::min(kBlock, p.bytes - lo);
          std::memcpy(dst + o * out_row + p.offset + lo, p.src + o * p.bytes + lo,
                      static_cast<std::size_t>(n));
        }
      });
    }
  }
  return out;
}

}  // namespace

Tensor concat(const TensorList& xs_in, std::int64_t dim_in) {
  KILN_CHECK(!xs_in.empty(), "concat: needs at least one tensor");
  for (std::size_t i = 0; i < xs_in.size(); ++i) {
    KILN_CHECK(xs_in[i].defined(), "concat: tensor ", i, " is undefined");
  }
  const Tensor& first = xs_in.front();
  KILN_CHECK(first.dim() > 0,
             "concat: cannot concatenate 0-d tensors; unsqueeze them or use stack");
  const std::int64_t nd = first.dim();
  const std::int64_t dim = wrap_dim(dim_in, nd, "concat");
  Shape out_shape = first.shape();
  out_shape[static_cast<std::size_t>(dim)] = 0;
  bool any_blocked = false;
  for (std::size_t i = 0; i < xs_in.size(); ++i) {
    const Tensor& x = xs_in[i];
    KILN_CHECK(x.dtype() == first.dtype(), "concat: tensor ", i, " is ", dtype_name(x.dtype()),
               " but tensor 0 is ", dtype_name(first.dtype()));
    bool ok = x.dim() == nd;
    for (std::int64_t d = 0; ok && d < nd; ++d) {
      ok = d == dim || x.size(d) == first.size(d);
    }
    KILN_CHECK(ok, "concat: tensor ", i, " has shape ", shape_str(x.shape()),
               ", which does not match tensor 0's shape ", shape_str(first.shape()),
               " outside dimension ", dim);
    out_shape[static_cast<std::size_t>(dim)] += x.size(dim);
    any_blocked = any_blocked || x.is_blocked();
  }
  TensorList xs;
  for (const Tensor& x : xs_in) xs.push_back(x.detach());
  Tensor out;
  if (any_blocked && shape_numel(out_shape) > 0) {
    TensorList nonempty;
    for (const Tensor& x : xs) {
      if (x.size(dim) > 0)
        nonempty.push_back(x.is_blocked() || x.is_contiguous() ? x : x.contiguous());
    }
    out = concat_onednn(nonempty, static_cast<int>(dim), out_shape);
  } else {
    for (Tensor& x : xs) {
      if (x.is_blocked()) x = x.contiguous();
    }
    out = concat_plain(xs, dim, out_shape);
  }
  if (needs_grad(xs_in)) {
    std::vector<std::int64_t> sizes;
    std::vector<bool> wants;
    for (const Tensor& x : xs_in) {
      sizes.push_back(x.size(dim));
      wants.push_back(x.requires_grad());
    }
    record("concat", xs_in, {&out}, [sizes, wants, dim](const TensorList& g) {
      const Tensor gp = g[0].is_blocked() ? g[0].contiguous() : g[0];
      TensorList grads;
      std::int64_t offset = 0;
      for (std::size_t i = 0; i < sizes.size(); ++i) {
        grads.push_back(wants[i] ? gp.slice(dim, offset, offset + sizes[i]) : Tensor());
        offset += sizes[i];
      }
      return grads;
    });
  }
  return out;
}

TensorList split(const Tensor& x_in, const std::vector<std::int64_t>& sizes, std::int64_t dim_in) {
  detail::require_defined(x_in, "split", "x");
  KILN_CHECK(x_in.dim() > 0, "split: cannot split a 0-d tensor");
  KILN_CHECK(!sizes.empty(), "split: sizes is empty");
  const std::int64_t dim = wrap_dim(dim_in, x_in.dim(), "split");
  std::int64_t total = 0;
  for (std::int64_t s : sizes) {
    KILN_CHECK(s >= 0, "split: sizes must be non-negative, got ", s);
    total += s;
  }
  KILN_CHECK(total == x_in.size(dim), "split: sizes sum to ", total, " but dimension ", dim,
             " of shape ", shape_str(x_in.shape()), " has ", x_in.size(dim), " elements");
  const Tensor x = x_in.is_blocked() ? x_in.contiguous() : x_in;
  TensorList outs;
  {
    NoGradGuard ng;
    const Tensor xd = x.detach();
    std::int64_t offset = 0;
    for (std::int64_t s : sizes) {
      outs.push_back(xd.slice(dim, offset, offset + s));
      offset += s;
    }
  }
  if (needs_grad({x})) {
    std::vector<Tensor*> ptrs;
    for (Tensor& o : outs) ptrs.push_back(&o);
    record("split", {x}, ptrs, [dim](const TensorList& g) { return TensorList{concat(g, dim)}; });
  }
  return outs;
}

TensorList chunk(const Tensor& x, std::int64_t chunks, std::int64_t dim_in) {
  detail::require_defined(x, "chunk", "x");
  KILN_CHECK(chunks > 0, "chunk: the number of chunks must be positive, got ", chunks);
  KILN_CHECK(x.dim() > 0, "chunk: cannot chunk a 0-d tensor");
  const std::int64_t dim = wrap_dim(dim_in, x.dim(), "chunk");
  const std::int64_t n = x.size(dim);
  // As PyTorch: pieces of ceil(n / chunks), the last one smaller; possibly fewer than `chunks`.
  std::vector<std::int64_t> sizes;
  if (n == 0) {
    sizes.assign(static_cast<std::size_t>(chunks), 0);
  } else {
    const std::int64_t each = (n + chunks - 1) / chunks;
    for (std::int64_t done = 0; done < n; done += each) sizes.push_back(std::min(each, n - done));
  }
  return split(x, sizes, dim);
}

Tensor stack(const TensorList& xs, std::int64_t dim_in) {
  KILN_CHECK(!xs.empty(), "stack: needs at least one tensor");
  for (std::size_t i = 0; i < xs.size(); ++i) {
    KILN_CHECK(xs[i].defined(), "stack: tensor ", i, " is undefined");
    KILN_CHECK(xs[i].shape() == xs[0].shape(), "stack: tensor ", i, " has shape ",
               shape_str(xs[i].shape()), " but tensor 0 has shape ", shape_str(xs[0].shape()),
               "; stack needs equal shapes");
  }
  const std::int64_t dim = wrap_dim(dim_in, xs[0].dim() + 1, "stack");
  TensorList parts;
  parts.reserve(xs.size());
  for (const Tensor& x : xs) parts.push_back(x.unsqueeze(dim));
  return concat(parts, dim);
}

}  // namespace kiln::ops
