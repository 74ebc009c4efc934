// lstm and gru on oneDNN's RNN primitives (lstm_forward / lstm_backward and the
// linear-before-reset GRU, lbr_gru_forward / lbr_gru_backward).
//
// Layout mapping. PyTorch keeps per layer w_ih [G*H, in], w_hh [G*H, H], b_ih, b_hh [G*H] with
// the gates stacked along dim 0. oneDNN's weights are 5-d [L, D, I, G, O]; PyTorch's w_ih seen
// through strides is exactly oneDNN's `ldgoi` layout with L = D = 1, so it is described to oneDNN
// as a strided view and reordered (once per weight version, cached on the weight's storage) into
// whatever layout the primitive picked (`format_tag::any`). Gate orders:
//   LSTM: PyTorch (i, f, g, o) = oneDNN (i, f, c~, o), the same order.
//   GRU:  PyTorch (r, z, n)    vs oneDNN (u, r, o) with u = z: gates 0 and 1 swap. The GRU
//         weights are therefore copied with the two chunks swapped before the reorder.
// Biases: oneDNN's LSTM takes one bias per gate, b_ih + b_hh. Its LBR GRU takes four: the three
// gates' summed biases for u and r, then b_in and b_hn separately (b_hn sits inside r * (...)).
// Bias gradients map back exactly: a summed bias's gradient goes to both b_ih and b_hh.
//
// Each layer runs as its own single-layer primitive: layer 0 may have in != H (oneDNN's stacked
// primitive needs equal sizes), and PyTorch's inter-layer dropout needs the layer outputs anyway.
// One autograd node covers all layers; it keeps every layer's input, output and oneDNN workspace
// and runs the backward primitives from the top layer down.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include "kiln/random.hpp"
#include "ops/op_util.hpp"

