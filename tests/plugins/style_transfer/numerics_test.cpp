// The numerical pieces of style_transfer: L-BFGS, Gram matrices and loss gradients (against
// finite differences), the feature nets (random and the VGG-19 loader), image helpers.
#include <cmath>

#include "features.hpp"
#include "imaging.hpp"
#include "kiln/ops.hpp"
#include "kiln/random.hpp"
#include "kiln/safetensors.hpp"
#include "lbfgs.hpp"
#include "losses.hpp"
#include "style_test_util.hpp"

namespace kiln::style {
namespace {
using namespace kiln::style::test;

// Rosenbrock: minimum 0 at (1, 1); a curved valley that steepest descent crawls along.
double rosenbrock(const std::vector<float>& x, std::vector<float>& g) {
  const double a = x[0], b = x[1];
  g[0] = static_cast<float>(-2 * (1 - a) - 400 * a * (b - a * a));
  g[1] = static_cast<float>(200 * (b - a * a));
  return (1 - a) * (1 - a) + 100 * (b - a * a) * (b - a * a);
}

TEST(Lbfgs, SolvesRosenbrockWithLineSearch) {
  Lbfgs opt(2, {.history = 5});
  std::vector<float> x = {-1.2f, 1.f};
  double f = 0;
  for (int it = 0; it < 200; ++it) f = opt.iterate(x, rosenbrock);
  EXPECT_LT(f, 1e-6);
  EXPECT_NEAR(x[0], 1.0, 1e-3);
  EXPECT_NEAR(x[1], 1.0, 1e-3);
}

TEST(Lbfgs, QuadraticConvergesInFewIterationsAndBeatsGradientDescent) {
  // f = 0.5 sum a_i x_i^2 with condition number 100: exact line search L-BFGS needs ~n steps.
  const int n = 8;
  auto quad = [&](const std::vector<float>& x, std::vector<float>& g) {
    double f = 0;
    for (int i = 0; i < n; ++i) {
      const double a = std::pow(100.0, i / double(n - 1));
      g[i] = static_cast<float>(a * x[i]);
      f += 0.5 * a * x[i] * x[i];
    }
    return f;
  };
  Lbfgs opt(n, {.history = 10});
  std::vector<float> x(n, 1.f);
  double f = 0;
  for (int it = 0; it < 40; ++it) f = opt.iterate(x, quad);
  EXPECT_LT(f, 1e-8);
  // A single-pair history still descends monotonically.
  Lbfgs small(n, {.history = 1});
  std::vector<float> y(n, 1.f), g(n);
  double prev = quad(y, g);
  for (int it = 0; it < 20; ++it) {
    const double v = small.iterate(y, quad);
    EXPECT_LE(v, prev + 1e-12);
    prev = v;
  }
}

TEST(Lbfgs, FixedStepTakesOneEvaluationPerIteration) {
  auto quad = [](const std::vector<float>& x, std::vector<float>& g) {
    g[0] = x[0];
    g[1] = 4 * x[1];
    return 0.5 * x[0] * x[0] + 2.0 * x[1] * x[1];
  };
  Lbfgs opt(2, {.history = 4, .lr = 1.0, .line_search = false});
  std::vector<float> x = {3.f, -2.f};
  for (int it = 0; it < 10; ++it) opt.iterate(x, quad);
  EXPECT_EQ(opt.evaluations(), 11);  // the first point, then one per iteration
  std::vector<float> g(2);
  EXPECT_LT(quad(x, g), 1e-6);
}

TEST(Lbfgs, RejectsBadOptions) {
  expect_error([] { Lbfgs(4, {.history = 0}); }, {"lbfgs_history", "0"});
  expect_error([] { Lbfgs(4, {.lr = -1}); }, {"step", "-1"});
}

TEST(Gram, MatchesDefinitionAndGradient) {
  const Tensor f = kiln::test::random_tensor({2, 3, 4, 5}, 11);
  const Tensor g = gram(f);
  ASSERT_EQ(g.shape(), (Shape{2, 3, 3}));
  const auto fv = f.to_vector();
  const auto gv = g.to_vector();
  for (int n = 0; n < 2; ++n) {
    for (int i = 0; i < 3; ++i) {
      for (int j = 0; j < 3; ++j) {
        double s = 0;
        for (int p = 0; p < 20; ++p)
          s += double(fv[(n * 3 + i) * 20 + p]) * fv[(n * 3 + j) * 20 + p];
        EXPECT_NEAR(gv[(n * 3 + i) * 3 + j], s / 20, 1e-5);
      }
    }
  }
  KILN_EXPECT_GRADCHECK([](const TensorList& in) { return gram(in[0]); },
                        {kiln::test::random_tensor({1, 3, 4, 4}, 5).set_requires_grad()});
}

TEST(Gram, BlockedConvOutputsTakeTheSamePath) {
  // Convolution outputs come in oneDNN's blocked layout: gram gives the values and gradients of
  // the plain path.
  const Tensor x = kiln::test::random_tensor({1, 3, 12, 10}, 21);
  const Tensor w = kiln::test::random_tensor({32, 3, 3, 3}, 22);
  const Tensor f = ops::conv2d(x, w, Tensor(), {.padding = {1, 1}});
  EXPECT_TRUE(f.is_blocked());  // otherwise this test does not test a blocked input
  EXPECT_TRUE(kiln::test::all_close(gram(f), gram(f.contiguous()), 1e-5f, 1e-5f));
  KILN_EXPECT_GRADCHECK(
      [&](const TensorList& in) {
        return gram(ops::conv2d(in[0], w, Tensor(), {.padding = {1, 1}}));
      },
      {kiln::test::random_tensor({1, 3, 6, 5}, 23).set_requires_grad()}, 1e-3f, 5e-3f, 2e-2f);
}

TEST(Losses, TotalVariationAndItsGradient) {
  const Tensor flat = Tensor::full({1, 3, 6, 6}, 0.3f);
  EXPECT_FLOAT_EQ(total_variation(flat).item(), 0.f);
  KILN_EXPECT_GRADCHECK([](const TensorList& in) { return total_variation(in[0]); },
                        {kiln::test::random_tensor({1, 3, 5, 6}, 6).set_requires_grad()});
}

TEST(Losses, GradientOfTheStyleLossMatchesFiniteDifferences) {
  auto net = make_random_net({.seed = 3, .levels = 2, .width = 4});
  Losses losses(*net, {.content_layers = {"s1_2"},
                       .style_layers = {"s0_1", "s0_2", "s1_2"},
                       .content_weight = 1,
                       .style_weight = 10,
                       .tv_weight = 0.5});
  losses.set_style({kiln::test::random_tensor({1, 3, 10, 10}, 8, 0.f, 1.f)}, {1.0});
  const FeatureMap cf =
      losses.content_features(kiln::test::random_tensor({1, 3, 6, 6}, 9, 0.f, 1.f));
  // Relative losses: 0 when x is the content image itself (content term).
  const LossTerms at_content =
      losses.compute(kiln::test::random_tensor({1, 3, 6, 6}, 9, 0.f, 1.f), cf);
  EXPECT_NEAR(at_content.content, 0.0, 1e-9);
  EXPECT_GT(at_content.style, 0.0);
  KILN_EXPECT_GRADCHECK(
      [&](const TensorList& in) { return losses.compute(in[0], cf).total; },
      {kiln::test::random_tensor({1, 3, 6, 6}, 10, 0.2f, 0.8f).set_requires_grad()}, 1e-3f, 5e-3f,
      5e-2f);
}

TEST(Losses, BlendOfTwoStylesIsTheWeightedGram) {
  auto net = make_random_net({.seed = 3, .levels = 1, .width = 4});
  const Tensor a = kiln::test::random_tensor({1, 3, 8, 8}, 1, 0.f, 1.f);
  const Tensor b = kiln::test::random_tensor({1, 3, 8, 8}, 2, 0.f, 1.f);
  LossOptions o{
      .content_layers = {}, .style_layers = {"s0_2"}, .content_weight = 0, .style_weight = 1};
  // Style loss of x = a against the blend (3a + b) / 4 equals mse(G(a), (3G(a) + G(b)) / 4)
  // relative to the blend's mean square.
  Losses blend(*net, o);
  blend.set_style({a, b}, {3.0, 1.0});
  const Tensor ga = gram(net->forward(a, {"s0_2"}).at("s0_2"));
  const Tensor gb = gram(net->forward(b, {"s0_2"}).at("s0_2"));
  const Tensor target = ops::add(ops::mul_scalar(ga, 0.75f), ops::mul_scalar(gb, 0.25f));
  const double expected =
      ops::mean(ops::square(ops::sub(ga, target))).item() / ops::mean(ops::square(target)).item();
  EXPECT_NEAR(blend.compute(a, {}).style, expected, 1e-5 * (1 + expected));
  expect_error([&] { blend.set_style({a}, {0.0}); }, {"all 0"});
  expect_error([&] { blend.set_style({a, b}, {1.0}); }, {"2 style images", "1 blend"});
}

TEST(RandomNet, SeededLayersAndShapes) {
  auto a = make_random_net({.seed = 1, .levels = 3, .width = 8});
  auto b = make_random_net({.seed = 1, .levels = 3, .width = 8});
  auto c = make_random_net({.seed = 2, .levels = 3, .width = 8});
  const Tensor x = kiln::test::random_tensor({2, 3, 16, 12}, 4, 0.f, 1.f);
  const auto fa = a->forward(x, {"s0_1", "s2_2"});
  ASSERT_EQ(fa.size(), 2u);
  EXPECT_EQ(fa.at("s0_1").shape(), (Shape{2, 4, 16, 12}));
  EXPECT_EQ(fa.at("s2_2").shape(), (Shape{2, 8, 4, 3}));
  EXPECT_TRUE(kiln::test::all_close(fa.at("s2_2"), b->forward(x, {"s2_2"}).at("s2_2"), 0, 0));
  EXPECT_FALSE(kiln::test::all_close(fa.at("s2_2"), c->forward(x, {"s2_2"}).at("s2_2"), 1e-3f));
  expect_error([&] { a->forward(x, {"relu1_1"}); }, {"relu1_1", "random", "s0_1, s0_2"});
}

// A VGG-shaped file with small channel counts; conv 0 copies the normalised red channel into
// output channel 0 (centre tap 1, bias 0.25).
TensorMap tiny_vgg(std::int64_t base) {
  TensorMap t;
  std::int64_t in = 3;
  const std::int64_t widths[5] = {base, 2 * base, 2 * base, 4 * base, 4 * base};
  const int per_block[5] = {2, 2, 4, 4, 4};
  std::size_t k = 0;
  for (int blk = 0; blk < 5; ++blk) {
    for (int i = 0; i < per_block[blk]; ++i) {
      const int idx = vgg19_conv_indices()[k++];
      const std::int64_t out = widths[blk];
      Tensor w = kiln::test::random_tensor({out, in, 3, 3}, 100 + idx, -0.3f, 0.3f);
      Tensor b = kiln::test::random_tensor({out}, 200 + idx, -0.1f, 0.1f);
      if (idx == 0) {
        w.zero_();
        w.data<float>()[4] = 1.f;  // [0, 0, 1, 1]
        b.data<float>()[0] = 0.25f;
      }
      t["features." + std::to_string(idx) + ".weight"] = w;
      t["features." + std::to_string(idx) + ".bias"] = b;
      in = out;
    }
  }
  t["classifier.0.weight"] = Tensor::zeros({2, 2});  // extra keys are ignored
  return t;
}

TEST(Vgg19, LoadsTorchvisionNamesWithChannelCountsFromTheFile) {
  kiln::test::TempDir dir;
  save_safetensors(dir / "vgg.safetensors", tiny_vgg(4));
  auto net = load_vgg19(dir / "vgg.safetensors", true);
  EXPECT_EQ(net->layers().size(), 37u);  // 16 conv + 16 relu + 5 pool
  const Tensor x = kiln::test::random_tensor({1, 3, 32, 32}, 3, 0.f, 1.f);
  const auto f = net->forward(x, {"conv1_1", "relu1_1", "relu3_4", "pool5"});
  EXPECT_EQ(f.at("relu1_1").shape(), (Shape{1, 4, 32, 32}));
  EXPECT_EQ(f.at("relu3_4").shape(), (Shape{1, 8, 8, 8}));
  EXPECT_EQ(f.at("pool5").shape(), (Shape{1, 16, 1, 1}));
  const auto xv = x.to_vector();
  const auto c = f.at("conv1_1").contiguous().to_vector();
  const auto r = f.at("relu1_1").contiguous().to_vector();
  for (int p = 0; p < 32 * 32; p += 37) {
    const float expected = (xv[p] - 0.485f) / 0.229f + 0.25f;
    EXPECT_NEAR(c[p], expected, 1e-4);
    EXPECT_NEAR(r[p], std::max(0.f, expected), 1e-4);
  }
  // Max pooling differs from average pooling.
  auto maxnet = load_vgg19(dir / "vgg.safetensors", false);
  EXPECT_FALSE(kiln::test::all_close(maxnet->forward(x, {"pool1"}).at("pool1"),
                                     net->forward(x, {"pool1"}).at("pool1"), 1e-3f));
}

TEST(Vgg19, WrongNamesAndShapesAreClearErrors) {
  kiln::test::TempDir dir;
  TensorMap t = tiny_vgg(2);
  t.erase("features.10.weight");
  save_safetensors(dir / "missing.safetensors", t);
  expect_error([&] { load_vgg19(dir / "missing.safetensors", true); },
               {"missing.safetensors", "features.10.weight", "torchvision"});
  t = tiny_vgg(2);
  t["features.7.weight"] = Tensor::zeros({4, 3, 3, 3});
  save_safetensors(dir / "shape.safetensors", t);
  expect_error([&] { load_vgg19(dir / "shape.safetensors", true); },
               {"features.7.weight", "[4, 3, 3, 3]", "expected [out, 4, 3, 3]"});
  t = tiny_vgg(2);
  t["features.0.bias"] = Tensor::zeros({3});
  save_safetensors(dir / "bias.safetensors", t);
  expect_error([&] { load_vgg19(dir / "bias.safetensors", true); },
               {"features.0.bias", "expected [2]"});
}

TEST(Imaging, LuminanceTransferKeepsLumaAndTakesChroma) {
  const Tensor stylised = kiln::test::random_tensor({1, 3, 4, 4}, 1, 0.2f, 0.8f);
  Tensor content = Tensor::empty({1, 3, 4, 4});
  for (int p = 0; p < 16; ++p) {  // a reddish content
    content.data<float>()[p] = 0.6f;
    content.data<float>()[16 + p] = 0.4f;
    content.data<float>()[32 + p] = 0.4f;
  }
  const Tensor out = transfer_luminance(stylised, content);
  const auto s = stylised.to_vector(), o = out.to_vector();
  for (int p = 0; p < 16; ++p) {
    const float ys = 0.299f * s[p] + 0.587f * s[16 + p] + 0.114f * s[32 + p];
    const float yo = 0.299f * o[p] + 0.587f * o[16 + p] + 0.114f * o[32 + p];
    EXPECT_NEAR(yo, ys, 2e-3);
    EXPECT_GT(o[p], o[16 + p]);  // red stays above green: the content's hue
    EXPECT_NEAR(o[16 + p], o[32 + p], 2e-3);
  }
}

TEST(Imaging, BilinearResizeAndRoll) {
  const Tensor c = Tensor::full({1, 3, 5, 7}, 0.25f);
  const Tensor up = resize_bilinear(c, 14, 10);
  EXPECT_EQ(up.shape(), (Shape{1, 3, 10, 14}));
  for (float v : up.to_vector()) EXPECT_FLOAT_EQ(v, 0.25f);
  // A horizontal ramp stays a ramp with the same mean.
  Tensor ramp = Tensor::empty({1, 1, 1, 4});
  for (int i = 0; i < 4; ++i) ramp.data<float>()[i] = float(i);
  const auto r = resize_bilinear(ramp, 8, 1).to_vector();
  EXPECT_FLOAT_EQ(r[0], 0.f);  // clamped edge
  EXPECT_FLOAT_EQ(r[2], 0.75f);
  EXPECT_FLOAT_EQ(r[7], 3.f);
  const Tensor x = kiln::test::random_tensor({1, 2, 5, 6}, 1);
  EXPECT_TRUE(kiln::test::all_close(roll(roll(x, 2, -3), -2, 3), x, 0, 0));
  EXPECT_FLOAT_EQ(roll(x, 1, 0).to_vector()[6], x.to_vector()[0]);
  EXPECT_EQ(fit_long_side(400, 300, 200), (std::pair<int, int>{200, 150}));
  EXPECT_EQ(fit_long_side(400, 300, 0), (std::pair<int, int>{400, 300}));
}

TEST(Imaging, MemoryBoundNamesSizeAndLimit) {
  expect_error([] { check_memory("style_transfer/stylize", 8000, 6000, 9e9, 4096, "maps"); },
               {"8000x6000", "8583 MB", "memory_limit_mb = 4096", "size"});
  check_memory("x", 10, 10, 1e6, 4096, "maps");  // within the bound: no error
}

}  // namespace
}  // namespace kiln::style

