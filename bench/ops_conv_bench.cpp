// Kiln's conv2d against the same oneDNN convolution primitives called directly.
//
//   build/bench/bench_ops_conv_bench                       # all cases, console + ratio table
//   build/bench/bench_ops_conv_bench --benchmark_filter=unet --benchmark_repetitions=5
//
// Cases are model layers from ../shared/peers/README.md at batch 64: the DCGAN discriminator's
// convolutions (B2; LeakyReLU(0.2) fused where the model has it) and the DDPM U-Net's 3x3
// convolutions (B6) at 28x28, 14x14 and 7x7, plus one DCGAN generator transposed convolution.
//
// Implementations, named "<pass>/<case>/<impl>":
//   direct      the oneDNN primitive(s) built with format `any`, the input reordered into the
//               primitive's layout and the weights prepacked outside the timed loop, output
//               memory preallocated: each iteration is execute + wait.
//   kiln        ops::conv2d (or conv_transpose2d) on an input already in that layout, as a
//               tensor coming from the previous layer would be.
//   kiln_plain  the same from a plain NCHW input (forward only): adds the input reorder.
// "fwd" runs inference (NoGradGuard); "fwdbwd" runs forward_training + backward data +
// backward weights/bias (no activation), Kiln through its autograd with the input's producer
// simulated by a no-op node so the input gradient stays in the blocked layout.
// GFLOP/s counts 2 * MACs per forward; a training pass counts 3x that.
//
// On a shared machine the load drifts between benchmarks, so after the Google Benchmark table
// the program also runs each case interleaved (direct, kiln, direct, kiln, ...; default 30
// rounds, --interleaved_rounds=N, 0 to skip) and prints the best and median GFLOP/s of both and
// the median of the per-round time ratios, which load drift affects far less.
// --interleaved_cases=SUBSTRING runs only the cases whose name contains it.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>
#include <oneapi/dnnl/dnnl.hpp>

#include "kiln/autograd.hpp"
#include "kiln/context.hpp"
#include "kiln/dnnl_interop.hpp"
#include "kiln/ops.hpp"
#include "kiln/random.hpp"

namespace {

using dnnl::memory;
using tag = memory::format_tag;
using dt = memory::data_type;

struct ConvCase {
  const char* name;
  std::int64_t n, ic, ih, iw, oc, k, stride, pad;
  kiln::ops::Act act;
  float alpha;
  bool transposed;