namespace kiln::ops {
namespace {

using dnnl::memory;
using tag = memory::format_tag;
constexpr memory::data_type kF32 = memory::data_type::f32;
constexpr dnnl::rnn_direction kDir = dnnl::rnn_direction::unidirectional_left2right;

enum class Cell : std::int64_t { lstm = 0, gru = 1 };

struct CellSpec {
  const char* name;
  std::int64_t gates;       // gates per layer in PyTorch's weights
  std::int64_t bias_gates;  // gates of oneDNN's bias
};

CellSpec spec(Cell c) {
  return c == Cell::lstm ? CellSpec{"lstm", 4, 4} : CellSpec{"gru", 3, 4};
}

// The PyTorch gate that oneDNN gate g reads (the map is its own inverse).
std::int64_t torch_gate(Cell c, std::int64_t g) {
  return c == Cell::gru && g < 2 ? 1 - g : g;
}

// One layer's problem.
struct LayerShape {
  std::int64_t T, N, I, H;
  bool has_iter;      // initial states given (else oneDNN uses zeros)
  bool bf16 = false;  // bf16 layer input/output, hidden state and weights (inference only)
};

memory::data_type data_dt(const LayerShape& s) {
  return s.bf16 ? memory::data_type::bf16 : kF32;
}

PrimitiveKey layer_key(Cell c, std::int64_t kind, const LayerShape& s) {
  PrimitiveKey k;
  k.add(static_cast<std::int64_t>(c)).add(kind).add(s.T).add(s.N).add(s.I).add(s.H);
  k.add(s.has_iter ? 1 : 0).add(s.bf16 ? 1 : 0);
  return k;
}

memory::desc tnc(std::int64_t T, std::int64_t N, std::int64_t C, memory::data_type dt = kF32) {
  return memory::desc({T, N, C}, dt, tag::tnc);
}
// The hidden state (in the layer's data type) and the LSTM cell state (always f32).
memory::desc iter_md(const LayerShape& s) {
  return s.has_iter ? memory::desc({1, 1, s.N, s.H}, data_dt(s), tag::ldnc) : memory::desc();
}
memory::desc iter_c_md(const LayerShape& s) {
  return s.has_iter ? memory::desc({1, 1, s.N, s.H}, kF32, tag::ldnc) : memory::desc();
}
memory::desc state_md(const LayerShape& s) {
  return memory::desc({1, 1, s.N, s.H}, data_dt(s), tag::ldnc);
}
memory::desc state_c_md(const LayerShape& s) {
  return memory::desc({1, 1, s.N, s.H}, kF32, tag::ldnc);
}
memory::desc weights_any(std::int64_t in, std::int64_t gates, std::int64_t H,
                         memory::data_type dt = kF32) {
  return memory::desc({1, 1, in, gates, H}, dt, tag::any);
}
memory::desc bias_md(Cell c, std::int64_t H) {
  return memory::desc({1, 1, spec(c).bias_gates, H}, kF32, tag::ldgo);
}
// [G*H, in] rows gate-major as oneDNN's 5-d [1, 1, in, G, H] (ldgoi), for any row/col strides.
memory::desc goi_md(std::int64_t in, std::int64_t gates, std::int64_t H, std::int64_t row_stride,
                    std::int64_t col_stride) {
  const std::int64_t whole = gates * H * row_stride;
  return memory::desc({1, 1, in, gates, H}, kF32,
                      {whole, whole, col_stride, H * row_stride, row_stride});
}

// oneDNN's RNN scratchpad is large in training (about 170 MB for a 512-wide layer at T = 128,
// N = 32). Rather than letting the library allocate one per execution, the primitives here take
// a user scratchpad: one buffer per thread, grown as needed and shared by every RNN primitive
// that thread runs (they run one at a time).
dnnl::primitive_attr user_scratchpad() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

void* scratchpad(std::size_t nbytes) {
  struct Buffer {
    void* p = nullptr;
    std::size_t n = 0;
    ~Buffer() { std::free(p); }
  };
  thread_local Buffer b;
  if (b.n < nbytes) {
    std::free(b.p);
    b.n = 0;
    b.p = std::aligned_alloc(64, (nbytes + 63) / 64 * 64);
    KILN_CHECK(b.p != nullptr, "out of memory: could not allocate ", nbytes,
               " bytes of RNN scratchpad");
    b.n = nbytes;
  }
  return b.p;
}

dnnl::lstm_forward::primitive_desc lstm_fwd_pd(dnnl::prop_kind prop, const LayerShape& s) {
  const memory::data_type dt = data_dt(s);
  dnnl::lstm_forward::desc d(prop, kDir, tnc(s.T, s.N, s.I, dt), iter_md(s), iter_c_md(s),
                             weights_any(s.I, 4, s.H, dt), weights_any(s.H, 4, s.H, dt),
                             bias_md(Cell::lstm, s.H), tnc(s.T, s.N, s.H, dt), state_md(s),
                             state_c_md(s));
  return {d, user_scratchpad(), dnnl_engine()};
}

dnnl::lbr_gru_forward::primitive_desc gru_fwd_pd(dnnl::prop_kind prop, const LayerShape& s) {
  const memory::data_type dt = data_dt(s);
  dnnl::lbr_gru_forward::desc d(prop, kDir, tnc(s.T, s.N, s.I, dt), iter_md(s),
                                weights_any(s.I, 3, s.H, dt), weights_any(s.H, 3, s.H, dt),
                                bias_md(Cell::gru, s.H), tnc(s.T, s.N, s.H, dt), state_md(s));
  return {d, user_scratchpad(), dnnl_engine()};
}

memory::desc arg_md(const dnnl::primitive_desc_base& pd, int arg) {
  return pd.query_md(dnnl::query::exec_arg_md, arg);
}

// Binds a memory object (no data yet) for every argument the primitive takes; callers set the
// data handles per call. `args` is kept whole so a call does not rebuild the map.
struct BoundArgs {
  std::unordered_map<int, memory> args;
  void bind(const dnnl::primitive_desc_base& pd, int arg) {
    const memory::desc md = arg_md(pd, arg);
    if (md.get_size() == 0) return;  // the argument is absent (e.g. no initial state)
    args.emplace(arg, memory(md, dnnl_engine(), nullptr));
  }
  void set(int arg, const void* p) { args.at(arg).set_data_handle(const_cast<void*>(p)); }
  bool has(int arg) const { return args.count(arg) != 0; }
  memory::desc md(int arg) const { return args.at(arg).get_desc(); }
};

// Executes `prim` with its bound arguments and this thread's scratchpad.
void run(const dnnl::primitive& prim, BoundArgs& a) {
  if (a.has(DNNL_ARG_SCRATCHPAD)) {
    a.set(DNNL_ARG_SCRATCHPAD, scratchpad(a.md(DNNL_ARG_SCRATCHPAD).get_size()));
  }
  execute(prim, a.args);
}

struct FwdEntry {
  dnnl::primitive prim;
  BoundArgs a;
  memory::desc ws_md;  // zero when inference
};

FwdEntry make_fwd(Cell c, dnnl::prop_kind prop, const LayerShape& s) {
  FwdEntry e;
  auto bind_all = [&](const dnnl::primitive_desc_base& pd) {
    for (int arg :
         {DNNL_ARG_SRC_LAYER, DNNL_ARG_SRC_ITER, DNNL_ARG_SRC_ITER_C, DNNL_ARG_WEIGHTS_LAYER,
          DNNL_ARG_WEIGHTS_ITER, DNNL_ARG_BIAS, DNNL_ARG_DST_LAYER, DNNL_ARG_DST_ITER,
          DNNL_ARG_DST_ITER_C, DNNL_ARG_WORKSPACE, DNNL_ARG_SCRATCHPAD}) {
      e.a.bind(pd, arg);
    }
    e.ws_md = pd.workspace_desc();
  };
  if (c == Cell::lstm) {
    auto pd = lstm_fwd_pd(prop, s);
    e.prim = dnnl::lstm_forward(pd);
    bind_all(pd);
  } else {
    auto pd = gru_fwd_pd(prop, s);
    e.prim = dnnl::lbr_gru_forward(pd);
    bind_all(pd);
  }
  return e;
}

struct BwdEntry {
  dnnl::primitive prim;
  BoundArgs a;
  // Reorders of the weight gradients from oneDNN's layout into [G*H, in] gate-major rows.
  dnnl::reorder to_goi_layer, to_goi_iter;
  memory goi_layer, goi_iter;  // destinations of those reorders
};

BwdEntry make_bwd(Cell c, const LayerShape& s) {
  BwdEntry e;
  const std::int64_t G = spec(c).gates;
  const memory::desc src_l = tnc(s.T, s.N, s.I), dst_l = tnc(s.T, s.N, s.H);
  const memory::desc it = iter_md(s), st = state_md(s), b = bias_md(c, s.H);
  const memory::desc wl = weights_any(s.I, G, s.H), wi = weights_any(s.H, G, s.H);
  auto bind_all = [&](const dnnl::primitive_desc_base& pd) {
    for (int arg :
         {DNNL_ARG_SRC_LAYER,       DNNL_ARG_SRC_ITER,           DNNL_ARG_SRC_ITER_C,
          DNNL_ARG_WEIGHTS_LAYER,   DNNL_ARG_WEIGHTS_ITER,       DNNL_ARG_BIAS,
          DNNL_ARG_DST_LAYER,       DNNL_ARG_DST_ITER,           DNNL_ARG_DST_ITER_C,
          DNNL_ARG_WORKSPACE,       DNNL_ARG_DIFF_SRC_LAYER,     DNNL_ARG_DIFF_SRC_ITER,
          DNNL_ARG_DIFF_SRC_ITER_C, DNNL_ARG_DIFF_WEIGHTS_LAYER, DNNL_ARG_DIFF_WEIGHTS_ITER,
          DNNL_ARG_DIFF_BIAS,       DNNL_ARG_DIFF_DST_LAYER,     DNNL_ARG_DIFF_DST_ITER,
          DNNL_ARG_DIFF_DST_ITER_C, DNNL_ARG_SCRATCHPAD}) {
      e.a.bind(pd, arg);
    }
  };
  if (c == Cell::lstm) {
    auto fpd = lstm_fwd_pd(dnnl::prop_kind::forward_training, s);
    dnnl::lstm_backward::desc d(dnnl::prop_kind::backward, kDir, src_l, it, it, wl, wi, b, dst_l,
                                st, st, src_l, it, it, wl, wi, b, dst_l, st, st);
    dnnl::lstm_backward::primitive_desc pd(d, user_scratchpad(), dnnl_engine(), fpd);
    e.prim = dnnl::lstm_backward(pd);
    bind_all(pd);
  } else {
    auto fpd = gru_fwd_pd(dnnl::prop_kind::forward_training, s);
    dnnl::lbr_gru_backward::desc d(dnnl::prop_kind::backward, kDir, src_l, it, wl, wi, b, dst_l, st,
                                   src_l, it, wl, wi, b, dst_l, st);
    dnnl::lbr_gru_backward::primitive_desc pd(d, user_scratchpad(), dnnl_engine(), fpd);
    e.prim = dnnl::lbr_gru_backward(pd);
    bind_all(pd);
  }
  const memory::desc gl = goi_md(s.I, G, s.H, s.I, 1), gi = goi_md(s.H, G, s.H, s.H, 1);
  const memory::desc dwl = e.a.md(DNNL_ARG_DIFF_WEIGHTS_LAYER);
  const memory::desc dwi = e.a.md(DNNL_ARG_DIFF_WEIGHTS_ITER);
  e.to_goi_layer =
      dnnl::reorder(dnnl::reorder::primitive_desc(dnnl_engine(), dwl, dnnl_engine(), gl));
  e.to_goi_iter =
      dnnl::reorder(dnnl::reorder::primitive_desc(dnnl_engine(), dwi, dnnl_engine(), gi));
  e.goi_layer = memory(gl, dnnl_engine(), nullptr);
  e.goi_iter = memory(gi, dnnl_engine(), nullptr);
  return e;
}

FwdEntry& fwd_entry(Cell c, dnnl::prop_kind prop, const LayerShape& s) {
  thread_local PrimitiveCache<FwdEntry> cache;
  const std::int64_t kind = prop == dnnl::prop_kind::forward_training ? 1 : 0;
  return cache.get(layer_key(c, kind, s), [&] { return make_fwd(c, prop, s); });
}

BwdEntry& bwd_entry(Cell c, const LayerShape& s) {
  thread_local PrimitiveCache<BwdEntry> cache;
  return cache.get(layer_key(c, 2, s), [&] { return make_bwd(c, s); });
}

// ------------------------------------------------------------------ weights in oneDNN layouts

// A tensor over `st` (a cached derived copy) with logical `shape`, laid out as `md`.
Tensor tensor_over(const std::shared_ptr<Storage>& st, const Shape& shape, const memory::desc& md) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = st;
  impl->shape = shape;
  impl->dtype = from_dnnl(md.data_type());
  if (is_plain_desc(md, shape)) {
    impl->strides = contiguous_strides(shape);
  } else {
    impl->blocked = md;
  }
  return Tensor(impl);
}

// GRU weights [3H, in] in oneDNN's layout `md`: gates swapped into oneDNN's order, then
// reordered. Cached on w's storage like reorder_cached (keyed by offset, layout and version);
// the 5-d GRU layouts requested here are asked of these storages by nothing else.
Tensor gru_weight_cached(const Tensor& w, const memory::desc& md) {
  const std::int64_t rows = w.size(0), in = w.size(1), H = rows / 3;
  const Shape shape5{1, 1, in, 3, H};
  TensorImpl* impl = w.impl();
  Storage& st = *impl->storage;
  const std::uint64_t version = st.version.load();
  {
    std::lock_guard<std::mutex> lock(st.derived_mutex);
    for (const auto& d : st.derived) {
      if (d.offset == impl->offset && d.desc == md && d.version == version) {
        return tensor_over(d.data, shape5, md);
      }
    }
  }
  Tensor wc = w.detach().contiguous();
  Tensor perm = Tensor::empty({rows, in});
  const float* src = wc.data<float>();
  float* dst = perm.data<float>();
  const std::size_t chunk = static_cast<std::size_t>(H * in);
  for (std::int64_t g = 0; g < 3; ++g) {
    std::memcpy(dst + static_cast<std::size_t>(g) * chunk,
                src + static_cast<std::size_t>(torch_gate(Cell::gru, g)) * chunk,
                chunk * sizeof(float));
  }
  Tensor view = Tensor(make_view(*perm.impl(), shape5, {3 * H * in, 3 * H * in, 1, H * in, in}, 0));
  Tensor r = reorder_to(view, md);
  std::lock_guard<std::mutex> lock(st.derived_mutex);
  std::erase_if(st.derived, [&](const Storage::Derived& d) {
    return d.offset == impl->offset && (d.version != version || d.desc == md);
  });
  if (st.derived.size() >= 4) st.derived.erase(st.derived.begin());
  st.derived.push_back({version, md, r.impl()->storage, impl->offset});
  return tensor_over(r.impl()->storage, shape5, md);
}

// w [G*H, in] (PyTorch layout, any strides) in the layout `md` a primitive asked for.
Tensor prepared_weight(Cell c, const Tensor& w, const memory::desc& md) {
  if (c == Cell::gru) return gru_weight_cached(w, md);
  const std::int64_t rows = w.size(0), in = w.size(1), H = rows / 4;
  const Shape& ws = w.strides();
  const std::int64_t whole = 4 * H * ws[0];
  Tensor view(
      make_view(*w.impl(), {1, 1, in, 4, H}, {whole, whole, ws[1], H * ws[0], ws[0]}, w.offset()));
  return reorder_cached(view, md);
}

// oneDNN's bias [1, 1, Gb, H] from b_ih and b_hh (either may be undefined = zeros).
Tensor fused_bias(Cell c, const Tensor& b_ih, const Tensor& b_hh, std::int64_t H) {
  Tensor out = Tensor::zeros({1, 1, spec(c).bias_gates, H});
  float* o = out.data<float>();
  auto add = [&](const Tensor& b, bool hidden) {
    if (!b.defined()) return;
    Tensor bc = b.detach().contiguous();
    const float* p = bc.data<float>();
    for (std::int64_t g = 0; g < spec(c).gates; ++g) {
      // GRU: n's two biases stay apart (b_hn is multiplied by r); oneDNN's 4th gate holds b_hn.
      const std::int64_t dst_gate = c == Cell::gru && g == 2 && hidden ? 3 : g;
      const float* src = p + torch_gate(c, g) * H;
      float* d = o + dst_gate * H;
      for (std::int64_t j = 0; j < H; ++j) d[j] += src[j];
    }
  };
  add(b_ih, false);
  add(b_hh, true);
  return out;
}

// ------------------------------------------------------------------ dropout between layers

// Inverted-dropout mask [shape]: 0 with probability p, else 1/(1-p). Element i takes word i%4 of
// Philox block (start + i/4), so the mask depends on the generator alone, never on threads;
// the generator then moves past the blocks used.
Tensor dropout_mask(const Shape& shape, float p, Philox& rng) {
  Tensor m = Tensor::empty(shape);
  float* out = m.data<float>();
  const std::int64_t n = m.numel(), blocks = (n + 3) / 4;
  const std::uint64_t start = rng.position();
  const float scale = p < 1.f ? 1.f / (1.f - p) : 0.f;
  detail::parallel_range(blocks, 4096, [&](std::int64_t b0, std::int64_t b1) {
    Philox local = rng;
    local.seek(start + static_cast<std::uint64_t>(b0));
    for (std::int64_t b = b0; b < b1; ++b) {
      const std::array<std::uint32_t, 4> words = local.next_block();
      for (std::int64_t j = 0; j < 4 && 4 * b + j < n; ++j) {
        const float u = static_cast<float>(words[static_cast<std::size_t>(j)] >> 8) * 0x1p-24f;
        out[4 * b + j] = u < p ? 0.f : scale;
      }
    }
  });
  rng.seek(start + static_cast<std::uint64_t>(blocks));
  return m;
}

Tensor apply_mask(const Tensor& x, const Tensor& mask) {
  Tensor y = Tensor::empty(x.shape());
  const float* a = x.data<float>();
  const float* m = mask.data<float>();
  float* o = y.data<float>();
  detail::parallel_range(x.numel(), 1 << 16, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t i = b; i < e; ++i) o[i] = a[i] * m[i];
  });
  return y;
}

