#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <set>
#include <vector>

#include "kiln/random.hpp"
#include "support/test_support.hpp"

namespace kiln {
namespace {

using Block = std::array<std::uint32_t, 4>;

// Known-answer vectors of Philox4x32-10 from the Random123 distribution (kat_vectors):
// counter words v[0..3], key words v[0..1], output words v[0..3].
TEST(Philox, Random123KnownAnswers) {
  EXPECT_EQ(Philox::block({0, 0, 0, 0}, {0, 0}),
            (Block{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}));
  EXPECT_EQ(Philox::block({0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu},
                          {0xffffffffu, 0xffffffffu}),
            (Block{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}));
  EXPECT_EQ(Philox::block({0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u},
                          {0xa4093822u, 0x299f31d0u}),
            (Block{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}));
}

// The stream layout: key = seed, counter = (block number, mix_seed(index, stream)), low words
// first; words are handed out in order.
TEST(Philox, StreamIsTheDocumentedCounterLayout) {
  const std::uint64_t seed = 0x0123456789abcdefull;
  Philox rng(seed, 42, 3);
  const std::uint64_t hi = mix_seed(42, 3);
  const std::array<std::uint32_t, 2> key = {0x89abcdefu, 0x01234567u};
  for (std::uint64_t b = 0; b < 3; ++b) {
    const Block want =
        Philox::block({static_cast<std::uint32_t>(b), static_cast<std::uint32_t>(b >> 32),
                       static_cast<std::uint32_t>(hi), static_cast<std::uint32_t>(hi >> 32)},
                      key);
    for (int w = 0; w < 4; ++w) EXPECT_EQ(rng.next_u32(), want[static_cast<std::size_t>(w)]);
  }
  EXPECT_EQ(rng.position(), 3u);
}

TEST(Philox, SeekAndPositionReproduce) {
  Philox a(7, 1, 0);
  std::vector<std::uint32_t> first;
  for (int i = 0; i < 40; ++i) first.push_back(a.next_u32());
  EXPECT_EQ(a.position(), 10u);
  a.seek(2);
  for (int i = 8; i < 40; ++i) EXPECT_EQ(a.next_u32(), first[static_cast<std::size_t>(i)]);
  Philox b(7, 1, 0);
  EXPECT_EQ(b.next_u64(), first[0] | (static_cast<std::uint64_t>(first[1]) << 32));
  // Normal draws do not leak a cached spare across a seek.
  Philox c(9), d(9);
  (void)c.normal();
  c.seek(0);
  EXPECT_EQ(c.normal(), d.normal());
}

TEST(Philox, DifferentSeedsIndicesAndStreamsDiffer) {
  std::set<std::uint32_t> firsts;
  for (std::uint64_t seed : {0ull, 1ull, 1ull << 32}) {
    for (std::uint64_t index : {0ull, 1ull, 1000000ull}) {
      for (std::uint64_t stream : {0ull, 1ull, 2ull}) {
        firsts.insert(Philox(seed, index, stream).next_u32());
      }
    }
  }
  EXPECT_EQ(firsts.size(), 27u);
}

TEST(Philox, UniformIsInUnitIntervalWithTheRightMoments) {
  Philox rng(123);
  const int n = 200000;
  double sum = 0, sum2 = 0;
  float lo = 1, hi = 0;
  for (int i = 0; i < n; ++i) {
    const float u = rng.uniform();
    ASSERT_GE(u, 0.f);
    ASSERT_LT(u, 1.f);
    lo = std::min(lo, u);
    hi = std::max(hi, u);
    sum += u;
    sum2 += static_cast<double>(u) * u;
  }
  const double mean = sum / n, var = sum2 / n - mean * mean;
  EXPECT_NEAR(mean, 0.5, 5 * std::sqrt(1.0 / 12 / n));
  EXPECT_NEAR(var, 1.0 / 12, 0.002);
  EXPECT_LT(lo, 1e-4f);
  EXPECT_GT(hi, 1 - 1e-4f);
  std::vector<float> buf(1000);
  rng.fill_uniform(buf.data(), 1000, -3.f, -2.f);
  for (float v : buf) {
    ASSERT_GE(v, -3.f);
    ASSERT_LT(v, -2.f);
  }
}

TEST(Philox, NormalMoments) {
  Philox rng(2024, 5, 1);
  const int n = 400000;
  std::vector<float> z(n);
  rng.fill_normal(z.data(), n);
  double m1 = 0, m2 = 0, m3 = 0, m4 = 0;
  for (float v : z) {
    ASSERT_TRUE(std::isfinite(v));
    m1 += v;
  }
  m1 /= n;
  for (float v : z) {
    const double d = v - m1;
    m2 += d * d;
    m3 += d * d * d;
    m4 += d * d * d * d;
  }
  m2 /= n;
  m3 /= n;
  m4 /= n;
  // Standard errors: mean 1/sqrt(n), variance sqrt(2/n), skewness sqrt(6/n), kurtosis sqrt(24/n).
  EXPECT_NEAR(m1, 0.0, 5 / std::sqrt(n));
  EXPECT_NEAR(m2, 1.0, 5 * std::sqrt(2.0 / n));
  EXPECT_NEAR(m3 / std::pow(m2, 1.5), 0.0, 5 * std::sqrt(6.0 / n));
  EXPECT_NEAR(m4 / (m2 * m2), 3.0, 5 * std::sqrt(24.0 / n));
  // Tail mass beyond 3 sigma: 0.27%.
  int tail = 0;
  for (float v : z) tail += std::fabs(v) > 3.f;
  EXPECT_NEAR(tail / static_cast<double>(n), 0.0027, 0.0005);
  std::vector<float> shifted(1000);
  Philox(1).fill_normal(shifted.data(), 1000, 10.f, 0.5f);
  double s = 0;
  for (float v : shifted) s += v;
  EXPECT_NEAR(s / 1000, 10.0, 0.1);
}

TEST(Philox, BelowIsUnbiased) {
  Philox rng(77);
  // Small n: chi-square over 7 buckets (6 degrees of freedom; 30 is far beyond p = 1e-4).
  const int n = 70000;
  std::vector<int> counts(7, 0);
  for (int i = 0; i < n; ++i) {
    const std::uint64_t v = rng.below(7);
    ASSERT_LT(v, 7u);
    counts[v]++;
  }
  double chi2 = 0;
  for (int c : counts) chi2 += (c - n / 7.0) * (c - n / 7.0) / (n / 7.0);
  EXPECT_LT(chi2, 30.0);
  // Large n ~ (2/3) 2^64: plain modulo would put two thirds of the draws below n/2; an unbiased
  // draw puts half there.
  const std::uint64_t big = 0xAAAAAAAAAAAAAAABull;
  int low = 0;
  const int m = 20000;
  for (int i = 0; i < m; ++i) {
    const std::uint64_t v = rng.below(big);
    ASSERT_LT(v, big);
    low += v < big / 2;
  }
  EXPECT_NEAR(low / static_cast<double>(m), 0.5, 0.02);
  EXPECT_EQ(rng.below(1), 0u);
  EXPECT_THROW(rng.below(0), Error);
}

TEST(RandnForSamples, RowDependsOnlyOnSeedIndexAndStream) {
  const std::uint64_t seed = 99;
  Tensor batch = randn_for_samples({10, 11, 12}, {2, 3}, seed);
  EXPECT_EQ(batch.shape(), (Shape{3, 2, 3}));
  Tensor alone = randn_for_samples({11}, {2, 3}, seed);
  Tensor other = randn_for_samples({500, 3, 11, 10}, {2, 3}, seed);
  EXPECT_EQ(batch.select(0, 1).to_vector(), alone.select(0, 0).to_vector());
  EXPECT_EQ(batch.select(0, 1).to_vector(), other.select(0, 2).to_vector());
  EXPECT_EQ(batch.select(0, 0).to_vector(), other.select(0, 3).to_vector());
  // It is Philox(seed, index, stream)'s normal sequence.
  std::vector<float> want(6);
  Philox(seed, 12, 0).fill_normal(want.data(), 6);
  EXPECT_EQ(batch.select(0, 2).to_vector(), want);
  // Streams and seeds separate.
  EXPECT_NE(randn_for_samples({11}, {6}, seed, 1).to_vector(), alone.reshape({6}).to_vector());
  EXPECT_NE(randn_for_samples({11}, {6}, seed + 1).to_vector(), alone.reshape({6}).to_vector());
  // Rows of neighbouring indices are not correlated.
  Tensor rows = randn_for_samples({0, 1}, {20000}, seed);
  const std::vector<float> v = rows.to_vector();
  double dot = 0;
  for (int i = 0; i < 20000; ++i)
    dot += static_cast<double>(v[static_cast<std::size_t>(i)]) *
           v[20000 + static_cast<std::size_t>(i)];
  EXPECT_NEAR(dot / 20000, 0.0, 5 / std::sqrt(20000.0));
  EXPECT_THROW(randn_for_samples({1, -2}, {3}, seed), Error);
  EXPECT_EQ(randn_for_samples({}, {3}, seed).shape(), (Shape{0, 3}));
}

TEST(Generator, SeedsAndDefault) {
  Generator a(5), b(5), c(6);
  EXPECT_EQ(a.seed(), 5u);
  const float x = a.uniform();
  EXPECT_EQ(x, b.uniform());
  EXPECT_NE(x, c.uniform());
  a.manual_seed(5);
  EXPECT_EQ(a.uniform(), x);
  Generator s1(5, 1);
  EXPECT_NE(s1.uniform(), x);
  manual_seed(31);
  const float d = default_generator().normal();
  manual_seed(31);
  EXPECT_EQ(default_generator().normal(), d);
  EXPECT_EQ(default_generator().seed(), 31u);
  // Tensor factories draw from the generator they are given.
  Generator g1(3), g2(3);
  EXPECT_EQ(Tensor::randn({4}, g1).to_vector(), Tensor::randn({4}, g2).to_vector());
}

TEST(MixSeed, DeterministicAndSpread) {
  EXPECT_EQ(mix_seed(1, 2), mix_seed(1, 2));
  std::set<std::uint64_t> seen;
  for (std::uint64_t a = 0; a < 64; ++a) {
    for (std::uint64_t b = 0; b < 64; ++b) seen.insert(mix_seed(a, b));
  }
  EXPECT_EQ(seen.size(), 64u * 64u);
  EXPECT_NE(mix_seed(1, 2), mix_seed(2, 1));
}

}  // namespace
}  // namespace kiln