#include "transformer_net.hpp"

namespace kiln::style {
namespace {

TEST(TransformerNet, ReplicatePaddingAndShapes) {
  const Tensor x = kiln::test::random_tensor({2, 3, 4, 5}, 1);
  const Tensor p = pad_replicate(x, 2);
  ASSERT_EQ(p.shape(), (Shape{2, 3, 8, 9}));
  const auto xv = x.to_vector(), pv = p.to_vector();
  EXPECT_FLOAT_EQ(pv[0], xv[0]);                  // corner repeats the corner
  EXPECT_FLOAT_EQ(pv[2 * 9 + 2], xv[0]);          // the original starts at (2, 2)
  EXPECT_FLOAT_EQ(pv[7 * 9 + 8], xv[3 * 5 + 4]);  // far corner
  EXPECT_FLOAT_EQ(pv[3 * 9 + 0], xv[1 * 5 + 0]);  // left edge of row 1
  KILN_EXPECT_GRADCHECK([](const TensorList& in) { return pad_replicate(in[0], 1); },
                        {kiln::test::random_tensor({1, 2, 3, 3}, 2).set_requires_grad()});
  Generator gen(1);
  TransformerNet net(4, 1, true, gen);
  EXPECT_EQ(net.forward(kiln::test::random_tensor({2, 3, 12, 16}, 3, 0.f, 1.f)).shape(),
            (Shape{2, 3, 12, 16}));
}

}  // namespace
}  // namespace kiln::style

