#include "kiln/tensor.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <numeric>
#include <sstream>
#include <string_view>
#include <utility>

#include <sys/mman.h>

#include "core/tensor_impl.hpp"
#include "kiln/autograd.hpp"
#include "kiln/dnnl_interop.hpp"
#include "kiln/ops.hpp"
#include "kiln/random.hpp"
#include "ops/op_util.hpp"  // detail::parallel_range: copies run on the compute team

namespace kiln {

// ------------------------------------------------------------------------------------ storage

namespace {

// Asks the kernel to back the whole 2 MiB pages inside [p, p + n) with transparent huge pages
// (Debian's default THP mode is "madvise": only advised ranges get them). A weight streamed once
// per decoding step is read faster from huge pages: fewer TLB misses and page walks on a stream
// of hundreds of MB (a 2-thread sum over 512 MiB: 28 GB/s from 4 KiB pages, 33-35 GB/s from
// huge pages; GPT-2 small's decoding linears, docs/benchmarks.md "Huge pages"). Pages the heap
// already backs keep their size; the advice takes effect as fresh memory is first touched. Small
// buffers are left alone: one syscall is not worth it below a few pages, and huge pages there would
// only waste memory. Failure (no THP in this kernel) is harmless and ignored. KILN_HUGE_PAGES=0 in
// the environment turns the advice off (docs/pipelines.md, "Memory"). (Read at each large
// allocation, which costs far less than filling 4 MiB.)
bool huge_pages_wanted() {
  const char* v = std::getenv("KILN_HUGE_PAGES");
  return v == nullptr || std::string_view(v) != "0";
}

constexpr std::size_t kHugePage = std::size_t{2} << 20;

// (Tensors stay where malloc puts them: starting every large one on a 2 MiB boundary made the
// heap fragment, and the diffusion training benchmark's peak RSS grew from 1.61 to 2.05 GB with
// padded mallocs and to 2.15 GB with posix_memalign. to_streaming_memory() moves the few
// storages where alignment matters.)
void advise_huge_pages(void* p, std::size_t n) {
  if (n < 2 * kHugePage || !huge_pages_wanted()) return;
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  const std::uintptr_t lo = (a + kHugePage - 1) & ~std::uintptr_t{kHugePage - 1};
  const std::uintptr_t hi = (a + n) & ~std::uintptr_t{kHugePage - 1};
  if (hi > lo) (void)madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_HUGEPAGE);
}

}  // namespace

Storage::Storage(std::size_t n) : nbytes(n) {
  // 64-byte aligned by hand from plain malloc: glibc's aligned_alloc splits a larger chunk and
  // frees the slack on every call, which made up about a third of the allocation cost of a
  // small op's output (bench/overhead_bench.cpp). The deleter frees the original pointer.
  constexpr std::size_t kAlign = 64;
  const std::size_t rounded = std::max<std::size_t>(kAlign, (n + kAlign - 1) / kAlign * kAlign);
  void* base = std::malloc(rounded + kAlign - alignof(std::max_align_t));
  if (base == nullptr) {
    throw Error("out of memory: could not allocate " + std::to_string(n) + " bytes for a tensor");
  }
  const auto addr = reinterpret_cast<std::uintptr_t>(base);
  ptr = reinterpret_cast<void*>((addr + kAlign - 1) & ~std::uintptr_t{kAlign - 1});
  deleter = [base](void*) { std::free(base); };
  advise_huge_pages(ptr, n);
}

Storage::Storage(void* p, std::size_t n, std::function<void(void*)> d)
    : ptr(p), nbytes(n), deleter(std::move(d)) {}

Storage::~Storage() {
  if (ptr != nullptr && deleter) deleter(ptr);
}

// ------------------------------------------------------------------------------------ helpers

