#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "kiln/nn/rnn.hpp"
#include "kiln/random.hpp"
#include "support/test_support.hpp"

namespace kiln {
namespace {

TEST(RnnModule, ParameterNamesShapesAndInitMatchPyTorch) {
  Generator gen(3);
  nn::LSTM lstm(5, 6, 2, 0.f, gen);
  const nn::NamedTensors params = lstm.named_parameters();
  const std::vector<std::pair<std::string, Shape>> expected = {
      {"weight_ih_l0", {24, 5}}, {"weight_hh_l0", {24, 6}}, {"bias_ih_l0", {24}},
      {"bias_hh_l0", {24}},      {"weight_ih_l1", {24, 6}}, {"weight_hh_l1", {24, 6}},
      {"bias_ih_l1", {24}},      {"bias_hh_l1", {24}}};
  ASSERT_EQ(params.size(), expected.size());
  const float bound = 1.f / std::sqrt(6.f);
  for (std::size_t i = 0; i < params.size(); ++i) {
    EXPECT_EQ(params[i].first, expected[i].first);
    EXPECT_EQ(params[i].second.shape(), expected[i].second) << expected[i].first;
    EXPECT_TRUE(params[i].second.requires_grad());
    float lo = 1.f, hi = -1.f;
    for (float v : params[i].second.to_vector()) {
      lo = std::min(lo, v);
      hi = std::max(hi, v);
    }
    EXPECT_GE(lo, -bound);
    EXPECT_LT(hi, bound);
    EXPECT_LT(lo, -0.5f * bound);  // spread over the range, not a constant
    EXPECT_GT(hi, 0.5f * bound);
  }
  nn::GRU gru(5, 6, 1, 0.f, gen);
  EXPECT_EQ(gru.named_parameters()[0].second.shape(), (Shape{18, 5}));
  EXPECT_EQ(gru.num_parameters(), 18 * 5 + 18 * 6 + 2 * 18);
  // The functional weights are the registered parameters themselves.
  EXPECT_TRUE(lstm.weights().w_hh[1].same(params[5].second));
  // Same generator state -> same weights.
  Generator a(9), b(9);
  EXPECT_TRUE(test::all_close(nn::LSTM(4, 3, 1, 0.f, a).weights().w_ih[0],
                              nn::LSTM(4, 3, 1, 0.f, b).weights().w_ih[0], 0.f, 0.f));
}

// Loads the fixture's PyTorch weights through load_state_dict (PyTorch's names) and compares the
// forward outputs and parameter gradients.
template <typename Module>
void check_against_fixture(Module& m, const std::string& name, bool lstm, std::int64_t layers) {
  const Safetensors f = test::load_fixture("rnn.safetensors");
  auto get = [&](const std::string& key) { return f.tensors.at(name + "." + key); };
  TensorMap state;
  for (std::int64_t l = 0; l < layers; ++l) {
    const std::string sfx = "_l" + std::to_string(l);
    state["weight_ih" + sfx] = get("w_ih" + sfx);
    state["weight_hh" + sfx] = get("w_hh" + sfx);
    state["bias_ih" + sfx] = get("b_ih" + sfx);
    state["bias_hh" + sfx] = get("b_hh" + sfx);
  }
  m.load_state_dict(state);
  ops::RnnOutput o;
  if constexpr (std::is_same_v<Module, nn::LSTM>) {
    o = m.forward(get("x"), get("h0"), get("c0"));
  } else {
    o = m.forward(get("x"), get("h0"));
  }
  EXPECT_TRUE(test::all_close(o.y, get("y")));
  EXPECT_TRUE(test::all_close(o.h, get("h")));
  Tensor loss = ops::sum(o.y * get("R1")) + ops::sum(o.h * get("R2"));
  if (lstm) loss = loss + ops::sum(o.c * get("R3"));
  loss.backward();
  for (const auto& [pname, p] : m.named_parameters()) {
    std::string key = pname;
    key.replace(0, key.find('_'), key[0] == 'w' ? "w" : "b");
    EXPECT_TRUE(test::all_close(p.grad(), get("grad_" + key))) << pname;
  }
}

TEST(RnnModule, LstmMatchesPyTorch) {
  nn::LSTM m(5, 6, 2);
  check_against_fixture(m, "lstm2", true, 2);
}

TEST(RnnModule, GruMatchesPyTorch) {
  nn::GRU m(5, 6, 2);
  check_against_fixture(m, "gru2", false, 2);
}

TEST(RnnModule, DropoutOnlyInTraining) {
  nn::GRU m(4, 8, 2, 0.5f);
  Tensor x = test::random_tensor({5, 3, 4}, 1);
  Philox r1(1), r2(1);
  const Tensor train = m.forward(x, Tensor(), &r1).y;
  m.eval();
  const Tensor eval = m.forward(x).y;  // no generator needed in evaluation
  EXPECT_FALSE(test::all_close(train, eval));
  EXPECT_TRUE(test::all_close(m.forward(x, Tensor(), &r2).y, eval, 0.f, 0.f));
  m.train();
  EXPECT_THROW(m.forward(x), Error);  // training with dropout needs a generator
}

TEST(RnnModule, RejectsBadSizes) {
  EXPECT_THROW(nn::LSTM(0, 4), Error);
  EXPECT_THROW(nn::LSTM(4, 0), Error);
  EXPECT_THROW(nn::GRU(4, 4, 0), Error);
  EXPECT_THROW(nn::GRU(4, 4, 2, -0.1f), Error);
  try {
    nn::LSTM(4, 4, 1, 2.f);
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "LSTM: dropout must be in [0, 1], got 2");
  }
}

}  // namespace
}  // namespace kiln
