// add_prefixed / split_prefixed: a training state made of several state dicts.
#include "kiln/tensor_map.hpp"

#include <gtest/gtest.h>

#include "kiln/error.hpp"

namespace kiln {
namespace {

TEST(TensorMapHelpers, SplitUndoesAddWithTheLongestPrefixWinning) {
  const TensorMap model = {{"fc.weight", Tensor::ones({2, 2})}, {"fc.bias", Tensor::zeros({2})}};
  const TensorMap decay = {{"step", Tensor::scalar(3.f)}};
  const TensorMap plain = {{"step", Tensor::scalar(4.f)}};
  TensorMap s;
  add_prefixed(s, "model.", model);
  add_prefixed(s, "optim.decay.", decay);
  add_prefixed(s, "optim.", plain);
  s["ema_steps"] = Tensor::scalar(7.f);
  ASSERT_EQ(s.size(), 5u);
  EXPECT_TRUE(s.count("model.fc.weight") && s.count("optim.decay.step") && s.count("optim.step"));

  const auto parts = split_prefixed(s, {"model.", "optim.", "optim.decay."}, "test", {"ema_steps"});
  ASSERT_EQ(parts.size(), 3u);
  EXPECT_EQ(parts[0].size(), 2u);
  EXPECT_TRUE(parts[0].count("fc.weight") && parts[0].count("fc.bias"));
  ASSERT_EQ(parts[1].size(), 1u);
  EXPECT_EQ(parts[1].at("step").item(), 4.f);
  ASSERT_EQ(parts[2].size(), 1u);
  EXPECT_EQ(parts[2].at("step").item(), 3.f);
}

TEST(TensorMapHelpers, AnUnexpectedNameIsAnErrorNamingItAndTheOwner) {
  const TensorMap s = {{"model.w", Tensor::ones({1})}, {"generator.w", Tensor::ones({1})}};
  try {
    split_prefixed(s, {"model.", "optim."}, "vae/train");
    FAIL() << "no error";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("vae/train"), std::string::npos) << m;
    EXPECT_NE(m.find("'generator.w'"), std::string::npos) << m;
    EXPECT_NE(m.find("'model.*', 'optim.*'"), std::string::npos) << m;
  }
}

TEST(TensorMapHelpers, AddingANameTwiceIsAnError) {
  TensorMap s;
  add_prefixed(s, "a.", {{"b.c", Tensor::ones({1})}});
  EXPECT_THROW(add_prefixed(s, "a.b.", {{"c", Tensor::ones({1})}}), Error);
}

}  // namespace
}  // namespace kiln
