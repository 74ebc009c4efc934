#include "ops/conv_util.hpp"

#include <cstring>

namespace kiln::ops::detail {

using dnnl::memory;

void add_md(PrimitiveKey& key, const memory::desc& md) {
  static_assert(sizeof(md.data) % sizeof(std::int64_t) == 0);
  std::int64_t words[sizeof(md.data) / sizeof(std::int64_t)];
  std::memcpy(words, &md.data, sizeof(md.data));
  for (std::int64_t w : words) key.add(w);
}

namespace {

struct ReorderEntry {
  dnnl::reorder prim;
  memory src, dst;
};

ReorderEntry& reorder_entry(const memory::desc& src_md, const memory::desc& dst_md) {
  PrimitiveKey key;
  add_md(key, src_md);
  add_md(key, dst_md);
  thread_local PrimitiveCache<ReorderEntry> cache(256);
  return cache.get(key, [&] {
    dnnl::reorder::primitive_desc pd(dnnl_engine(), src_md, dnnl_engine(), dst_md);
    return ReorderEntry{dnnl::reorder(pd), memory(src_md, dnnl_engine(), nullptr),
                        memory(dst_md, dnnl_engine(), nullptr)};
  });
}

}  // namespace

void reorder_into(const memory::desc& src_md, void* src, const memory::desc& dst_md, void* dst) {
  ReorderEntry& e = reorder_entry(src_md, dst_md);
  e.src.set_data_handle(src);
  e.dst.set_data_handle(dst);
  execute(e.prim, {{DNNL_ARG_FROM, e.src}, {DNNL_ARG_TO, e.dst}});
}

Tensor to_desc(const Tensor& t_in, const memory::desc& md) {
  Tensor t = t_in.detach();
  if (dnnl_desc(t) == md) return t;
  if (!t.is_blocked() && !t.is_contiguous()) {
    NoGradGuard ng;
    t = t.contiguous();
    if (dnnl_desc(t) == md) return t;
  }
  Tensor out = empty_for_desc(md, t.shape());
  if (out.numel() > 0) reorder_into(dnnl_desc(t), t.raw_data(), md, out.raw_data());
  return out;
}

Tensor f32_vector(const Tensor& t) {
  NoGradGuard ng;
  Tensor r = t.detach();
  if (r.dtype() != DType::f32) r = r.to(DType::f32);
  return r.contiguous().reshape({r.numel()});
}

}  // namespace kiln::ops::detail
