// nn::Conv2d, ConvTranspose2d, BatchNorm2d, LayerNorm, GroupNorm, MaxPool2d, AvgPool2d and
// Upsample: PyTorch parameter names, shapes and initialisation, forward against the PyTorch
// fixtures through load_state_dict, running statistics, train/eval, checkpoints and errors.
#include <gtest/gtest.h>

#include <cmath>

#include "kiln/nn/avg_pool2d.hpp"
#include "kiln/nn/batch_norm2d.hpp"
#include "kiln/nn/conv2d.hpp"
#include "kiln/nn/conv_transpose2d.hpp"
#include "kiln/nn/group_norm.hpp"
#include "kiln/nn/layer_norm.hpp"
#include "kiln/nn/max_pool2d.hpp"
#include "kiln/nn/upsample.hpp"
#include "kiln/safetensors.hpp"
#include "sdk/ops/conv_fixture_cases.hpp"
#include "support/test_support.hpp"

namespace kiln {
namespace {

using test::conv_fx;

std::vector<std::pair<std::string, Shape>> names_and_shapes(const nn::NamedTensors& ts) {
  std::vector<std::pair<std::string, Shape>> out;
  for (const auto& [n, t] : ts) out.emplace_back(n, t.shape());
  return out;
}

float max_abs(const Tensor& t) {
  float m = 0.f;
  for (float v : t.to_vector()) m = std::max(m, std::fabs(v));
  return m;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

TEST(Conv2dModule, ParametersAndInitialisationAsPyTorch) {
  Generator gen(7);
  nn::Conv2d conv(6, 8, {3, 2}, {.groups = 2}, true, gen);
  using NS = std::vector<std::pair<std::string, Shape>>;
  EXPECT_EQ(names_and_shapes(conv.named_parameters()),
            (NS{{"weight", {8, 3, 3, 2}}, {"bias", {8}}}));
  const float bound = 1.f / std::sqrt(3.f * 3.f * 2.f);  // fan_in = 6 / 2 * 3 * 2
  EXPECT_LE(max_abs(conv.weight), bound);
  EXPECT_GT(max_abs(conv.weight), 0.8f * bound);  // spread over the whole interval
  EXPECT_LE(max_abs(conv.bias), bound);
  EXPECT_TRUE(conv.weight.requires_grad());
  // The generator decides the values.
  Generator same(7), other(8);
  nn::Conv2d conv2(6, 8, {3, 2}, {.groups = 2}, true, same);
  nn::Conv2d conv3(6, 8, {3, 2}, {.groups = 2}, true, other);
  EXPECT_TRUE(test::bitwise_equal(conv.weight, conv2.weight));
  EXPECT_FALSE(test::all_close(conv.weight, conv3.weight, 0.f, 0.f));
  nn::Conv2d nobias(3, 4, 5, {}, false);
  EXPECT_EQ(names_and_shapes(nobias.named_parameters()), (NS{{"weight", {4, 3, 5, 5}}}));
  EXPECT_FALSE(nobias.bias.defined());
}

TEST(Conv2dModule, ForwardMatchesPyTorchAfterLoadingItsWeights) {
  nn::Conv2d conv(6, 4, {3, 2}, {.stride = {2, 1}, .padding = {1, 0}, .groups = 2});
  conv.load_state_dict({{"weight", conv_fx("conv_groups.w")}, {"bias", conv_fx("conv_groups.b")}});
  EXPECT_TRUE(test::all_close(conv.forward(conv_fx("conv_groups.x")), conv_fx("conv_groups.out"),
                              1e-4f, 2e-5f));
  nn::Conv2d relu(3, 5, 3, {.padding = {1, 1}, .act = ops::Act::relu});
  relu.load_state_dict({{"weight", conv_fx("conv_relu.w")}, {"bias", conv_fx("conv_relu.b")}});
  EXPECT_TRUE(test::all_close(relu.forward(conv_fx("conv_relu.x")), conv_fx("conv_relu.out"), 1e-4f,
                              2e-5f));
}

TEST(ConvTranspose2dModule, ParametersInitialisationAndForward) {
  Generator gen(3);
  nn::ConvTranspose2d up(4, 6, {3, 2}, {.groups = 2}, true, gen);
  using NS = std::vector<std::pair<std::string, Shape>>;
  EXPECT_EQ(names_and_shapes(up.named_parameters()), (NS{{"weight", {4, 3, 3, 2}}, {"bias", {6}}}));
  const float bound = 1.f / std::sqrt(3.f * 3.f * 2.f);  // fan_in = 6 / 2 * 3 * 2
  EXPECT_LE(max_abs(up.weight), bound);
  EXPECT_GT(max_abs(up.weight), 0.8f * bound);
  EXPECT_LE(max_abs(up.bias), bound);

  nn::ConvTranspose2d d(4, 3, 3, {.stride = {2, 2}, .padding = {1, 1}, .output_padding = {1, 1}});
  d.load_state_dict(
      {{"weight", conv_fx("deconv_s2p1op1.w")}, {"bias", conv_fx("deconv_s2p1op1.b")}});
  EXPECT_TRUE(test::all_close(d.forward(conv_fx("deconv_s2p1op1.x")), conv_fx("deconv_s2p1op1.out"),
                              1e-4f, 2e-5f));
}

TEST(ConvModules, ForwardWithAPrecisionIsTheOpWithThatOption) {
  Generator gen(4);
  const Tensor x = test::random_tensor({2, 16, 5, 5}, 1);
  nn::Conv2d c(16, 8, 3, {.padding = {1, 1}}, true, gen);
  EXPECT_TRUE(test::bitwise_equal(
      c.forward(x, DType::bf16),
      ops::conv2d(x, c.weight, c.bias, {.padding = {1, 1}, .precision = DType::bf16})));
  EXPECT_TRUE(test::bitwise_equal(c.forward(x, DType::f32), c.forward(x)));
  nn::ConvTranspose2d t(16, 8, 4, {.stride = {2, 2}, .padding = {1, 1}}, true, gen);
  EXPECT_TRUE(test::bitwise_equal(
      t.forward(x, DType::bf16),
      ops::conv_transpose2d(x, t.weight, t.bias,
                            {.stride = {2, 2}, .padding = {1, 1}, .precision = DType::bf16})));
  EXPECT_FALSE(test::bitwise_equal(t.forward(x, DType::bf16), t.forward(x)));
  EXPECT_EQ(c.options().precision, DType::f32);  // the module's own options are unchanged
}

TEST(BatchNorm2dModule, NamesBuffersAndRunningStatsAsPyTorch) {
  nn::BatchNorm2d bn(4);
  using NS = std::vector<std::pair<std::string, Shape>>;
  EXPECT_EQ(names_and_shapes(bn.named_parameters()), (NS{{"weight", {4}}, {"bias", {4}}}));
  EXPECT_EQ(names_and_shapes(bn.named_buffers()),
            (NS{{"running_mean", {4}}, {"running_var", {4}}, {"num_batches_tracked", {}}}));
  EXPECT_EQ(bn.num_batches_tracked.dtype(), DType::s64);
  EXPECT_EQ(bn.weight.to_vector(), std::vector<float>(4, 1.f));
  EXPECT_EQ(bn.bias.to_vector(), std::vector<float>(4, 0.f));
  EXPECT_EQ(bn.running_var.to_vector(), std::vector<float>(4, 1.f));
  EXPECT_FALSE(bn.running_mean.requires_grad());

  // The fixture's two training steps, starting from its initial statistics.
  bn.load_state_dict({{"weight", conv_fx("bn_train.w")},
                      {"bias", conv_fx("bn_train.b")},
                      {"running_mean", conv_fx("bn_train.rm0")},
                      {"running_var", conv_fx("bn_train.rv0")},
                      {"num_batches_tracked", Tensor::zeros({}, DType::s64)}});
  Tensor y = bn.forward(conv_fx("bn_train.x"));
  EXPECT_TRUE(test::all_close(y, conv_fx("bn_train.out"), 1e-4f, 2e-5f));
  bn.forward(conv_fx("bn_train.x2"));
  EXPECT_TRUE(test::all_close(bn.running_mean, conv_fx("bn_train.rm2"), 1e-5f, 1e-6f));
  EXPECT_TRUE(test::all_close(bn.running_var, conv_fx("bn_train.rv2"), 1e-5f, 1e-6f));
  EXPECT_EQ(bn.num_batches_tracked.to_int_vector(), (std::vector<std::int64_t>{2}));

  // Evaluation: running statistics, nothing updated.
  bn.eval();
  Tensor x = conv_fx("bn_eval.x");
  Tensor expect = ops::batch_norm(x, bn.weight, bn.bias, bn.running_mean, bn.running_var, false);
  EXPECT_TRUE(test::bitwise_equal(bn.forward(x), expect));
  EXPECT_EQ(bn.num_batches_tracked.to_int_vector(), (std::vector<std::int64_t>{2}));
  EXPECT_TRUE(test::all_close(bn.running_mean, conv_fx("bn_train.rm2"), 1e-5f, 1e-6f));
}

TEST(BatchNorm2dModule, WithoutAffineOrRunningStats) {
  nn::BatchNorm2d plain(3, 1e-5f, 0.1f, false, false);
  EXPECT_TRUE(plain.named_parameters().empty());
  EXPECT_TRUE(plain.named_buffers().empty());
  plain.eval();  // without running statistics, evaluation still uses the batch statistics
  Tensor x = test::random_tensor({2, 3, 4, 5}, 1);
  EXPECT_TRUE(test::bitwise_equal(
      plain.forward(x), ops::batch_norm(x, Tensor(), Tensor(), Tensor(), Tensor(), true)));
  EXPECT_TRUE(error_of([&] { plain.forward(x.select(0, 0)); }).find("expected a 4-d input") !=
              std::string::npos);
  EXPECT_TRUE(error_of([&] {
                plain.forward(test::random_tensor({2, 4, 3, 3}, 1));
              }).find("the layer has 3 channels but x has 4") != std::string::npos);
}

TEST(NormModules, LayerNormAndGroupNormMatchPyTorch) {
  nn::LayerNorm ln({4, 5});
  using NS = std::vector<std::pair<std::string, Shape>>;
  EXPECT_EQ(names_and_shapes(ln.named_parameters()), (NS{{"weight", {4, 5}}, {"bias", {4, 5}}}));
  ln.load_state_dict({{"weight", conv_fx("ln_last2.w")}, {"bias", conv_fx("ln_last2.b")}});
  EXPECT_TRUE(
      test::all_close(ln.forward(conv_fx("ln_last2.x")), conv_fx("ln_last2.out"), 1e-4f, 2e-5f));
  EXPECT_TRUE(error_of([&] {
                ln.forward(test::random_tensor({2, 5, 4}, 1));
              }).find("the last dimensions of x must be [4, 5]") != std::string::npos);
  EXPECT_TRUE(nn::LayerNorm({7}, 1e-5f, false).named_parameters().empty());

  nn::GroupNorm gn(3, 6);
  EXPECT_EQ(names_and_shapes(gn.named_parameters()), (NS{{"weight", {6}}, {"bias", {6}}}));
  EXPECT_EQ(gn.weight.to_vector(), std::vector<float>(6, 1.f));
  gn.load_state_dict({{"weight", conv_fx("gn_g3.w")}, {"bias", conv_fx("gn_g3.b")}});
  EXPECT_TRUE(test::all_close(gn.forward(conv_fx("gn_g3.x")), conv_fx("gn_g3.out"), 1e-4f, 2e-5f));
  EXPECT_TRUE(error_of([&] {
                gn.forward(test::random_tensor({2, 4, 3}, 1));
              }).find("expected x [N, 6, ...]") != std::string::npos);
}

TEST(PoolModules, ForwardAsTheOps) {
  Tensor x = test::random_tensor({2, 3, 7, 5}, 1);
  EXPECT_TRUE(
      test::bitwise_equal(nn::MaxPool2d(2).forward(x), ops::max_pool2d(x, {.kernel = {2, 2}})));
  const ops::Pool2dOptions o{
      .kernel = {3, 3}, .stride = {2, 2}, .padding = {1, 1}, .count_include_pad = false};
  EXPECT_TRUE(test::bitwise_equal(nn::AvgPool2d(o).forward(x), ops::avg_pool2d(x, o)));
  EXPECT_EQ(nn::Upsample(3).forward(x).shape(), (Shape{2, 3, 21, 15}));
  EXPECT_TRUE(nn::MaxPool2d(2).named_parameters().empty());
}

TEST(ConvModules, CheckpointRoundTrip) {
  test::TempDir dir;
  nn::Conv2d a(3, 4, 3, {.padding = {1, 1}});
  nn::BatchNorm2d bn(4);
  Tensor x = test::random_tensor({2, 3, 5, 5}, 1);
  bn.forward(a.forward(x));  // moves the running statistics
  save_safetensors(dir / "conv.safetensors", a.state_dict());
  save_safetensors(dir / "bn.safetensors", bn.state_dict());
  Generator other(99);
  nn::Conv2d b(3, 4, 3, {.padding = {1, 1}}, true, other);
  nn::BatchNorm2d bn2(4);
  b.load_state_dict(load_safetensors(dir / "conv.safetensors").tensors);
  bn2.load_state_dict(load_safetensors(dir / "bn.safetensors").tensors);
  bn.eval();
  bn2.eval();
  EXPECT_TRUE(test::bitwise_equal(bn2.forward(b.forward(x)), bn.forward(a.forward(x))));
  EXPECT_EQ(bn2.num_batches_tracked.to_int_vector(), (std::vector<std::int64_t>{1}));
}

TEST(ConvModules, RejectBadConstruction) {
  auto has = [](const std::string& s, const std::string& part) {
    return s.find(part) != std::string::npos;
  };
  EXPECT_TRUE(has(error_of([] { nn::Conv2d(0, 4, 3); }), "channel counts must be positive"));
  EXPECT_TRUE(has(error_of([] { nn::Conv2d(3, 4, 0); }), "kernel_size must be positive"));
  EXPECT_TRUE(has(error_of([] { nn::Conv2d(6, 4, 3, {.groups = 4}); }),
                  "groups (4) must divide in_channels (6) and out_channels (4)"));
  EXPECT_TRUE(has(error_of([] { nn::ConvTranspose2d(4, 6, 3, {.groups = 4}); }),
                  "nn::ConvTranspose2d: groups (4) must divide"));
  EXPECT_TRUE(has(error_of([] { nn::BatchNorm2d(0); }), "num_features must be positive"));
  EXPECT_TRUE(has(error_of([] { nn::BatchNorm2d(3, 1e-5f, 2.f); }), "momentum must be in [0, 1]"));
  EXPECT_TRUE(has(error_of([] { nn::GroupNorm(4, 6); }),
                  "num_groups (4) must be positive and "
                  "divide num_channels (6)"));
  EXPECT_TRUE(has(error_of([] { nn::LayerNorm({}); }), "normalized_shape must be non-empty"));
  EXPECT_TRUE(has(error_of([] { nn::MaxPool2d(0); }), "kernel must be positive"));
  EXPECT_TRUE(has(error_of([] {
                    nn::AvgPool2d(ops::Pool2dOptions{.kernel = {2, 0}});
                  }),
                  "kernel must be positive"));
  EXPECT_TRUE(has(error_of([] { nn::Upsample(0); }), "scale_factor must be a positive integer"));
}

}  // namespace
}  // namespace kiln