// ------------------------------------------------------------------ validation

struct Problem {
  Cell cell;
  std::int64_t L, T, N, I, H;
};

void check_param(const Tensor& t, const char* op, const char* what, std::int64_t layer,
                 const Shape& expected) {
  KILN_CHECK(t.defined(), op, ": ", what, "[", layer, "] is undefined");
  KILN_CHECK(t.dtype() == DType::f32, op, ": ", what, "[", layer, "] must be f32, got ",
             dtype_name(t.dtype()));
  KILN_CHECK(!t.is_blocked(), op, ": ", what, "[", layer, "] must have a plain layout");
  KILN_CHECK(t.shape() == expected, op, ": ", what, "[", layer, "] must have shape ",
             shape_str(expected), ", got ", shape_str(t.shape()));
}

// h0 / c0, when given: floating and [L, N, H] (`state`).
void check_states(const char* op, const Tensor& h0, const Tensor& c0, const Shape& state) {
  for (const auto& [t, name] : {std::pair{&h0, "h0"}, std::pair{&c0, "c0"}}) {
    if (!t->defined()) continue;
    KILN_CHECK(is_floating(t->dtype()), op, ": ", name, " must be a floating tensor, got ",
               dtype_name(t->dtype()));
    KILN_CHECK(t->shape() == state, op, ": ", name,
               " must have shape [num_layers, N, H] = ", shape_str(state), ", got ",
               shape_str(t->shape()));
  }
}

