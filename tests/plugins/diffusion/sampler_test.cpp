// DDPM / DDIM sampling: per-sample randomness, image-to-image, strips, the DDIM update itself.
#include <gtest/gtest.h>

#include <cmath>

#include "kiln/autograd.hpp"
#include "kiln/ops.hpp"
#include "sampler.hpp"
#include "support/test_support.hpp"

namespace diffusion {
namespace {

using kiln::Tensor;

// A tiny conditional U-Net whose zero-initialised layers are given random values, so that its
// output depends on every input.
std::unique_ptr<UNet> random_net() {
  kiln::Generator gen(11);
  auto net = std::make_unique<UNet>(UNetConfig{.in_channels = 1,
                                               .image_size = 8,
                                               .channels = 8,
                                               .channel_mult = {1, 2},
                                               .res_blocks = 1,
                                               .groups = 4,
                                               .attention = true,
                                               .num_classes = 3},
                                    gen);
  kiln::NoGradGuard g;
  std::uint64_t seed = 100;
  for (const auto& [name, p] : net->named_parameters()) {
    if (name.find("conv2") != std::string::npos || name.find("proj") != std::string::npos ||
        name.find("conv_out") != std::string::npos) {
      Tensor(p).copy_(kiln::test::random_tensor(p.shape(), seed++, -0.2f, 0.2f));
    }
  }
  return net;
}

Tensor row(const Tensor& x, std::int64_t r) {
  return x.slice(0, r, r + 1).contiguous();
}

TEST(Sampler, SampleDoesNotDependOnItsBatch) {
  auto net = random_net();
  const Schedule s = Schedule::make("linear", 20);
  for (const char* method : {"ddpm", "ddim"}) {
    SamplerOptions o;
    o.method = method;
    o.steps = 5;
    o.eta = 0.5;
    o.guidance = 2.0;
    const Tensor batch =
        sample(*net, s, o, {4, 7, 9}, 42, Tensor::from_ints({0, 1, 3}, {3}), Tensor());
    const Tensor alone = sample(*net, s, o, {9}, 42, Tensor::from_ints({3}, {1}), Tensor());
    EXPECT_TRUE(kiln::test::all_close(alone, row(batch, 2), 1e-5f, 1e-5f)) << method;
    const Tensor pair = sample(*net, s, o, {7, 8}, 42, Tensor::from_ints({1, 2}, {2}), Tensor());
    EXPECT_TRUE(kiln::test::all_close(row(pair, 0), row(batch, 1), 1e-5f, 1e-5f)) << method;
    // Another seed, another sample.
    const Tensor other = sample(*net, s, o, {9}, 43, Tensor::from_ints({3}, {1}), Tensor());
    EXPECT_FALSE(kiln::test::all_close(other, alone, 1e-3f, 1e-3f)) << method;
  }
}

TEST(Sampler, DdimStepFollowsItsFormula) {
  // One DDIM step with eta = 0 from t to t_prev: x' = sqrt(ab') x0 + sqrt(1 - ab') eps, with
  // (eps, x0) the denoiser's output; checked against denoise() computed by hand.
  auto net = random_net();
  const Schedule s = Schedule::make("cosine", 20);
  SamplerOptions o;
  o.steps = 2;  // timesteps 19, 0
  o.clip = false;
  o.guidance = 1.0;
  const Tensor labels = Tensor::from_ints({2}, {1});
  const Tensor x19 = kiln::randn_for_samples({3}, {1, 8, 8}, 7, 0);
  const Denoised d19 = denoise(*net, s, o, x19, 19, labels);
  const Tensor x0 = kiln::ops::add(
      kiln::ops::mul_scalar(d19.x0, static_cast<float>(std::sqrt(s.alpha_bar(0)))),
      kiln::ops::mul_scalar(d19.eps, static_cast<float>(std::sqrt(1 - s.alpha_bar(0)))));
  const Denoised d0 = denoise(*net, s, o, x0, 0, labels);
  const Tensor got = sample(*net, s, o, {3}, 7, labels, Tensor());
  EXPECT_TRUE(kiln::test::all_close(got, d0.x0, 1e-4f, 1e-5f));
  // eps and x0 are consistent: x_t = sqrt(ab) x0 + sqrt(1 - ab) eps.
  const Tensor back = kiln::ops::add(
      kiln::ops::mul_scalar(d19.x0, static_cast<float>(std::sqrt(s.alpha_bar(19)))),
      kiln::ops::mul_scalar(d19.eps, static_cast<float>(std::sqrt(1 - s.alpha_bar(19)))));
  EXPECT_TRUE(kiln::test::all_close(back, x19, 1e-4f, 1e-4f));
}

TEST(Sampler, GuidanceScaleOneIsTheConditionalModel) {
  auto net = random_net();
  const Schedule s = Schedule::make("linear", 20);
  SamplerOptions o;
  o.guidance = 1.0;
  o.clip = false;  // guidance combines the raw predictions
  const Tensor x = kiln::randn_for_samples({0, 1}, {1, 8, 8}, 3, 0);
  const Tensor labels = Tensor::from_ints({0, 2}, {2});
  const Denoised plain = denoise(*net, s, o, x, 10, labels);
  o.guidance = 0.0;  // the unconditional model
  const Denoised uncond = denoise(*net, s, o, x, 10, labels);
  o.guidance = 1.0;
  const Denoised null = denoise(*net, s, o, x, 10, Tensor::from_ints({3, 3}, {2}));
  EXPECT_TRUE(kiln::test::all_close(uncond.eps, null.eps, 1e-5f, 1e-5f));
  EXPECT_FALSE(kiln::test::all_close(plain.eps, null.eps, 1e-3f, 1e-3f));
  o.guidance = 3.0;  // uncond + 3 (cond - uncond)
  const Denoised g3 = denoise(*net, s, o, x, 10, labels);
  const Tensor expect =
      kiln::ops::add(null.eps, kiln::ops::mul_scalar(kiln::ops::sub(plain.eps, null.eps), 3.f));
  EXPECT_TRUE(kiln::test::all_close(g3.eps, expect, 1e-4f, 1e-4f));
}

TEST(Sampler, ImageToImageStrengthAndStrip) {
  auto net = random_net();
  const Schedule s = Schedule::make("linear", 20);
  const Tensor init = kiln::test::random_tensor({2, 1, 8, 8}, 9);
  SamplerOptions o;
  o.steps = 10;
  o.strength = 0.0;
  const Tensor same = sample(*net, s, o, {0, 1}, 1, Tensor::from_ints({0, 1}, {2}), init);
  EXPECT_TRUE(kiln::test::all_close(same, init, 0.f, 0.f));
  o.strength = 0.3;  // 3 of the 10 steps
  o.frames = 4;
  std::vector<Tensor> frames;
  const Tensor out = sample(*net, s, o, {0, 1}, 1, Tensor::from_ints({0, 1}, {2}), init, &frames);
  ASSERT_EQ(frames.size(), 4u);
  EXPECT_TRUE(kiln::test::all_close(frames.back(), out, 0.f, 0.f));
  EXPECT_FALSE(kiln::test::all_close(out, init, 1e-3f, 1e-3f));
  o.strength = 1.5;
  EXPECT_THROW(sample(*net, s, o, {0}, 1, Tensor(), init.slice(0, 0, 1)), kiln::Error);
}

}  // namespace
}  // namespace diffusion