  std::int64_t oh() const {
    return transposed ? (ih - 1) * stride - 2 * pad + k : (ih + 2 * pad - k) / stride + 1;
  }
  std::int64_t ow() const {
    return transposed ? (iw - 1) * stride - 2 * pad + k : (iw + 2 * pad - k) / stride + 1;
  }
  // Multiply-adds of the forward pass times 2.
  double flops() const {
    const double per = 2.0 * static_cast<double>(ic * oc * k * k);
    return per * static_cast<double>(n) * static_cast<double>(transposed ? ih * iw : oh() * ow());
  }
  kiln::Shape x_shape() const { return {n, ic, ih, iw}; }
  kiln::Shape w_shape() const {
    return transposed ? kiln::Shape{ic, oc, k, k} : kiln::Shape{oc, ic, k, k};
  }
  kiln::Shape y_shape() const { return {n, oc, oh(), ow()}; }
};

const std::vector<ConvCase>& cases() {
  using kiln::ops::Act;
  static const std::vector<ConvCase> c = {
      {"dcgan_d1_1to64_k4s2", 64, 1, 28, 28, 64, 4, 2, 1, Act::leaky_relu, 0.2f, false},
      {"dcgan_d2_64to128_k4s2", 64, 64, 14, 14, 128, 4, 2, 1, Act::leaky_relu, 0.2f, false},
      {"dcgan_d3_128to256_k3s2", 64, 128, 7, 7, 256, 3, 2, 1, Act::leaky_relu, 0.2f, false},
      {"dcgan_d4_256to1_k4", 64, 256, 4, 4, 1, 4, 1, 0, Act::sigmoid, 0.f, false},
      {"unet_64to64_28x28", 64, 64, 28, 28, 64, 3, 1, 1, Act::none, 0.f, false},
      {"unet_128to128_14x14", 64, 128, 14, 14, 128, 3, 1, 1, Act::none, 0.f, false},
      {"unet_256to256_7x7", 64, 256, 7, 7, 256, 3, 1, 1, Act::none, 0.f, false},
      {"dcgan_g2_convT256to128_k4s2", 64, 256, 7, 7, 128, 4, 2, 1, Act::none, 0.f, true},
  };
  return c;
}

kiln::Tensor random(const kiln::Shape& shape, std::uint64_t seed) {
  kiln::Generator gen(seed);
  return kiln::Tensor::rand(shape, gen, -1.f, 1.f);
}

dnnl::post_ops act_post_ops(const ConvCase& c) {
  dnnl::post_ops po;
  using kiln::ops::Act;
  if (c.act == Act::leaky_relu) po.append_eltwise(1.f, dnnl::algorithm::eltwise_relu, c.alpha, 0.f);
  if (c.act == Act::sigmoid) po.append_eltwise(1.f, dnnl::algorithm::eltwise_logistic, 0.f, 0.f);
  return po;
}

// The oneDNN primitives of one case with every memory object prepared up front.
struct Direct {
  Direct(const ConvCase& c, bool training) : eng(kiln::dnnl_engine()), strm(eng) {
    const memory::dims strides = {c.stride, c.stride}, pads = {c.pad, c.pad}, dil = {0, 0};
    const memory::desc src_any({c.n, c.ic, c.ih, c.iw}, dt::f32, tag::any);
    const memory::desc dst_any({c.n, c.oc, c.oh(), c.ow()}, dt::f32, tag::any);
    const memory::desc wei_any({c.oc, c.ic, c.k, c.k}, dt::f32, tag::any);
    const memory::desc bias_md({c.oc}, dt::f32, tag::a);
    // PyTorch-layout user weights: conv [O, I, k, k] = oihw; conv-transpose [I, O, k, k] = iohw.
    const memory::desc wei_user({c.oc, c.ic, c.k, c.k}, dt::f32,
                                c.transposed ? tag::iohw : tag::oihw);
    const auto prop =
        training ? dnnl::prop_kind::forward_training : dnnl::prop_kind::forward_inference;
    dnnl::primitive_attr attr;
    if (!training) attr.set_post_ops(act_post_ops(c));
    memory::desc src_md, dst_md, wei_md, bwd_wei_md, dsrc_md, ddst_md, dwei_md, bsrc_md;
    if (c.transposed) {
      dnnl::deconvolution_forward::desc d(prop, dnnl::algorithm::deconvolution_direct, src_any,
                                          wei_any, bias_md, dst_any, strides, dil, pads, pads);
      dnnl::deconvolution_forward::primitive_desc pd(d, attr, eng);
      fwd = dnnl::deconvolution_forward(pd);
      src_md = pd.src_desc();
      dst_md = pd.dst_desc();
      wei_md = pd.weights_desc();
      impl = pd.impl_info_str();
    } else {
      dnnl::convolution_forward::desc d(prop, dnnl::algorithm::convolution_direct, src_any, wei_any,
                                        bias_md, dst_any, strides, dil, pads, pads);
      dnnl::convolution_forward::primitive_desc pd(d, attr, eng);
      fwd = dnnl::convolution_forward(pd);
      src_md = pd.src_desc();
      dst_md = pd.dst_desc();
      wei_md = pd.weights_desc();
      impl = pd.impl_info_str();
      if (training) {
        dnnl::convolution_backward_data::desc bd(dnnl::algorithm::convolution_direct, src_any,
                                                 wei_any, dst_any, strides, dil, pads, pads);
        dnnl::convolution_backward_data::primitive_desc bpd(bd, eng, pd);
        bwd_data = dnnl::convolution_backward_data(bpd);
        bwd_wei_md = bpd.weights_desc();
        dsrc_md = bpd.diff_src_desc();
        ddst_md = bpd.diff_dst_desc();
        dnnl::convolution_backward_weights::desc wd(dnnl::algorithm::convolution_direct, src_any,
                                                    wei_any, bias_md, dst_any, strides, dil, pads,
                                                    pads);
        dnnl::convolution_backward_weights::primitive_desc wpd(wd, eng, pd);
        bwd_weights = dnnl::convolution_backward_weights(wpd);
        dwei_md = wpd.diff_weights_desc();
        bsrc_md = wpd.src_desc();
        if (wpd.diff_dst_desc() != ddst_md || bsrc_md != src_md) {
          std::fprintf(stderr, "note: %s backward layouts differ between primitives\n", c.name);
        }
      }
    }
    // Inputs reordered into the primitive's layouts outside the timed loop.
    const kiln::Tensor x = random(c.x_shape(), 1), w = random(c.w_shape(), 2);
    src = reorder_from(x, src_md);
    wei = reorder_from(w, wei_user, wei_md);
    bias = memory(bias_md, eng);
    fill(bias, 0.1f);
    dst = memory(dst_md, eng);
    if (training) {
      wei_bwd = reorder_from(w, wei_user, bwd_wei_md);
      diff_dst = reorder_from(random(c.y_shape(), 3), ddst_md);
      diff_src = memory(dsrc_md, eng);
      diff_wei = memory(dwei_md, eng);
      diff_bias = memory(bias_md, eng);
    }
  }

