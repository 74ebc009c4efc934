// PyTorch parity of the elementwise, activation, reduction, matmul / linear and regression-loss
// ops (forward values and input gradients), against tests/fixtures/ops.safetensors.
#include <gtest/gtest.h>

#include "sdk/ops/parity.hpp"

namespace kiln {
namespace {

using test::expect_parity;
using Fn = std::function<Tensor(const TensorList&)>;

TEST(OpsParity, BinaryWithBroadcasting) {
  const std::vector<std::pair<std::string, Fn>> cases = {
      {"add", [](const TensorList& in) { return ops::add(in[0], in[1]); }},
      {"sub", [](const TensorList& in) { return ops::sub(in[0], in[1]); }},
      {"mul", [](const TensorList& in) { return ops::mul(in[0], in[1]); }},
      {"div", [](const TensorList& in) { return ops::div(in[0], in[1]); }},
      {"add_row", [](const TensorList& in) { return in[0] + in[1]; }},
      {"mul_col", [](const TensorList& in) { return in[0] * in[1]; }},
      {"maximum", [](const TensorList& in) { return ops::maximum(in[0], in[1]); }},
      {"minimum", [](const TensorList& in) { return ops::minimum(in[0], in[1]); }},
      // Equal elements split the gradient evenly between a and b.
      {"maximum_ties", [](const TensorList& in) { return ops::maximum(in[0], in[1]); }},
      {"minimum_ties", [](const TensorList& in) { return ops::minimum(in[0], in[1]); }},
  };
  for (const auto& [name, fn] : cases) expect_parity(name, {"a", "b"}, fn);
}

TEST(OpsParity, Unary) {
  const std::vector<std::pair<std::string, Fn>> cases = {
      {"exp", [](const TensorList& in) { return ops::exp(in[0]); }},
      {"log", [](const TensorList& in) { return ops::log(in[0]); }},
      {"sqrt", [](const TensorList& in) { return ops::sqrt(in[0]); }},
      {"square", [](const TensorList& in) { return ops::square(in[0]); }},
      {"abs", [](const TensorList& in) { return ops::abs(in[0]); }},
      {"pow", [](const TensorList& in) { return ops::pow(in[0], 2.5f); }},
      {"pow_int", [](const TensorList& in) { return ops::pow(in[0], 3.f); }},
      {"clamp", [](const TensorList& in) { return ops::clamp(in[0], -0.5f, 0.3f); }},
      {"scalar_ops", [](const TensorList& in) { return 2.f - in[0] * 3.f / 4.f + 0.5f; }},
  };
  for (const auto& [name, fn] : cases) expect_parity(name, {"x"}, fn);
  expect_parity("where", {"c", "a", "b"},
                [](const TensorList& in) { return ops::where(in[0], in[1], in[2]); });
}

TEST(OpsParity, Activations) {
  const std::vector<std::pair<std::string, Fn>> cases = {
      {"relu", [](const TensorList& in) { return ops::relu(in[0]); }},
      {"leaky_relu", [](const TensorList& in) { return ops::leaky_relu(in[0], 0.2f); }},
      {"tanh", [](const TensorList& in) { return ops::tanh(in[0]); }},
      {"sigmoid", [](const TensorList& in) { return ops::sigmoid(in[0]); }},
      {"gelu", [](const TensorList& in) { return ops::gelu(in[0]); }},
      {"gelu_tanh", [](const TensorList& in) { return ops::gelu(in[0], true); }},
      {"silu", [](const TensorList& in) { return ops::silu(in[0]); }},
      {"softplus", [](const TensorList& in) { return ops::softplus(in[0]); }},
  };
  for (const auto& [name, fn] : cases) expect_parity(name, {"x"}, fn);
}

TEST(OpsParity, Reductions) {
  const std::vector<std::pair<std::string, Fn>> cases = {
      {"sum_all", [](const TensorList& in) { return ops::sum(in[0]); }},
      {"sum_02",
       [](const TensorList& in) {
         return ops::sum(in[0], {0, 2});
       }},
      {"sum_1_keep", [](const TensorList& in) { return ops::sum(in[0], {1}, true); }},
      {"sum_last", [](const TensorList& in) { return ops::sum(in[0], {-1}); }},
      {"mean_all", [](const TensorList& in) { return ops::mean(in[0]); }},
      {"mean_1_keep", [](const TensorList& in) { return ops::mean(in[0], {1}, true); }},
      {"mean_02",
       [](const TensorList& in) {
         return ops::mean(in[0], {0, 2});
       }},
      {"amax_last", [](const TensorList& in) { return ops::amax(in[0], -1); }},
      {"amax_1_keep", [](const TensorList& in) { return ops::amax(in[0], 1, true); }},
  };
  for (const auto& [name, fn] : cases) expect_parity(name, {"x"}, fn);
}

TEST(OpsParity, Matmul) {
  const std::vector<std::pair<std::string, Fn>> cases = {
      {"matmul_2d", [](const TensorList& in) { return ops::matmul(in[0], in[1]); }},
      {"matmul_bcast", [](const TensorList& in) { return ops::matmul(in[0], in[1]); }},
      {"matmul_bt",
       [](const TensorList& in) { return ops::matmul(in[0], in[1].transpose(-1, -2)); }},
      {"matmul_at", [](const TensorList& in) { return ops::matmul(in[0].transpose(0, 1), in[1]); }},
      {"matmul_vec", [](const TensorList& in) { return ops::matmul(in[0], in[1]); }},
      {"matmul_matvec", [](const TensorList& in) { return ops::matmul(in[0], in[1]); }},
  };
  for (const auto& [name, fn] : cases) expect_parity(name, {"a", "b"}, fn);
}

TEST(OpsParity, MatmulOfBroadcastViews) {
  // Operands with stride-0 dimensions (e.g. the gradient of a sum) have only oneDNN's reference
  // kernel; matmul copies them dense instead. Values must match the dense product exactly.
  Tensor a = test::random_tensor({4, 1, 6}, 1).expand({4, 5, 6});
  Tensor b = test::random_tensor({6, 3}, 2).unsqueeze(0).expand({4, 6, 3});
  Tensor dense = ops::matmul(a.contiguous(), b.contiguous());
  EXPECT_TRUE(test::all_close(ops::matmul(a, b), dense, 0.f, 0.f));
  EXPECT_TRUE(test::all_close(ops::matmul(a.transpose(1, 2).transpose(1, 2), b), dense, 0.f, 0.f));
  Tensor ones = Tensor::scalar(1.f).expand({4, 6, 3});
  EXPECT_TRUE(test::all_close(ops::matmul(a, ones), ops::matmul(a, ones.contiguous()), 0.f, 0.f));
}

TEST(OpsParity, LinearWithEachFusedActivation) {
  const std::vector<std::tuple<std::string, ops::Act, float>> acts = {
      {"none", ops::Act::none, 0.f},
      {"relu", ops::Act::relu, 0.f},
      {"leaky_relu", ops::Act::leaky_relu, 0.1f},
      {"tanh", ops::Act::tanh, 0.f},
      {"sigmoid", ops::Act::sigmoid, 0.f},
      {"gelu", ops::Act::gelu, 0.f},
      {"gelu_tanh", ops::Act::gelu_tanh, 0.f},
      {"silu", ops::Act::silu, 0.f},
  };
  for (const auto& [name, act, alpha] : acts) {
    expect_parity("linear_" + name, {"x", "w", "b"}, [act, alpha](const TensorList& in) {
      return ops::linear(in[0], in[1], in[2], {.act = act, .act_alpha = alpha});
    });
    // Without autograd the activation is always fused; values must not change.
    test::expect_forward_parity(
        "linear_" + name, {"x", "w", "b"}, [act, alpha](const TensorList& in) {
          return ops::linear(in[0], in[1], in[2], {.act = act, .act_alpha = alpha});
        });
  }
  expect_parity("linear_nobias", {"x", "w"},
                [](const TensorList& in) { return ops::linear(in[0], in[1]); });
}

TEST(OpsParity, RegressionLosses) {
  const std::vector<std::pair<std::string, ops::Reduction>> reds = {
      {"none", ops::Reduction::none}, {"mean", ops::Reduction::mean}, {"sum", ops::Reduction::sum}};
  for (const auto& [name, red] : reds) {
    expect_parity("mse_" + name, {"p", "t"},
                  [red](const TensorList& in) { return ops::mse_loss(in[0], in[1], red); });
    expect_parity("l1_" + name, {"p", "t"},
                  [red](const TensorList& in) { return ops::l1_loss(in[0], in[1], red); });
  }
}

}  // namespace
}  // namespace kiln