Problem validate(Cell c, const Tensor& x, const Tensor& h0, const Tensor& c0, const RnnWeights& w,
                 float dropout, bool training, const Philox* rng) {
  const CellSpec cs = spec(c);
  const char* op = cs.name;
  detail::require_dim(x, 3, op, "x", "[T, N, input_size]");
  KILN_CHECK(is_floating(x.dtype()), op, ": x must be a floating tensor, got ",
             dtype_name(x.dtype()));
  KILN_CHECK(x.size(0) > 0 && x.size(1) > 0 && x.size(2) > 0, op,
             ": x must have a non-empty sequence, batch and feature size, got shape ",
             shape_str(x.shape()));
  const std::int64_t L = static_cast<std::int64_t>(w.w_ih.size());
  KILN_CHECK(L >= 1, op, ": the weights have no layer (w_ih is empty)");
  KILN_CHECK(static_cast<std::int64_t>(w.w_hh.size()) == L, op, ": w_ih has ", L,
             " layers but w_hh has ", w.w_hh.size());
  for (const auto* b : {&w.b_ih, &w.b_hh}) {
    KILN_CHECK(b->empty() || static_cast<std::int64_t>(b->size()) == L, op, ": w_ih has ", L,
               " layers but ", b == &w.b_ih ? "b_ih" : "b_hh", " has ", b->size(),
               " (give one bias per layer, or none)");
  }
  KILN_CHECK(w.w_hh[0].defined() && w.w_hh[0].dim() == 2, op, ": w_hh[0] must be 2-d [", cs.gates,
             "*H, H]");
  const std::int64_t H = w.w_hh[0].size(1);
  KILN_CHECK(H > 0, op, ": the hidden size (w_hh[0].size(1)) must be positive");
  const std::int64_t I = x.size(2);
  for (std::int64_t l = 0; l < L; ++l) {
    const std::size_t i = static_cast<std::size_t>(l);
    const std::int64_t in = l == 0 ? I : H;
    check_param(w.w_ih[i], op, "w_ih", l, {cs.gates * H, in});
    check_param(w.w_hh[i], op, "w_hh", l, {cs.gates * H, H});
    if (!w.b_ih.empty() && w.b_ih[i].defined())
      check_param(w.b_ih[i], op, "b_ih", l, {cs.gates * H});
    if (!w.b_hh.empty() && w.b_hh[i].defined())
      check_param(w.b_hh[i], op, "b_hh", l, {cs.gates * H});
  }
  check_states(op, h0, c0, {L, x.size(1), H});
  KILN_CHECK(std::isfinite(dropout) && dropout >= 0.f && dropout <= 1.f, op,
             ": dropout must be in [0, 1], got ", dropout);
  KILN_CHECK(!(training && dropout > 0.f && L > 1 && rng == nullptr), op, ": dropout ", dropout,
             " in training needs a random generator (rng is null)");
  return {c, L, x.size(0), x.size(1), I, H};
}

// ------------------------------------------------------------------ forward and backward

struct LayerSaved {
  Tensor src;   // the layer's input [T, N, in] (after the previous layer's dropout)
  Tensor dst;   // its output [T, N, H] (before dropout)
  Tensor ws;    // oneDNN workspace
  Tensor mask;  // dropout mask applied to dst (undefined when none)
};

struct Saved {
  Problem p;
  bool has_iter;
  Tensor h0, c0, hn, cn;  // [L, N, H] (h0/c0 as given to oneDNN, zeros filled in)
  TensorList w_ih, w_hh, b_ih, b_hh;
  std::vector<LayerSaved> layers;
};

const float* layer_ptr(const Tensor& t, std::int64_t l, std::int64_t n) {
  return t.defined() ? t.data<float>() + l * n : nullptr;
}
// Layer l's slice of a contiguous [L, N, H] state of any data type.
void* layer_bytes(const Tensor& t, std::int64_t l, std::int64_t n) {
  return static_cast<char*>(t.raw_data()) + static_cast<std::size_t>(l * n) * dtype_size(t.dtype());
}

// Runs every layer forward. Fills `out` and, when `saved` is given, what backward needs.
// `bf16` (inference only): layer inputs and outputs, hidden states and weights in bf16; the
// LSTM cell state and the biases stay f32, and the results are returned in f32.
void run_forward(const Problem& p, bool bf16, const Tensor& x, const Tensor& h0, const Tensor& c0,
                 const RnnWeights& w, float dropout, bool training, Philox* rng, Saved* saved,
                 RnnOutput& out) {
  const bool lstm = p.cell == Cell::lstm;
  const bool has_iter = h0.defined();
  const dnnl::prop_kind prop =
      saved ? dnnl::prop_kind::forward_training : dnnl::prop_kind::forward_inference;
  const std::int64_t state = p.N * p.H;
  out.h = Tensor::empty({p.L, p.N, p.H});
  if (lstm) out.c = Tensor::empty({p.L, p.N, p.H});
  const DType dt = bf16 ? DType::bf16 : DType::f32;
  const Tensor h_in = bf16 && has_iter ? h0.to(dt).contiguous() : h0;
  const Tensor h_out = bf16 ? Tensor::empty({p.L, p.N, p.H}, dt) : out.h;
  Tensor cur = bf16 ? x.to(dt).contiguous() : x;
  for (std::int64_t l = 0; l < p.L; ++l) {
    const std::size_t li = static_cast<std::size_t>(l);
    const LayerShape s{p.T, p.N, l == 0 ? p.I : p.H, p.H, has_iter, bf16};
    FwdEntry& e = fwd_entry(p.cell, prop, s);
    const Tensor wl = prepared_weight(p.cell, w.w_ih[li], e.a.md(DNNL_ARG_WEIGHTS_LAYER));
    const Tensor wi = prepared_weight(p.cell, w.w_hh[li], e.a.md(DNNL_ARG_WEIGHTS_ITER));
    const Tensor bias = fused_bias(p.cell, w.b_ih.empty() ? Tensor() : w.b_ih[li],
                                   w.b_hh.empty() ? Tensor() : w.b_hh[li], p.H);
    Tensor y = Tensor::empty({p.T, p.N, p.H}, dt);
    Tensor ws;
    e.a.set(DNNL_ARG_SRC_LAYER, cur.raw_data());
    if (has_iter) {
      e.a.set(DNNL_ARG_SRC_ITER, layer_bytes(h_in, l, state));
      if (lstm) e.a.set(DNNL_ARG_SRC_ITER_C, layer_ptr(c0, l, state));
    }
    e.a.set(DNNL_ARG_WEIGHTS_LAYER, wl.raw_data());
    e.a.set(DNNL_ARG_WEIGHTS_ITER, wi.raw_data());
    e.a.set(DNNL_ARG_BIAS, bias.raw_data());
    e.a.set(DNNL_ARG_DST_LAYER, y.raw_data());
    e.a.set(DNNL_ARG_DST_ITER, layer_bytes(h_out, l, state));
    if (lstm) e.a.set(DNNL_ARG_DST_ITER_C, out.c.data<float>() + l * state);
    if (saved) {
      ws = Tensor::empty({static_cast<std::int64_t>(e.ws_md.get_size())}, DType::u8);
      e.a.set(DNNL_ARG_WORKSPACE, ws.raw_data());
    }
    run(e.prim, e.a);
    Tensor mask, next = y;
    if (training && dropout > 0.f && l + 1 < p.L) {
      mask = dropout_mask(y.shape(), dropout, *rng);
      next = bf16 ? apply_mask(y.to(DType::f32), mask).to(dt) : apply_mask(y, mask);
    }
    if (saved) saved->layers.push_back({cur, y, ws, mask});
    cur = next;
  }
  if (bf16) {
    out.y = cur.to(DType::f32);
    out.h = h_out.to(DType::f32);
  } else {
    out.y = cur;
  }
}

