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

bool channel_inner_layout(const Tensor& x, ChannelLayout& l) {
  const memory::desc md = dnnl_desc(x);
  const dnnl_memory_desc_t& d = md.data;
  const int nd = d.ndims;
  if (nd < 3 || d.format_kind != dnnl_blocked || d.offset0 != 0 || d.extra.flags != 0) {
    return false;
  }
  const auto& bd = d.format_desc.blocking;
  for (int i = 0; i < nd; ++i) {
    if (i != 1 && d.padded_dims[i] != d.dims[i]) return false;
  }
  std::int64_t s = 1;
  for (int i = 2; i < nd; ++i) s *= d.dims[i];
  std::int64_t blk = 0, cb = 0, expect = 0;
  if (bd.inner_nblks == 1 && bd.inner_idxs[0] == 1) {
    blk = bd.inner_blks[0];
    if (d.padded_dims[1] % blk != 0) return false;
    cb = d.padded_dims[1] / blk;
    expect = blk;
  } else if (bd.inner_nblks == 0 && d.padded_dims[1] == d.dims[1]) {
    blk = d.dims[1];
    cb = 1;
    if (blk != 1 && bd.strides[1] != 1) return false;
    expect = blk;
  } else {
    return false;
  }
  for (int i = nd - 1; i >= 2; --i) {
    if (d.dims[i] != 1 && bd.strides[i] != expect) return false;
    expect *= d.dims[i];
  }
  if (cb > 1 && bd.strides[1] != expect) return false;
  expect *= cb;
  if (d.dims[0] != 1 && bd.strides[0] != expect) return false;
  l.n = d.dims[0];
  l.c = d.dims[1];
  l.blk = blk;
  l.cb = cb;
  l.s = s;
  return true;
}

}  // namespace kiln::ops::detail
