// Internal representation behind kiln::Tensor. Not installed: plugins see only tensor.hpp.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include <oneapi/dnnl/dnnl.hpp>

#include "kiln/tensor.hpp"

namespace kiln {

// A block of bytes, 64-byte aligned, shared by a tensor and its views.
struct Storage {
  Storage(std::size_t nbytes);  // allocates (uninitialised)
  Storage(void* ptr, std::size_t nbytes, std::function<void(void*)> deleter);  // adopts
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* ptr = nullptr;
  std::size_t nbytes = 0;
  std::function<void(void*)> deleter;
  std::atomic<std::uint64_t> version{0};

  // Derived copies of this storage in other layouts (e.g. weights reordered for a primitive),
  // valid while `version` is unchanged. Keyed by the source view (offset and layout: two views
  // of one storage may share an offset, e.g. a tensor and a strided slice of it) and the target
  // memory descriptor.
  struct Derived {
    std::uint64_t version;
    dnnl::memory::desc desc;
    std::shared_ptr<Storage> data;
    std::int64_t offset;
    dnnl::memory::desc source;
  };
  std::mutex derived_mutex;
  std::vector<Derived> derived;
};

struct TensorImpl {
  // User-provided, so make_shared<TensorImpl>() does not zero the whole object (the blocked
  // descriptor makes it ~850 bytes) before the member initialisers run: every op output and
  // view is created this way.
  TensorImpl() noexcept {}

  std::shared_ptr<Storage> storage;
  std::int64_t offset = 0;  // elements
  Shape shape;
  Shape strides;  // elements; empty when blocked
  DType dtype = DType::f32;
  std::optional<dnnl::memory::desc> blocked;  // set when the layout is oneDNN-opaque

  // autograd
  bool requires_grad = false;
  Tensor grad;
  std::shared_ptr<Node> grad_fn;
  int output_nr = 0;

  std::int64_t numel() const { return shape_numel(shape); }
  void* data() const {
    return static_cast<char*>(storage->ptr) + offset * static_cast<std::int64_t>(dtype_size(dtype));
  }
};

// Row-major contiguous strides of `shape`.
Shape contiguous_strides(const Shape& shape);
bool is_contiguous_layout(const Shape& shape, const Shape& strides);

// A new plain contiguous tensor (uninitialised). The rvalue overload takes the shape over.
std::shared_ptr<TensorImpl> make_impl(const Shape& shape, DType dtype);
std::shared_ptr<TensorImpl> make_impl(Shape&& shape, DType dtype);
// A view sharing `base`'s storage.
std::shared_ptr<TensorImpl> make_view(const TensorImpl& base, const Shape& shape,
                                      const Shape& strides, std::int64_t offset);

// Normalises a possibly negative dimension index; throws naming `what` when out of range.
std::int64_t wrap_dim(std::int64_t d, std::int64_t ndim, const char* what);

// Copies src into dst element-wise (same shape; any dtypes, any plain strides).
void strided_copy(const TensorImpl& src, const TensorImpl& dst);

}  // namespace kiln