// A weight gradient laid out [G*H, in] with oneDNN's gate order, put into PyTorch's (the GRU
// swaps its first two gate chunks; the LSTM's orders agree).
void to_torch_gate_order(Cell c, Tensor& g, std::int64_t H) {
  if (c != Cell::gru) return;
  float* p = g.data<float>();
  const std::int64_t chunk = H * g.size(1);
  std::swap_ranges(p, p + chunk, p + chunk);
}

TensorList run_backward(const Saved& sv, const TensorList& grads, const std::vector<bool>& need) {
  const Problem& p = sv.p;
  const bool lstm = p.cell == Cell::lstm;
  const std::int64_t G = spec(p.cell).gates, state = p.N * p.H;
  Tensor gy = grads[0].contiguous();
  Tensor gh = grads[1].contiguous();
  Tensor gc = lstm ? grads[2].contiguous() : Tensor();
  Tensor dh0, dc0;
  if (sv.has_iter) {
    dh0 = Tensor::empty({p.L, p.N, p.H});
    if (lstm) dc0 = Tensor::empty({p.L, p.N, p.H});
  }
  const std::size_t L = static_cast<std::size_t>(p.L);
  TensorList dw_ih(L), dw_hh(L), db_ih(L), db_hh(L);
  Tensor dcur = gy;  // gradient of the current layer's output
  Tensor dx;
  for (std::int64_t l = p.L - 1; l >= 0; --l) {
    const std::size_t li = static_cast<std::size_t>(l);
    const LayerSaved& ls = sv.layers[li];
    const LayerShape s{p.T, p.N, l == 0 ? p.I : p.H, p.H, sv.has_iter};
    BwdEntry& e = bwd_entry(p.cell, s);
    const Tensor wl = prepared_weight(p.cell, sv.w_ih[li], e.a.md(DNNL_ARG_WEIGHTS_LAYER));
    const Tensor wi = prepared_weight(p.cell, sv.w_hh[li], e.a.md(DNNL_ARG_WEIGHTS_ITER));
    const Tensor bias = fused_bias(p.cell, sv.b_ih.empty() ? Tensor() : sv.b_ih[li],
                                   sv.b_hh.empty() ? Tensor() : sv.b_hh[li], p.H);
    Tensor dsrc = Tensor::empty({p.T, p.N, s.I});
    // oneDNN accumulates into the weight and bias gradients: start from zeros.
    auto zeroed = [&](int arg) {
      Tensor t = Tensor::zeros({static_cast<std::int64_t>(e.a.md(arg).get_size() / sizeof(float))});
      e.a.set(arg, t.raw_data());
      return t;
    };
    const Tensor dwl = zeroed(DNNL_ARG_DIFF_WEIGHTS_LAYER);
    const Tensor dwi = zeroed(DNNL_ARG_DIFF_WEIGHTS_ITER);
    const Tensor dbias = zeroed(DNNL_ARG_DIFF_BIAS);
    e.a.set(DNNL_ARG_SRC_LAYER, ls.src.raw_data());
    e.a.set(DNNL_ARG_DST_LAYER, ls.dst.raw_data());
    e.a.set(DNNL_ARG_WEIGHTS_LAYER, wl.raw_data());
    e.a.set(DNNL_ARG_WEIGHTS_ITER, wi.raw_data());
    e.a.set(DNNL_ARG_BIAS, bias.raw_data());
    e.a.set(DNNL_ARG_WORKSPACE, ls.ws.raw_data());
    e.a.set(DNNL_ARG_DST_ITER, sv.hn.data<float>() + l * state);
    e.a.set(DNNL_ARG_DIFF_SRC_LAYER, dsrc.raw_data());
    e.a.set(DNNL_ARG_DIFF_DST_LAYER, dcur.raw_data());
    e.a.set(DNNL_ARG_DIFF_DST_ITER, gh.data<float>() + l * state);
    if (lstm) {
      e.a.set(DNNL_ARG_DST_ITER_C, sv.cn.data<float>() + l * state);
      e.a.set(DNNL_ARG_DIFF_DST_ITER_C, gc.data<float>() + l * state);
    }
    if (sv.has_iter) {
      e.a.set(DNNL_ARG_SRC_ITER, layer_ptr(sv.h0, l, state));
      e.a.set(DNNL_ARG_DIFF_SRC_ITER, dh0.data<float>() + l * state);
      if (lstm) {
        e.a.set(DNNL_ARG_SRC_ITER_C, layer_ptr(sv.c0, l, state));
        e.a.set(DNNL_ARG_DIFF_SRC_ITER_C, dc0.data<float>() + l * state);
      }
    }
    run(e.prim, e.a);

    // Weight gradients into PyTorch's [G*H, in] layout.
    Tensor gwl = Tensor::empty({G * p.H, s.I}), gwi = Tensor::empty({G * p.H, p.H});
    e.goi_layer.set_data_handle(gwl.raw_data());
    e.goi_iter.set_data_handle(gwi.raw_data());
    execute(e.to_goi_layer, {{DNNL_ARG_FROM, e.a.args.at(DNNL_ARG_DIFF_WEIGHTS_LAYER)},
                             {DNNL_ARG_TO, e.goi_layer}});
    execute(e.to_goi_iter,
            {{DNNL_ARG_FROM, e.a.args.at(DNNL_ARG_DIFF_WEIGHTS_ITER)}, {DNNL_ARG_TO, e.goi_iter}});
    to_torch_gate_order(p.cell, gwl, p.H);
    to_torch_gate_order(p.cell, gwi, p.H);
    dw_ih[li] = gwl;
    dw_hh[li] = gwi;
    // Bias gradients: oneDNN gate g -> PyTorch gate torch_gate(g); a summed bias feeds both.
    Tensor gbi = Tensor::empty({G * p.H}), gbh = Tensor::empty({G * p.H});
    const float* db = dbias.data<float>();
    float* bi = gbi.data<float>();
    float* bh = gbh.data<float>();
    const std::size_t row = static_cast<std::size_t>(p.H) * sizeof(float);
    for (std::int64_t g = 0; g < G; ++g) {
      const std::int64_t tg = torch_gate(p.cell, g);
      const std::int64_t hidden_gate = p.cell == Cell::gru && g == 2 ? 3 : g;
      std::memcpy(bi + tg * p.H, db + g * p.H, row);
      std::memcpy(bh + tg * p.H, db + hidden_gate * p.H, row);
    }
    db_ih[li] = gbi;
    db_hh[li] = gbh;

    if (l > 0) {
      const Tensor& mask = sv.layers[li - 1].mask;
      dcur = mask.defined() ? apply_mask(dsrc, mask) : dsrc;
    } else {
      dx = dsrc;
    }
  }
  // Inputs: x, h0, c0, then w_ih, w_hh, b_ih, b_hh per layer.
  TensorList out;
  out.reserve(3 + 4 * L);
  out.push_back(need[0] ? dx : Tensor());
  out.push_back(need[1] ? dh0 : Tensor());
  out.push_back(need[2] ? dc0 : Tensor());
  std::size_t k = 3;
  for (const TensorList* list : {&dw_ih, &dw_hh, &db_ih, &db_hh}) {
    for (std::size_t l = 0; l < L; ++l, ++k) out.push_back(need[k] ? (*list)[l] : Tensor());
  }
  return out;
}

