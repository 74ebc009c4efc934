// kiln::Tensor — an n-d array with reverse-mode autograd, over memory that oneDNN reads directly.
//
//   using kiln::Tensor;
//   Tensor w = Tensor::randn({16, 8}, gen).set_requires_grad();
//   Tensor x = Tensor::from_vector({1, 2, 3, 4, 5, 6, 7, 8}, {1, 8});
//   Tensor y = kiln::ops::linear(x, w);           // [1, 16]
//   kiln::ops::sum(y).backward();                  // w.grad() now holds d sum(y) / d w
//
// A Tensor is a cheap handle: copies share the same data (like torch.Tensor). Shapes are row-major;
// strides are in elements. View operations (reshape of a contiguous tensor, permute, slice,
// select, expand, transpose) share storage; `contiguous()` and `clone()` copy.
//
// Layout: most tensors are "plain" (shape + strides). A tensor produced by a oneDNN primitive may
// instead hold a blocked layout chosen by oneDNN (e.g. nChw16c) so the next primitive reads it
// without a reorder; `is_blocked()` tells, and `contiguous()` (or any op that needs plain data)
// reorders once. `data<T>()` requires plain layout.
//
// Autograd: operations on tensors that require grad record a node; `backward()` on a scalar
// accumulates `grad()` in every leaf. Inside a `kiln::NoGradGuard` nothing is recorded.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "kiln/dtype.hpp"
#include "kiln/error.hpp"
#include "kiln/export.hpp"

namespace kiln {

using Shape = std::vector<std::int64_t>;

KILN_API std::string shape_str(const Shape& shape);
KILN_API std::int64_t shape_numel(const Shape& shape);

struct TensorImpl;
class Node;
class Generator;

class KILN_API Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl);

  // ---- factories (plain, contiguous, no grad)
  static Tensor empty(const Shape& shape, DType dtype = DType::f32);
  static Tensor zeros(const Shape& shape, DType dtype = DType::f32);
  static Tensor ones(const Shape& shape, DType dtype = DType::f32);
  static Tensor full(const Shape& shape, float value, DType dtype = DType::f32);
  static Tensor scalar(float value);
  // Copies `values` (converted to `dtype`) into a new tensor; values.size() must equal numel.
  static Tensor from_vector(const std::vector<float>& values, const Shape& shape,
                            DType dtype = DType::f32);
  static Tensor from_ints(const std::vector<std::int64_t>& values, const Shape& shape,
                          DType dtype = DType::s64);
  // Wraps `bytes` (exactly numel * dtype_size bytes, copied) as a tensor of `dtype`.
  static Tensor from_bytes(const void* bytes, std::size_t nbytes, const Shape& shape, DType dtype);
  static Tensor arange(std::int64_t n, DType dtype = DType::f32);
  // N(0,1) and U[lo,hi) from a generator (defaults to the global one, see random.hpp).
  static Tensor randn(const Shape& shape, Generator& gen);
  static Tensor randn(const Shape& shape);
  static Tensor rand(const Shape& shape, Generator& gen, float lo = 0.f, float hi = 1.f);
  static Tensor rand(const Shape& shape, float lo = 0.f, float hi = 1.f);

  // ---- properties
  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const;
  std::int64_t dim() const;
  // Size of dimension d; negative d counts from the end.
  std::int64_t size(std::int64_t d) const;
  std::int64_t numel() const;
  DType dtype() const;
  const Shape& strides() const;
  std::int64_t offset() const;
  bool is_contiguous() const;
  bool is_blocked() const;
  std::size_t nbytes() const;

  // Pointer to the first element. Requires a plain layout and T matching dtype
  // (float for f32, std::uint16_t for bf16/f16, std::int32_t, std::int64_t, std::uint8_t,
  // std::int8_t).
  template <typename T>
  T* data() const;
  void* raw_data() const;

  // ---- views and layout (differentiable)
  Tensor reshape(const Shape& shape) const;  // one dimension may be -1; copies if not viewable
  Tensor view(const Shape& shape) const;     // must be viewable without a copy
  Tensor flatten(std::int64_t start_dim = 0, std::int64_t end_dim = -1) const;
  Tensor unsqueeze(std::int64_t d) const;
  Tensor squeeze(std::int64_t d) const;
  Tensor permute(const std::vector<std::int64_t>& order) const;
  Tensor transpose(std::int64_t d0, std::int64_t d1) const;
  Tensor slice(std::int64_t d, std::int64_t start, std::int64_t end, std::int64_t step = 1) const;
  Tensor select(std::int64_t d, std::int64_t index) const;
  Tensor expand(const Shape& shape) const;
  Tensor contiguous() const;     // plain row-major dense; returns *this when already so
  Tensor to(DType dtype) const;  // differentiable between floating types
  Tensor clone() const;
  Tensor detach() const;  // same data, no autograd history

  // ---- in-place writes (never recorded by autograd; they bump version())
  Tensor& fill_(float value);
  Tensor& zero_();
  Tensor& copy_(const Tensor& src);  // same shape; converts dtype and layout

  // ---- element access (slow paths for tests and small values)
  float item() const;                    // numel must be 1
  std::vector<float> to_vector() const;  // any dtype, converted to float, row-major
  std::vector<std::int64_t> to_int_vector() const;

  // ---- autograd
  bool requires_grad() const;
  Tensor& set_requires_grad(bool on = true);
  // Accumulated gradient of a leaf (undefined until a backward reaches it).
  Tensor grad() const;
  void set_grad(const Tensor& g) const;
  void zero_grad() const;  // drops the gradient
  // Backpropagates from this tensor; `grad` defaults to 1 for a one-element tensor.
  void backward(const Tensor& grad = Tensor()) const;
  const std::shared_ptr<Node>& grad_fn() const;
  int output_nr() const;
  bool is_leaf() const;

  // ---- identity
  // Monotonic counter of in-place writes to the underlying storage; caches of derived data
  // (e.g. weights reordered for a primitive) compare it to know when to refresh.
  std::uint64_t version() const;
  void bump_version() const;
  bool same(const Tensor& other) const { return impl_ == other.impl_; }
  bool shares_storage(const Tensor& other) const;
  TensorImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }

  std::string to_string() const;  // shape, dtype and a few values, for messages

 private:
  std::shared_ptr<TensorImpl> impl_;
};

