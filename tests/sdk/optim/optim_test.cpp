#include <gtest/gtest.h>

#include <oneapi/tbb/global_control.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <limits>

#include "kiln/optim.hpp"
#include "kiln/safetensors.hpp"
#include "support/test_support.hpp"

namespace kiln::optim {
namespace {

constexpr int kSteps = 5;
const char* const kParamNames[] = {"w", "b", "c"};

// The configurations of tests/fixtures/gen/optim_fixture.py (its metadata is checked against
// `json` so the two cannot drift apart).
struct Config {
  const char* name;
  const char* json;
  std::function<std::unique_ptr<Optimizer>(nn::NamedTensors)> make;
};

std::vector<Config> configs() {
  return {
      {"sgd", R"({"kind": "SGD", "lr": 0.1})",
       [](nn::NamedTensors p) {
         return std::make_unique<SGD>(std::move(p), SgdOptions{.lr = 0.1f});
       }},
      {"sgd_momentum",
       R"({"kind": "SGD", "lr": 0.1, "momentum": 0.9, "dampening": 0.25, "weight_decay": 0.01})",
       [](nn::NamedTensors p) {
         return std::make_unique<SGD>(
             std::move(p),
             SgdOptions{.lr = 0.1f, .momentum = 0.9f, .dampening = 0.25f, .weight_decay = 0.01f});
       }},
      {"sgd_nesterov",
       R"({"kind": "SGD", "lr": 0.05, "momentum": 0.8, "weight_decay": 0.001, "nesterov": true})",
       [](nn::NamedTensors p) {
         return std::make_unique<SGD>(
             std::move(p),
             SgdOptions{.lr = 0.05f, .momentum = 0.8f, .weight_decay = 0.001f, .nesterov = true});
       }},
      {"adam", R"({"kind": "Adam", "lr": 0.01})",
       [](nn::NamedTensors p) {
         return std::make_unique<Adam>(std::move(p), AdamOptions{.lr = 0.01f});
       }},
      {"adam_wd",
       R"({"kind": "Adam", "lr": 0.02, "betas": [0.8, 0.99], "eps": 1e-06, "weight_decay": 0.1})",
       [](nn::NamedTensors p) {
         return std::make_unique<Adam>(
             std::move(p),
             AdamOptions{
                 .lr = 0.02f, .beta1 = 0.8f, .beta2 = 0.99f, .eps = 1e-6f, .weight_decay = 0.1f});
       }},
      {"adamw", R"({"kind": "AdamW", "lr": 0.01, "weight_decay": 0.1})",
       [](nn::NamedTensors p) {
         return std::make_unique<AdamW>(std::move(p),
                                        AdamOptions{.lr = 0.01f, .weight_decay = 0.1f});
       }},
      {"adamw_betas",
       R"({"kind": "AdamW", "lr": 0.03, "betas": [0.5, 0.9], "eps": 0.0001, "weight_decay": 0.5})",
       [](nn::NamedTensors p) {
         return std::make_unique<AdamW>(
             std::move(p),
             AdamOptions{
                 .lr = 0.03f, .beta1 = 0.5f, .beta2 = 0.9f, .eps = 1e-4f, .weight_decay = 0.5f});
       }},
  };
}

const Safetensors& fixture() {
  static const Safetensors f = test::load_fixture("optim.safetensors");
  return f;
}
Tensor fx(const std::string& key) {
  const auto it = fixture().tensors.find(key);
  if (it == fixture().tensors.end()) throw Error("optim fixture has no '" + key + "'");
  return it->second;
}

nn::NamedTensors fresh_params() {
  nn::NamedTensors p;
  for (const char* n : kParamNames)
    p.emplace_back(n, fx(std::string("init.") + n).clone().set_requires_grad());
  return p;
}

void set_grads(const nn::NamedTensors& params, int step) {
  for (const auto& [n, p] : params)
    p.set_grad(fx("grad." + std::to_string(step) + "." + n).clone());
}

bool bitwise_equal(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != b.dtype()) return false;
  const Tensor ca = a.contiguous(), cb = b.contiguous();
  return std::memcmp(ca.raw_data(), cb.raw_data(), ca.nbytes()) == 0;
}

TEST(Optim, FixtureMetadataMatchesTheConfigs) {
  for (const Config& c : configs()) {
    ASSERT_TRUE(fixture().metadata.count(c.name)) << c.name;
    EXPECT_EQ(fixture().metadata.at(c.name), c.json) << c.name;
  }
}

TEST(Optim, FollowsPyTorchTrajectories) {
  for (const Config& c : configs()) {
    SCOPED_TRACE(c.name);
    nn::NamedTensors params = fresh_params();
    auto opt = c.make(params);
    for (int k = 1; k <= kSteps; ++k) {
      SCOPED_TRACE("step " + std::to_string(k));
      set_grads(params, k);
      opt->step();
      EXPECT_EQ(opt->steps(), k);
      const std::string prefix = std::string(c.name) + "." + std::to_string(k) + ".";
      for (const auto& [n, p] : params) {
        EXPECT_TRUE(test::all_close(p, fx(prefix + "param." + n), 1e-5f, 1e-7f)) << n;
      }
      // Every state tensor PyTorch keeps, and nothing else.
      const TensorMap state = opt->state_dict();
      std::size_t expected_entries = 1;  // "step"
      for (const auto& [key, t] : fixture().tensors) {
        if (key.rfind(prefix, 0) != 0 || key.find(".param.") != std::string::npos) continue;
        const std::string name = key.substr(prefix.size());
        ASSERT_TRUE(state.count(name)) << "missing state " << name;
        EXPECT_TRUE(test::all_close(state.at(name), t, 1e-5f, 1e-8f)) << name;
        ++expected_entries;
      }
      EXPECT_EQ(state.size(), expected_entries);
      EXPECT_EQ(state.at("step").to_int_vector(), std::vector<std::int64_t>{k});
      EXPECT_EQ(state.at("step").dtype(), DType::s64);
    }
  }
}

TEST(Optim, StateDictResumeIsBitExact) {
  for (const Config& c : configs()) {
    SCOPED_TRACE(c.name);
    nn::NamedTensors straight = fresh_params();
    auto a = c.make(straight);
    for (int k = 1; k <= kSteps; ++k) {
      set_grads(straight, k);
      a->step();
    }

    nn::NamedTensors first = fresh_params();
    auto b = c.make(first);
    for (int k = 1; k <= 3; ++k) {
      set_grads(first, k);
      b->step();
    }
    // Through the checkpoint format, as the host does it.
    TensorMap saved_params;
    for (const auto& [n, p] : first) saved_params[n] = p;
    const Safetensors opt_ckpt = parse_safetensors(serialize_safetensors(b->state_dict()), "opt");
    const Safetensors param_ckpt = parse_safetensors(serialize_safetensors(saved_params), "params");

    nn::NamedTensors resumed;
    for (const char* n : kParamNames) {
      resumed.emplace_back(n,
                           Tensor::zeros(fx(std::string("init.") + n).shape()).set_requires_grad());
      resumed.back().second.copy_(param_ckpt.tensors.at(n));
    }
    auto r = c.make(resumed);
    r->load_state_dict(opt_ckpt.tensors);
    EXPECT_EQ(r->steps(), 3);
    for (int k = 4; k <= kSteps; ++k) {
      set_grads(resumed, k);
      r->step();
    }
    for (std::size_t i = 0; i < straight.size(); ++i) {
      EXPECT_TRUE(bitwise_equal(resumed[i].second, straight[i].second)) << straight[i].first;
    }
    const TensorMap sa = a->state_dict(), sr = r->state_dict();
    ASSERT_EQ(sa.size(), sr.size());
    for (const auto& [key, t] : sa) EXPECT_TRUE(bitwise_equal(sr.at(key), t)) << key;
  }
}

TEST(Optim, StateDictIsASnapshot) {
  nn::NamedTensors params = fresh_params();
  Adam opt(params, {.lr = 0.01f});
  set_grads(params, 1);
  opt.step();
  const TensorMap s = opt.state_dict();
  const std::vector<float> before = s.at("exp_avg.w").to_vector();
  set_grads(params, 2);
  opt.step();
  EXPECT_EQ(s.at("exp_avg.w").to_vector(), before);
  // Loading copies: changing the loaded map afterwards does not reach the optimiser.
  TensorMap copy = opt.state_dict();
  opt.load_state_dict(copy);
  copy.at("exp_avg.w").fill_(123.f);
  EXPECT_NE(opt.state_dict().at("exp_avg.w").to_vector()[0], 123.f);
}

TEST(Optim, LoadStateDictErrorsNameTheKey) {
  nn::NamedTensors params = fresh_params();
  Adam opt(params, {});
  set_grads(params, 1);
  opt.step();
  const TensorMap good = opt.state_dict();
  auto expect_error = [&](const TensorMap& s, const std::vector<std::string>& parts) {
    try {
      opt.load_state_dict(s);
      ADD_FAILURE() << "no error for a bad state";
    } catch (const Error& e) {
      for (const std::string& part : parts) {
        EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what() << " / " << part;
      }
    }
  };
  TensorMap s = good;
  s["exp_avg.w"] = Tensor::zeros({5, 3});
  expect_error(s, {"exp_avg.w", "[5, 3]", "[3, 5]"});
  s = good;
  s["exp_avg.nope"] = Tensor::zeros({5});
  expect_error(s, {"exp_avg.nope", "'nope'"});
  s = good;
  s["momentum_buffer.w"] = Tensor::zeros({3, 5});
  expect_error(s, {"momentum_buffer.w", "exp_avg, exp_avg_sq"});
  s = good;
  s["master.w"] = Tensor::zeros({3, 5});
  expect_error(s, {"master.w"});  // this optimiser has no bf16 parameter, so no master slot
  s = good;
  s.erase("step");
  expect_error(s, {"'step'"});
  s = good;
  s["step"] = Tensor::from_ints({-1}, {}, DType::s64);
  expect_error(s, {"'step'", "-1"});
  s = good;
  s["exp_avg.b"] = Tensor::zeros({5}, DType::s32);
  expect_error(s, {"exp_avg.b", "s32"});
  // A failed load changes nothing.
  const TensorMap after = opt.state_dict();
  for (const auto& [k, t] : good) EXPECT_TRUE(bitwise_equal(after.at(k), t)) << k;
}

TEST(Optim, ConstructionErrors) {
  EXPECT_THROW(SGD({}, {}), Error);
  Tensor a = Tensor::zeros({3}).set_requires_grad();
  EXPECT_THROW(SGD({{"a", a}, {"a", Tensor::zeros({2})}}, {}), Error);
  EXPECT_THROW(SGD({{"a", a}, {"b", a}}, {}), Error);
  EXPECT_THROW(SGD({{"a", Tensor::zeros({3}, DType::s32)}}, {}), Error);
  EXPECT_THROW(SGD({{"a", Tensor()}}, {}), Error);
  EXPECT_THROW(SGD({{"a", Tensor::zeros({3, 4}).transpose(0, 1)}}, {}), Error);
  EXPECT_THROW(SGD({{"a", a}}, {.lr = -1.f}), Error);
  EXPECT_THROW(SGD({{"a", a}}, {.lr = 0.1f, .nesterov = true}), Error);
  EXPECT_THROW(SGD({{"a", a}}, {.lr = 0.1f, .momentum = 0.9f, .dampening = 0.1f, .nesterov = true}),
               Error);
  EXPECT_THROW(SGD({{"a", a}}, {.weight_decay = -0.1f}), Error);
  EXPECT_THROW(Adam({{"a", a}}, {.beta1 = 1.f}), Error);
  EXPECT_THROW(Adam({{"a", a}}, {.beta2 = -0.1f}), Error);
  EXPECT_THROW(AdamW({{"a", a}}, {.eps = -1.f}), Error);
  EXPECT_THROW(AdamW({{"a", a}}, {.lr = std::numeric_limits<float>::quiet_NaN()}), Error);
}

TEST(Optim, StepErrorsAndSkips) {
  Tensor a = Tensor::from_vector({1, 2, 3}, {3}).set_requires_grad();
  Tensor b = Tensor::from_vector({4, 5}, {2}).set_requires_grad();
  SGD opt({{"a", a}, {"b", b}}, {.lr = 0.5f});
  a.set_grad(Tensor::ones({3}));
  const std::uint64_t va = a.version(), vb = b.version();
  opt.step();  // b has no gradient: untouched
  EXPECT_EQ(a.to_vector(), (std::vector<float>{0.5f, 1.5f, 2.5f}));
  EXPECT_EQ(b.to_vector(), (std::vector<float>{4, 5}));
  EXPECT_GT(a.version(), va);
  EXPECT_EQ(b.version(), vb);
  opt.zero_grad();
  EXPECT_FALSE(a.grad().defined());
  a.set_grad(Tensor::ones({4}));
  EXPECT_THROW(opt.step(), Error);
  a.set_grad(Tensor::ones({3}));
  opt.set_lr(-1.f);
  EXPECT_THROW(opt.step(), Error);
  opt.set_lr(0.25f);
  EXPECT_FLOAT_EQ(opt.lr(), 0.25f);
  opt.step();
  EXPECT_EQ(a.to_vector(), (std::vector<float>{0.25f, 1.25f, 2.25f}));
  EXPECT_EQ(opt.params().size(), 2u);
  EXPECT_EQ(opt.named_params()[1].first, "b");
}

TEST(Optim, GradientsMayBeBf16OrStrided) {
  Tensor a = Tensor::from_vector({1, 2, 3, 4, 5, 6}, {2, 3}).set_requires_grad();
  SGD opt({{"a", a}}, {.lr = 1.f});
  a.set_grad(Tensor::from_vector({1, 2, 3, 4, 5, 6}, {3, 2}).transpose(0, 1));  // strided
  opt.step();
  EXPECT_EQ(a.to_vector(), (std::vector<float>{0, -1, -2, 2, 1, 0}));
  a.set_grad(Tensor::from_vector({0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f}, {2, 3}, DType::bf16));
  opt.step();
  EXPECT_EQ(a.to_vector(), (std::vector<float>{-0.5f, -1.5f, -2.5f, 1.5f, 0.5f, -0.5f}));
}

// A bf16 parameter follows the f32 trajectory through its f32 master copy.
TEST(Optim, Bf16ParametersUseAnF32Master) {
  for (const Config& c : configs()) {
    SCOPED_TRACE(c.name);
    nn::NamedTensors f32_params, bf16_params;
    for (const char* n : kParamNames) {
      // Initial values representable in bf16, so both runs start from the same point.
      Tensor init = fx(std::string("init.") + n).to(DType::bf16);
      f32_params.emplace_back(n, init.to(DType::f32).clone().set_requires_grad());
      bf16_params.emplace_back(n, init.clone().set_requires_grad());
    }
    auto a = c.make(f32_params);
    auto b = c.make(bf16_params);
    for (int k = 1; k <= kSteps; ++k) {
      set_grads(f32_params, k);
      set_grads(bf16_params, k);  // f32 gradients on bf16 parameters are accepted
      a->step();
      b->step();
    }
    const TensorMap sb = b->state_dict();
    for (std::size_t i = 0; i < f32_params.size(); ++i) {
      const std::string& n = f32_params[i].first;
      EXPECT_TRUE(bitwise_equal(sb.at("master." + n), f32_params[i].second)) << n;
      EXPECT_EQ(bf16_params[i].second.dtype(), DType::bf16);
      EXPECT_TRUE(bitwise_equal(bf16_params[i].second, f32_params[i].second.to(DType::bf16))) << n;
    }
  }
}

TEST(Optim, Bf16MasterStateDict) {
  Tensor h = Tensor::from_vector({1.f, 2.f}, {2}, DType::bf16).set_requires_grad();
  Tensor f = Tensor::from_vector({1.f, 2.f}, {2}).set_requires_grad();
  Adam opt({{"h", h}, {"f", f}}, {.lr = 0.01f});
  h.set_grad(Tensor::ones({2}, DType::bf16));
  f.set_grad(Tensor::ones({2}));
  opt.step();
  TensorMap s = opt.state_dict();
  EXPECT_TRUE(s.count("master.h"));
  EXPECT_FALSE(s.count("master.f"));
  s["master.f"] = Tensor::zeros({2});
  try {
    opt.load_state_dict(s);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("master.f"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("f32"), std::string::npos) << e.what();
  }
}

TEST(Optim, Bf16MasterResyncsAfterAnOutsideWrite) {
  Tensor p = Tensor::from_vector({1.f, 2.f, 3.f}, {3}, DType::bf16).set_requires_grad();
  SGD opt({{"p", p}}, {.lr = 1e-3f});
  p.set_grad(Tensor::ones({3}, DType::bf16));
  opt.step();
  // 1 - 1e-3 is not representable in bf16 (rounds back to 1), but the master keeps it.
  EXPECT_FLOAT_EQ(opt.state_dict().at("master.p").to_vector()[0], 1.f - 1e-3f);
  EXPECT_EQ(p.to_vector()[0], 1.f);
  // An outside write to one element (e.g. a checkpoint load) wins over the master there.
  Tensor replacement = Tensor::from_vector({1.f, 8.f, 3.f}, {3}, DType::bf16);
  p.copy_(replacement);
  opt.step();
  const std::vector<float> master = opt.state_dict().at("master.p").to_vector();
  EXPECT_FLOAT_EQ(master[0], 1.f - 2e-3f);
  EXPECT_FLOAT_EQ(master[1], 8.f - 1e-3f);
  EXPECT_FLOAT_EQ(master[2], 3.f - 2e-3f);
}

// Parameters much larger than one chunk update exactly as the same values split into pieces,
// and the result does not depend on the thread count.
TEST(Optim, ChunkingAndThreadsDoNotChangeResults) {
  const std::int64_t n = 50001;
  Tensor init = test::random_tensor({n}, 11);
  Tensor grad = test::random_tensor({n}, 12);
  auto run = [&](bool split, int threads) {
    oneapi::tbb::global_control gc(oneapi::tbb::global_control::max_allowed_parallelism, threads);
    nn::NamedTensors params;
    if (split) {
      params.emplace_back("lo", init.slice(0, 0, 20000).clone().set_requires_grad());
      params.emplace_back("hi", init.slice(0, 20000, n).clone().set_requires_grad());
      params[0].second.set_grad(grad.slice(0, 0, 20000).clone());
      params[1].second.set_grad(grad.slice(0, 20000, n).clone());
    } else {
      params.emplace_back("all", init.clone().set_requires_grad());
      params[0].second.set_grad(grad.clone());
    }
    AdamW opt(params, {.lr = 0.01f, .weight_decay = 0.1f});
    opt.step();
    opt.step();
    std::vector<float> out;
    for (const auto& np : params) {
      const std::vector<float> v = np.second.to_vector();
      out.insert(out.end(), v.begin(), v.end());
    }
    return out;
  };
  const std::vector<float> ref = run(false, 1);
  EXPECT_EQ(run(false, 2), ref);
  EXPECT_EQ(run(true, 2), ref);
  EXPECT_EQ(run(true, 1), ref);
}

TEST(ClipGradNorm, MatchesPyTorch) {
  for (const std::string c : {"clips", "keeps"}) {
    SCOPED_TRACE(c);
    const float max_norm = std::stof(fixture().metadata.at("clip." + c));
    TensorList params;
    for (int i = 0; i < 3; ++i) {
      Tensor in = fx("clip." + c + ".in." + std::to_string(i));
      Tensor p = Tensor::zeros(in.shape()).set_requires_grad();
      p.set_grad(in.clone());
      params.push_back(p);
    }
    params.push_back(Tensor::zeros({2}).set_requires_grad());  // no gradient: skipped
    const float expected = fx("clip." + c + ".norm").to_vector()[0];
    EXPECT_NEAR(grad_norm(params), expected, 1e-5f * expected);
    EXPECT_NEAR(clip_grad_norm(params, max_norm), expected, 1e-5f * expected);
    for (int i = 0; i < 3; ++i) {
      EXPECT_TRUE(test::all_close(params[static_cast<std::size_t>(i)].grad(),
                                  fx("clip." + c + ".out." + std::to_string(i)), 1e-5f, 1e-7f));
    }
  }
}

TEST(ClipGradNorm, Bf16NonFiniteAndErrors) {
  Tensor a = Tensor::zeros({2}, DType::bf16).set_requires_grad();
  a.set_grad(Tensor::from_vector({3.f, 4.f}, {2}, DType::bf16));
  EXPECT_FLOAT_EQ(clip_grad_norm({a}, 1.f), 5.f);
  EXPECT_EQ(a.grad().dtype(), DType::bf16);
  EXPECT_NEAR(a.grad().to_vector()[0], 0.6f, 0.005f);
  EXPECT_NEAR(a.grad().to_vector()[1], 0.8f, 0.005f);

  Tensor b = Tensor::zeros({2}).set_requires_grad();
  b.set_grad(Tensor::from_vector({std::numeric_limits<float>::infinity(), 1.f}, {2}));
  EXPECT_TRUE(std::isinf(clip_grad_norm({b}, 1.f)));
  EXPECT_EQ(b.grad().to_vector()[1], 1.f);  // left alone
  EXPECT_THROW(clip_grad_norm({b}, 0.f), Error);
  EXPECT_THROW(clip_grad_norm({Tensor()}, 1.f), Error);
  EXPECT_EQ(grad_norm({Tensor::zeros({3}).set_requires_grad()}), 0.f);
}

TEST(ClipGradNorm, ReproducibleAcrossThreadCounts) {
  Tensor big = test::random_tensor({70000}, 5);
  auto norm_with = [&](int threads) {
    oneapi::tbb::global_control gc(oneapi::tbb::global_control::max_allowed_parallelism, threads);
    Tensor p = Tensor::zeros({70000}).set_requires_grad();
    p.set_grad(big.clone());
    return grad_norm({p});
  };
  const float one = norm_with(1);
  EXPECT_EQ(norm_with(2), one);
  double ref = 0;
  for (float v : big.to_vector()) ref += static_cast<double>(v) * v;
  EXPECT_NEAR(one, std::sqrt(ref), 1e-6 * std::sqrt(ref));
}

void expect_schedule(const Schedule& s, const std::string& key, float atol = 1e-8f) {
  const std::vector<float> want = fx("sched." + key).to_vector();
  for (std::size_t i = 0; i < want.size(); ++i) {
    EXPECT_NEAR(s.lr(static_cast<std::int64_t>(i)), want[i], atol + 1e-5f * want[i])
        << key << " step " << i;
  }
}

TEST(Schedule, MatchesPyTorch) {
  expect_schedule(StepLR(0.1f, 3, 0.5f), "step");
  expect_schedule(*make_schedule("step", 0.1f, 100, 0, 3, 0.5f), "step");
  expect_schedule(CosineLR(0.1f, 10, 0.001f), "cosine");
  expect_schedule(*make_schedule("cosine", 0.1f, 10, 0, 1, 0.1f, 0.001f), "cosine");
  expect_schedule(WarmupCosineLR(0.1f, 4, 12, 0.005f), "warmup_cosine");
  expect_schedule(*make_schedule("warmup_cosine", 0.1f, 12, 4, 1, 0.1f, 0.005f), "warmup_cosine");
  expect_schedule(WarmupLR(0.1f, 5), "warmup");
  expect_schedule(*make_schedule("warmup", 0.1f, 0, 5), "warmup");
}

TEST(Schedule, EndsAndEdges) {
  EXPECT_EQ(ConstantLR(0.3f).lr(12345), 0.3f);
  EXPECT_EQ(make_schedule("constant", 0.3f, 0, 0)->lr(7), 0.3f);
  EXPECT_EQ(CosineLR(0.1f, 10, 0.001f).lr(10), 0.001f);
  EXPECT_EQ(CosineLR(0.1f, 10, 0.001f).lr(1000), 0.001f);  // constant after the end
  EXPECT_EQ(CosineLR(0.1f, 10).lr(0), 0.1f);
  EXPECT_EQ(WarmupCosineLR(0.1f, 0, 10).lr(0), 0.1f);  // no warm-up
  EXPECT_EQ(WarmupCosineLR(0.1f, 4, 12, 0.005f).lr(500), 0.005f);
  EXPECT_EQ(WarmupLR(0.1f, 0).lr(0), 0.1f);
  EXPECT_NEAR(StepLR(1.f, 2, 0.1f).lr(5), 0.01f, 1e-9f);
}

TEST(Schedule, Errors) {
  try {
    make_schedule("linear", 0.1f, 10, 0);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("warmup_cosine"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("'linear'"), std::string::npos) << e.what();
  }
  EXPECT_THROW(make_schedule("cosine", 0.1f, 0, 0), Error);
  EXPECT_THROW(make_schedule("warmup_cosine", 0.1f, 10, 20), Error);
  EXPECT_THROW(make_schedule("step", 0.1f, 10, 0, 0), Error);
  EXPECT_THROW(make_schedule("step", 0.1f, 10, 0, 2, -1.f), Error);
  EXPECT_THROW(make_schedule("warmup", 0.1f, 10, -1), Error);
  EXPECT_THROW(make_schedule("constant", -0.1f, 10, 0), Error);
  EXPECT_THROW(CosineLR(0.1f, 10, -1.f), Error);
}

}  // namespace
}  // namespace kiln::optim