  void forward() {
    fwd.execute(
        strm,
        {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_BIAS, bias}, {DNNL_ARG_DST, dst}});
    strm.wait();
  }
  void backward() {
    bwd_data.execute(strm, {{DNNL_ARG_DIFF_DST, diff_dst},
                            {DNNL_ARG_WEIGHTS, wei_bwd},
                            {DNNL_ARG_DIFF_SRC, diff_src}});
    bwd_weights.execute(strm, {{DNNL_ARG_SRC, src},
                               {DNNL_ARG_DIFF_DST, diff_dst},
                               {DNNL_ARG_DIFF_WEIGHTS, diff_wei},
                               {DNNL_ARG_DIFF_BIAS, diff_bias}});
    strm.wait();
  }

  memory reorder_from(const kiln::Tensor& t, const memory::desc& to) {
    return reorder_from(t, kiln::dnnl_desc(t), to);
  }
  memory reorder_from(const kiln::Tensor& t, const memory::desc& from, const memory::desc& to) {
    memory m(to, eng);
    memory user(from, eng, t.raw_data());
    dnnl::reorder(user, m).execute(strm, user, m);
    strm.wait();
    return m;
  }
  static void fill(memory& m, float v) {
    auto* p = static_cast<float*>(m.get_data_handle());
    for (std::size_t i = 0; i < m.get_desc().get_size() / sizeof(float); ++i) p[i] = v;
  }

  dnnl::engine eng;
  dnnl::stream strm;
  dnnl::primitive fwd, bwd_data, bwd_weights;
  memory src, wei, bias, dst, wei_bwd, diff_dst, diff_src, diff_wei, diff_bias;
  std::string impl;
};

kiln::Tensor kiln_forward(const ConvCase& c, const kiln::Tensor& x, const kiln::Tensor& w,
                          const kiln::Tensor& b, bool with_act) {
  const kiln::ops::Act act = with_act ? c.act : kiln::ops::Act::none;
  if (c.transposed) {
    return kiln::ops::conv_transpose2d(x, w, b,
                                       {.stride = {c.stride, c.stride},
                                        .padding = {c.pad, c.pad},
                                        .act = act,
                                        .act_alpha = c.alpha});
  }
  return kiln::ops::conv2d(x, w, b,
                           {.stride = {c.stride, c.stride},
                            .padding = {c.pad, c.pad},
                            .act = act,
                            .act_alpha = c.alpha});
}

