#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <string>

#include "kiln/autograd.hpp"
#include "kiln/context.hpp"
#include "kiln/ops.hpp"
#include "kiln/random.hpp"
#include "support/test_support.hpp"

namespace kiln {
namespace {

enum class Kind { lstm, gru };

std::int64_t gates(Kind k) {
  return k == Kind::lstm ? 4 : 3;
}

ops::RnnOutput run(Kind k, const Tensor& x, const Tensor& h0, const Tensor& c0,
                   const ops::RnnWeights& w, float dropout = 0.f, bool training = false,
                   Philox* rng = nullptr) {
  return k == Kind::lstm ? ops::lstm(x, h0, c0, w, dropout, training, rng)
                         : ops::gru(x, h0, w, dropout, training, rng);
}

// Random weights for `layers` layers, seeds from `seed`.
ops::RnnWeights random_weights(Kind k, std::int64_t in, std::int64_t H, std::int64_t layers,
                               std::uint64_t seed, bool requires_grad = false) {
  ops::RnnWeights w;
  const std::int64_t rows = gates(k) * H;
  for (std::int64_t l = 0; l < layers; ++l) {
    const std::uint64_t s = seed + 10 * static_cast<std::uint64_t>(l);
    w.w_ih.push_back(test::random_tensor({rows, l == 0 ? in : H}, s, -0.6f, 0.6f));
    w.w_hh.push_back(test::random_tensor({rows, H}, s + 1, -0.6f, 0.6f));
    w.b_ih.push_back(test::random_tensor({rows}, s + 2, -0.6f, 0.6f));
    w.b_hh.push_back(test::random_tensor({rows}, s + 3, -0.6f, 0.6f));
  }
  if (requires_grad) {
    for (TensorList* list : {&w.w_ih, &w.w_hh, &w.b_ih, &w.b_hh}) {
      for (Tensor& t : *list) t.set_requires_grad();
    }
  }
  return w;
}

// ------------------------------------------------------------------ PyTorch fixtures

struct FixtureCase {
  const char* name;
  Kind kind;
  std::int64_t layers;
  bool state;
};

void check_fixture(const FixtureCase& c) {
  SCOPED_TRACE(c.name);
  static const Safetensors f = test::load_fixture("rnn.safetensors");
  auto get = [&](const std::string& key) { return f.tensors.at(std::string(c.name) + "." + key); };
  Tensor x = get("x").clone().set_requires_grad();
  Tensor h0, c0;
  if (c.state) {
    h0 = get("h0").clone().set_requires_grad();
    if (c.kind == Kind::lstm) c0 = get("c0").clone().set_requires_grad();
  }
  ops::RnnWeights w;
  for (std::int64_t l = 0; l < c.layers; ++l) {
    const std::string sfx = "_l" + std::to_string(l);
    w.w_ih.push_back(get("w_ih" + sfx).clone().set_requires_grad());
    w.w_hh.push_back(get("w_hh" + sfx).clone().set_requires_grad());
    w.b_ih.push_back(get("b_ih" + sfx).clone().set_requires_grad());
    w.b_hh.push_back(get("b_hh" + sfx).clone().set_requires_grad());
  }
  const ops::RnnOutput o = run(c.kind, x, h0, c0, w);
  EXPECT_TRUE(test::all_close(o.y, get("y")));
  EXPECT_TRUE(test::all_close(o.h, get("h")));
  Tensor loss = ops::sum(o.y * get("R1")) + ops::sum(o.h * get("R2"));
  if (c.kind == Kind::lstm) {
    EXPECT_TRUE(test::all_close(o.c, get("c")));
    loss = loss + ops::sum(o.c * get("R3"));
  } else {
    EXPECT_FALSE(o.c.defined());
  }
  loss.backward();
  EXPECT_TRUE(test::all_close(x.grad(), get("grad_x")));
  if (c.state) {
    EXPECT_TRUE(test::all_close(h0.grad(), get("grad_h0")));
    if (c.kind == Kind::lstm) {
      EXPECT_TRUE(test::all_close(c0.grad(), get("grad_c0")));
    }
  }
  for (std::int64_t l = 0; l < c.layers; ++l) {
    const std::string sfx = "_l" + std::to_string(l);
    const std::size_t i = static_cast<std::size_t>(l);
    EXPECT_TRUE(test::all_close(w.w_ih[i].grad(), get("grad_w_ih" + sfx))) << "w_ih" << sfx;
    EXPECT_TRUE(test::all_close(w.w_hh[i].grad(), get("grad_w_hh" + sfx))) << "w_hh" << sfx;
    EXPECT_TRUE(test::all_close(w.b_ih[i].grad(), get("grad_b_ih" + sfx))) << "b_ih" << sfx;
    EXPECT_TRUE(test::all_close(w.b_hh[i].grad(), get("grad_b_hh" + sfx))) << "b_hh" << sfx;
  }
}

TEST(Lstm, MatchesPyTorchOneLayer) {
  check_fixture({"lstm1", Kind::lstm, 1, true});
}
TEST(Lstm, MatchesPyTorchTwoLayersInputNotHidden) {
  check_fixture({"lstm2", Kind::lstm, 2, true});
}
TEST(Lstm, MatchesPyTorchZeroInitialState) {
  check_fixture({"lstm2_zero_state", Kind::lstm, 2, false});
}
TEST(Gru, MatchesPyTorchOneLayer) {
  check_fixture({"gru1", Kind::gru, 1, true});
}
TEST(Gru, MatchesPyTorchTwoLayersInputNotHidden) {
  check_fixture({"gru2", Kind::gru, 2, true});
}

// ------------------------------------------------------------------ finite differences

// L = sum(y*A) + sum(h*B) (+ sum(c*C)) as one scalar, so one gradcheck covers every output.
Tensor projected(Kind k, const ops::RnnOutput& o) {
  Tensor s = ops::sum(o.y * test::random_tensor(o.y.shape(), 91)) +
             ops::sum(o.h * test::random_tensor(o.h.shape(), 92));
  if (k == Kind::lstm) s = s + ops::sum(o.c * test::random_tensor(o.c.shape(), 93));
  return s;
}

// Finite differences call the op hundreds of times on tiny shapes, where a second OpenMP thread
// only adds barrier waits (seconds of them on a loaded machine): the gradchecks run on one.
struct OneThread {
  ThreadBudget saved = thread_budget();
  OneThread() { set_num_threads(1); }
  ~OneThread() { set_thread_budget(saved); }
  OneThread(const OneThread&) = delete;
  OneThread& operator=(const OneThread&) = delete;
};

void gradcheck_case(Kind k, std::int64_t layers, float dropout) {
  OneThread one;
  const std::int64_t T = 3, N = 2, in = 3, H = 4;
  ops::RnnWeights w = random_weights(k, in, H, layers, 100, true);
  TensorList inputs{
      test::random_tensor({T, N, in}, 1).set_requires_grad(),
      test::random_tensor({layers, N, H}, 2).set_requires_grad(),
      k == Kind::lstm ? test::random_tensor({layers, N, H}, 3).set_requires_grad() : Tensor()};
  for (const TensorList* list : {&w.w_ih, &w.w_hh, &w.b_ih, &w.b_hh}) {
    inputs.insert(inputs.end(), list->begin(), list->end());
  }
  const std::size_t L = static_cast<std::size_t>(layers);
  auto fn = [k, L, dropout](const TensorList& in_) {
    ops::RnnWeights ww;
    for (std::size_t l = 0; l < L; ++l) {
      ww.w_ih.push_back(in_[3 + l]);
      ww.w_hh.push_back(in_[3 + L + l]);
      ww.b_ih.push_back(in_[3 + 2 * L + l]);
      ww.b_hh.push_back(in_[3 + 3 * L + l]);
    }
    Philox rng(7, 0, 1);  // the same masks on every call
    return projected(k, run(k, in_[0], in_[1], in_[2], ww, dropout, dropout > 0.f, &rng));
  };
  KILN_EXPECT_GRADCHECK(fn, inputs);
}

TEST(Lstm, GradcheckOneLayer) {
  gradcheck_case(Kind::lstm, 1, 0.f);
}
TEST(Lstm, GradcheckTwoLayers) {
  gradcheck_case(Kind::lstm, 2, 0.f);
}
TEST(Lstm, GradcheckTwoLayersWithDropout) {
  gradcheck_case(Kind::lstm, 2, 0.4f);
}
TEST(Gru, GradcheckOneLayer) {
  gradcheck_case(Kind::gru, 1, 0.f);
}
TEST(Gru, GradcheckTwoLayers) {
  gradcheck_case(Kind::gru, 2, 0.f);
}
TEST(Gru, GradcheckTwoLayersWithDropout) {
  gradcheck_case(Kind::gru, 2, 0.4f);
}

TEST(Lstm, GradcheckWithoutBiasesAndZeroState) {
  OneThread one;
  const std::int64_t T = 3, N = 2, in = 5, H = 4;
  ops::RnnWeights w = random_weights(Kind::lstm, in, H, 2, 300, true);
  w.b_ih.clear();
  w.b_hh.clear();
  TensorList inputs{test::random_tensor({T, N, in}, 4).set_requires_grad()};
  inputs.insert(inputs.end(), w.w_ih.begin(), w.w_ih.end());
  inputs.insert(inputs.end(), w.w_hh.begin(), w.w_hh.end());
  KILN_EXPECT_GRADCHECK(
      [](const TensorList& in_) {
        ops::RnnWeights ww{{in_[1], in_[2]}, {in_[3], in_[4]}, {}, {}};
        return projected(Kind::lstm, ops::lstm(in_[0], Tensor(), Tensor(), ww));
      },
      inputs);
}

// ------------------------------------------------------------------ behaviour

TEST(Rnn, InferenceMatchesTrainingForward) {
  for (Kind k : {Kind::lstm, Kind::gru}) {
    ops::RnnWeights w = random_weights(k, 5, 8, 2, 20, true);
    Tensor x = test::random_tensor({6, 3, 5}, 5);
    Tensor h0 = test::random_tensor({2, 3, 8}, 6);
    Tensor c0 = test::random_tensor({2, 3, 8}, 7);
    const ops::RnnOutput train = run(k, x, h0, c0, w);
    ops::RnnOutput infer;
    {
      NoGradGuard ng;
      infer = run(k, x, h0, c0, w);
    }
    EXPECT_TRUE(train.y.requires_grad());
    EXPECT_FALSE(infer.y.requires_grad());
    EXPECT_TRUE(test::all_close(infer.y, train.y, 1e-5f, 1e-6f));
    EXPECT_TRUE(test::all_close(infer.h, train.h, 1e-5f, 1e-6f));
    if (k == Kind::lstm) {
      EXPECT_TRUE(test::all_close(infer.c, train.c, 1e-5f, 1e-6f));
    }
  }
}

TEST(Rnn, StepByStepDecodingMatchesWholeSequence) {
  for (Kind k : {Kind::lstm, Kind::gru}) {
    NoGradGuard ng;
    ops::RnnWeights w = random_weights(k, 4, 6, 2, 30);
    Tensor x = test::random_tensor({5, 2, 4}, 8);
    const ops::RnnOutput whole = run(k, x, Tensor(), Tensor(), w);
    Tensor h, c;
    for (std::int64_t t = 0; t < 5; ++t) {
      const ops::RnnOutput step = run(k, x.slice(0, t, t + 1), h, c, w);
      EXPECT_TRUE(test::all_close(step.y.select(0, 0), whole.y.select(0, t), 1e-5f, 1e-6f));
      h = step.h;
      c = step.c;
    }
    EXPECT_TRUE(test::all_close(h, whole.h, 1e-5f, 1e-6f));
    if (k == Kind::lstm) {
      EXPECT_TRUE(test::all_close(c, whole.c, 1e-5f, 1e-6f));
    }
  }
}

TEST(Rnn, GradientReachesNonLeafInitialState) {
  for (Kind k : {Kind::lstm, Kind::gru}) {
    ops::RnnWeights w = random_weights(k, 3, 4, 2, 40);
    Tensor x = test::random_tensor({3, 2, 3}, 9);
    Tensor hl = test::random_tensor({2, 2, 4}, 10).set_requires_grad();
    Tensor cl = test::random_tensor({2, 2, 4}, 11).set_requires_grad();
    // Reference: the leaves themselves as the states.
    projected(k, run(k, x, hl, cl, w)).backward();
    const Tensor gh = hl.grad(), gc = cl.grad();
    hl.zero_grad();
    cl.zero_grad();
    // Non-leaf states computed from the leaves: the gradient flows through them.
    Tensor h0 = hl * 2.f, c0 = cl * 3.f;
    ASSERT_FALSE(h0.is_leaf());
    projected(k, run(k, x, h0 * 0.5f, c0 * (1.f / 3.f), w)).backward();
    EXPECT_TRUE(test::all_close(hl.grad(), gh, 1e-5f, 1e-6f));
    if (k == Kind::lstm) {
      EXPECT_TRUE(test::all_close(cl.grad(), gc, 1e-5f, 1e-6f));
    } else {
      EXPECT_FALSE(cl.grad().defined());  // a GRU has no cell state
    }
  }
}

TEST(Rnn, ChunksWithCarriedStateMatchTheWholeSequenceIncludingGradients) {
  // Two calls with the state passed on (not detached) are one call over the concatenated
  // sequence: outputs and every gradient agree, so gradients flow from h0/c0 into the op that
  // produced them.
  for (Kind k : {Kind::lstm, Kind::gru}) {
    ops::RnnWeights w = random_weights(k, 3, 5, 2, 45, true);
    Tensor x = test::random_tensor({6, 2, 3}, 19).set_requires_grad();
    auto grads = [&](const std::function<Tensor()>& loss) {
      for (Tensor t : {x, w.w_ih[0], w.w_hh[1], w.b_hh[0]}) t.zero_grad();
      loss().backward();
      return TensorList{x.grad(), w.w_ih[0].grad(), w.w_hh[1].grad(), w.b_hh[0].grad()};
    };
    const Tensor r = test::random_tensor({2, 2, 5}, 20);
    const TensorList whole = grads([&] {
      const ops::RnnOutput o = run(k, x, Tensor(), Tensor(), w);
      return ops::sum(o.y.slice(0, 4, 6) * r) + ops::sum(o.h * r);
    });
    const TensorList chunked = grads([&] {
      const ops::RnnOutput a = run(k, x.slice(0, 0, 4), Tensor(), Tensor(), w);
      const ops::RnnOutput b = run(k, x.slice(0, 4, 6), a.h, a.c, w);
      return ops::sum(b.y * r) + ops::sum(b.h * r);
    });
    for (std::size_t i = 0; i < whole.size(); ++i) {
      EXPECT_TRUE(test::all_close(chunked[i], whole[i], 1e-5f, 1e-6f)) << "gradient " << i;
    }
  }
}

TEST(Rnn, WeightUpdatesInvalidateCachedLayouts) {
  for (Kind k : {Kind::lstm, Kind::gru}) {
    NoGradGuard ng;
    ops::RnnWeights w = random_weights(k, 5, 8, 2, 50);
    Tensor x = test::random_tensor({4, 3, 5}, 12);
    const ops::RnnOutput before = run(k, x, Tensor(), Tensor(), w);
    // In-place writes (as an optimiser step does) must be seen by the next call.
    w.w_ih[0].copy_(test::random_tensor(w.w_ih[0].shape(), 60));
    w.w_hh[1].copy_(test::random_tensor(w.w_hh[1].shape(), 61));
    const ops::RnnOutput after = run(k, x, Tensor(), Tensor(), w);
    ops::RnnWeights fresh = w;
    fresh.w_ih[0] = w.w_ih[0].clone();
    fresh.w_hh[1] = w.w_hh[1].clone();
    const ops::RnnOutput ref = run(k, x, Tensor(), Tensor(), fresh);
    EXPECT_FALSE(test::all_close(after.y, before.y));
    EXPECT_TRUE(test::all_close(after.y, ref.y, 0.f, 0.f));
  }
}

TEST(Rnn, StridedWeightsAndInputs) {
  for (Kind k : {Kind::lstm, Kind::gru}) {
    NoGradGuard ng;
    ops::RnnWeights w = random_weights(k, 6, 5, 1, 70);
    Tensor x = test::random_tensor({2, 4, 6}, 13);
    const ops::RnnOutput ref = run(k, x, Tensor(), Tensor(), w);
    // The same values through transposed storage.
    ops::RnnWeights wt = w;
    wt.w_ih[0] = w.w_ih[0].transpose(0, 1).contiguous().transpose(0, 1);
    wt.w_hh[0] = w.w_hh[0].transpose(0, 1).contiguous().transpose(0, 1);
    Tensor xt = x.transpose(0, 1).contiguous().transpose(0, 1);
    ASSERT_FALSE(wt.w_ih[0].is_contiguous());
    const ops::RnnOutput o = run(k, xt, Tensor(), Tensor(), wt);
    EXPECT_TRUE(test::all_close(o.y, ref.y, 1e-6f, 1e-7f));
  }
}

// ------------------------------------------------------------------ bf16 inference

void expect_error(const std::function<void()>& f, const std::string& needle);  // below

Tensor bf16_round(const Tensor& t) {
  return t.defined() ? t.to(DType::bf16).to(DType::f32) : t;
}

// A reduced-precision RNN emulated with the f32 op one layer and one step at a time: layer l
// runs on weights(l); the input (already rounded by the caller), the initial hidden state and
// every hidden state it produces go through round_state (each layer's output is its hidden
// state, so the next layer reads it rounded too); biases, the cell state and the arithmetic f32.
ops::RnnOutput stepwise_reference(Kind k, const Tensor& x, const Tensor& h0, const Tensor& c0,
                                  std::int64_t L, std::int64_t H,
                                  const std::function<ops::RnnWeights(std::size_t)>& weights,
                                  const std::function<Tensor(const Tensor&)>& round_state) {
  const std::int64_t T = x.size(0), N = x.size(1);
  Tensor in = x;
  TensorList hs, cs;
  for (std::int64_t l = 0; l < L; ++l) {
    const ops::RnnWeights wl = weights(static_cast<std::size_t>(l));
    Tensor h = h0.defined() ? round_state(h0.slice(0, l, l + 1)) : Tensor::zeros({1, N, H});
    Tensor c = c0.defined() ? c0.slice(0, l, l + 1) : Tensor::zeros({1, N, H});
    TensorList ys;
    for (std::int64_t t = 0; t < T; ++t) {
      const ops::RnnOutput o = run(k, in.slice(0, t, t + 1), h, k == Kind::lstm ? c : Tensor(), wl);
      h = round_state(o.h);
      c = o.c;
      ys.push_back(h);
    }
    in = ops::concat(ys, 0);
    hs.push_back(h);
    cs.push_back(c);
  }
  ops::RnnOutput r;
  r.y = in;
  r.h = ops::concat(hs, 0);
  if (k == Kind::lstm) r.c = ops::concat(cs, 0);
  return r;
}

// What oneDNN's bf16 RNN computes: weights, the input and every hidden state rounded to bf16.
ops::RnnOutput bf16_reference(Kind k, const Tensor& x, const Tensor& h0, const Tensor& c0,
                              const ops::RnnWeights& w) {
  return stepwise_reference(
      k, bf16_round(x), h0, c0, static_cast<std::int64_t>(w.w_ih.size()), w.w_hh[0].size(1),
      [&](std::size_t i) {
        return ops::RnnWeights{
            {bf16_round(w.w_ih[i])}, {bf16_round(w.w_hh[i])}, {w.b_ih[i]}, {w.b_hh[i]}};
      },
      [](const Tensor& t) { return bf16_round(t); });
}

ops::RnnOutput run_bf16(Kind k, const Tensor& x, const Tensor& h0, const Tensor& c0,
                        const ops::RnnWeights& w) {
  return k == Kind::lstm ? ops::lstm(x, h0, c0, w, DType::bf16) : ops::gru(x, h0, w, DType::bf16);
}

TEST(Rnn, Bf16MatchesARoundedF32Reference) {
  for (Kind k : {Kind::lstm, Kind::gru}) {
    for (bool state : {true, false}) {
      SCOPED_TRACE(std::string(k == Kind::lstm ? "lstm" : "gru") + (state ? " with" : " without") +
                   " initial state");
      NoGradGuard ng;
      const ops::RnnWeights w = random_weights(k, 24, 40, 2, 90);
      const Tensor x = test::random_tensor({9, 5, 24}, 15);
      const Tensor h0 = state ? test::random_tensor({2, 5, 40}, 16) : Tensor();
      const Tensor c0 = state ? test::random_tensor({2, 5, 40}, 17) : Tensor();
      const ops::RnnOutput o = run_bf16(k, x, h0, c0, w);
      const ops::RnnOutput ref = bf16_reference(k, x, h0, c0, w);
      EXPECT_EQ(o.y.dtype(), DType::f32);
      EXPECT_EQ(o.y.shape(), (Shape{9, 5, 40}));
      EXPECT_EQ(o.h.shape(), (Shape{2, 5, 40}));
      // On this machine the two agree exactly. Another summation order could round a hidden
      // value lying at a bf16 tie the other way: one bf16 step (2^-8 relative) apart.
      EXPECT_TRUE(test::all_close(o.y, ref.y, 4e-3f, 1e-4f));
      EXPECT_TRUE(test::all_close(o.h, ref.h, 4e-3f, 1e-4f));
      if (k == Kind::lstm) {
        EXPECT_TRUE(test::all_close(o.c, ref.c, 4e-3f, 1e-4f));
      } else {
        EXPECT_FALSE(o.c.defined());
      }
      // And it is not the f32 result: the rounding is real.
      const ops::RnnOutput f32 = run(k, x, h0, c0, w);
      EXPECT_FALSE(test::all_close(o.y, f32.y, 1e-5f, 1e-6f));
      EXPECT_TRUE(test::all_close(o.y, f32.y, 5e-2f, 2e-2f));
    }
  }
}

TEST(Rnn, Bf16StepByStepMatchesWholeSequence) {
  for (Kind k : {Kind::lstm, Kind::gru}) {
    NoGradGuard ng;
    const ops::RnnWeights w = random_weights(k, 8, 16, 2, 95);
    const Tensor x = test::random_tensor({6, 3, 8}, 18);
    const ops::RnnOutput whole = run_bf16(k, x, Tensor(), Tensor(), w);
    Tensor h, c;
    for (std::int64_t t = 0; t < 6; ++t) {
      const ops::RnnOutput step = run_bf16(k, x.slice(0, t, t + 1), h, c, w);
      // The state handed back in f32 is exactly the bf16 state the primitive keeps.
      EXPECT_TRUE(test::all_close(step.y.select(0, 0), whole.y.select(0, t), 0.f, 0.f));
      h = step.h;
      c = step.c;
    }
    EXPECT_TRUE(test::all_close(h, whole.h, 0.f, 0.f));
    if (k == Kind::lstm) {
      EXPECT_TRUE(test::all_close(c, whole.c, 1e-6f, 1e-7f));
    }
  }
}

TEST(Rnn, Bf16SeesWeightUpdates) {
  NoGradGuard ng;
  ops::RnnWeights w = random_weights(Kind::lstm, 5, 8, 2, 97);
  const Tensor x = test::random_tensor({4, 3, 5}, 19);
  const ops::RnnOutput before = ops::lstm(x, Tensor(), Tensor(), w, DType::bf16);
  w.w_hh[1].copy_(test::random_tensor(w.w_hh[1].shape(), 98));
  const ops::RnnOutput after = ops::lstm(x, Tensor(), Tensor(), w, DType::bf16);
  ops::RnnWeights fresh = w;
  fresh.w_hh[1] = w.w_hh[1].clone();
  const ops::RnnOutput ref = ops::lstm(x, Tensor(), Tensor(), fresh, DType::bf16);
  EXPECT_FALSE(test::all_close(after.y, before.y));
  EXPECT_TRUE(test::all_close(after.y, ref.y, 0.f, 0.f));
}

TEST(Rnn, Bf16IsForInferenceOnly) {
  const ops::RnnWeights w = random_weights(Kind::lstm, 5, 6, 1, 99, true);
  const Tensor x = test::random_tensor({2, 3, 5}, 20);
  expect_error([&] { ops::lstm(x, Tensor(), Tensor(), w, DType::bf16); },
               "lstm: bf16 precision is for inference; an input or weight requires a gradient");
  expect_error([&] { ops::lstm(x, Tensor(), Tensor(), w, DType::s32); },
               "lstm: precision must be f32 or bf16, got s32");
  NoGradGuard ng;
  EXPECT_NO_THROW(ops::lstm(x, Tensor(), Tensor(), w, DType::bf16));
}

// ------------------------------------------------------------------ int8 inference

// v quantized as Int8Lstm's layer inputs and hidden states are: round(127 v / bound + 128)
// clipped to [1, 255], mapped back to bound * (q - 128) / 127.
Tensor u8_round(const Tensor& t, float bound = 1.f) {
  Tensor out = t.contiguous().clone();
  float* p = out.data<float>();
  for (std::int64_t i = 0; i < out.numel(); ++i) {
    const float q = std::clamp(std::nearbyint(p[i] * (127.f / bound) + 128.f), 1.f, 255.f);
    p[i] = (q - 128.f) / 127.f * bound;
  }
  return out;
}

// Layer l's weights as the s8 quantization leaves them: each gate row of
// [bound * w_ih | w_hh] rounded on the grid max|row| / levels (127, or 63 without VNNI), then
// w_ih divided by bound again.
ops::RnnWeights int8_layer(const ops::RnnWeights& w, std::size_t l, float bound, float levels) {
  Tensor wi = w.w_ih[l].contiguous().clone(), wh = w.w_hh[l].contiguous().clone();
  const std::int64_t rows = wi.size(0), in = wi.size(1), H = wh.size(1);
  float* a = wi.data<float>();
  float* b = wh.data<float>();
  for (std::int64_t r = 0; r < rows; ++r) {
    float m = 0.f;
    for (std::int64_t k = 0; k < in; ++k) m = std::max(m, std::abs(a[r * in + k] * bound));
    for (std::int64_t k = 0; k < H; ++k) m = std::max(m, std::abs(b[r * H + k]));
    const float s = levels / m;
    for (std::int64_t k = 0; k < in; ++k) {
      a[r * in + k] = std::nearbyint(a[r * in + k] * bound * s) / s / bound;
    }
    for (std::int64_t k = 0; k < H; ++k) b[r * H + k] = std::nearbyint(b[r * H + k] * s) / s;
  }
  return {{wi}, {wh}, {w.b_ih[l]}, {w.b_hh[l]}};
}

// What oneDNN's int8 LSTM computes, emulated with the f32 op one layer and one step at a time on
// the quantized weights, every layer input and hidden state on the u8 grid.
ops::RnnOutput int8_reference(const Tensor& x, const Tensor& h0, const Tensor& c0,
                              const ops::RnnWeights& w, float bound, float levels) {
  return stepwise_reference(
      Kind::lstm, u8_round(x, bound), h0, c0, static_cast<std::int64_t>(w.w_ih.size()),
      w.w_hh[0].size(1),
      [&](std::size_t i) { return int8_layer(w, i, i == 0 ? bound : 1.f, levels); },
      [](const Tensor& t) { return u8_round(t); });
}

// The fraction of elements of a and b within `tol` of each other.
double fraction_close(const Tensor& a, const Tensor& b, float tol) {
  const Tensor ac = a.contiguous(), bc = b.contiguous();
  const float* p = ac.data<float>();
  const float* q = bc.data<float>();
  std::int64_t n = 0;
  for (std::int64_t i = 0; i < ac.numel(); ++i) n += std::abs(p[i] - q[i]) <= tol ? 1 : 0;
  return static_cast<double>(n) / static_cast<double>(ac.numel());
}

TEST(Rnn, Int8MatchesAQuantizedF32Reference) {
  for (bool state : {true, false}) {
    for (float bound : {1.f, 3.f}) {
      SCOPED_TRACE(std::string(state ? "with" : "without") + " initial state, input bound " +
                   std::to_string(bound));
      NoGradGuard ng;
      const ops::RnnWeights w = random_weights(Kind::lstm, 24, 40, 2, 90);
      const Tensor x = test::random_tensor({9, 5, 24}, 15, -bound, bound);
      const Tensor h0 = state ? test::random_tensor({2, 5, 40}, 16) : Tensor();
      const Tensor c0 = state ? test::random_tensor({2, 5, 40}, 17) : Tensor();
      const ops::Int8Lstm q(w, bound);
      EXPECT_EQ(q.num_layers(), 2);
      EXPECT_EQ(q.input_size(), 24);
      EXPECT_EQ(q.hidden_size(), 40);
      const ops::RnnOutput o = q.forward(x, h0, c0);
      const ops::RnnOutput ref = int8_reference(x, h0, c0, w, bound, q.weight_max());
      EXPECT_EQ(o.y.dtype(), DType::f32);
      EXPECT_EQ(o.y.shape(), (Shape{9, 5, 40}));
      EXPECT_EQ(o.h.shape(), (Shape{2, 5, 40}));
      EXPECT_EQ(o.c.shape(), (Shape{2, 5, 40}));
      // The integer dot products are exact; only a value at a rounding boundary of the u8 grid
      // can land one step (1/127) the other way, and move what follows it by less than that.
      EXPECT_TRUE(test::all_close(o.y, ref.y, 0.f, 1.5f / 127.f));
      EXPECT_TRUE(test::all_close(o.c, ref.c, 0.f, 1.5f / 127.f));
      EXPECT_GE(fraction_close(o.y, ref.y, 1e-5f), 0.99);
      EXPECT_GE(fraction_close(o.h, ref.h, 1e-5f), 0.99);
      EXPECT_GE(fraction_close(o.c, ref.c, 1e-4f), 0.99);
      // Every output lies on the u8 grid.
      EXPECT_TRUE(test::all_close(o.y, u8_round(o.y), 0.f, 1e-6f));
      // And it is not the f32 result, though close to it: the quantization is real.
      const ops::RnnOutput f32 = ops::lstm(x, h0, c0, w);
      EXPECT_FALSE(test::all_close(o.y, f32.y, 0.f, 1e-3f));
      EXPECT_TRUE(test::all_close(o.y, f32.y, 0.f, 0.1f));
    }
  }
}

TEST(Rnn, Int8InputsBeyondTheBoundSaturate) {
  NoGradGuard ng;
  const ops::RnnWeights w = random_weights(Kind::lstm, 6, 8, 1, 91);
  const Tensor x = test::random_tensor({3, 2, 6}, 21, -4.f, 4.f);
  const ops::Int8Lstm q(w, 2.f);
  const Tensor clipped = ops::clamp(x, -2.f, 2.f);
  EXPECT_TRUE(test::all_close(q.forward(x).y, q.forward(clipped).y, 0.f, 0.f));
  EXPECT_FALSE(test::all_close(q.forward(x).y, ops::Int8Lstm(w, 4.f).forward(x).y, 0.f, 1e-4f));
}

TEST(Rnn, Int8StepByStepMatchesWholeSequence) {
  NoGradGuard ng;
  const ops::RnnWeights w = random_weights(Kind::lstm, 8, 16, 2, 95);
  const Tensor x = test::random_tensor({6, 3, 8}, 18);
  const ops::Int8Lstm q(w);
  const ops::RnnOutput whole = q.forward(x);
  Tensor h, c;
  for (std::int64_t t = 0; t < 6; ++t) {
    const ops::RnnOutput step = q.forward(x.slice(0, t, t + 1), h, c);
    // The f32 state handed back is exactly the u8 state the primitive keeps.
    EXPECT_TRUE(test::all_close(step.y.select(0, 0), whole.y.select(0, t), 0.f, 1e-6f));
    h = step.h;
    c = step.c;
  }
  EXPECT_TRUE(test::all_close(h, whole.h, 0.f, 1e-6f));
  EXPECT_TRUE(test::all_close(c, whole.c, 1e-5f, 1e-6f));
}

TEST(Rnn, Int8KeepsASnapshotOfTheWeightsAndServesManyShapes) {
  NoGradGuard ng;
  const ops::RnnWeights original = random_weights(Kind::lstm, 5, 8, 2, 97);
  ops::RnnWeights w = random_weights(Kind::lstm, 5, 8, 2, 97);
  const ops::Int8Lstm q(w);
  const Tensor x = test::random_tensor({4, 3, 5}, 19);
  const ops::RnnOutput before = q.forward(x);
  w.w_hh[1].copy_(test::random_tensor(w.w_hh[1].shape(), 98));
  EXPECT_TRUE(test::all_close(q.forward(x).y, before.y, 0.f, 0.f));
  EXPECT_FALSE(test::all_close(ops::Int8Lstm(w).forward(x).y, before.y, 0.f, 1e-4f));
  // More (T, N) shapes than it keeps prepared, then the first again.
  for (std::int64_t n = 1; n <= 10; ++n) {
    const Tensor xn = test::random_tensor({2, n, 5}, 30 + static_cast<std::uint64_t>(n));
    const ops::RnnOutput o = q.forward(xn);
    EXPECT_EQ(o.y.shape(), (Shape{2, n, 8}));
    EXPECT_TRUE(test::all_close(
        o.y, int8_reference(xn, Tensor(), Tensor(), original, 1.f, q.weight_max()).y, 0.f,
        1.5f / 127.f));
  }
  EXPECT_TRUE(test::all_close(q.forward(x).y, before.y, 0.f, 0.f));
}

TEST(Rnn, Int8RejectsBadArguments) {
  const ops::RnnWeights w = random_weights(Kind::lstm, 5, 6, 2, 99);
  const Tensor x = test::random_tensor({2, 3, 5}, 20);
  expect_error([&] { ops::Int8Lstm(w, 0.f); }, "Int8Lstm: input_bound must be a positive finite");
  expect_error([&] { ops::Int8Lstm(w, std::nanf("")); }, "input_bound must be a positive finite");
  expect_error([&] { ops::Int8Lstm(ops::RnnWeights{}); }, "Int8Lstm: w_ih[0] must be a 2-d");
  expect_error([&] { ops::Int8Lstm(random_weights(Kind::gru, 5, 6, 1, 1)); },
               "lstm: w_ih[0] must have shape [24, 5], got [18, 5]");
  ops::RnnWeights bad = random_weights(Kind::lstm, 5, 6, 1, 2);
  bad.w_hh[0].data<float>()[7] = std::numeric_limits<float>::infinity();
  expect_error([&] { ops::Int8Lstm{bad}; },
               "Int8Lstm: layer 0 gate row 1 holds a non-finite weight");
  const ops::Int8Lstm q(w);
  expect_error(
      [&] {
        q.forward(test::random_tensor({2, 3, 4}, 1));
      },
      "Int8Lstm: x has 4 features but the weights take 5");
  expect_error([&] { q.forward(test::random_tensor({3, 5}, 1)); }, "Int8Lstm: x");
  expect_error(
      [&] {
        q.forward(x, test::random_tensor({1, 3, 6}, 2));
      },
      "Int8Lstm: h0 must have shape [num_layers, N, H] = [2, 3, 6], got [1, 3, 6]");
  Tensor xg = x.clone();
  xg.set_requires_grad();
  expect_error([&] { q.forward(xg); }, "Int8Lstm: int8 is for inference");
}

// ------------------------------------------------------------------ dropout

TEST(Rnn, DropoutIsDeterministicPerGenerator) {
  for (Kind k : {Kind::lstm, Kind::gru}) {
    ops::RnnWeights w = random_weights(k, 5, 16, 3, 80);
    Tensor x = test::random_tensor({7, 4, 5}, 14);
    auto y_for = [&](std::uint64_t seed, bool training) {
      Philox rng(seed, 3, 1);
      return run(k, x, Tensor(), Tensor(), w, 0.5f, training, &rng).y;
    };
    const Tensor a = y_for(1, true), b = y_for(1, true), other = y_for(2, true);
    EXPECT_TRUE(test::all_close(a, b, 0.f, 0.f));
    EXPECT_FALSE(test::all_close(a, other));
    // Evaluation mode ignores dropout (and the generator).
    const Tensor eval = y_for(1, false);
    const Tensor plain = run(k, x, Tensor(), Tensor(), w).y;
    EXPECT_TRUE(test::all_close(eval, plain, 0.f, 0.f));
    EXPECT_FALSE(test::all_close(a, plain));
    // The generator advances: a second call with the same object draws new masks.
    Philox rng(1, 3, 1);
    const Tensor first = run(k, x, Tensor(), Tensor(), w, 0.5f, true, &rng).y;
    const Tensor second = run(k, x, Tensor(), Tensor(), w, 0.5f, true, &rng).y;
    EXPECT_TRUE(test::all_close(first, a, 0.f, 0.f));
    EXPECT_FALSE(test::all_close(first, second));
  }
}

TEST(Rnn, DropoutOneFeedsZerosToTheNextLayer) {
  for (Kind k : {Kind::lstm, Kind::gru}) {
    NoGradGuard ng;
    ops::RnnWeights w = random_weights(k, 5, 6, 2, 90);
    Tensor x = test::random_tensor({4, 3, 5}, 15);
    Tensor h0 = test::random_tensor({2, 3, 6}, 16);
    Tensor c0 = test::random_tensor({2, 3, 6}, 17);
    Philox rng(5);
    const ops::RnnOutput o = run(k, x, h0, c0, w, 1.f, true, &rng);
    // Layer 1 alone on a zero input, from its own initial state.
    ops::RnnWeights top{{w.w_ih[1]}, {w.w_hh[1]}, {w.b_ih[1]}, {w.b_hh[1]}};
    const ops::RnnOutput ref =
        run(k, Tensor::zeros({4, 3, 6}), h0.slice(0, 1, 2), c0.slice(0, 1, 2), top);
    EXPECT_TRUE(test::all_close(o.y, ref.y, 1e-6f, 1e-7f));
  }
}

TEST(Rnn, DropoutMasksAFractionPAndScalesTheRest) {
  // Layer 1 is rigged so that its output is tanh(tanh(u)) of its input u elementwise: the input
  // gate and output gate saturate at 1, the forget gate at 0, and the candidate reads u through an
  // identity. Comparing with layer 0's own output y0 then exposes the mask: u = 0 or y0 / (1-p).
  NoGradGuard ng;
  const std::int64_t T = 16, N = 16, H = 8;
  const float p = 0.25f;
  ops::RnnWeights w = random_weights(Kind::lstm, 5, H, 2, 95);
  std::vector<float> wih(static_cast<std::size_t>(4 * H * H), 0.f), bih(4 * H, 0.f);
  for (std::int64_t j = 0; j < H; ++j) {
    wih[static_cast<std::size_t>((2 * H + j) * H + j)] = 1.f;
    bih[static_cast<std::size_t>(j)] = 100.f;          // i
    bih[static_cast<std::size_t>(H + j)] = -100.f;     // f
    bih[static_cast<std::size_t>(3 * H + j)] = 100.f;  // o
  }
  w.w_ih[1] = Tensor::from_vector(wih, {4 * H, H});
  w.w_hh[1] = Tensor::zeros({4 * H, H});
  w.b_ih[1] = Tensor::from_vector(bih, {4 * H});
  w.b_hh[1] = Tensor::zeros({4 * H});
  Tensor x = test::random_tensor({T, N, 5}, 18, -2.f, 2.f);
  Philox rng(11);
  const std::vector<float> y =
      run(Kind::lstm, x, Tensor(), Tensor(), w, p, true, &rng).y.to_vector();
  ops::RnnWeights bottom{{w.w_ih[0]}, {w.w_hh[0]}, {w.b_ih[0]}, {w.b_hh[0]}};
  const std::vector<float> y0 = run(Kind::lstm, x, Tensor(), Tensor(), bottom).y.to_vector();
  int dropped = 0;
  for (std::size_t i = 0; i < y.size(); ++i) {
    if (std::fabs(y[i]) < 1e-20f) {
      ++dropped;
      continue;
    }
    ASSERT_NEAR(y[i], std::tanh(std::tanh(y0[i] / (1.f - p))), 2e-6f) << "element " << i;
  }
  EXPECT_NEAR(static_cast<double>(dropped) / static_cast<double>(y.size()), p, 0.04);
}

// ------------------------------------------------------------------ errors

void expect_error(const std::function<void()>& f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "expected kiln::Error containing '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos)
        << "message: " << e.what() << "\nexpected to contain: " << needle;
  }
}

TEST(Rnn, RejectsBadArguments) {
  ops::RnnWeights w = random_weights(Kind::lstm, 5, 6, 2, 1);
  Tensor x = test::random_tensor({4, 3, 5}, 1);
  expect_error([&] { ops::lstm(x.select(0, 0), Tensor(), Tensor(), w); },
               "lstm: x must be 3-d [T, N, input_size], got shape [3, 5]");
  expect_error(
      [&] {
        ops::lstm(test::random_tensor({4, 3, 7}, 1), Tensor(), Tensor(), w);
      },
      "lstm: w_ih[0] must have shape [24, 7], got [24, 5]");
  ops::RnnWeights bad = w;
  bad.w_hh[1] = test::random_tensor({24, 5}, 2);
  expect_error([&] { ops::lstm(x, Tensor(), Tensor(), bad); },
               "lstm: w_hh[1] must have shape [24, 6], got [24, 5]");
  bad = w;
  bad.w_ih[1] = test::random_tensor({24, 5}, 2);
  expect_error([&] { ops::lstm(x, Tensor(), Tensor(), bad); },
               "lstm: w_ih[1] must have shape [24, 6], got [24, 5]");
  bad = w;
  bad.b_hh[0] = test::random_tensor({23}, 2);
  expect_error([&] { ops::lstm(x, Tensor(), Tensor(), bad); },
               "lstm: b_hh[0] must have shape [24], got [23]");
  bad = w;
  bad.w_hh.pop_back();
  expect_error([&] { ops::lstm(x, Tensor(), Tensor(), bad); },
               "lstm: w_ih has 2 layers but w_hh has 1");
  bad = w;
  bad.b_ih.pop_back();
  expect_error([&] { ops::lstm(x, Tensor(), Tensor(), bad); }, "b_ih has 1");
  bad = w;
  bad.w_ih[0] = w.w_ih[0].to(DType::bf16);
  expect_error([&] { ops::lstm(x, Tensor(), Tensor(), bad); },
               "lstm: w_ih[0] must be f32, got bf16");
  expect_error(
      [&] {
        ops::lstm(x, test::random_tensor({2, 4, 6}, 3), Tensor(), w);
      },
      "lstm: h0 must have shape [num_layers, N, H] = [2, 3, 6], got [2, 4, 6]");
  expect_error(
      [&] {
        ops::lstm(x, Tensor(), test::random_tensor({1, 3, 6}, 3), w);
      },
      "lstm: c0 must have shape [num_layers, N, H] = [2, 3, 6], got [1, 3, 6]");
  expect_error([&] { ops::lstm(x, Tensor(), Tensor(), w, 0.5f, true, nullptr); },
               "needs a random generator");
  expect_error([&] { ops::lstm(x, Tensor(), Tensor(), w, 1.5f); },
               "lstm: dropout must be in [0, 1], got 1.5");
  expect_error([&] { ops::lstm(x, Tensor(), Tensor(), ops::RnnWeights{}); },
               "lstm: the weights have no layer");
  expect_error([&] { ops::lstm(Tensor::zeros({0, 3, 5}), Tensor(), Tensor(), w); }, "non-empty");
  expect_error(
      [&] {
        ops::lstm(Tensor::zeros({4, 3, 5}, DType::s32), Tensor(), Tensor(), w);
      },
      "lstm: x must be a floating tensor, got s32");
  // GRU weights are 3 gates tall; LSTM's are refused with the expected shape.
  expect_error([&] { ops::gru(x, Tensor(), w); },
               "gru: w_ih[0] must have shape [18, 5], got [24, 5]");
}

}  // namespace
}  // namespace kiln
