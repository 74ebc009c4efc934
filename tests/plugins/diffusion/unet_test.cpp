// The U-Net against PyTorch (bench/peers/ddpm.py through tests/fixtures/gen/diffusion_fixture.py):
// output and the gradients of every parameter and of the input; configuration errors.
#include <gtest/gtest.h>

#include "kiln/autograd.hpp"
#include "kiln/ops.hpp"
#include "support/test_support.hpp"
#include "unet.hpp"

namespace diffusion {
namespace {

using kiln::Tensor;

UNetConfig tiny() {
  return {.in_channels = 1,
          .image_size = 8,
          .channels = 8,
          .channel_mult = {1, 2},
          .res_blocks = 1,
          .groups = 4,
          .attention = true,
          .num_classes = 3};
}

TEST(UNet, MatchesPyTorchForwardAndGradients) {
  const kiln::Safetensors f = kiln::test::load_fixture("diffusion.safetensors");
  kiln::Generator gen(1);
  UNet net(tiny(), gen);
  kiln::TensorMap weights;
  for (const auto& [k, t] : f.tensors) {
    if (k.rfind("unet.w.", 0) == 0) weights[k.substr(7)] = t;
  }
  ASSERT_EQ(weights.size(), net.named_parameters().size());
  net.load_state_dict(weights);  // strict: the names are PyTorch's
  Tensor x = f.tensors.at("unet.x").clone().set_requires_grad();
  std::vector<float> t;
  for (std::int64_t v : f.tensors.at("unet.t").to_int_vector()) t.push_back(static_cast<float>(v));
  const Tensor out = net.forward(x, t, f.tensors.at("unet.labels"));
  EXPECT_TRUE(kiln::test::all_close(out, f.tensors.at("unet.out"), 1e-3f, 1e-4f));
  kiln::ops::sum(kiln::ops::mul(out, f.tensors.at("unet.r"))).backward();
  EXPECT_TRUE(kiln::test::all_close(x.grad(), f.tensors.at("unet.gx"), 1e-3f, 1e-4f));
  for (const auto& [name, p] : net.named_parameters()) {
    ASSERT_TRUE(p.grad().defined()) << name;
    EXPECT_TRUE(kiln::test::all_close(p.grad(), f.tensors.at("unet.g." + name), 2e-3f, 2e-4f))
        << name;
  }
}

TEST(UNet, B6LayoutHasThePeerParameterCount) {
  // Workload B6 of ../shared/peers/README.md: 64/128/256 channels, 2 blocks down, 3 up,
  // attention at 7x7; bench/peers/ddpm.py's UNet() counts 15,722,625 parameters.
  kiln::Generator gen(0);
  UNet net({.in_channels = 1,
            .image_size = 28,
            .channels = 64,
            .channel_mult = {1, 2, 4},
            .res_blocks = 2,
            .groups = 32,
            .attention = true,
            .num_classes = 0},
           gen);
  EXPECT_EQ(net.num_parameters(), 15722625);
}

TEST(UNet, ZeroInitialisedOutput) {
  kiln::Generator gen(2);
  UNet net(tiny(), gen);
  kiln::NoGradGuard g;
  const Tensor out = net.forward(kiln::test::random_tensor({2, 1, 8, 8}, 3), {1.f, 5.f},
                                 Tensor::from_ints({0, 2}, {2}));
  for (float v : out.to_vector()) EXPECT_EQ(v, 0.f);
}

TEST(UNet, BadConfigurationsAreErrors) {
  kiln::Generator gen(0);
  UNetConfig c = tiny();
  c.groups = 3;
  EXPECT_THROW(UNet(c, gen), kiln::Error);
  c = tiny();
  c.image_size = 7;  // cannot be halved once
  EXPECT_THROW(UNet(c, gen), kiln::Error);
  c = tiny();
  c.channel_mult = {};
  EXPECT_THROW(UNet(c, gen), kiln::Error);
  UNet net(tiny(), gen);
  kiln::NoGradGuard g;
  EXPECT_THROW(net.forward(Tensor::zeros({1, 1, 16, 16}), {1.f}), kiln::Error);
  EXPECT_THROW(net.forward(Tensor::zeros({2, 1, 8, 8}), {1.f}), kiln::Error);
}

}  // namespace
}  // namespace diffusion