RnnOutput rnn(Cell cell, const Tensor& x_in, const Tensor& h0_in, const Tensor& c0_in,
              const RnnWeights& w, float dropout, bool training, Philox* rng, DType precision) {
  const Problem p = validate(cell, x_in, h0_in, c0_in, w, dropout, training, rng);
  KILN_CHECK(precision == DType::f32 || precision == DType::bf16, spec(cell).name,
             ": precision must be f32 or bf16, got ", dtype_name(precision));
  const bool bf16 = precision == DType::bf16;
  const bool lstm = cell == Cell::lstm;
  const std::size_t L = static_cast<std::size_t>(p.L);
  const char* op = spec(cell).name;
  // x, h0, c0 in f32 (differentiable conversions); missing states are zeros (LSTM: when only
  // one of h0 / c0 is given, the other is zeros).
  const Tensor x = detail::as_f32(x_in, op, "x");
  const Tensor h0 = h0_in.defined() ? detail::as_f32(h0_in, op, "h0") : Tensor();
  const Tensor c0 = lstm && c0_in.defined() ? detail::as_f32(c0_in, op, "c0") : Tensor();
  TensorList inputs{x, h0, c0};
  for (const TensorList* list : {&w.w_ih, &w.w_hh, &w.b_ih, &w.b_hh}) {
    for (std::size_t l = 0; l < L; ++l) inputs.push_back(list->empty() ? Tensor() : (*list)[l]);
  }
  const bool grad = needs_grad(inputs);
  KILN_CHECK(!(bf16 && grad), spec(cell).name,
             ": bf16 precision is for inference; an input or weight requires a gradient here "
             "(train in f32, or run under NoGradGuard / detach the inputs)");
  // Missing initial states are zeros. Without any, inference tells oneDNN so (no state memory);
  // training always passes explicit zeros, because oneDNN 2.6's backward computes a wrong
  // recurrent-weight gradient when the primitive has no src_iter.
  const bool has_iter = grad || h0.defined() || c0.defined();
  const Shape state{p.L, p.N, p.H};
  const Tensor h0d = h0.defined() ? h0.detach() : (has_iter ? Tensor::zeros(state) : Tensor());
  const Tensor c0d = !lstm          ? Tensor()
                     : c0.defined() ? c0.detach()
                                    : (has_iter ? Tensor::zeros(state) : Tensor());

  RnnOutput out;
  auto saved = grad ? std::make_shared<Saved>() : nullptr;
  {
    NoGradGuard ng;
    run_forward(p, bf16, x.detach(), h0d, c0d, w, dropout, training, rng, saved.get(), out);
  }
  if (!grad) return out;

  saved->p = p;
  saved->has_iter = has_iter;
  saved->h0 = h0d;
  saved->c0 = c0d;
  saved->hn = out.h.detach();
  if (lstm) saved->cn = out.c.detach();
  saved->layers.back().dst = saved->layers.back().dst.detach();  // may be the output y itself
  auto detached = [](const TensorList& ts) {
    TensorList r;
    for (const Tensor& t : ts) r.push_back(t.defined() ? t.detach() : Tensor());
    return r;
  };
  saved->w_ih = detached(w.w_ih);
  saved->w_hh = detached(w.w_hh);
  saved->b_ih = detached(w.b_ih);
  saved->b_hh = detached(w.b_hh);
  std::vector<bool> need;
  for (const Tensor& t : inputs) need.push_back(t.defined() && t.requires_grad());
  std::vector<Tensor*> outs{&out.y, &out.h};
  if (lstm) outs.push_back(&out.c);
  record(op, inputs, outs,
         [saved, need](const TensorList& g) { return run_backward(*saved, g, need); });
  return out;
}

}  // namespace

RnnOutput lstm(const Tensor& x, const Tensor& h0, const Tensor& c0, const RnnWeights& w,
               float dropout, bool training, Philox* rng) {
  return rnn(Cell::lstm, x, h0, c0, w, dropout, training, rng, DType::f32);
}

RnnOutput lstm(const Tensor& x, const Tensor& h0, const Tensor& c0, const RnnWeights& w,
               DType precision, float dropout, bool training, Philox* rng) {
  return rnn(Cell::lstm, x, h0, c0, w, dropout, training, rng, precision);
}

RnnOutput gru(const Tensor& x, const Tensor& h0, const RnnWeights& w, float dropout, bool training,
              Philox* rng) {
  return rnn(Cell::gru, x, h0, Tensor(), w, dropout, training, rng, DType::f32);
}

RnnOutput gru(const Tensor& x, const Tensor& h0, const RnnWeights& w, DType precision,
              float dropout, bool training, Philox* rng) {
  return rnn(Cell::gru, x, h0, Tensor(), w, dropout, training, rng, precision);
}