std::string shape_str(const Shape& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

std::int64_t shape_numel(const Shape& shape) {
  // A zero anywhere gives 0, however large the other dimensions; a product beyond int64 (only
  // for shapes no tensor can have) saturates instead of overflowing.
  std::int64_t n = 1;
  bool overflow = false;
  for (std::int64_t d : shape) {
    if (d == 0) return 0;
    overflow = overflow || __builtin_mul_overflow(n, d, &n);
  }
  return overflow ? std::numeric_limits<std::int64_t>::max() : n;
}

Shape contiguous_strides(const Shape& shape) {
  Shape strides(shape.size());
  std::int64_t s = 1;
  for (std::size_t i = shape.size(); i-- > 0;) {
    strides[i] = s;
    s *= std::max<std::int64_t>(shape[i], 1);
  }
  return strides;
}

bool is_contiguous_layout(const Shape& shape, const Shape& strides) {
  std::int64_t expected = 1;
  for (std::size_t i = shape.size(); i-- > 0;) {
    if (shape[i] == 1) continue;
    if (strides[i] != expected) return false;
    expected *= shape[i];
  }
  return true;
}

std::int64_t wrap_dim(std::int64_t d, std::int64_t ndim, const char* what) {
  const std::int64_t n = std::max<std::int64_t>(ndim, 1);
  if (d < -n || d >= n) {
    throw Error(std::string(what) + ": dimension " + std::to_string(d) +
                " is out of range for a tensor with " + std::to_string(ndim) + " dimensions");
  }
  return d < 0 ? d + n : d;
}

namespace {

void check_shape(const Shape& shape, const char* what) {
  for (std::int64_t d : shape) {
    if (d < 0) throw Error(std::string(what) + ": negative dimension in shape " + shape_str(shape));
  }
  // Refuse absurd sizes before allocating: 2^40 elements is far beyond this machine. Zero
  // dimensions are skipped, so an empty tensor's other extents obey the limit too and stride
  // arithmetic on any tensor stays within int64. (Integer arithmetic with an overflow check:
  // this runs for every op's output.)
  constexpr std::int64_t kLimit = std::int64_t{1} << 40;
  std::int64_t total = 1;
  bool too_large = false;
  for (std::int64_t d : shape) {
    if (d == 0) continue;
    too_large = too_large || __builtin_mul_overflow(total, d, &total) || total > kLimit;
  }
  if (too_large) {
    throw Error(std::string(what) + ": shape " + shape_str(shape) + " is too large to allocate");
  }
}

TensorImpl& checked(const std::shared_ptr<TensorImpl>& impl, const char* what) {
  if (!impl) throw Error(std::string(what) + ": the tensor is undefined");
  return *impl;
}

template <typename T>
constexpr DType dtype_of();
template <>
constexpr DType dtype_of<float>() {
  return DType::f32;
}
template <>
constexpr DType dtype_of<std::int32_t>() {
  return DType::s32;
}
template <>
constexpr DType dtype_of<std::int64_t>() {
  return DType::s64;
}
template <>
constexpr DType dtype_of<std::uint8_t>() {
  return DType::u8;
}
template <>
constexpr DType dtype_of<std::int8_t>() {
  return DType::s8;
}

inline double load_element(const void* base, DType t, std::int64_t i) {
  switch (t) {
    case DType::f32:
      return static_cast<const float*>(base)[i];
    case DType::bf16:
      return bf16_to_f32(static_cast<const std::uint16_t*>(base)[i]);
    case DType::f16:
      return f16_to_f32(static_cast<const std::uint16_t*>(base)[i]);
    case DType::s32:
      return static_cast<const std::int32_t*>(base)[i];
    case DType::u8:
      return static_cast<const std::uint8_t*>(base)[i];
    case DType::s8:
      return static_cast<const std::int8_t*>(base)[i];
    case DType::s64:
      return static_cast<double>(static_cast<const std::int64_t*>(base)[i]);
  }
  return 0;
}

template <typename T>
inline T saturate(double v) {
  if (v != v) return T(0);
  const double lo = static_cast<double>(std::numeric_limits<T>::lowest());
  const double hi = static_cast<double>(std::numeric_limits<T>::max());
  return static_cast<T>(std::nearbyint(std::clamp(v, lo, hi)));
}

inline void store_element(void* base, DType t, std::int64_t i, double v) {
  switch (t) {
    case DType::f32:
      static_cast<float*>(base)[i] = static_cast<float>(v);
      break;
    case DType::bf16:
      static_cast<std::uint16_t*>(base)[i] = f32_to_bf16(static_cast<float>(v));
      break;
    case DType::f16:
      static_cast<std::uint16_t*>(base)[i] = f32_to_f16(static_cast<float>(v));
      break;
    case DType::s32:
      static_cast<std::int32_t*>(base)[i] = saturate<std::int32_t>(v);
      break;
    case DType::u8:
      static_cast<std::uint8_t*>(base)[i] = saturate<std::uint8_t>(v);
      break;
    case DType::s8:
      static_cast<std::int8_t*>(base)[i] = saturate<std::int8_t>(v);
      break;
    case DType::s64:
      static_cast<std::int64_t*>(base)[i] = saturate<std::int64_t>(v);
      break;
  }
}

// Copies one row of `n` elements between possibly different dtypes with the given strides.
void copy_row(const char* src, DType st, std::int64_t ss, char* dst, DType dt, std::int64_t ds,
              std::int64_t n) {
  if (st == dt && ss == 1 && ds == 1) {
    std::memcpy(dst, src, static_cast<std::size_t>(n) * dtype_size(st));
    return;
  }
  if (st == DType::f32 && dt == DType::bf16 && ss == 1 && ds == 1) {
    const float* s = reinterpret_cast<const float*>(src);
    auto* d = reinterpret_cast<std::uint16_t*>(dst);
    for (std::int64_t i = 0; i < n; ++i) d[i] = f32_to_bf16(s[i]);
    return;
  }
  if (st == DType::bf16 && dt == DType::f32 && ss == 1 && ds == 1) {
    const auto* s = reinterpret_cast<const std::uint16_t*>(src);
    float* d = reinterpret_cast<float*>(dst);
    for (std::int64_t i = 0; i < n; ++i) d[i] = bf16_to_f32(s[i]);
    return;
  }
  if (st == dt) {
    const std::size_t es = dtype_size(st);
    for (std::int64_t i = 0; i < n; ++i) {
      std::memcpy(dst + static_cast<std::size_t>(i * ds) * es,
                  src + static_cast<std::size_t>(i * ss) * es, es);
    }
    return;
  }
  for (std::int64_t i = 0; i < n; ++i)
    store_element(dst, dt, i * ds, load_element(src, st, i * ss));
}

}  // namespace

namespace {

// A small tensor's bytes live in the same heap block as its Storage (and the shared_ptr control
// block): one allocation instead of two for the outputs of small ops, whose cost is mostly
// allocation (bench/overhead_bench.cpp, empty_1x16). 512 bytes = 128 floats keeps the block
// within glibc's per-thread cache sizes.
constexpr std::size_t kInlineBytes = 512;
constexpr std::size_t kAlign = 64;

struct InlineStorage {
  explicit InlineStorage(std::size_t n)
      : storage(reinterpret_cast<void*>((reinterpret_cast<std::uintptr_t>(raw) + kAlign - 1) &
                                        ~std::uintptr_t{kAlign - 1}),
                n, nullptr) {}
  Storage storage;
  unsigned char raw[kInlineBytes + kAlign - 1];  // storage.ptr is the first 64-byte boundary
};

std::shared_ptr<Storage> make_storage(std::size_t nbytes) {
  if (nbytes <= kInlineBytes) {
    auto block = std::make_shared<InlineStorage>(nbytes);
    Storage* storage = &block->storage;
    return std::shared_ptr<Storage>(std::move(block), storage);  // shares the block's ownership
  }
  return std::make_shared<Storage>(nbytes);
}

}  // namespace

std::shared_ptr<TensorImpl> make_impl(Shape&& shape, DType dtype) {
  check_shape(shape, "tensor");
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = make_storage(static_cast<std::size_t>(shape_numel(shape)) * dtype_size(dtype));
  impl->strides = contiguous_strides(shape);
  impl->shape = std::move(shape);
  impl->dtype = dtype;
  return impl;
}

std::shared_ptr<TensorImpl> make_impl(const Shape& shape, DType dtype) {
  return make_impl(Shape(shape), dtype);
}

std::shared_ptr<TensorImpl> make_view(const TensorImpl& base, const Shape& shape,
                                      const Shape& strides, std::int64_t offset) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = base.storage;
  impl->shape = shape;
  impl->strides = strides;
  impl->offset = offset;
  impl->dtype = base.dtype;
  return impl;
}

