#include "kiln/dnnl_interop.hpp"

#include <omp.h>

#include <algorithm>

#include "core/tensor_impl.hpp"
#include "kiln/context.hpp"

namespace kiln {

using dt = dnnl::memory::data_type;

dt to_dnnl(DType t) {
  switch (t) {
    case DType::f32:
      return dt::f32;
    case DType::bf16:
      return dt::bf16;
    case DType::f16:
      return dt::f16;
    case DType::s32:
      return dt::s32;
    case DType::u8:
      return dt::u8;
    case DType::s8:
      return dt::s8;
    case DType::s64:
      break;
  }
  throw Error(std::string("oneDNN has no data type for ") + dtype_name(t));
}

DType from_dnnl(dt t) {
  switch (t) {
    case dt::f32:
      return DType::f32;
    case dt::bf16:
      return DType::bf16;
    case dt::f16:
      return DType::f16;
    case dt::s32:
      return DType::s32;
    case dt::u8:
      return DType::u8;
    case dt::s8:
      return DType::s8;
    default:
      break;
  }
  throw Error("unsupported oneDNN data type " + std::to_string(static_cast<int>(t)));
}

dnnl::memory::dims to_dims(const Shape& shape) {
  if (shape.empty()) return {1};
  return dnnl::memory::dims(shape.begin(), shape.end());
}

dnnl::memory::desc dnnl_desc(const Tensor& t) {
  const TensorImpl* impl = t.impl();
  KILN_CHECK(impl != nullptr, "dnnl_desc: the tensor is undefined");
  if (impl->blocked) return *impl->blocked;
  if (impl->shape.empty()) return dnnl::memory::desc({1}, to_dnnl(impl->dtype), {1});
  // The C call reads shape and strides in place (Shape holds int64_t, as dnnl_dims_t does): the
  // C++ constructor would copy both into vectors first, on every primitive call.
  static_assert(sizeof(dnnl_dim_t) == sizeof(std::int64_t));
  KILN_CHECK(impl->shape.size() <= DNNL_MAX_NDIMS, "dnnl_desc: oneDNN takes at most ",
             DNNL_MAX_NDIMS, " dimensions, the tensor has ", impl->shape.size());
  dnnl::memory::desc md;
  dnnl::error::wrap_c_api(
      dnnl_memory_desc_init_by_strides(
          &md.data, static_cast<int>(impl->shape.size()), impl->shape.data(),
          dnnl::memory::convert_to_c(to_dnnl(impl->dtype)), impl->strides.data()),
      "could not describe a tensor's layout to oneDNN");
  return md;
}

dnnl::memory dnnl_memory(const Tensor& t) {
  return dnnl_memory(t, dnnl_desc(t));
}

dnnl::memory dnnl_memory(const Tensor& t, const dnnl::memory::desc& md) {
  return dnnl::memory(md, dnnl_engine(), t.raw_data());
}

bool is_plain_desc(const dnnl::memory::desc& md, const Shape& shape) {
  const int nd = shape.empty() ? 1 : static_cast<int>(shape.size());  // 0-d is described as {1}
  if (md.data.ndims != nd) return false;
  if (md.data.format_kind != dnnl_blocked) return false;
  if (md.data.format_desc.blocking.inner_nblks != 0) return false;
  if (md.data.extra.flags != 0) return false;
  // Row-major strides, innermost first (as contiguous_strides, without allocating).
  std::int64_t stride = 1;
  for (int i = nd; i-- > 0;) {
    const std::int64_t dim = shape.empty() ? 1 : shape[static_cast<std::size_t>(i)];
    if (md.data.dims[i] != dim) return false;
    if (dim != 1 && md.data.format_desc.blocking.strides[i] != stride) return false;
    stride *= std::max<std::int64_t>(dim, 1);
  }
  return true;
}

Tensor empty_for_desc(const dnnl::memory::desc& md, const Shape& shape) {
  const DType dtype = from_dnnl(md.data_type());
  if (is_plain_desc(md, shape)) return Tensor::empty(shape, dtype);
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(md.get_size());
  impl->shape = shape;
  impl->dtype = dtype;
  impl->blocked = md;
  return Tensor(impl);
}

Tensor reorder_to(const Tensor& t, const dnnl::memory::desc& md) {
  const dnnl::memory::desc src_md = dnnl_desc(t);
  if (src_md == md) return t;
  Tensor out = empty_for_desc(md, t.shape());
  dnnl::reorder::primitive_desc pd(dnnl_engine(), src_md, dnnl_engine(), md);
  execute(dnnl::reorder(pd),
          {{DNNL_ARG_FROM, dnnl_memory(t, src_md)}, {DNNL_ARG_TO, dnnl_memory(out, md)}});
  return out;
}

Tensor reorder_cached(const Tensor& t, const dnnl::memory::desc& md) {
  const dnnl::memory::desc src_md = dnnl_desc(t);
  if (src_md == md) return t;
  TensorImpl* impl = t.impl();
  Storage& st = *impl->storage;
  const std::uint64_t version = st.version.load();
  {
    std::lock_guard<std::mutex> lock(st.derived_mutex);
    for (auto& d : st.derived) {
      if (d.offset == impl->offset && d.desc == md && d.version == version && d.source == src_md) {
        auto out = std::make_shared<TensorImpl>();
        out->storage = d.data;
        out->shape = impl->shape;
        out->dtype = from_dnnl(md.data_type());
        if (is_plain_desc(md, impl->shape)) {
          out->strides = contiguous_strides(impl->shape);
        } else {
          out->blocked = md;
        }
        return Tensor(out);
      }
    }
  }
  Tensor r = reorder_to(t.detach(), md);
  std::lock_guard<std::mutex> lock(st.derived_mutex);
  // Drop stale copies of this view, keep at most a few layouts per storage.
  std::erase_if(st.derived, [&](const Storage::Derived& d) {
    return d.offset == impl->offset &&
           (d.version != version || (d.desc == md && d.source == src_md));
  });
  if (st.derived.size() >= 4) st.derived.erase(st.derived.begin());
  st.derived.push_back({version, md, r.impl()->storage, impl->offset, src_md});
  return r;
}

namespace {

// Primitives whose cost is proportional to the bytes they touch. (oneDNN sizes the thread count of
// GEMM-like primitives, matmul, convolution, inner product and RNN, to their work itself; these
// it always runs on the whole team.)
bool memory_bound(dnnl::primitive::kind kind) {
  using K = dnnl::primitive::kind;
  switch (kind) {
    case K::reorder:
    case K::shuffle:
    case K::concat:
    case K::sum:
    case K::eltwise:
    case K::softmax:
    case K::pooling:
    case K::lrn:
    case K::batch_normalization:
    case K::layer_normalization:
    case K::binary:
    case K::logsoftmax:
    case K::resampling:
    case K::pooling_v2:
    case K::reduction:
    case K::prelu:
      return true;
    default:
      return false;
  }
}

// A memory-bound primitive whose arguments total fewer bytes than this runs on the calling thread
// alone: an OpenMP fork/join costs about 3.5 us on the 2-vCPU development VM, and relu, for
// example, breaks even on 2 threads only at about 128k floats in and out (docs/benchmarks.md,
// "Threading").
constexpr std::size_t kSerialPrimitiveBytes = std::size_t{1} << 20;

std::size_t argument_bytes(const std::unordered_map<int, dnnl::memory>& args) {
  std::size_t bytes = 0;
  for (const auto& [index, mem] : args) {
    const dnnl_memory_desc_t* md = nullptr;
    if (mem && dnnl_memory_get_memory_desc(mem.get(), &md) == dnnl_success) {
      bytes += dnnl_memory_desc_get_size(md);
    }
  }
  return bytes;
}

// Sets the calling thread's OpenMP team to one thread for its lifetime, when `serial`.
class SerialScope {
 public:
  SerialScope(bool serial, int threads) : threads_(serial ? threads : 0) {
    if (threads_ > 0) omp_set_num_threads(1);
  }
  ~SerialScope() {
    if (threads_ > 0) omp_set_num_threads(threads_);
  }
  SerialScope(const SerialScope&) = delete;
  SerialScope& operator=(const SerialScope&) = delete;

 private:
  int threads_;
};

}  // namespace

void execute(const dnnl::primitive& prim, const std::unordered_map<int, dnnl::memory>& args) {
  const int threads = apply_thread_budget_to_this_thread();
  const bool serial =
      threads > 1 && memory_bound(prim.get_kind()) && argument_bytes(args) < kSerialPrimitiveBytes;
  SerialScope scope(serial, threads);
  dnnl::stream& s = dnnl_stream();
  // dnnl::primitive::execute copies the arguments into a heap vector on every call; primitives
  // take a handful, so a stack array saves that allocation on the per-op path.
  constexpr std::size_t kMaxStackArgs = 16;
  if (args.size() > kMaxStackArgs) {
    prim.execute(s, args);
  } else {
    dnnl_exec_arg_t c_args[kMaxStackArgs];
    int n = 0;
    for (const auto& [index, mem] : args) c_args[n++] = {index, mem.get(true)};
    dnnl::error::wrap_c_api(dnnl_primitive_execute(prim.get(), s.get(), n, c_args),
                            "could not execute a primitive");
  }
  s.wait();
}

}  // namespace kiln