// ------------------------------------------------------------------ int8 LSTM inference
//
// oneDNN's int8 LSTM takes u8 layer inputs and hidden states with one affine map for all of them
// (data_qparams: u8 = round(127 v + 128)) and s8 weights with one scale per gate row shared by
// weights_layer and weights_iter (weights_qparams, mask over the last two dims of ldigo). The
// weights are quantized by a reorder that carries the same attributes: it also stores the
// compensation for the data shift next to the packed weights. The packed layout depends on the
// problem's shape, so each (T, N) gets its own primitives and packed weights.
namespace {

constexpr float kInt8Scale = 127.f;
constexpr float kInt8Shift = 128.f;
constexpr int kInt8WeightsMask = (1 << 3) | (1 << 4);  // per (gate, output channel) of ldigo
constexpr std::size_t kInt8Shapes = 8;

// The largest |s8 weight|. Without VNNI oneDNN multiplies u8 by s8 with vpmaddubsw, which adds
// pairs of products in saturating s16: 2 * 255 * 127 overflows it, 2 * 255 * 63 does not.
float int8_weight_max() {
  const dnnl::cpu_isa isa = dnnl::get_effective_cpu_isa();
  const bool vnni = isa == dnnl::cpu_isa::avx512_core_vnni ||
                    isa == dnnl::cpu_isa::avx512_core_bf16 ||
                    isa == dnnl::cpu_isa::avx512_core_amx || isa == dnnl::cpu_isa::avx2_vnni;
  return vnni ? 127.f : 63.f;
}

// f32 [n] -> u8 [n]: round(v * scale + 128) to nearest even, clipped to [1, 255] (symmetric
// about 128).
void quantize_u8(const float* src, std::uint8_t* dst, std::int64_t n, float scale) {
  detail::parallel_range(n, 1 << 14, [src, dst, scale](std::int64_t b, std::int64_t e) {
    std::int64_t i = b;
#if defined(__AVX2__)
    const __m256 vs = _mm256_set1_ps(scale), shift = _mm256_set1_ps(kInt8Shift);
    const __m256 lo = _mm256_set1_ps(1.f), hi = _mm256_set1_ps(255.f);
    for (; i + 8 <= e; i += 8) {
      __m256 v = _mm256_fmadd_ps(_mm256_loadu_ps(src + i), vs, shift);
      v = _mm256_min_ps(_mm256_max_ps(v, lo), hi);
      const __m256i q = _mm256_cvtps_epi32(v);  // the current rounding mode: nearest even
      const __m128i w = _mm_packus_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
      _mm_storel_epi64(reinterpret_cast<__m128i*>(dst + i), _mm_packus_epi16(w, w));
    }
#endif
    for (; i < e; ++i) {
      const float v = std::clamp(src[i] * scale + kInt8Shift, 1.f, 255.f);
      dst[i] = static_cast<std::uint8_t>(std::nearbyint(v));
    }
  });
}

Tensor dequantize_u8(const Tensor& q, const Shape& shape) {
  Tensor out = Tensor::empty(shape);
  const std::uint8_t* src = static_cast<const std::uint8_t*>(q.raw_data());
  float* dst = out.data<float>();
  detail::parallel_range(out.numel(), 1 << 14, [src, dst](std::int64_t b, std::int64_t e) {
    const std::uint8_t* __restrict s = src + b;
    float* __restrict d = dst + b;
    constexpr float inv = 1.f / kInt8Scale;
    for (std::int64_t i = 0; i < e - b; ++i) d[i] = (static_cast<float>(s[i]) - kInt8Shift) * inv;
  });
  return out;
}

}  // namespace

struct Int8Lstm::Impl {
  struct Layer {
    std::int64_t in = 0;
    Tensor w_ih_t, w_hh_t;      // f32 [in, 4H] (w_ih times input_bound) and [H, 4H]
    Tensor bias;                // oneDNN's fused bias [1, 1, 4, H]
    std::vector<float> scales;  // [4H], oneDNN's gate order (= PyTorch's for the LSTM)
  };
  struct Prepared {  // one (T, N)
    std::int64_t T = 0, N = 0;
    std::vector<dnnl::primitive> prims;
    std::vector<BoundArgs> args;
    std::vector<memory> w_layer, w_iter;  // packed s8 weights, owned by the memories
  };

  std::int64_t L = 0, I = 0, H = 0;
  float bound = 1.f;
  float weight_max = 127.f;
  std::vector<Layer> layers;
  std::vector<Prepared> shapes;  // most recently used last
  std::mutex mutex;

  static dnnl::primitive_attr attr(const Layer& layer, bool scratchpad) {
    dnnl::primitive_attr a = scratchpad ? user_scratchpad() : dnnl::primitive_attr();
    a.set_rnn_data_qparams(kInt8Scale, kInt8Shift);
    a.set_rnn_weights_qparams(kInt8WeightsMask, layer.scales);
    return a;
  }

  // Quantizes an f32 weight, [in, 4H] (oneDNN's ldigo), into the primitive's packed s8 layout.
  static memory pack(const Tensor& w_t, std::int64_t in, std::int64_t H, const memory::desc& md,
                     const dnnl::primitive_attr& a) {
    memory src(memory::desc({1, 1, in, 4, H}, kF32, tag::ldigo), dnnl_engine(),
               const_cast<void*>(w_t.raw_data()));
    memory dst(md, dnnl_engine());
    dnnl::reorder r(
        dnnl::reorder::primitive_desc(dnnl_engine(), src.get_desc(), dnnl_engine(), md, a));
    execute(r, {{DNNL_ARG_FROM, src}, {DNNL_ARG_TO, dst}});
    return dst;
  }

  Prepared& prepared(std::int64_t T, std::int64_t N) {
    for (std::size_t i = 0; i < shapes.size(); ++i) {
      if (shapes[i].T == T && shapes[i].N == N) {
        std::rotate(shapes.begin() + static_cast<std::ptrdiff_t>(i),
                    shapes.begin() + static_cast<std::ptrdiff_t>(i) + 1, shapes.end());
        return shapes.back();
      }
    }
    if (shapes.size() >= kInt8Shapes) shapes.erase(shapes.begin());
    Prepared p;
    p.T = T;
    p.N = N;
    for (const Layer& layer : layers) {
      const memory::data_type u8 = memory::data_type::u8, s8 = memory::data_type::s8;
      const memory::desc it({1, 1, N, H}, u8, tag::ldnc), itc({1, 1, N, H}, kF32, tag::ldnc);
      dnnl::lstm_forward::desc d(dnnl::prop_kind::forward_inference, kDir, tnc(T, N, layer.in, u8),
                                 it, itc, weights_any(layer.in, 4, H, s8), weights_any(H, 4, H, s8),
                                 bias_md(Cell::lstm, H), tnc(T, N, H, u8), it, itc);
      dnnl::lstm_forward::primitive_desc pd(d, attr(layer, true), dnnl_engine());
      p.prims.push_back(dnnl::lstm_forward(pd));
      BoundArgs args;
      for (int arg :
           {DNNL_ARG_SRC_LAYER, DNNL_ARG_SRC_ITER, DNNL_ARG_SRC_ITER_C, DNNL_ARG_BIAS,
            DNNL_ARG_DST_LAYER, DNNL_ARG_DST_ITER, DNNL_ARG_DST_ITER_C, DNNL_ARG_SCRATCHPAD}) {
        args.bind(pd, arg);
      }
      const dnnl::primitive_attr a = attr(layer, false);
      p.w_layer.push_back(pack(layer.w_ih_t, layer.in, H, pd.weights_layer_desc(), a));
      p.w_iter.push_back(pack(layer.w_hh_t, H, H, pd.weights_iter_desc(), a));
      args.args.emplace(DNNL_ARG_WEIGHTS_LAYER, p.w_layer.back());
      args.args.emplace(DNNL_ARG_WEIGHTS_ITER, p.w_iter.back());
      args.set(DNNL_ARG_BIAS, layer.bias.raw_data());
      p.args.push_back(std::move(args));
    }
    shapes.push_back(std::move(p));
    return shapes.back();
  }
};