void strided_copy(const TensorImpl& src, const TensorImpl& dst) {
  KILN_CHECK(src.shape == dst.shape, "copy: shapes differ: ", shape_str(src.shape), " vs ",
             shape_str(dst.shape));
  KILN_CHECK(!src.blocked && !dst.blocked, "copy: internal error, blocked layout in strided_copy");
  const std::int64_t n = src.numel();
  if (n == 0) return;
  const std::size_t nd = src.shape.size();
  if (nd == 0) {
    copy_row(static_cast<const char*>(src.data()), src.dtype, 1, static_cast<char*>(dst.data()),
             dst.dtype, 1, 1);
    return;
  }
  // Fast path: both dense row-major.
  if (is_contiguous_layout(src.shape, src.strides) &&
      is_contiguous_layout(dst.shape, dst.strides)) {
    const std::int64_t grain = 1 << 16;
    const char* s = static_cast<const char*>(src.data());
    char* d = static_cast<char*>(dst.data());
    const std::size_t ses = dtype_size(src.dtype), des = dtype_size(dst.dtype);
    ops::detail::parallel_range(n, grain, [&](std::int64_t b, std::int64_t e) {
      copy_row(s + b * ses, src.dtype, 1, d + b * des, dst.dtype, 1, e - b);
    });
    return;
  }
  const std::int64_t inner = src.shape[nd - 1];
  const std::int64_t rows = n / inner;
  const std::size_t ses = dtype_size(src.dtype), des = dtype_size(dst.dtype);
  const char* sbase = static_cast<const char*>(src.data());
  char* dbase = static_cast<char*>(dst.data());
  ops::detail::parallel_range(rows, std::max<std::int64_t>(1, 4096 / inner),
                              [&](std::int64_t row_begin, std::int64_t row_end) {
                                for (std::int64_t row = row_begin; row < row_end; ++row) {
                                  std::int64_t rem = row, soff = 0, doff = 0;
                                  for (std::size_t k = nd - 1; k-- > 0;) {
                                    const std::int64_t idx = rem % src.shape[k];
                                    rem /= src.shape[k];
                                    soff += idx * src.strides[k];
                                    doff += idx * dst.strides[k];
                                  }
                                  copy_row(sbase + soff * static_cast<std::int64_t>(ses), src.dtype,
                                           src.strides[nd - 1],
                                           dbase + doff * static_cast<std::int64_t>(des), dst.dtype,
                                           dst.strides[nd - 1], inner);
                                }
                              });
}

// ------------------------------------------------------------------------------------ tensor