using TensorList = std::vector<Tensor>;
// Named tensors in a deterministic (sorted) order: checkpoints, state dicts, batches.
using TensorMap = std::map<std::string, Tensor>;

// Arithmetic with broadcasting (numpy rules); defined in ops.
// Moves the memory under t (its whole storage, shared by every view of it) to where a stream
// reads it fastest: a mapping of its own that starts on a 2 MiB boundary, advised into transparent
// huge pages (docs/benchmarks.md, "Huge pages"). For data read from memory again and again and
// not resized, such as the weights of a decoding loop; it costs up to 2 MiB beyond the storage.
// The values do not change and every tensor over the storage keeps working, but the move is not
// safe while another thread uses the storage. Storages under 2 MiB, storages already on a 2 MiB
// boundary and KILN_HUGE_PAGES=0 in the environment leave it where it is; so does a failed mmap.
KILN_API void to_streaming_memory(const Tensor& t);

KILN_API Tensor operator+(const Tensor& a, const Tensor& b);
KILN_API Tensor operator-(const Tensor& a, const Tensor& b);
KILN_API Tensor operator*(const Tensor& a, const Tensor& b);
KILN_API Tensor operator/(const Tensor& a, const Tensor& b);
KILN_API Tensor operator+(const Tensor& a, float b);
KILN_API Tensor operator-(const Tensor& a, float b);
KILN_API Tensor operator*(const Tensor& a, float b);
KILN_API Tensor operator/(const Tensor& a, float b);
KILN_API Tensor operator+(float a, const Tensor& b);
KILN_API Tensor operator-(float a, const Tensor& b);
KILN_API Tensor operator*(float a, const Tensor& b);
KILN_API Tensor operator-(const Tensor& a);

}  // namespace kiln
