#include <gtest/gtest.h>

#include <oneapi/tbb/task_arena.h>

#include "kiln/random.hpp"
#include "sdk/ops/parity.hpp"

namespace kiln {
namespace {

TEST(Embedding, MatchesPyTorch) {
  for (const char* name : {"embedding", "embedding_1d"}) {
    test::expect_parity(name, {"ids", "w"},
                        [](const TensorList& in) { return ops::embedding(in[0], in[1]); });
  }
}

TEST(Embedding, GatherValuesAndGradcheck) {
  Tensor w = test::random_tensor({5, 3}, 1).set_requires_grad();
  Tensor ids = Tensor::from_ints({4, 0, 4, 2, 2, 2, 1}, {7}, DType::s32);
  Tensor y = ops::embedding(ids, w);
  ASSERT_EQ(y.shape(), (Shape{7, 3}));
  EXPECT_TRUE(test::all_close(y.select(0, 2), w.select(0, 4), 0.f, 0.f));
  KILN_EXPECT_GRADCHECK([&](const TensorList& in) { return ops::embedding(ids, in[0]); }, {w});
  // ids of any shape, including 0-d.
  EXPECT_EQ(ops::embedding(Tensor::from_ints({3}, {}), w).shape(), (Shape{3}));
  EXPECT_EQ(ops::embedding(Tensor::from_ints({1, 2, 3, 4, 0, 1}, {1, 2, 3}), w).shape(),
            (Shape{1, 2, 3, 3}));
  // A bf16 table gathers bf16 rows.
  Tensor wb = w.detach().to(DType::bf16);
  Tensor yb = ops::embedding(ids, wb);
  EXPECT_EQ(yb.dtype(), DType::bf16);
  EXPECT_TRUE(test::all_close(yb.to(DType::f32), ops::embedding(ids, wb.to(DType::f32)), 0.f, 0.f));
  EXPECT_TRUE(
      test::all_close(yb.select(0, 0).to(DType::f32), wb.select(0, 4).to(DType::f32), 0.f, 0.f));
}

TEST(Embedding, BackwardIsDeterministicAndExact) {
  // Many repeated ids: the scatter-add must equal a sequential sum in position order, bitwise,
  // whatever the number of threads.
  const std::int64_t vocab = 50, dim = 33, n = 4000;
  Generator gen(7);
  std::vector<std::int64_t> idv(static_cast<std::size_t>(n));
  for (auto& id : idv) id = static_cast<std::int64_t>(gen.below(vocab));
  Tensor ids = Tensor::from_ints(idv, {40, 100});
  Tensor g = test::random_tensor({40, 100, dim}, 8);
  auto run = [&](int threads) {
    Tensor w = test::random_tensor({vocab, dim}, 9).set_requires_grad();
    oneapi::tbb::task_arena arena(threads);
    arena.execute([&] { ops::sum(ops::mul(ops::embedding(ids, w), g)).backward(); });
    return w.grad().to_vector();
  };
  const std::vector<float> one = run(1), two = run(2);
  EXPECT_EQ(one, two);
  std::vector<float> ref(static_cast<std::size_t>(vocab * dim), 0.f);
  const auto gv = g.to_vector();
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t d = 0; d < dim; ++d)
      ref[static_cast<std::size_t>(idv[static_cast<std::size_t>(i)] * dim + d)] +=
          gv[static_cast<std::size_t>(i * dim + d)];
  EXPECT_EQ(one, ref);
}

TEST(Embedding, RejectsBadIds) {
  Tensor w = Tensor::zeros({6, 2});
  try {
    ops::embedding(Tensor::from_ints({1, 6, 2}, {3}), w);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("id 6"), std::string::npos) << m;
    EXPECT_NE(m.find("V = 6"), std::string::npos) << m;
  }
  EXPECT_THROW(ops::embedding(Tensor::from_ints({-1}, {1}, DType::s32), w), Error);
  EXPECT_THROW(ops::embedding(Tensor::zeros({3}), w), Error);
  EXPECT_THROW(ops::embedding(Tensor::from_ints({0}, {1}), Tensor::zeros({6})), Error);
  EXPECT_THROW(ops::embedding(Tensor::from_ints({0}, {1}), Tensor::zeros({6, 2}, DType::s32)),
               Error);
}

}  // namespace
}  // namespace kiln