namespace kiln::style {
namespace {

// tests/fixtures/gen/style_fixture.py: the losses through a VGG-shaped network in PyTorch.
TEST(Vgg19, LossesAndGradientMatchPyTorch) {
  const Safetensors f = kiln::test::load_fixture("style.safetensors");
  auto net = load_vgg19(kiln::test::fixture_path("style.safetensors"), true);
  Losses losses(*net, {.content_layers = {"relu3_1"},
                       .style_layers = {"relu1_1", "relu2_1", "relu3_1", "relu4_1"},
                       .content_weight = 1,
                       .style_weight = 100,
                       .tv_weight = 0.5});
  losses.set_style({f.tensors.at("style")}, {1.0});
  const FeatureMap cf = losses.content_features(f.tensors.at("content"));
  const Tensor x = f.tensors.at("x").clone().set_requires_grad(true);
  const LossTerms t = losses.compute(x, cf);
  EXPECT_NEAR(t.content, f.tensors.at("content_loss").item(), 1e-4 * (1 + t.content));
  EXPECT_NEAR(t.style, f.tensors.at("style_loss").item(), 1e-4 * (1 + t.style));
  EXPECT_NEAR(t.tv, f.tensors.at("tv_loss").item(), 1e-6);
  EXPECT_NEAR(t.total.item(), f.tensors.at("total_loss").item(), 1e-4);
  t.total.backward();
  EXPECT_TRUE(kiln::test::all_close(x.grad(), f.tensors.at("grad"), 1e-3f, 1e-6f));
  EXPECT_TRUE(
      kiln::test::all_close(gram(net->forward(f.tensors.at("style"), {"relu2_1"}).at("relu2_1")),
                            f.tensors.at("gram_relu2_1"), 1e-4f, 1e-6f));
}

}  // namespace
}  // namespace kiln::style
