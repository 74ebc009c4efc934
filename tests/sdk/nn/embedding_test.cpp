#include <gtest/gtest.h>

#include <cmath>

#include "kiln/nn.hpp"
#include "support/test_support.hpp"

namespace kiln {
namespace {

TEST(NnEmbedding, StandardNormalInitAndLookup) {
  Generator gen(11);
  nn::Embedding emb(300, 40, gen);
  EXPECT_EQ(emb.named_parameters().at(0).first, "weight");
  EXPECT_EQ(emb.num_embeddings(), 300);
  EXPECT_EQ(emb.embedding_dim(), 40);
  const auto w = emb.weight.to_vector();
  double mean = 0, sq = 0;
  for (float v : w) {
    mean += v;
    sq += double(v) * v;
  }
  mean /= static_cast<double>(w.size());
  EXPECT_NEAR(mean, 0.0, 0.03);
  EXPECT_NEAR(std::sqrt(sq / static_cast<double>(w.size()) - mean * mean), 1.0, 0.03);
  Tensor ids = Tensor::from_ints({5, 299, 5}, {1, 3});
  Tensor y = emb.forward(ids);
  EXPECT_EQ(y.shape(), (Shape{1, 3, 40}));
  EXPECT_TRUE(test::all_close(y.select(1, 1).select(0, 0), emb.weight.select(0, 299), 0.f, 0.f));
  ops::sum(y).backward();
  EXPECT_EQ(emb.weight.grad().select(0, 5).to_vector()[0], 2.f);
  EXPECT_THROW(emb.forward(Tensor::from_ints({300}, {1})), Error);
  EXPECT_THROW(nn::Embedding(0, 4), Error);
}

}  // namespace
}  // namespace kiln