// Kiln's training pass on one case: x arrives in the primitive's layout as the output of a
// previous layer (a no-op node, so dx stays blocked), dy in the layout of the output gradient.
struct KilnTrain {
  KilnTrain(const ConvCase& c, const Direct& d)
      : conv(c),
        x0(kiln::reorder_to(random(c.x_shape(), 1), d.src.get_desc())),
        dy(kiln::reorder_to(random(c.y_shape(), 3), d.diff_dst.get_desc())),
        feed(kiln::Tensor::zeros({1}).set_requires_grad()),
        w(random(c.w_shape(), 2).set_requires_grad()),
        b(kiln::Tensor::full({c.oc}, 0.1f).set_requires_grad()) {}
  void run() {
    kiln::Tensor x = x0.detach();
    kiln::record("feed", {feed}, {&x},
                 [](const kiln::TensorList&) { return kiln::TensorList{kiln::Tensor()}; });
    kiln::Tensor y = kiln_forward(conv, x, w, b, false);
    y.backward(dy);
    w.zero_grad();
    b.zero_grad();
  }
  ConvCase conv;
  kiln::Tensor x0, dy, feed, w, b;
};

// Kiln's inference pass on one case, x in the primitive's layout.
struct KilnInfer {
  KilnInfer(const ConvCase& c, const Direct& d, bool plain_input)
      : conv(c),
        x(plain_input ? random(c.x_shape(), 1)
                      : kiln::reorder_to(random(c.x_shape(), 1), d.src.get_desc())),
        w(random(c.w_shape(), 2)),
        b(kiln::Tensor::full({c.oc}, 0.1f)) {}
  kiln::Tensor run() const { return kiln_forward(conv, x, w, b, true); }
  ConvCase conv;
  kiln::Tensor x, w, b;
};

void set_flops(benchmark::State& state, double flops) {
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

void bm_direct_fwd(benchmark::State& state, const ConvCase& c) {
  Direct d(c, false);
  state.SetLabel(d.impl);
  for (auto _ : state) d.forward();
  set_flops(state, c.flops());
}

void bm_kiln_fwd(benchmark::State& state, const ConvCase& c, bool plain_input) {
  kiln::NoGradGuard ng;
  Direct d(c, false);  // only for its src layout
  const KilnInfer k(c, d, plain_input);
  if (kiln::dnnl_desc(k.run()) != d.dst.get_desc()) {
    state.SetLabel("output layout differs from direct");
  }
  for (auto _ : state) {
    kiln::Tensor y = k.run();
    benchmark::DoNotOptimize(y.raw_data());
  }
  set_flops(state, c.flops());
}

void bm_direct_fwdbwd(benchmark::State& state, const ConvCase& c) {
  Direct d(c, true);
  state.SetLabel(d.impl);
  for (auto _ : state) {
    d.forward();
    d.backward();
  }
  set_flops(state, 3 * c.flops());
}

void bm_kiln_fwdbwd(benchmark::State& state, const ConvCase& c) {
  Direct d(c, true);  // for the layouts of x and of the incoming gradient
  KilnTrain k(c, d);
  for (auto _ : state) k.run();
  set_flops(state, 3 * c.flops());
}

// Alternates direct and Kiln calls and summarises both (see the header comment).
void interleaved(int rounds, const std::string& only) {
  if (rounds <= 0) return;
  std::printf(
      "\nInterleaved, %d rounds (GFLOP/s best / median; ratio = median over rounds of "
      "direct time / kiln time)\n",
      rounds);
  std::printf("%-40s %17s %17s %8s\n", "case", "direct", "kiln", "ratio");
  using clock = std::chrono::steady_clock;
  auto ms = [](clock::time_point a, clock::time_point b) {
    return std::chrono::duration<double, std::milli>(b - a).count();
  };
  for (const ConvCase& c : cases()) {
    if (!only.empty() && std::string(c.name).find(only) == std::string::npos) continue;
    for (const bool train : {false, true}) {
      if (train && c.transposed) continue;
      Direct d(c, train);
      std::unique_ptr<KilnTrain> kt = train ? std::make_unique<KilnTrain>(c, d) : nullptr;
      const KilnInfer ki(c, d, false);
      std::vector<double> td, tk, ratio;
      for (int r = 0; r < rounds + 3; ++r) {
        const auto t0 = clock::now();
        if (train) {
          d.forward();
          d.backward();
        } else {
          d.forward();
        }
        const auto t1 = clock::now();
        if (train) {
          kt->run();
        } else {
          kiln::NoGradGuard ng;
          benchmark::DoNotOptimize(ki.run().raw_data());
        }
        const auto t2 = clock::now();
        if (r < 3) continue;  // warm-up
        td.push_back(ms(t0, t1));
        tk.push_back(ms(t1, t2));
        ratio.push_back(td.back() / tk.back());
      }
      auto median = [](std::vector<double> v) {
        std::sort(v.begin(), v.end());
        return v[v.size() / 2];
      };
      auto best = [](const std::vector<double>& v) {
        return *std::min_element(v.begin(), v.end());
      };
      const double gf = (train ? 3 : 1) * c.flops() * 1e-6;  // per millisecond -> GFLOP/s
      const std::string name = std::string(train ? "fwdbwd/" : "fwd/") + c.name;
      std::printf("%-40s %7.1f / %7.1f %7.1f / %7.1f %7.1f%%\n", name.c_str(), gf / best(td),
                  gf / median(td), gf / best(tk), gf / median(tk), 100 * median(ratio));
    }
  }
}

// Console output, then GFLOP/s of kiln vs direct per case.
class RatioReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& r : runs) {
      if (r.error_occurred) continue;
      const bool single = r.run_type == Run::RT_Iteration && r.repetitions <= 1;
      const bool median = r.run_type == Run::RT_Aggregate && r.aggregate_name == "median";
      if (!single && !median) continue;
      const std::string& fn = r.run_name.function_name;
      const std::size_t slash = fn.rfind('/');
      auto it = r.counters.find("GFLOP/s");
      if (slash == std::string::npos || it == r.counters.end()) continue;
      gflops_[fn.substr(0, slash)][fn.substr(slash + 1)] = it->second.value;
    }
  }
  void Finalize() override {
    std::printf("\n%-40s %10s %10s %10s %8s\n", "case", "direct", "kiln", "kiln_plain",
                "kiln/direct");
    for (const auto& [name, impls] : gflops_) {
      auto get = [&](const char* k) {
        auto it = impls.find(k);
        return it == impls.end() ? 0.0 : it->second;
      };
      const double direct = get("direct"), kiln = get("kiln"), plain = get("kiln_plain");
      std::printf("%-40s %10.1f %10.1f %10.1f %7.1f%%\n", name.c_str(), direct, kiln, plain,
                  direct > 0 ? 100.0 * kiln / direct : 0.0);
    }
    std::printf("(GFLOP/s; kiln/direct is the acceptance ratio, target >= 90%%)\n");
  }

 private:
  std::map<std::string, std::map<std::string, double>> gflops_;
};

}  // namespace

