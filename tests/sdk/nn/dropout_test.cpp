#include <gtest/gtest.h>

#include "kiln/nn.hpp"
#include "support/test_support.hpp"

namespace kiln {
namespace {

TEST(NnDropout, FollowsTheTrainingFlag) {
  nn::Dropout drop(0.5f);
  EXPECT_EQ(drop.p(), 0.5f);
  EXPECT_TRUE(drop.named_parameters().empty());
  Tensor x = Tensor::ones({1000});
  Philox rng(4, 0, 1);
  Tensor y = drop.forward(x, rng);
  std::int64_t zeros = 0;
  for (float v : y.to_vector()) zeros += v == 0.f ? 1 : 0;
  EXPECT_GT(zeros, 400);
  EXPECT_LT(zeros, 600);
  drop.eval();
  EXPECT_TRUE(drop.forward(x, rng).same(x));
  drop.train();
  EXPECT_FALSE(drop.forward(x, rng).same(x));
  EXPECT_THROW(nn::Dropout(1.5f), Error);
  EXPECT_THROW(nn::Dropout(-0.5f), Error);
}

}  // namespace
}  // namespace kiln
