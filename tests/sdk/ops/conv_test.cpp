// conv2d and conv_transpose2d: PyTorch fixtures, gradient checks, blocked-layout chains, bf16,
// fused activations, weight-cache invalidation and argument validation.
#include <gtest/gtest.h>

#include "kiln/dnnl_interop.hpp"
#include "kiln/ops.hpp"
#include "sdk/ops/conv_fixture_cases.hpp"
#include "support/test_support.hpp"

namespace kiln {
namespace {

using ops::Act;
using ops::Conv2dOptions;
using ops::ConvTranspose2dOptions;

Tensor conv_b(const TensorList& in, const Conv2dOptions& o) {
  return ops::conv2d(in[0], in[1], in.size() > 2 ? in[2] : Tensor(), o);
}
Tensor deconv_b(const TensorList& in, const ConvTranspose2dOptions& o) {
  return ops::conv_transpose2d(in[0], in[1], in.size() > 2 ? in[2] : Tensor(), o);
}

TEST(Conv2d, MatchesPyTorch) {
  const std::vector<std::string> xwb = {"x", "w", "b"};
  test::expect_fixture_case("conv_basic", xwb, [](const TensorList& in) { return conv_b(in, {}); });
  test::expect_fixture_case("conv_s2p1d2", xwb, [](const TensorList& in) {
    return conv_b(in, {.stride = {2, 2}, .padding = {1, 1}, .dilation = {2, 2}});
  });
  test::expect_fixture_case("conv_groups", xwb, [](const TensorList& in) {
    return conv_b(in, {.stride = {2, 1}, .padding = {1, 0}, .groups = 2});
  });
  test::expect_fixture_case("conv_nobias_leftover", {"x", "w"}, [](const TensorList& in) {
    return conv_b(in, {.stride = {2, 2}, .padding = {1, 1}});
  });
  test::expect_fixture_case("conv_depthwise", xwb, [](const TensorList& in) {
    return conv_b(in, {.padding = {1, 1}, .groups = 4});
  });
  test::expect_fixture_case("conv_1x1_c16", xwb,
                            [](const TensorList& in) { return conv_b(in, {}); });
  test::expect_fixture_case("conv_relu", xwb, [](const TensorList& in) {
    return conv_b(in, {.padding = {1, 1}, .act = Act::relu});
  });
  test::expect_fixture_case("conv_lrelu", xwb, [](const TensorList& in) {
    return conv_b(in,
                  {.stride = {2, 2}, .padding = {1, 1}, .act = Act::leaky_relu, .act_alpha = 0.2f});
  });
  test::expect_fixture_case("conv_silu", xwb, [](const TensorList& in) {
    return conv_b(in, {.padding = {1, 1}, .act = Act::silu});
  });
}

TEST(ConvTranspose2d, MatchesPyTorch) {
  const std::vector<std::string> xwb = {"x", "w", "b"};
  test::expect_fixture_case("deconv_s2p1op1", xwb, [](const TensorList& in) {
    return deconv_b(in, {.stride = {2, 2}, .padding = {1, 1}, .output_padding = {1, 1}});
  });
  test::expect_fixture_case("deconv_groups_dil", xwb, [](const TensorList& in) {
    return deconv_b(in, {.stride = {2, 1}, .padding = {0, 1}, .dilation = {1, 2}, .groups = 2});
  });
  test::expect_fixture_case("deconv_dcgan_first", {"x", "w"},
                            [](const TensorList& in) { return deconv_b(in, {}); });
  test::expect_fixture_case("deconv_k4s2p1", xwb, [](const TensorList& in) {
    return deconv_b(in, {.stride = {2, 2}, .padding = {1, 1}});
  });
  test::expect_fixture_case("deconv_op_dil", xwb, [](const TensorList& in) {
    return deconv_b(
        in, {.stride = {1, 1}, .padding = {1, 1}, .output_padding = {1, 1}, .dilation = {2, 2}});
  });
  test::expect_fixture_case("deconv_relu", xwb, [](const TensorList& in) {
    return deconv_b(in, {.stride = {2, 2}, .padding = {1, 1}, .act = Act::relu});
  });
}

TEST(Conv2d, GradcheckOddShapes) {
  Tensor x = test::random_tensor({2, 3, 7, 5}, 1).set_requires_grad();
  Tensor w = test::random_tensor({4, 3, 3, 3}, 2).set_requires_grad();
  Tensor b = test::random_tensor({4}, 3).set_requires_grad();
  KILN_EXPECT_GRADCHECK(
      [](const TensorList& in) {
        return conv_b(in, {.stride = {2, 2}, .padding = {1, 1}, .dilation = {2, 2}});
      },
      {x, w, b});
  Tensor xg = test::random_tensor({1, 6, 5, 4}, 4).set_requires_grad();
  Tensor wg = test::random_tensor({6, 2, 2, 3}, 5).set_requires_grad();
  Tensor bg = test::random_tensor({6}, 6).set_requires_grad();
  KILN_EXPECT_GRADCHECK(
      [](const TensorList& in) {
        return conv_b(in, {.stride = {2, 1}, .padding = {1, 1}, .dilation = {1, 2}, .groups = 3});
      },
      {xg, wg, bg});
  // Fused (relu, tanh: from the output) and unfused (gelu) activations.
  Tensor xa = test::random_tensor({1, 2, 4, 3}, 7).set_requires_grad();
  Tensor wa = test::random_tensor({3, 2, 3, 3}, 8).set_requires_grad();
  Tensor ba = test::random_tensor({3}, 9).set_requires_grad();
  for (Act act : {Act::relu, Act::tanh, Act::gelu}) {
    KILN_EXPECT_GRADCHECK(
        [act](const TensorList& in) {
          return conv_b(in, {.padding = {1, 0}, .act = act});
        },
        {xa, wa, ba});
  }
}

TEST(ConvTranspose2d, GradcheckOddShapes) {
  Tensor x = test::random_tensor({2, 4, 3, 5}, 1).set_requires_grad();
  Tensor w = test::random_tensor({4, 3, 3, 2}, 2).set_requires_grad();
  Tensor b = test::random_tensor({6}, 3).set_requires_grad();
  KILN_EXPECT_GRADCHECK(
      [](const TensorList& in) {
        return deconv_b(in, {.stride = {2, 3},
                             .padding = {1, 0},
                             .output_padding = {1, 2},
                             .dilation = {2, 1},
                             .groups = 2});
      },
      {x, w, b});
  KILN_EXPECT_GRADCHECK(
      [](const TensorList& in) {
        return deconv_b(in, {.stride = {2, 2}, .padding = {1, 1}, .groups = 2, .act = Act::silu});
      },
      {x, w, b});
}

// conv -> batch_norm -> relu -> conv with blocked layouts flowing between the ops must equal the
// same chain with contiguous() between every op, forward and backward.
TEST(Conv2d, BlockedLayoutChainMatchesContiguous) {
  Tensor x = test::random_tensor({2, 16, 9, 7}, 1).set_requires_grad();
  Tensor w1 = test::random_tensor({32, 16, 3, 3}, 2, -0.2f, 0.2f).set_requires_grad();
  Tensor b1 = test::random_tensor({32}, 3).set_requires_grad();
  Tensor g = test::random_tensor({32}, 4, 0.5f, 1.5f).set_requires_grad();
  Tensor be = test::random_tensor({32}, 5).set_requires_grad();
  Tensor w2 = test::random_tensor({16, 32, 3, 3}, 6, -0.2f, 0.2f).set_requires_grad();
  Tensor b2 = test::random_tensor({16}, 7).set_requires_grad();
  const TensorList params = {x, w1, b1, g, be, w2, b2};
  auto run = [&](bool plain, bool* saw_blocked) {
    auto p = [&](const Tensor& t) {
      if (saw_blocked != nullptr && t.is_blocked()) *saw_blocked = true;
      return plain ? t.contiguous() : t;
    };
    for (const Tensor& t : params) t.zero_grad();
    Tensor h = p(ops::conv2d(x, w1, b1, {.padding = {1, 1}}));
    h = p(ops::batch_norm(h, g, be, Tensor(), Tensor(), true));
    h = p(ops::relu(h));
    h = p(ops::conv2d(h, w2, b2, {.stride = {2, 2}, .padding = {1, 1}}));
    Tensor r = test::random_tensor(h.shape(), 9);
    ops::sum(ops::mul(h, r)).backward();
    TensorList out = {h.contiguous()};
    for (const Tensor& t : params) out.push_back(t.grad());
    return out;
  };
  bool blocked = false;
  const TensorList fast = run(false, &blocked);
  EXPECT_TRUE(blocked) << "oneDNN chose plain layouts: the test does not exercise blocked ones";
  const TensorList ref = run(true, nullptr);
  for (std::size_t i = 0; i < fast.size(); ++i) {
    EXPECT_TRUE(test::all_close(fast[i], ref[i], 1e-5f, 1e-5f)) << "tensor " << i;
  }
}

TEST(Conv2d, TransposedConvConsumesBlockedInput) {
  Tensor x = test::random_tensor({2, 16, 5, 4}, 1);
  Tensor w1 = test::random_tensor({32, 16, 3, 3}, 2, -0.2f, 0.2f);
  Tensor wt = test::random_tensor({32, 16, 4, 4}, 3, -0.2f, 0.2f).set_requires_grad();
  Tensor h = ops::conv2d(x, w1, Tensor(), {.padding = {1, 1}});
  ASSERT_TRUE(h.is_blocked());
  h.set_requires_grad();  // a leaf in blocked layout
  const ConvTranspose2dOptions o{.stride = {2, 2}, .padding = {1, 1}};
  Tensor y = ops::conv_transpose2d(h, wt, Tensor(), o);
  Tensor r = test::random_tensor(y.shape(), 4);
  ops::sum(ops::mul(y, r)).backward();
  Tensor hp = h.detach().contiguous().set_requires_grad();
  Tensor wt2 = wt.detach().clone().set_requires_grad();
  Tensor y2 = ops::conv_transpose2d(hp, wt2, Tensor(), o);
  ops::sum(ops::mul(y2, r)).backward();
  EXPECT_TRUE(test::all_close(y, y2, 1e-5f, 1e-5f));
  EXPECT_TRUE(test::all_close(h.grad(), hp.grad(), 1e-5f, 1e-5f));
  EXPECT_TRUE(test::all_close(wt.grad(), wt2.grad(), 1e-5f, 1e-5f));
}

TEST(Conv2d, GradientsOfAnySubsetOfInputs) {
  Tensor x = test::random_tensor({2, 3, 6, 5}, 1);
  Tensor w = test::random_tensor({4, 3, 3, 3}, 2);
  Tensor b = test::random_tensor({4}, 3);
  Tensor r = test::random_tensor({2, 4, 6, 5}, 4);
  auto grads = [&](bool gx, bool gw, bool gb) {
    Tensor xs = x.clone().set_requires_grad(gx), ws = w.clone().set_requires_grad(gw);
    Tensor bs = b.clone().set_requires_grad(gb);
    ops::sum(ops::mul(ops::conv2d(xs, ws, bs, {.padding = {1, 1}}), r)).backward();
    return TensorList{xs.grad(), ws.grad(), bs.grad()};
  };
  const TensorList all = grads(true, true, true);
  for (int mask = 1; mask < 8; ++mask) {
    const TensorList some = grads(mask & 1, mask & 2, mask & 4);
    for (std::size_t i = 0; i < 3; ++i) {
      if (mask & (1 << i)) {
        EXPECT_TRUE(test::bitwise_equal(some[i], all[i])) << "mask " << mask << " input " << i;
      } else {
        EXPECT_FALSE(some[i].defined()) << "mask " << mask << " input " << i;
      }
    }
  }
}

TEST(Conv2d, AcceptsStridedViews) {
  Tensor big = test::random_tensor({2, 3, 9, 8}, 1);
  Tensor x = big.slice(2, 1, 8).slice(3, 0, 8, 2);  // [2, 3, 7, 4], not contiguous
  ASSERT_FALSE(x.is_contiguous());
  Tensor w = test::random_tensor({4, 3, 3, 3}, 2);
  EXPECT_TRUE(test::all_close(ops::conv2d(x, w), ops::conv2d(x.contiguous(), w), 0.f, 0.f));
  // A transposed (non-contiguous) weight view.
  Tensor wt = test::random_tensor({3, 4, 3, 3}, 3).transpose(0, 1);
  EXPECT_TRUE(test::all_close(ops::conv2d(x, wt), ops::conv2d(x, wt.contiguous()), 0.f, 0.f));
}

TEST(Conv2d, Bf16CloseToF32) {
  Tensor x = test::random_tensor({2, 16, 6, 5}, 1);
  Tensor w = test::random_tensor({8, 16, 3, 3}, 2, -0.3f, 0.3f);
  Tensor b = test::random_tensor({8}, 3);
  Tensor y32 = ops::conv2d(x, w, b, {.padding = {1, 1}});
  Tensor y16 = ops::conv2d(x, w.to(DType::bf16), b, {.padding = {1, 1}});
  EXPECT_EQ(y16.dtype(), DType::f32);
  EXPECT_TRUE(test::all_close(y16, y32, 2e-2f, 5e-2f));
  Tensor y16x = ops::conv2d(x.to(DType::bf16), w, b, {.padding = {1, 1}});
  EXPECT_TRUE(test::all_close(y16x, y32, 2e-2f, 5e-2f));
  // Gradients come back in the inputs' dtypes, close to the f32 ones.
  Tensor xb = x.to(DType::bf16).set_requires_grad();
  Tensor wb = w.to(DType::bf16).set_requires_grad();
  Tensor xf = x.clone().set_requires_grad();
  Tensor wf = w.clone().set_requires_grad();
  Tensor r = test::random_tensor(y32.shape(), 4);
  ops::sum(ops::mul(ops::conv2d(xb, wb, b, {.padding = {1, 1}}), r)).backward();
  ops::sum(ops::mul(ops::conv2d(xf, wf, b, {.padding = {1, 1}}), r)).backward();
  EXPECT_EQ(xb.grad().dtype(), DType::bf16);
  EXPECT_EQ(wb.grad().dtype(), DType::bf16);
  EXPECT_TRUE(test::all_close(xb.grad(), xf.grad(), 3e-2f, 1e-1f));
  EXPECT_TRUE(test::all_close(wb.grad(), wf.grad(), 3e-2f, 1e-1f));
  // Transposed convolution in bf16.
  Tensor wt = test::random_tensor({16, 4, 4, 4}, 5, -0.3f, 0.3f);
  const ConvTranspose2dOptions o{.stride = {2, 2}, .padding = {1, 1}};
  EXPECT_TRUE(test::all_close(ops::conv_transpose2d(x, wt.to(DType::bf16), Tensor(), o),
                              ops::conv_transpose2d(x, wt, Tensor(), o), 2e-2f, 5e-2f));
}

// precision = bf16 with f32 operands computes exactly what bf16 operands compute, returns f32
// gradients, and sees in-place weight updates through its cached bf16 copy.
TEST(Conv2d, Bf16PrecisionOptionWithF32Weights) {
  Tensor x = test::random_tensor({2, 16, 6, 5}, 1);
  Tensor w = test::random_tensor({8, 16, 3, 3}, 2, -0.3f, 0.3f);
  Tensor b = test::random_tensor({8}, 3);
  const Conv2dOptions o{.padding = {1, 1}, .precision = DType::bf16};
  Tensor y = ops::conv2d(x, w, b, o);
  EXPECT_EQ(y.dtype(), DType::f32);
  EXPECT_TRUE(test::all_close(
      y, ops::conv2d(x.to(DType::bf16), w.to(DType::bf16), b, {.padding = {1, 1}}), 0.f, 0.f));
  EXPECT_FALSE(test::all_close(y, ops::conv2d(x, w, b, {.padding = {1, 1}}), 0.f, 0.f))
      << "the option did not change the computation";

  Tensor xa = x.clone().set_requires_grad(), wa = w.clone().set_requires_grad();
  Tensor xb = x.clone().set_requires_grad(), wb = w.clone().set_requires_grad();
  Tensor r = test::random_tensor(y.shape(), 4);
  ops::sum(ops::mul(ops::conv2d(xa, wa, b, o), r)).backward();
  ops::sum(ops::mul(ops::conv2d(xb, wb.to(DType::bf16), b, {.padding = {1, 1}}), r)).backward();
  EXPECT_EQ(xa.grad().dtype(), DType::f32);
  EXPECT_EQ(wa.grad().dtype(), DType::f32);
  EXPECT_TRUE(test::all_close(xa.grad(), xb.grad(), 0.f, 0.f));
  // The bf16-operand path rounds the weight gradient to bf16; the option keeps it f32.
  EXPECT_TRUE(test::all_close(wa.grad(), wb.grad(), 1e-2f, 1e-3f));

  w.fill_(0.f);  // the cached bf16 weight must follow
  EXPECT_TRUE(test::all_close(ops::conv2d(x, w, b, o),
                              ops::add(Tensor::zeros(y.shape()), b.reshape({1, 8, 1, 1})), 0.f,
                              0.f));

  Tensor wt = test::random_tensor({16, 4, 4, 4}, 5, -0.3f, 0.3f);
  const ConvTranspose2dOptions ot{.stride = {2, 2}, .padding = {1, 1}, .precision = DType::bf16};
  EXPECT_TRUE(test::all_close(
      ops::conv_transpose2d(x, wt, Tensor(), ot),
      ops::conv_transpose2d(x, wt.to(DType::bf16), Tensor(), {.stride = {2, 2}, .padding = {1, 1}}),
      0.f, 0.f));
  // Few output channels: the bf16 option bypasses the f32-only GEMM + col2im route.
  Tensor wn = test::random_tensor({16, 1, 4, 4}, 6, -0.3f, 0.3f);
  EXPECT_TRUE(test::all_close(
      ops::conv_transpose2d(x, wn, Tensor(), ot),
      ops::conv_transpose2d(x, wn.to(DType::bf16), Tensor(), {.stride = {2, 2}, .padding = {1, 1}}),
      0.f, 0.f));
  EXPECT_THROW(ops::conv2d(x, w, b, {.precision = DType::s32}), Error);
}

TEST(Conv2d, FusedActivationsMatchSeparateOps) {
  Tensor x = test::random_tensor({2, 3, 6, 5}, 1);
  Tensor w = test::random_tensor({4, 3, 3, 3}, 2);
  Tensor b = test::random_tensor({4}, 3);
  Tensor z = ops::conv2d(x, w, b, {.padding = {1, 1}});
  for (Act act : {Act::relu, Act::leaky_relu, Act::tanh, Act::sigmoid, Act::gelu, Act::gelu_tanh,
                  Act::silu}) {
    Tensor y = ops::conv2d(x, w, b, {.padding = {1, 1}, .act = act, .act_alpha = 0.1f});
    EXPECT_TRUE(test::all_close(y, ops::activation(z, act, 0.1f), 1e-5f, 1e-6f))
        << "act " << static_cast<int>(act);
  }
}

// A transposed convolution's bias and activation run after the primitive, on its (blocked)
// output, and the bias gradient is reduced from dz in its layout (sdk/src/ops/conv.cpp). Against
// the same op without bias followed by separate add and activation ops: 18 and 33 output
// channels leave a partly padded last channel block; the input comes from a conv, so it is
// blocked too.
TEST(ConvTranspose2d, BiasAndActivationOnBlockedLayoutsMatchSeparateOps) {
  for (const std::int64_t oc : {1, 18, 33}) {
    for (Act act : {Act::none, Act::relu, Act::sigmoid, Act::silu}) {
      SCOPED_TRACE("oc " + std::to_string(oc) + ", act " + std::to_string(static_cast<int>(act)));
      const Tensor x0 = test::random_tensor({3, 16, 5, 4}, 1);
      const Tensor c = test::random_tensor({20, 16, 1, 1}, 2);
      auto run = [&](bool fused) {
        Tensor x = x0.detach().set_requires_grad();
        Tensor w = test::random_tensor({20, oc, 4, 4}, 3).set_requires_grad();
        Tensor b = test::random_tensor({oc}, 4).set_requires_grad();
        const Tensor h = ops::conv2d(x, c, Tensor(), {});  // blocked output
        const ConvTranspose2dOptions o{.stride = {2, 2}, .padding = {1, 1}};
        Tensor y;
        if (fused) {
          ConvTranspose2dOptions f = o;
          f.act = act;
          y = ops::conv_transpose2d(h, w, b, f);
        } else {
          y = ops::activation(ops::conv_transpose2d(h, w, Tensor(), o) + b.view({1, oc, 1, 1}), act,
                              0.f);
        }
        const Tensor g = test::random_tensor(y.shape(), 5);
        ops::sum(y * g).backward();
        return TensorList{y.contiguous(), x.grad(), w.grad(), b.grad()};
      };
      const TensorList fused = run(true), separate = run(false);
      for (std::size_t i = 0; i < fused.size(); ++i) {
        EXPECT_TRUE(test::all_close(fused[i], separate[i], 1e-5f, 1e-5f)) << "output " << i;
      }
    }
  }
}

TEST(Conv2d, PackedWeightCacheSeesInPlaceUpdates) {
  Tensor x = test::random_tensor({2, 16, 5, 5}, 1);
  Tensor w = test::random_tensor({16, 16, 3, 3}, 2);
  Tensor y1 = ops::conv2d(x, w);
  EXPECT_GT(ops::sum(ops::abs(y1)).item(), 0.f);
  w.fill_(0.f);
  EXPECT_EQ(ops::sum(ops::abs(ops::conv2d(x, w))).item(), 0.f);
  Tensor wt = test::random_tensor({16, 8, 3, 3}, 3);
  Tensor z1 = ops::conv_transpose2d(x, wt);
  wt.copy_(ops::mul_scalar(wt, 2.f));
  EXPECT_TRUE(
      test::all_close(ops::conv_transpose2d(x, wt), ops::mul_scalar(z1, 2.f), 1e-5f, 1e-5f));
}

TEST(Conv2d, DeterministicForwardAndBackward) {
  auto run = [] {
    Tensor x = test::random_tensor({4, 16, 11, 9}, 1).set_requires_grad();
    Tensor w = test::random_tensor({32, 16, 3, 3}, 2).set_requires_grad();
    Tensor b = test::random_tensor({32}, 3).set_requires_grad();
    Tensor y = ops::conv2d(x, w, b, {.stride = {2, 2}, .padding = {1, 1}, .act = Act::relu});
    ops::sum(ops::mul(y, test::random_tensor(y.shape(), 4))).backward();
    return TensorList{y.contiguous(), x.grad(), w.grad(), b.grad()};
  };
  const TensorList a = run(), b = run();
  for (std::size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(test::bitwise_equal(a[i], b[i])) << i;
}

TEST(Conv2d, EmptyBatch) {
  Tensor x = Tensor::zeros({0, 3, 5, 5}).set_requires_grad();
  Tensor w = test::random_tensor({4, 3, 3, 3}, 1).set_requires_grad();
  Tensor y = ops::conv2d(x, w, Tensor(), {.padding = {1, 1}});
  EXPECT_EQ(y.shape(), (Shape{0, 4, 5, 5}));
  ops::sum(y).backward();
  EXPECT_EQ(w.grad().shape(), w.shape());
  EXPECT_EQ(ops::sum(ops::abs(w.grad())).item(), 0.f);
}

TEST(Conv2d, RejectsBadArguments) {
  Tensor x = test::random_tensor({2, 6, 7, 5}, 1);
  Tensor w = test::random_tensor({4, 6, 3, 3}, 2);
  auto msg = [](const std::function<void()>& f) {
    try {
      f();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  auto has = [](const std::string& s, const std::string& part) {
    return s.find(part) != std::string::npos;
  };
  EXPECT_TRUE(has(msg([&] { ops::conv2d(x.select(0, 0), w); }), "x must be 4-d"));
  EXPECT_TRUE(has(msg([&] { ops::conv2d(x, w.select(0, 0)); }), "weight must be 4-d"));
  EXPECT_TRUE(has(msg([&] {
                    ops::conv2d(x, test::random_tensor({4, 5, 3, 3}, 1));
                  }),
                  "x has 6 channels"));
  EXPECT_TRUE(
      has(msg([&] { ops::conv2d(x, w, Tensor(), {.groups = 4}); }), "groups=4 does not divide"));
  EXPECT_TRUE(has(msg([&] {
                    ops::conv2d(x, test::random_tensor({5, 3, 3, 3}, 1), Tensor(), {.groups = 2});
                  }),
                  "5 output channels"));
  EXPECT_TRUE(has(msg([&] {
                    ops::conv2d(x, test::random_tensor({4, 6, 3, 7}, 1));
                  }),
                  "more than the padded input"));
  EXPECT_TRUE(has(msg([&] {
                    ops::conv2d(x, w, Tensor(), {.dilation = {4, 1}});
                  }),
                  "dilation {4, 1} spans 9 rows"));
  EXPECT_TRUE(has(msg([&] {
                    ops::conv2d(x, w, Tensor(), {.stride = {0, 1}});
                  }),
                  "stride must be at least 1"));
  EXPECT_TRUE(has(msg([&] {
                    ops::conv2d(x, w, Tensor(), {.padding = {-1, 0}});
                  }),
                  "padding must be non-negative"));
  EXPECT_TRUE(has(msg([&] {
                    ops::conv2d(x, w, Tensor(), {.dilation = {0, 1}});
                  }),
                  "dilation must be at least 1"));
  EXPECT_TRUE(
      has(msg([&] { ops::conv2d(x, w, Tensor(), {.groups = 0}); }), "groups must be at least 1"));
  EXPECT_TRUE(
      has(msg([&] { ops::conv2d(x, w, test::random_tensor({5}, 1)); }), "bias must be [4]"));
  EXPECT_TRUE(has(msg([&] { ops::conv2d(x, w.to(DType::s32)); }), "weight must be f32 or bf16"));
  EXPECT_TRUE(has(msg([&] { ops::conv2d(Tensor(), w); }), "x is undefined"));
  EXPECT_TRUE(has(msg([&] {
                    ops::conv2d(Tensor::zeros({2, 6, 0, 5}), w);
                  }),
                  "at least one channel, row and column"));
}

TEST(ConvTranspose2d, RejectsBadArguments) {
  Tensor x = test::random_tensor({2, 4, 5, 5}, 1);
  Tensor w = test::random_tensor({4, 3, 3, 3}, 2);
  auto msg = [](const std::function<void()>& f) {
    try {
      f();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  auto has = [](const std::string& s, const std::string& part) {
    return s.find(part) != std::string::npos;
  };
  EXPECT_TRUE(has(msg([&] {
                    ops::conv_transpose2d(x, test::random_tensor({5, 3, 3, 3}, 1));
                  }),
                  "in_channels 5 but x has 4 channels"));
  EXPECT_TRUE(has(msg([&] { ops::conv_transpose2d(x, w, Tensor(), {.groups = 3}); }),
                  "groups=3 does not divide"));
  EXPECT_TRUE(
      has(msg([&] {
            ops::conv_transpose2d(x, w, Tensor(), {.stride = {2, 2}, .output_padding = {2, 0}});
          }),
          "smaller than either stride or dilation"));
  EXPECT_TRUE(
      has(msg([&] {
            ops::conv_transpose2d(x, w, Tensor(), {.output_padding = {1, 0}, .dilation = {2, 1}});
          }),
          "oneDNN cannot produce those output rows"));
  EXPECT_TRUE(has(msg([&] {
                    ops::conv_transpose2d(test::random_tensor({1, 4, 1, 1}, 1), w, Tensor(),
                                          {.padding = {2, 0}});
                  }),
                  "the output would have -1 rows"));
  EXPECT_TRUE(has(msg([&] { ops::conv_transpose2d(x, w, test::random_tensor({4}, 1)); }),
                  "bias must be [3]"));
}

}  // namespace
}  // namespace kiln