Tensor::Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

Tensor Tensor::empty(const Shape& shape, DType dtype) {
  return Tensor(make_impl(shape, dtype));
}

Tensor Tensor::zeros(const Shape& shape, DType dtype) {
  Tensor t = empty(shape, dtype);
  std::memset(t.raw_data(), 0, t.nbytes());
  return t;
}

Tensor Tensor::ones(const Shape& shape, DType dtype) {
  return full(shape, 1.f, dtype);
}

Tensor Tensor::full(const Shape& shape, float value, DType dtype) {
  Tensor t = empty(shape, dtype);
  t.fill_(value);
  return t;
}

Tensor Tensor::scalar(float value) {
  return full({}, value);
}

Tensor Tensor::from_vector(const std::vector<float>& values, const Shape& shape, DType dtype) {
  check_shape(shape, "from_vector");
  KILN_CHECK(static_cast<std::int64_t>(values.size()) == shape_numel(shape),
             "from_vector: ", values.size(), " values do not fill shape ", shape_str(shape));
  Tensor t = empty(shape, dtype);
  copy_row(reinterpret_cast<const char*>(values.data()), DType::f32, 1,
           static_cast<char*>(t.raw_data()), dtype, 1, t.numel());
  return t;
}

Tensor Tensor::from_ints(const std::vector<std::int64_t>& values, const Shape& shape, DType dtype) {
  check_shape(shape, "from_ints");
  KILN_CHECK(static_cast<std::int64_t>(values.size()) == shape_numel(shape),
             "from_ints: ", values.size(), " values do not fill shape ", shape_str(shape));
  Tensor t = empty(shape, dtype);
  if (dtype == DType::s64) {
    std::memcpy(t.raw_data(), values.data(), values.size() * sizeof(std::int64_t));
  } else {
    for (std::size_t i = 0; i < values.size(); ++i) {
      store_element(t.raw_data(), dtype, static_cast<std::int64_t>(i),
                    static_cast<double>(values[i]));
    }
  }
  return t;
}

Tensor Tensor::from_bytes(const void* bytes, std::size_t nbytes, const Shape& shape, DType dtype) {
  check_shape(shape, "from_bytes");
  const std::size_t expected = static_cast<std::size_t>(shape_numel(shape)) * dtype_size(dtype);
  KILN_CHECK(nbytes == expected, "from_bytes: ", nbytes, " bytes given but shape ",
             shape_str(shape), " of ", dtype_name(dtype), " needs ", expected);
  Tensor t = empty(shape, dtype);
  if (nbytes) std::memcpy(t.raw_data(), bytes, nbytes);
  return t;
}

Tensor Tensor::arange(std::int64_t n, DType dtype) {
  Tensor t = empty({n}, dtype);
  for (std::int64_t i = 0; i < n; ++i)
    store_element(t.raw_data(), dtype, i, static_cast<double>(i));
  return t;
}

Tensor Tensor::randn(const Shape& shape, Generator& gen) {
  Tensor t = empty(shape, DType::f32);
  gen.philox().fill_normal(t.data<float>(), t.numel());
  return t;
}
Tensor Tensor::randn(const Shape& shape) {
  return randn(shape, default_generator());
}

Tensor Tensor::rand(const Shape& shape, Generator& gen, float lo, float hi) {
  Tensor t = empty(shape, DType::f32);
  gen.philox().fill_uniform(t.data<float>(), t.numel(), lo, hi);
  return t;
}
Tensor Tensor::rand(const Shape& shape, float lo, float hi) {
  return rand(shape, default_generator(), lo, hi);
}

const Shape& Tensor::shape() const {
  return checked(impl_, "shape").shape;
}
std::int64_t Tensor::dim() const {
  return static_cast<std::int64_t>(checked(impl_, "dim").shape.size());
}
std::int64_t Tensor::size(std::int64_t d) const {
  const TensorImpl& t = checked(impl_, "size");
  const auto nd = static_cast<std::int64_t>(t.shape.size());
  if (d >= 0 && d < nd) return t.shape[static_cast<std::size_t>(d)];  // the common cases first
  if (d < 0 && d >= -nd) return t.shape[static_cast<std::size_t>(nd + d)];
  KILN_CHECK(nd > 0, "size: a 0-d tensor has no dimension ", d);
  return t.shape[static_cast<std::size_t>(wrap_dim(d, nd, "size"))];  // throws: out of range
}
std::int64_t Tensor::numel() const {
  return checked(impl_, "numel").numel();
}
DType Tensor::dtype() const {
  return checked(impl_, "dtype").dtype;
}
const Shape& Tensor::strides() const {
  const TensorImpl& t = checked(impl_, "strides");
  KILN_CHECK(!t.blocked, "strides: the tensor has a blocked oneDNN layout; call contiguous()");
  return t.strides;
}
std::int64_t Tensor::offset() const {
  return checked(impl_, "offset").offset;
}
bool Tensor::is_contiguous() const {
  const TensorImpl& t = checked(impl_, "is_contiguous");
  return !t.blocked && is_contiguous_layout(t.shape, t.strides);
}
bool Tensor::is_blocked() const {
  return checked(impl_, "is_blocked").blocked.has_value();
}
std::size_t Tensor::nbytes() const {
  const TensorImpl& t = checked(impl_, "nbytes");
  if (t.blocked) return t.blocked->get_size();
  return static_cast<std::size_t>(t.numel()) * dtype_size(t.dtype);
}

