#include <gtest/gtest.h>

#include <cmath>

#include "kiln/nn.hpp"
#include "support/test_support.hpp"

namespace kiln {
namespace {

TEST(NnLinear, ParametersShapesAndInit) {
  Generator gen(3);
  nn::Linear fc(100, 7, true, gen);
  const auto named = fc.named_parameters();
  ASSERT_EQ(named.size(), 2u);
  EXPECT_EQ(named[0].first, "weight");
  EXPECT_EQ(named[1].first, "bias");
  EXPECT_EQ(fc.weight.shape(), (Shape{7, 100}));
  EXPECT_EQ(fc.bias.shape(), (Shape{7}));
  EXPECT_TRUE(fc.weight.requires_grad());
  EXPECT_EQ(fc.num_parameters(), 707);
  // PyTorch's default: U(-1/sqrt(in), 1/sqrt(in)) for weight and bias.
  for (const Tensor& t : {fc.weight, fc.bias}) {
    for (float v : t.to_vector()) EXPECT_LE(std::fabs(v), 0.1f);
  }
  // The same generator state gives the same weights; the default generator works too.
  Generator again(3);
  nn::Linear fc2(100, 7, again);
  EXPECT_EQ(fc.weight.to_vector(), fc2.weight.to_vector());
  EXPECT_EQ(fc.bias.to_vector(), fc2.bias.to_vector());
  nn::Linear plain(4, 2, false);
  EXPECT_FALSE(plain.bias.defined());
  EXPECT_EQ(plain.state_dict().size(), 1u);
}

TEST(NnLinear, ForwardMatchesOpsLinearWithFusedActivation) {
  nn::Linear fc(6, 4);
  Tensor x = test::random_tensor({3, 2, 6}, 1);
  Tensor ref = ops::matmul(x, fc.weight.transpose(0, 1)) + fc.bias;
  EXPECT_TRUE(test::all_close(fc.forward(x), ref, 1e-5f, 1e-6f));
  EXPECT_TRUE(
      test::all_close(fc.forward(x, {.act = ops::Act::relu}), ops::relu(ref), 1e-5f, 1e-6f));
  KILN_EXPECT_GRADCHECK(
      [&](const TensorList& in) { return fc.forward(in[0], {.act = ops::Act::tanh}); },
      {x.clone().set_requires_grad()});
  fc.zero_grad();
  ops::sum(fc.forward(x)).backward();
  ASSERT_TRUE(fc.weight.grad().defined());
  EXPECT_TRUE(test::all_close(fc.bias.grad(), Tensor::full({4}, 6.f), 1e-6f, 1e-6f));
  fc.zero_grad();
  EXPECT_FALSE(fc.weight.grad().defined());
}

TEST(NnLinear, LoadsAPyTorchStyleStateDict) {
  nn::Linear fc(3, 2);
  TensorMap state = {{"weight", Tensor::from_vector({1, 0, 0, 0, 1, 0}, {2, 3})},
                     {"bias", Tensor::from_vector({10, 20}, {2})}};
  fc.load_state_dict(state);
  EXPECT_EQ(fc.forward(Tensor::from_vector({1, 2, 3}, {1, 3})).to_vector(),
            (std::vector<float>{11, 22}));
}

TEST(NnLinear, RejectsBadArguments) {
  EXPECT_THROW(nn::Linear(0, 3), Error);
  EXPECT_THROW(nn::Linear(3, -1), Error);
  nn::Linear fc(5, 2);
  try {
    fc.forward(Tensor::zeros({4, 6}));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("Linear(5 -> 2)"), std::string::npos) << m;
    EXPECT_NE(m.find("[4, 6]"), std::string::npos) << m;
  }
  EXPECT_THROW(fc.forward(Tensor()), Error);
}

}  // namespace
}  // namespace kiln
