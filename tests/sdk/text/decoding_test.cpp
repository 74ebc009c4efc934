// The decoding chain on hand-made distributions: each step's definition, their order, the draw,
// seeds, and streaming with stop strings.
#include "kiln/decoding.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "kiln/error.hpp"

namespace kiln::decoding {
namespace {

std::vector<double> softmax(const std::vector<float>& l, double t = 1.0) {
  double m = -1e300;
  for (float v : l) m = std::max(m, v / t);
  std::vector<double> p(l.size());
  double s = 0;
  for (std::size_t i = 0; i < l.size(); ++i) s += p[i] = std::exp(l[i] / t - m);
  for (double& v : p) v /= s;
  return p;
}

std::vector<float> random_logits(std::uint64_t seed, int n, bool with_ties) {
  Philox rng(seed, 0, 0);
  std::vector<float> l(n);
  for (float& v : l) v = 3.0f * rng.normal();
  if (with_ties && n > 3) l[n - 1] = l[1] = *std::max_element(l.begin(), l.end());
  return l;
}

TEST(Decoding, TopK1EqualsGreedy) {
  Config greedy;
  greedy.greedy = true;
  Config k1;
  k1.top_k = 1;
  k1.temperature = 0.7;
  for (std::uint64_t s = 0; s < 200; ++s) {
    std::vector<float> l = random_logits(s, 1 + static_cast<int>(s % 97), s % 3 == 0);
    std::vector<float> a = l, b = l;
    Philox r1(s, 1, 2), r2(s, 1, 2);
    EXPECT_EQ(Sampler(greedy).next(a, {}, r1), Sampler(k1).next(b, {}, r2)) << "seed " << s;
  }
}

TEST(Decoding, GreedyTakesTheLowestIdAmongTiedMaxima) {
  Config c;
  c.temperature = 0;  // temperature 0 is greedy
  std::vector<float> l = {1, 5, 2, 5};
  Philox rng(0);
  EXPECT_EQ(Sampler(c).next(l, {}, rng), 1);
  EXPECT_EQ(rng.position(), 0u) << "greedy draws no random number";
}

TEST(Decoding, TemperatureScalesTheLogits) {
  Config c;
  c.temperature = 0.5;
  const std::vector<float> l = {0.1f, -1.2f, 2.0f, 0.7f};
  const std::vector<double> p = Sampler(c).distribution(l, {});
  const std::vector<double> want = softmax(l, 0.5);
  for (std::size_t i = 0; i < l.size(); ++i) EXPECT_NEAR(p[i], want[i], 1e-6);
}

TEST(Decoding, TopKKeepsExactlyKWithTiesByLowerId) {
  Config c;
  c.top_k = 2;
  const std::vector<float> l = {1, 3, 2, 3, 0};
  const std::vector<double> p = Sampler(c).distribution(l, {});
  EXPECT_GT(p[1], 0);
  EXPECT_GT(p[3], 0);
  EXPECT_EQ(p[0] + p[2] + p[4], 0);
  EXPECT_NEAR(p[1], 0.5, 1e-12);
}

TEST(Decoding, TopPKeepsTheSmallestNucleusReachingP) {
  for (double top_p : {0.05, 0.3, 0.5, 0.9, 0.99}) {
    for (std::uint64_t s = 0; s < 50; ++s) {
      std::vector<float> l = random_logits(100 + s, 300, false);
      Config c;
      c.top_p = top_p;
      const std::vector<double> q = Sampler(c).distribution(l, {});
      const std::vector<double> p = softmax(l);
      double kept = 0, smallest_kept = 1, largest_removed = 0;
      for (std::size_t i = 0; i < l.size(); ++i) {
        if (q[i] > 0) {
          kept += p[i];
          smallest_kept = std::min(smallest_kept, p[i]);
        } else {
          largest_removed = std::max(largest_removed, p[i]);
        }
      }
      EXPECT_GE(kept, top_p - 1e-9) << "the nucleus reaches p";
      EXPECT_LT(kept - smallest_kept, top_p) << "and is the smallest that does";
      EXPECT_LE(largest_removed, smallest_kept) << "the most probable tokens are the ones kept";
      // Renormalised over the nucleus.
      for (std::size_t i = 0; i < l.size(); ++i) {
        if (q[i] > 0) {
          EXPECT_NEAR(q[i], p[i] / kept, 1e-9);
        }
      }
    }
  }
}

TEST(Decoding, TopPAlwaysKeepsTheTopToken) {
  Config c;
  c.top_p = 1e-6;
  const std::vector<double> q = Sampler(c).distribution(std::vector<float>{0, 0.5f, 0.2f}, {});
  EXPECT_EQ(q, (std::vector<double>{0, 1, 0}));
}

TEST(Decoding, MinPKeepsTokensAFractionAsLikelyAsTheTop) {
  Config c;
  c.min_p = 0.2;
  // p proportional to exp(l): ratios to the top are 1, e^-1 = .37, e^-2 = .14, e^-1.5 = .22
  const std::vector<float> l = {3, 2, 1, 1.5f};
  const std::vector<double> q = Sampler(c).distribution(l, {});
  EXPECT_GT(q[0], 0);
  EXPECT_GT(q[1], 0);
  EXPECT_EQ(q[2], 0);
  EXPECT_GT(q[3], 0);
}

TEST(Decoding, PenaltiesOnHandMadeLogits) {
  const std::vector<float> l = {2, -1, 0.5f, 3};
  const std::vector<std::int64_t> ctx = {0, 0, 1};
  Config c;
  c.greedy = true;  // apply only the penalties; read the logits back through next()
  auto after = [&](const Config& cfg) {
    std::vector<float> x = l;
    Philox rng(0);
    Sampler(cfg).next(x, ctx, rng);
    return x;
  };
  Config rep = c;
  rep.repetition_penalty = 2;
  EXPECT_EQ(after(rep), (std::vector<float>{1, -2, 0.5f, 3}));
  Config freq = c;
  freq.frequency_penalty = 0.5;
  EXPECT_EQ(after(freq), (std::vector<float>{1, -1.5f, 0.5f, 3}));
  Config pres = c;
  pres.presence_penalty = 1;
  EXPECT_EQ(after(pres), (std::vector<float>{1, -2, 0.5f, 3}));
  Config window = freq;
  window.penalty_window = 2;  // only the last two tokens: 0 once, 1 once
  EXPECT_EQ(after(window), (std::vector<float>{1.5f, -1.5f, 0.5f, 3}));
}

TEST(Decoding, PenaltiesChangeTheGreedyChoice) {
  Config c;
  c.greedy = true;
  c.repetition_penalty = 10;
  std::vector<float> l = {4, 3.9f};
  const std::vector<std::int64_t> ctx = {0};
  Philox rng(0);
  EXPECT_EQ(Sampler(c).next(l, ctx, rng), 1);
}

TEST(Decoding, TheOrderOfTheChainMatters) {
  // top_p before temperature keeps the nucleus of the sharp distribution; after a high
  // temperature the distribution is flat and the nucleus is larger.
  const std::vector<float> l = {4, 2, 1, 0};
  Config a;
  a.top_p = 0.8;
  a.temperature = 5;
  a.order = {Step::top_p, Step::temperature};
  Config b = a;
  b.order = {Step::temperature, Step::top_p};
  auto support = [&](const Config& c) {
    const std::vector<double> q = Sampler(c).distribution(l, {});
    return std::count_if(q.begin(), q.end(), [](double v) { return v > 0; });
  };
  EXPECT_EQ(support(a), 1);
  EXPECT_GE(support(b), 3);
}

TEST(Decoding, DrawsFollowTheDistribution) {
  Config c;
  c.temperature = 0.8;
  c.top_k = 5;
  const std::vector<float> l = {0.3f, 1.5f, -0.4f, 1.1f, 0.0f, 2.0f, -3.0f};
  const std::vector<double> q = Sampler(c).distribution(l, {});
  const int n = 40000;
  std::vector<int> hits(l.size(), 0);
  Sampler s(c);
  for (int i = 0; i < n; ++i) {
    std::vector<float> x = l;
    Philox rng = sample_rng(7, static_cast<std::uint64_t>(i));
    ++hits[static_cast<std::size_t>(s.next(x, {}, rng))];
  }
  for (std::size_t i = 0; i < l.size(); ++i) {
    const double sd = std::sqrt(n * q[i] * (1 - q[i]));
    EXPECT_NEAR(hits[i], n * q[i], 5 * sd + 1) << "token " << i;
  }
}

TEST(Decoding, SameSeedAndIndexSameTokens) {
  Config c;
  c.top_p = 0.9;
  c.repetition_penalty = 1.3;
  auto run = [&](std::uint64_t seed, std::uint64_t index) {
    Sampler s(c);
    Philox rng = sample_rng(seed, index);
    std::vector<std::int64_t> ctx;
    for (int step = 0; step < 64; ++step) {
      std::vector<float> l = random_logits(static_cast<std::uint64_t>(step), 50, false);
      ctx.push_back(s.next(l, ctx, rng));
    }
    return ctx;
  };
  EXPECT_EQ(run(1, 3), run(1, 3));
  EXPECT_NE(run(1, 3), run(1, 4));
  EXPECT_NE(run(1, 3), run(2, 3));
}

TEST(Decoding, BadSettingsAndInputsAreClearErrors) {
  auto fails = [](auto&& f, const std::string& part) {
    try {
      f();
      ADD_FAILURE() << "no error; expected one containing '" << part << "'";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
  };
  Config c;
  c.top_p = 0;
  fails([&] { Sampler{c}; }, "top_p");
  c = Config{};
  c.order = {Step::top_k, Step::top_k};
  fails([&] { Sampler{c}; }, "twice");
  c = Config{};
  c.top_k = 3;
  c.order = {Step::temperature};
  fails([&] { Sampler{c}; }, "top_k is set but 'top_k' is not in sampling_order");
  c = Config{};
  c.repetition_penalty = 1.5;
  std::vector<float> l = {1, 2};
  const std::vector<std::int64_t> bad_ctx = {5};
  Philox rng(0);
  fails([&] { Sampler(c).next(l, bad_ctx, rng); }, "outside the vocabulary");
  std::vector<float> nan = {1, std::nanf("")};
  fails([&] { Sampler(Config{}).next(nan, {}, rng); }, "non-finite");
  Params p;
  p.set("sampling_order", std::vector<std::string>{"temperature", "top_z"});
  fails([&] { config_from(p); }, "unknown step 'top_z'");
}

TEST(Decoding, ParamSpecsResolveToTheDefaults) {
  const Params resolved = Params::resolve(param_specs(128), Params{});
  const Config c = config_from(resolved);
  EXPECT_FALSE(c.is_greedy());
  EXPECT_EQ(c.temperature, 1.0);
  EXPECT_EQ(c.top_k, 0);
  EXPECT_EQ(c.max_tokens, 128);
  EXPECT_EQ(c.order, default_order());
  Params given;
  given.set("top_k", std::int64_t{40});
  given.set("stop", std::vector<std::string>{"\n\n"});
  const Config d = config_from(Params::resolve(param_specs(128), given));
  EXPECT_EQ(d.top_k, 40);
  EXPECT_EQ(d.stop, std::vector<std::string>{"\n\n"});
  // Ranges are part of the schema, so `kiln validate` reports them with the key's position.
  for (const ParamSpec& s : param_specs(128)) {
    if (s.name == "top_p") {
      EXPECT_NE(s.check(ParamValue{2.0}), "");
    }
    if (s.name == "sampling_order") {
      EXPECT_NE(s.check(ParamValue{std::vector<std::string>{"nope"}}), "");
    }
  }
}

TEST(TextStream, StopStringsEndTheTextAcrossPieces) {
  TextStream s({"\n%\n"});
  std::string out;
  for (const char* piece : {"Hello", " world", "\n", "%", "\n", "more"}) out += s.push(piece);
  EXPECT_TRUE(s.stopped());
  EXPECT_EQ(out, "Hello world");
  EXPECT_EQ(s.text(), "Hello world");
  EXPECT_EQ(s.push("x"), "");
}

TEST(TextStream, HoldsBackPossibleStopPrefixesUntilResolved) {
  TextStream s({"END"});
  EXPECT_EQ(s.push("abcE"), "abc");
  EXPECT_EQ(s.push("N"), "");
  EXPECT_EQ(s.push("x"), "ENx");  // not a stop string after all
  EXPECT_FALSE(s.stopped());
  EXPECT_EQ(s.push("E"), "");
  EXPECT_EQ(s.finish(), "E");
  EXPECT_EQ(s.text(), "abcENxE");
}

TEST(TextStream, NeverSplitsAUtf8Sequence) {
  TextStream s;
  const std::string euro = "\xE2\x82\xAC";
  EXPECT_EQ(s.push("a" + euro.substr(0, 1)), "a");
  EXPECT_EQ(s.push(euro.substr(1, 1)), "");
  EXPECT_EQ(s.push(euro.substr(2)), euro);
  EXPECT_EQ(s.push("\xF0\x9F"), "");
  EXPECT_EQ(s.finish(), "\xF0\x9F") << "an incomplete tail is kept as produced";
}

TEST(TextStream, StopAtTheVeryStart) {
  TextStream s({"a", "bc"});
  EXPECT_EQ(s.push("bca"), "");
  EXPECT_TRUE(s.stopped());
  EXPECT_EQ(s.text(), "");
}

}  // namespace
}  // namespace kiln::decoding