template <typename T>
T* Tensor::data() const {
  const TensorImpl& t = checked(impl_, "data");
  KILN_CHECK(!t.blocked, "data: the tensor has a blocked oneDNN layout; call contiguous() first");
  if constexpr (std::is_same_v<T, std::uint16_t>) {
    KILN_CHECK(t.dtype == DType::bf16 || t.dtype == DType::f16, "data<uint16_t>: tensor is ",
               dtype_name(t.dtype), ", not bf16/f16");
  } else {
    KILN_CHECK(t.dtype == dtype_of<T>(), "data: tensor is ", dtype_name(t.dtype),
               " but was accessed as ", dtype_name(dtype_of<T>()));
  }
  return static_cast<T*>(t.data());
}
template KILN_API float* Tensor::data<float>() const;
template KILN_API std::uint16_t* Tensor::data<std::uint16_t>() const;
template KILN_API std::int32_t* Tensor::data<std::int32_t>() const;
template KILN_API std::int64_t* Tensor::data<std::int64_t>() const;
template KILN_API std::uint8_t* Tensor::data<std::uint8_t>() const;
template KILN_API std::int8_t* Tensor::data<std::int8_t>() const;

void* Tensor::raw_data() const {
  return checked(impl_, "raw_data").data();
}

// ------------------------------------------------------------------------------------ views