Int8Lstm::Int8Lstm(const RnnWeights& w, float input_bound) : impl_(std::make_unique<Impl>()) {
  KILN_CHECK(std::isfinite(input_bound) && input_bound > 0.f,
             "Int8Lstm: input_bound must be a positive finite number, got ", input_bound);
  KILN_CHECK(!w.w_ih.empty() && w.w_ih[0].defined() && w.w_ih[0].dim() == 2,
             "Int8Lstm: w_ih[0] must be a 2-d [4*H, input_size] tensor");
  // The lstm() checks, on a stand-in input of the weights' input size.
  const Problem p = validate(Cell::lstm, Tensor::empty({1, 1, w.w_ih[0].size(1)}), Tensor(),
                             Tensor(), w, 0.f, false, nullptr);
  Impl& m = *impl_;
  m.L = p.L;
  m.I = p.I;
  m.H = p.H;
  m.bound = input_bound;
  m.weight_max = int8_weight_max();
  for (std::int64_t l = 0; l < p.L; ++l) {
    const std::size_t li = static_cast<std::size_t>(l);
    Impl::Layer layer;
    layer.in = l == 0 ? p.I : p.H;
    const Tensor w_ih = w.w_ih[li].detach().contiguous();
    const Tensor w_hh = w.w_hh[li].detach().contiguous();
    layer.bias = fused_bias(Cell::lstm, w.b_ih.empty() ? Tensor() : w.b_ih[li],
                            w.b_hh.empty() ? Tensor() : w.b_hh[li], p.H);
    layer.scales.resize(static_cast<std::size_t>(4 * p.H));
    const float bound = l == 0 ? input_bound : 1.f;
    layer.w_ih_t = Tensor::empty({layer.in, 4 * p.H});
    layer.w_hh_t = Tensor::empty({p.H, 4 * p.H});
    const float* wi = w_ih.data<float>();
    const float* wh = w_hh.data<float>();
    float* ti = layer.w_ih_t.data<float>();
    float* th = layer.w_hh_t.data<float>();
    for (std::int64_t r = 0; r < 4 * p.H; ++r) {
      float m_abs = 0.f;
      for (std::int64_t k = 0; k < layer.in; ++k) {
        const float v = wi[r * layer.in + k] * bound;
        ti[k * 4 * p.H + r] = v;
        m_abs = std::max(m_abs, std::abs(v));
      }
      for (std::int64_t k = 0; k < p.H; ++k) {
        th[k * 4 * p.H + r] = wh[r * p.H + k];
        m_abs = std::max(m_abs, std::abs(wh[r * p.H + k]));
      }
      KILN_CHECK(std::isfinite(m_abs), "Int8Lstm: layer ", l, " gate row ", r,
                 " holds a non-finite weight");
      layer.scales[static_cast<std::size_t>(r)] = m_abs > 0.f ? m.weight_max / m_abs : 1.f;
    }
    m.layers.push_back(std::move(layer));
  }
}

Int8Lstm::~Int8Lstm() = default;

std::int64_t Int8Lstm::num_layers() const {
  return impl_->L;
}
std::int64_t Int8Lstm::input_size() const {
  return impl_->I;
}
std::int64_t Int8Lstm::hidden_size() const {
  return impl_->H;
}
float Int8Lstm::input_bound() const {
  return impl_->bound;
}
float Int8Lstm::weight_max() const {
  return impl_->weight_max;
}

RnnOutput Int8Lstm::forward(const Tensor& x_in, const Tensor& h0_in, const Tensor& c0_in) const {
  Impl& m = *impl_;
  const char* op = "Int8Lstm";
  detail::require_dim(x_in, 3, op, "x", "[T, N, input_size]");
  KILN_CHECK(is_floating(x_in.dtype()), op, ": x must be a floating tensor, got ",
             dtype_name(x_in.dtype()));
  KILN_CHECK(x_in.size(0) > 0 && x_in.size(1) > 0, op,
             ": x must have a non-empty sequence and batch, got shape ", shape_str(x_in.shape()));
  KILN_CHECK(x_in.size(2) == m.I, op, ": x has ", x_in.size(2), " features but the weights take ",
             m.I, " (x must be [T, N, ", m.I, "])");
  KILN_CHECK(!needs_grad({x_in, h0_in, c0_in}), op,
             ": int8 is for inference; an input requires a gradient here (run under NoGradGuard "
             "or detach the inputs)");
  const std::int64_t T = x_in.size(0), N = x_in.size(1), L = m.L, H = m.H;
  const Shape state{L, N, H};
  check_states(op, h0_in, c0_in, state);
  NoGradGuard ng;
  const Tensor x = x_in.to(DType::f32).contiguous();
  // Missing states are zeros: u8 128 for h, 0 for c.
  Tensor h_q = Tensor::empty(state, DType::u8);
  if (h0_in.defined()) {
    const Tensor h0 = h0_in.to(DType::f32).contiguous();
    quantize_u8(h0.data<float>(), static_cast<std::uint8_t*>(h_q.raw_data()), h0.numel(),
                kInt8Scale);
  } else {
    std::memset(h_q.raw_data(), static_cast<int>(kInt8Shift), static_cast<std::size_t>(L * N * H));
  }
  const Tensor c0 = c0_in.defined() ? c0_in.to(DType::f32).contiguous() : Tensor::zeros(state);
  Tensor cur = Tensor::empty({T, N, m.I}, DType::u8);
  quantize_u8(x.data<float>(), static_cast<std::uint8_t*>(cur.raw_data()), x.numel(),
              kInt8Scale / m.bound);

  RnnOutput out;
  Tensor h_out = Tensor::empty(state, DType::u8);
  out.c = Tensor::empty(state);
  std::lock_guard<std::mutex> lock(m.mutex);
  Impl::Prepared& p = m.prepared(T, N);
  const std::int64_t n = N * H;
  for (std::int64_t l = 0; l < L; ++l) {
    BoundArgs& a = p.args[static_cast<std::size_t>(l)];
    Tensor y = Tensor::empty({T, N, H}, DType::u8);
    a.set(DNNL_ARG_SRC_LAYER, cur.raw_data());
    a.set(DNNL_ARG_SRC_ITER, layer_bytes(h_q, l, n));
    a.set(DNNL_ARG_SRC_ITER_C, c0.data<float>() + l * n);
    a.set(DNNL_ARG_DST_LAYER, y.raw_data());
    a.set(DNNL_ARG_DST_ITER, layer_bytes(h_out, l, n));
    a.set(DNNL_ARG_DST_ITER_C, out.c.data<float>() + l * n);
    run(p.prims[static_cast<std::size_t>(l)], a);
    cur = y;
  }
  out.y = dequantize_u8(cur, {T, N, H});
  out.h = dequantize_u8(h_out, state);
  return out;
}

}  // namespace kiln::ops