int main(int argc, char** argv) {
  // One thread budget for Kiln and for the direct calls (same thread, same OpenMP team).
  const char* env = std::getenv("OMP_NUM_THREADS");
  kiln::set_num_threads(env != nullptr ? std::atoi(env) : 2);
  omp_set_num_threads(kiln::num_threads());
  for (const ConvCase& c : cases()) {
    const std::string n = c.name;
    benchmark::RegisterBenchmark(("fwd/" + n + "/direct").c_str(), bm_direct_fwd, c)
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
    benchmark::RegisterBenchmark(("fwd/" + n + "/kiln").c_str(), bm_kiln_fwd, c, false)
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
    benchmark::RegisterBenchmark(("fwd/" + n + "/kiln_plain").c_str(), bm_kiln_fwd, c, true)
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
    if (c.transposed) continue;
    benchmark::RegisterBenchmark(("fwdbwd/" + n + "/direct").c_str(), bm_direct_fwdbwd, c)
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
    benchmark::RegisterBenchmark(("fwdbwd/" + n + "/kiln").c_str(), bm_kiln_fwdbwd, c)
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
  }
  int rounds = 30;
  std::string only;
  for (int i = 1; i < argc;) {
    if (std::strncmp(argv[i], "--interleaved_rounds=", 21) == 0) {
      rounds = std::atoi(argv[i] + 21);
    } else if (std::strncmp(argv[i], "--interleaved_cases=", 20) == 0) {
      only = argv[i] + 20;
    } else {
      ++i;
      continue;
    }
    for (int j = i; j + 1 < argc; ++j) argv[j] = argv[j + 1];
    --argc;
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  RatioReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  interleaved(rounds, only);
  return 0;
}
