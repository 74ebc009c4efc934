// Direct access to oneDNN for plugins and SDK ops that build their own primitives.
//
//   auto md = kiln::dnnl_desc(x);                         // x's layout as a memory::desc
//   dnnl::memory mx = kiln::dnnl_memory(x);               // no copy
//   dnnl::eltwise_forward::primitive_desc pd(...);        // format_tag::any is fine
//   kiln::Tensor y = kiln::empty_for_desc(pd.dst_desc(), x.shape());   // may be blocked
//   kiln::execute(prim, {{DNNL_ARG_SRC, mx}, {DNNL_ARG_DST, kiln::dnnl_memory(y)}});
//
// `execute` applies the thread budget to the calling thread and waits for completion. Small
// memory-bound primitives (element-wise, binary, reorder, normalisation, softmax, pooling...
// with under 1 MiB of arguments) run on the calling thread alone: an OpenMP fork/join costs more
// than they do.
// `cached_primitive` memoises primitive creation by an integer key the caller builds, so the
// per-call cost on small shapes is a hash lookup.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <unordered_map>
#include <utility>
#include <vector>

#include <oneapi/dnnl/dnnl.hpp>

#include "kiln/context.hpp"
#include "kiln/export.hpp"
#include "kiln/tensor.hpp"

namespace kiln {

KILN_API dnnl::engine& dnnl_engine();
KILN_API dnnl::stream& dnnl_stream();

KILN_API dnnl::memory::data_type to_dnnl(DType t);
KILN_API DType from_dnnl(dnnl::memory::data_type t);
KILN_API dnnl::memory::dims to_dims(const Shape& shape);

// The layout of `t`: its blocked descriptor, or a plain one built from shape and strides
// (a 0-d tensor is described as {1}).
KILN_API dnnl::memory::desc dnnl_desc(const Tensor& t);
// A memory object over t's data (no copy).
KILN_API dnnl::memory dnnl_memory(const Tensor& t);
KILN_API dnnl::memory dnnl_memory(const Tensor& t, const dnnl::memory::desc& md);
// A new tensor of logical `shape` laid out as `md` (blocked when md is not plain row-major).
KILN_API Tensor empty_for_desc(const dnnl::memory::desc& md, const Shape& shape);
// `t` reordered into `md` (returns t itself when already laid out so). Not differentiable.
KILN_API Tensor reorder_to(const Tensor& t, const dnnl::memory::desc& md);
// Like reorder_to, but caches the result on t's storage until t is written again: use for
// weights, which change once per optimiser step and are read by many calls.
KILN_API Tensor reorder_cached(const Tensor& t, const dnnl::memory::desc& md);
// True when md is the dense row-major layout of `shape` with data type `dt`.
KILN_API bool is_plain_desc(const dnnl::memory::desc& md, const Shape& shape);

KILN_API void execute(const dnnl::primitive& prim,
                      const std::unordered_map<int, dnnl::memory>& args);

// A key for primitive caches: an op tag plus integers (dims, flags, dtypes...).
struct PrimitiveKey {
  // Room for a typical key up front: one allocation per lookup instead of one per growth step.
  PrimitiveKey() { v.reserve(32); }
  std::vector<std::int64_t> v;
  PrimitiveKey& add(std::int64_t x) {
    v.push_back(x);
    return *this;
  }
  PrimitiveKey& add(const Shape& s) {
    v.push_back(static_cast<std::int64_t>(s.size()));
    v.insert(v.end(), s.begin(), s.end());
    return *this;
  }
  bool operator==(const PrimitiveKey& o) const { return v == o.v; }
};
struct PrimitiveKeyHash {
  std::size_t operator()(const PrimitiveKey& k) const noexcept {
    std::uint64_t h = 0x9e3779b97f4a7c15ull;
    for (std::int64_t x : k.v) {
      h ^= static_cast<std::uint64_t>(x) + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    }
    return static_cast<std::size_t>(h);
  }
};

// A per-thread memo of expensive objects (primitive descriptors, primitives, scratch memory
// objects) keyed by PrimitiveKey. Entries live until the cache reaches its capacity, then the
// whole cache is dropped (simple and bounded; model shapes repeat, so it refills at once).
// A oneDNN primitive keeps the thread count it was created with (GEMM-like primitives fix their
// partitioning then), so the cache is also dropped when the compute thread budget changes.
template <typename Entry>
class PrimitiveCache {
 public:
  explicit PrimitiveCache(std::size_t capacity = 1024) : capacity_(capacity) {}
  // `make` is any callable returning an Entry; it runs only on a miss, with the thread budget
  // applied to this thread. (A template rather than a std::function, so a hit does not allocate
  // a copy of the caller's lambda.)
  template <typename Make>
  Entry& get(const PrimitiveKey& key, Make&& make) {
    const int threads = apply_thread_budget_to_this_thread();
    if (threads != threads_) {
      map_.clear();
      threads_ = threads;
    }
    auto it = map_.find(key);
    if (it != map_.end()) return *it->second;
    if (map_.size() >= capacity_) map_.clear();
    auto entry = std::make_unique<Entry>(std::forward<Make>(make)());
    Entry& ref = *entry;
    map_.emplace(key, std::move(entry));
    return ref;
  }
  std::size_t size() const { return map_.size(); }

 private:
  std::size_t capacity_;
  int threads_ = 0;  // the compute thread budget the entries were created under
  std::unordered_map<PrimitiveKey, std::unique_ptr<Entry>, PrimitiveKeyHash> map_;
};

}  // namespace kiln
