#include <gtest/gtest.h>

#include <oneapi/tbb/task_arena.h>

#include <limits>

#include "kiln/random.hpp"
#include "support/test_support.hpp"

namespace kiln {
namespace {

TEST(Dropout, IdentityWhenEvaluatingOrPZero) {
  Tensor x = test::random_tensor({4, 5}, 1);
  Philox rng(1);
  const std::uint64_t pos = rng.position();
  EXPECT_TRUE(ops::dropout(x, 0.5f, false, rng).same(x));
  EXPECT_TRUE(ops::dropout(x, 0.f, true, rng).same(x));
  EXPECT_EQ(rng.position(), pos);  // no randomness consumed
}

TEST(Dropout, POneZeroesEverything) {
  Tensor x = test::random_tensor({4, 5}, 2).set_requires_grad();
  Philox rng(2);
  Tensor y = ops::dropout(x, 1.f, true, rng);
  for (float v : y.to_vector()) EXPECT_EQ(v, 0.f);
  ops::sum(y).backward();
  for (float g : x.grad().to_vector()) EXPECT_EQ(g, 0.f);
}

TEST(Dropout, StatisticsAndScaling) {
  const std::int64_t n = 200000;
  Tensor x = Tensor::ones({n});
  Philox rng(3);
  for (float p : {0.1f, 0.5f, 0.9f}) {
    const auto y = ops::dropout(x, p, true, rng).to_vector();
    std::int64_t zeros = 0;
    for (float v : y) {
      if (v == 0.f) {
        ++zeros;
      } else {
        EXPECT_FLOAT_EQ(v, 1.f / (1.f - p));
      }
    }
    EXPECT_NEAR(static_cast<double>(zeros) / n, p, 0.01) << "p " << p;
  }
}

TEST(Dropout, MaskDependsOnlyOnThePhiloxState) {
  Tensor x = test::random_tensor({3, 5000}, 4);
  auto run = [&](int threads, std::uint64_t seed) {
    Philox rng(seed, 7, 1);
    Tensor y;
    oneapi::tbb::task_arena arena(threads);
    arena.execute([&] { y = ops::dropout(x, 0.3f, true, rng); });
    return y.to_vector();
  };
  EXPECT_EQ(run(1, 5), run(2, 5));
  EXPECT_NE(run(2, 5), run(2, 6));
  // Successive calls advance the generator and draw new masks.
  Philox rng(5);
  EXPECT_NE(ops::dropout(x, 0.3f, true, rng).to_vector(),
            ops::dropout(x, 0.3f, true, rng).to_vector());
}

TEST(Dropout, MaskIsTheDocumentedPhiloxStream) {
  // Element i keeps when word (i % 32) / 8 of Philox4x32-10 block {i / 32 * 8 + i % 8, 0, 0, 0}
  // under the key drawn from rng is >= p * 2^32.
  const std::int64_t n = 1000;
  Tensor x = Tensor::ones({n});
  Philox rng(77, 3, 2), copy(77, 3, 2);
  const auto y = ops::dropout(x, 0.37f, true, rng).to_vector();
  const std::uint64_t key = copy.next_u64();
  const auto threshold = static_cast<std::uint64_t>(0.37 * 4294967296.0);
  for (std::int64_t i = 0; i < n; ++i) {
    const std::uint64_t block = static_cast<std::uint64_t>(i / 32 * 8 + i % 8);
    const auto bits = Philox::block(
        {static_cast<std::uint32_t>(block), static_cast<std::uint32_t>(block >> 32), 0, 0},
        {static_cast<std::uint32_t>(key), static_cast<std::uint32_t>(key >> 32)});
    const bool keep = bits[static_cast<std::size_t>((i % 32) / 8)] >= threshold;
    ASSERT_EQ(y[static_cast<std::size_t>(i)] != 0.f, keep) << "element " << i;
  }
}

TEST(Dropout, GradientIsTheScaledMask) {
  Tensor x = test::random_tensor({3, 7}, 6).set_requires_grad();
  KILN_EXPECT_GRADCHECK(
      [](const TensorList& in) {
        Philox rng(9);
        return ops::dropout(in[0], 0.4f, true, rng);
      },
      {x});
  x.zero_grad();
  Philox rng(10);
  Tensor y = ops::dropout(x, 0.25f, true, rng);
  ops::sum(y).backward();
  const auto yv = y.to_vector(), xv = x.to_vector(), gv = x.grad().to_vector();
  for (std::size_t i = 0; i < yv.size(); ++i) {
    EXPECT_FLOAT_EQ(gv[i], yv[i] == 0.f ? 0.f : 1.f / 0.75f);
    if (yv[i] != 0.f) {
      EXPECT_FLOAT_EQ(yv[i], xv[i] / 0.75f);
    }
  }
}

TEST(Dropout, RejectsBadProbability) {
  Tensor x = Tensor::ones({3});
  Philox rng(1);
  EXPECT_THROW(ops::dropout(x, -0.1f, true, rng), Error);
  EXPECT_THROW(ops::dropout(x, 1.5f, false, rng), Error);
  EXPECT_THROW(ops::dropout(x, std::numeric_limits<float>::quiet_NaN(), true, rng), Error);
  EXPECT_THROW(ops::dropout(Tensor::ones({3}, DType::s32), 0.5f, true, rng), Error);
}

}  // namespace
}  // namespace kiln