namespace {

// Strides for viewing a tensor of (shape, strides) as new_shape without copying, or empty when
// impossible (PyTorch's computeStride algorithm).
std::optional<Shape> view_strides(const Shape& shape, const Shape& strides,
                                  const Shape& new_shape) {
  if (shape_numel(shape) == 0 || is_contiguous_layout(shape, strides)) {
    return contiguous_strides(new_shape);
  }
  Shape out(new_shape.size());
  std::int64_t view_d = static_cast<std::int64_t>(new_shape.size()) - 1;
  std::int64_t chunk_base_stride = strides.empty() ? 1 : strides.back();
  std::int64_t tensor_numel = 1, view_numel = 1;
  for (std::int64_t d = static_cast<std::int64_t>(shape.size()) - 1; d >= 0; --d) {
    tensor_numel *= shape[static_cast<std::size_t>(d)];
    if (d == 0 || (shape[static_cast<std::size_t>(d - 1)] != 1 &&
                   strides[static_cast<std::size_t>(d - 1)] != tensor_numel * chunk_base_stride)) {
      while (view_d >= 0 &&
             (view_numel < tensor_numel || new_shape[static_cast<std::size_t>(view_d)] == 1)) {
        out[static_cast<std::size_t>(view_d)] = view_numel * chunk_base_stride;
        view_numel *= new_shape[static_cast<std::size_t>(view_d)];
        view_d--;
      }
      if (view_numel != tensor_numel) return std::nullopt;
      if (d > 0) {
        chunk_base_stride = strides[static_cast<std::size_t>(d - 1)];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  if (view_d != -1) return std::nullopt;
  return out;
}

Shape infer_shape(const Shape& requested, std::int64_t numel, const char* what) {
  Shape out = requested;
  std::int64_t known = 1;
  int infer = -1;
  for (std::size_t i = 0; i < out.size(); ++i) {
    if (out[i] == -1) {
      KILN_CHECK(infer < 0, what, ": only one dimension can be -1 in ", shape_str(requested));
      infer = static_cast<int>(i);
    } else {
      KILN_CHECK(out[i] >= 0, what, ": invalid dimension ", out[i], " in ", shape_str(requested));
      known *= out[i];
    }
  }
  if (infer >= 0) {
    KILN_CHECK(known != 0 && numel % known == 0, what, ": cannot infer -1 in ",
               shape_str(requested), " for ", numel, " elements");
    out[static_cast<std::size_t>(infer)] = numel / known;
  }
  KILN_CHECK(shape_numel(out) == numel, what, ": shape ", shape_str(requested), " has ",
             shape_numel(out), " elements but the tensor has ", numel);
  return out;
}

// Records the backward of a view-like op whose gradient is `fn(g)`.
Tensor record_unary(const char* name, const Tensor& in, Tensor out,
                    std::function<Tensor(const Tensor&)> fn) {
  if (needs_grad({in})) {
    record(name, {in}, {&out},
           [fn = std::move(fn)](const TensorList& g) { return TensorList{fn(g[0])}; });
  }
  return out;
}

Tensor plain(const Tensor& t) {
  return t.is_blocked() ? t.contiguous() : t;
}

}  // namespace

Tensor Tensor::view(const Shape& new_shape) const {
  Tensor src = plain(*this);
  const TensorImpl& t = *src.impl_;
  const Shape shape = infer_shape(new_shape, t.numel(), "view");
  auto strides = view_strides(t.shape, t.strides, shape);
  KILN_CHECK(strides.has_value(), "view: a tensor of shape ", shape_str(t.shape), " with strides ",
             shape_str(t.strides), " cannot be viewed as ", shape_str(shape),
             " without a copy; use reshape()");
  Tensor out(make_view(t, shape, *strides, t.offset));
  const Shape in_shape = t.shape;
  return record_unary("view", src, out,
                      [in_shape](const Tensor& g) { return g.reshape(in_shape); });
}

Tensor Tensor::reshape(const Shape& new_shape) const {
  Tensor src = plain(*this);
  const TensorImpl& t = *src.impl_;
  const Shape shape = infer_shape(new_shape, t.numel(), "reshape");
  if (view_strides(t.shape, t.strides, shape)) return src.view(shape);
  return src.contiguous().view(shape);
}

Tensor Tensor::flatten(std::int64_t start_dim, std::int64_t end_dim) const {
  const Shape& s = shape();
  if (s.empty()) return reshape({1});
  const auto nd = static_cast<std::int64_t>(s.size());
  const std::int64_t a = wrap_dim(start_dim, nd, "flatten"), b = wrap_dim(end_dim, nd, "flatten");
  KILN_CHECK(a <= b, "flatten: start_dim ", start_dim, " is after end_dim ", end_dim);
  Shape out(s.begin(), s.begin() + a);
  std::int64_t m = 1;
  for (std::int64_t i = a; i <= b; ++i) m *= s[static_cast<std::size_t>(i)];
  out.push_back(m);
  out.insert(out.end(), s.begin() + b + 1, s.end());
  return reshape(out);
}

Tensor Tensor::unsqueeze(std::int64_t d) const {
  Shape s = shape();
  const std::int64_t pos = wrap_dim(d, static_cast<std::int64_t>(s.size()) + 1, "unsqueeze");
  s.insert(s.begin() + pos, 1);
  return reshape(s);
}

Tensor Tensor::squeeze(std::int64_t d) const {
  Shape s = shape();
  const std::int64_t pos = wrap_dim(d, static_cast<std::int64_t>(s.size()), "squeeze");
  if (s.empty() || s[static_cast<std::size_t>(pos)] != 1) return *this;
  s.erase(s.begin() + pos);
  return reshape(s);
}

Tensor Tensor::permute(const std::vector<std::int64_t>& order) const {
  Tensor src = plain(*this);
  const TensorImpl& t = *src.impl_;
  const auto nd = static_cast<std::int64_t>(t.shape.size());
  KILN_CHECK(static_cast<std::int64_t>(order.size()) == nd, "permute: order has ", order.size(),
             " entries but the tensor has ", nd, " dimensions");
  std::vector<bool> seen(static_cast<std::size_t>(nd), false);
  Shape shape(order.size()), strides(order.size());
  std::vector<std::int64_t> inverse(order.size());
  for (std::size_t i = 0; i < order.size(); ++i) {
    const std::int64_t d = wrap_dim(order[i], nd, "permute");
    KILN_CHECK(!seen[static_cast<std::size_t>(d)], "permute: dimension ", d, " repeated");
    seen[static_cast<std::size_t>(d)] = true;
    shape[i] = t.shape[static_cast<std::size_t>(d)];
    strides[i] = t.strides[static_cast<std::size_t>(d)];
    inverse[static_cast<std::size_t>(d)] = static_cast<std::int64_t>(i);
  }
  Tensor out(make_view(t, shape, strides, t.offset));
  return record_unary("permute", src, out,
                      [inverse](const Tensor& g) { return g.permute(inverse); });
}

Tensor Tensor::transpose(std::int64_t d0, std::int64_t d1) const {
  const auto nd = dim();
  std::vector<std::int64_t> order(static_cast<std::size_t>(nd));
  std::iota(order.begin(), order.end(), 0);
  std::swap(order[static_cast<std::size_t>(wrap_dim(d0, nd, "transpose"))],
            order[static_cast<std::size_t>(wrap_dim(d1, nd, "transpose"))]);
  return permute(order);
}

Tensor Tensor::slice(std::int64_t d, std::int64_t start, std::int64_t end,
                     std::int64_t step) const {
  Tensor src = plain(*this);
  const TensorImpl& t = *src.impl_;
  const auto nd = static_cast<std::int64_t>(t.shape.size());
  KILN_CHECK(nd > 0, "slice: cannot slice a 0-d tensor");
  KILN_CHECK(step > 0, "slice: step must be positive, got ", step);
  const std::int64_t dim_ = wrap_dim(d, nd, "slice");
  const std::int64_t n = t.shape[static_cast<std::size_t>(dim_)];
  if (start < 0) start += n;
  if (end < 0) end += n;
  start = std::clamp<std::int64_t>(start, 0, n);
  end = std::clamp<std::int64_t>(end, start, n);
  Shape shape = t.shape, strides = t.strides;
  shape[static_cast<std::size_t>(dim_)] = (end - start + step - 1) / step;
  strides[static_cast<std::size_t>(dim_)] *= step;
  Tensor out(
      make_view(t, shape, strides, t.offset + start * t.strides[static_cast<std::size_t>(dim_)]));
  const Shape in_shape = t.shape;
  const DType dt = t.dtype;
  return record_unary("slice", src, out, [=](const Tensor& g) {
    Tensor gi = Tensor::zeros(in_shape, dt);
    gi.slice(dim_, start, end, step).copy_(g);
    return gi;
  });
}

Tensor Tensor::select(std::int64_t d, std::int64_t index) const {
  const auto nd = dim();
  KILN_CHECK(nd > 0, "select: cannot select from a 0-d tensor");
  const std::int64_t dim_ = wrap_dim(d, nd, "select");
  const std::int64_t n = size(dim_);
  KILN_CHECK(index >= -n && index < n, "select: index ", index, " is out of range for size ", n);
  if (index < 0) index += n;
  return slice(dim_, index, index + 1).squeeze(dim_);
}

Tensor Tensor::expand(const Shape& target) const {
  Tensor src = plain(*this);
  const TensorImpl& t = *src.impl_;
  KILN_CHECK(target.size() >= t.shape.size(), "expand: cannot expand ", shape_str(t.shape),
             " to fewer dimensions ", shape_str(target));
  const std::size_t lead = target.size() - t.shape.size();
  Shape shape(target.size()), strides(target.size());
  for (std::size_t i = 0; i < target.size(); ++i) {
    if (i < lead) {
      shape[i] = target[i];
      strides[i] = 0;
      continue;
    }
    const std::int64_t have = t.shape[i - lead];
    std::int64_t want = target[i] == -1 ? have : target[i];
    KILN_CHECK(have == want || have == 1, "expand: cannot expand ", shape_str(t.shape), " to ",
               shape_str(target));
    shape[i] = want;
    strides[i] = have == want ? t.strides[i - lead] : 0;
  }
  Tensor out(make_view(t, shape, strides, t.offset));
  const Shape in_shape = t.shape;
  return record_unary("expand", src, out,
                      [in_shape](const Tensor& g) { return sum_to(g, in_shape); });
}

Tensor Tensor::contiguous() const {
  const TensorImpl& t = checked(impl_, "contiguous");
  if (!t.blocked && is_contiguous_layout(t.shape, t.strides)) return *this;
  Tensor out;
  if (t.blocked) {
    out = Tensor::empty(t.shape, t.dtype);
    NoGradGuard ng;
    out = reorder_to(detach(), dnnl_desc(out));
  } else {
    out = Tensor(make_impl(t.shape, t.dtype));
    strided_copy(t, *out.impl_);
  }
  return record_unary("contiguous", *this, out, [](const Tensor& g) { return g; });
}

Tensor Tensor::to(DType dtype) const {
  const TensorImpl& t = checked(impl_, "to");
  if (t.dtype == dtype) return *this;
  Tensor src = plain(*this);
  Tensor out(make_impl(t.shape, dtype));
  strided_copy(*src.impl_, *out.impl_);
  if (is_floating(dtype) && is_floating(t.dtype)) {
    const DType back = t.dtype;
    return record_unary("to", src, out, [back](const Tensor& g) { return g.to(back); });
  }
  return out;
}

Tensor Tensor::clone() const {
  const TensorImpl& t = checked(impl_, "clone");
  Tensor src = plain(*this);
  Tensor out(make_impl(t.shape, t.dtype));
  strided_copy(*src.impl_, *out.impl_);
  return record_unary("clone", src, out, [](const Tensor& g) { return g; });
}

void to_streaming_memory(const Tensor& t) {
  const TensorImpl& impl = checked(t.impl_ptr(), "to_streaming_memory");
  Storage& st = *impl.storage;
  if (st.nbytes < kHugePage || !huge_pages_wanted()) return;
  if (reinterpret_cast<std::uintptr_t>(st.ptr) % kHugePage == 0) return;  // placed already
  // A mapping of its own, 2 MiB-aligned at both ends: map 2 MiB more than needed, then unmap the
  // unaligned head and whatever lies beyond the last page.
  const std::size_t n = st.nbytes;
  const std::size_t span = (n + kHugePage - 1) / kHugePage * kHugePage;
  void* raw =
      mmap(nullptr, span + kHugePage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) return;  // the data stays where it is, as good as before
  const auto a = reinterpret_cast<std::uintptr_t>(raw);
  const std::uintptr_t lo = (a + kHugePage - 1) & ~std::uintptr_t{kHugePage - 1};
  if (lo > a) munmap(raw, lo - a);
  const std::uintptr_t end = a + span + kHugePage;
  if (end > lo + span) munmap(reinterpret_cast<void*>(lo + span), end - (lo + span));
  void* p = reinterpret_cast<void*>(lo);
  (void)madvise(p, span, MADV_HUGEPAGE);
  std::memcpy(p, st.ptr, n);
  // Every tensor over this storage (views included) now reads the new memory.
  void* old = st.ptr;
  std::function<void(void*)> old_deleter = std::move(st.deleter);
  st.ptr = p;
  st.deleter = [span](void* q) { munmap(q, span); };
  if (old_deleter) old_deleter(old);
}

Tensor Tensor::detach() const {
  const TensorImpl& t = checked(impl_, "detach");
  auto impl = make_view(t, t.shape, t.strides, t.offset);
  impl->blocked = t.blocked;
  return Tensor(impl);
}

Tensor& Tensor::fill_(float value) {
  TensorImpl& t = checked(impl_, "fill_");
  KILN_CHECK(!t.blocked, "fill_: blocked layout; call contiguous() first");
  const std::int64_t n = t.numel();
  if (is_contiguous_layout(t.shape, t.strides)) {
    if (t.dtype == DType::f32) {
      std::fill_n(static_cast<float*>(t.data()), n, value);
    } else {
      for (std::int64_t i = 0; i < n; ++i) store_element(t.data(), t.dtype, i, value);
    }
  } else {
    Tensor src = Tensor::full(t.shape, value, t.dtype);
    strided_copy(*src.impl_, t);
  }
  bump_version();
  return *this;
}

Tensor& Tensor::zero_() {
  return fill_(0.f);
}

Tensor& Tensor::copy_(const Tensor& src) {
  TensorImpl& t = checked(impl_, "copy_");
  KILN_CHECK(src.defined(), "copy_: the source tensor is undefined");
  KILN_CHECK(src.shape() == t.shape, "copy_: source shape ", shape_str(src.shape()),
             " does not match destination shape ", shape_str(t.shape));
  KILN_CHECK(!t.blocked, "copy_: destination has a blocked layout");
  Tensor s = plain(src);
  strided_copy(*s.impl_, t);
  bump_version();
  return *this;
}

float Tensor::item() const {
  KILN_CHECK(numel() == 1, "item: tensor has ", numel(), " elements, expected 1");
  Tensor s = plain(*this);
  return static_cast<float>(load_element(s.raw_data(), s.dtype(), 0));
}

std::vector<float> Tensor::to_vector() const {
  Tensor s = plain(*this);
  Tensor c(make_impl(s.shape(), DType::f32));
  strided_copy(*s.impl_, *c.impl_);
  const float* p = c.data<float>();
  return std::vector<float>(p, p + c.numel());
}

std::vector<std::int64_t> Tensor::to_int_vector() const {
  Tensor s = plain(*this);
  Tensor c(make_impl(s.shape(), DType::s64));
  strided_copy(*s.impl_, *c.impl_);
  const std::int64_t* p = c.data<std::int64_t>();
  return std::vector<std::int64_t>(p, p + c.numel());
}

// ------------------------------------------------------------------------------------ autograd

bool Tensor::requires_grad() const {
  return impl_ && impl_->requires_grad;
}

Tensor& Tensor::set_requires_grad(bool on) {
  TensorImpl& t = checked(impl_, "set_requires_grad");
  KILN_CHECK(!on || is_floating(t.dtype),
             "set_requires_grad: only floating tensors can require "
             "grad, this one is ",
             dtype_name(t.dtype));
  KILN_CHECK(t.grad_fn == nullptr || on,
             "set_requires_grad(false): only leaves can stop "
             "requiring grad; use detach()");
  t.requires_grad = on;
  return *this;
}

Tensor Tensor::grad() const {
  return checked(impl_, "grad").grad;
}
void Tensor::set_grad(const Tensor& g) const {
  checked(impl_, "set_grad").grad = g;
}
void Tensor::zero_grad() const {
  checked(impl_, "zero_grad").grad = Tensor();
}

void Tensor::backward(const Tensor& grad) const {
  kiln::backward({*this}, {grad});
}

const std::shared_ptr<Node>& Tensor::grad_fn() const {
  return checked(impl_, "grad_fn").grad_fn;
}
int Tensor::output_nr() const {
  return checked(impl_, "output_nr").output_nr;
}
bool Tensor::is_leaf() const {
  return checked(impl_, "is_leaf").grad_fn == nullptr;
}

std::uint64_t Tensor::version() const {
  return checked(impl_, "version").storage->version.load();
}
void Tensor::bump_version() const {
  checked(impl_, "bump_version").storage->version++;
}

bool Tensor::shares_storage(const Tensor& other) const {
  return impl_ && other.impl_ && impl_->storage == other.impl_->storage;
}

std::string Tensor::to_string() const {
  if (!impl_) return "Tensor(undefined)";
  std::ostringstream os;
  os << "Tensor" << shape_str(impl_->shape) << " " << dtype_name(impl_->dtype);
  if (impl_->blocked) os << " (blocked)";
  const std::vector<float> v = to_vector();
  os << " {";
  for (std::size_t i = 0; i < std::min<std::size_t>(v.size(), 8); ++i)
    os << (i ? ", " : "") << v[i];
  if (v.size() > 8) os << ", ...";
  os << "}";
  return os.str();
}

}  // namespace kiln
