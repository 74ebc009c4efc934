// conv_transpose2d with at most 4 output channels runs as a GEMM and a col2im scatter
// (sdk/src/ops/conv_transpose_narrow.cpp); wider ones run oneDNN's deconvolution. The first
// channels of a 16-channel transposed convolution (oneDNN) must equal the same channels computed
// alone (GEMM route), for every geometry, with bias and activation, from blocked inputs, and the
// GEMM route's gradients must match finite differences. PyTorch fixtures for the narrow cases
// are in conv_test.cpp (ConvTranspose2d.MatchesPyTorch: 2-4 output channels).
#include <gtest/gtest.h>

#include <array>
#include <string>
#include <vector>

#include "kiln/autograd.hpp"
#include "kiln/ops.hpp"
#include "support/test_support.hpp"

namespace kiln {
namespace {

using ops::Act;
using ops::ConvTranspose2dOptions;

struct Case {
  std::int64_t k, sh, sw, ph, pw, dil, oph, h, w;
};

std::string name(const Case& c) {
  return "k" + std::to_string(c.k) + " s" + std::to_string(c.sh) + "x" + std::to_string(c.sw) +
         " p" + std::to_string(c.ph) + "x" + std::to_string(c.pw) + " d" + std::to_string(c.dil) +
         " op" + std::to_string(c.oph) + " in " + std::to_string(c.h) + "x" + std::to_string(c.w);
}

const std::vector<Case> kCases = {
    {4, 2, 2, 1, 1, 1, 0, 5, 4},  // the VAE's last layer
    {3, 1, 1, 1, 1, 1, 0, 6, 5},  // the DCGAN's last layer
    {3, 2, 2, 1, 1, 1, 1, 5, 4},  // output_padding
    {4, 2, 1, 1, 0, 1, 0, 3, 4},  // rectangular stride and padding
    {3, 1, 1, 1, 1, 2, 1, 4, 5},  // dilation with output_padding
    {4, 3, 3, 1, 1, 1, 0, 1, 2},  // kernel rows whose outputs all fall in the padding
};

ConvTranspose2dOptions options(const Case& c, Act act = Act::none) {
  return {.stride = {c.sh, c.sw},
          .padding = {c.ph, c.pw},
          .output_padding = {c.oph, c.oph},
          .dilation = {c.dil, c.dil},
          .act = act};
}

TEST(ConvTransposeNarrow, EqualsTheFirstChannelsOfAWideOneDnnDeconvolution) {
  for (const Case& c : kCases) {
    SCOPED_TRACE(name(c));
    const Tensor x = test::random_tensor({2, 6, c.h, c.w}, 1);
    const Tensor w16 = test::random_tensor({6, 16, c.k, c.k}, 2);
    const Tensor b16 = test::random_tensor({16}, 3);
    for (std::int64_t oc : {1, 3, 4}) {
      for (Act act : {Act::none, Act::tanh, Act::relu}) {
        const Tensor wide = ops::conv_transpose2d(x, w16, b16, options(c, act)).contiguous();
        const Tensor narrow = ops::conv_transpose2d(x, w16.slice(1, 0, oc).contiguous(),
                                                    b16.slice(0, 0, oc), options(c, act));
        ASSERT_EQ(narrow.shape(), (Shape{2, oc, wide.size(2), wide.size(3)}));
        EXPECT_TRUE(test::all_close(narrow, wide.slice(1, 0, oc).contiguous(), 1e-5f, 1e-5f))
            << oc << " channels, act " << static_cast<int>(act);
      }
    }
  }
}

TEST(ConvTransposeNarrow, TakesABlockedInput) {
  // A 16-channel conv2d output is usually in oneDNN's blocked layout.
  const Tensor img = test::random_tensor({2, 3, 7, 7}, 1);
  const Tensor h = ops::conv2d(img, test::random_tensor({16, 3, 3, 3}, 2), Tensor(),
                               {.padding = {1, 1}, .act = Act::relu});
  const Tensor w = test::random_tensor({16, 1, 4, 4}, 3);
  const Tensor b = test::random_tensor({1}, 4);
  const ConvTranspose2dOptions o{.stride = {2, 2}, .padding = {1, 1}};
  EXPECT_TRUE(test::all_close(ops::conv_transpose2d(h, w, b, o),
                              ops::conv_transpose2d(h.contiguous(), w, b, o), 1e-6f, 1e-6f));
}

TEST(ConvTransposeNarrow, GradientsMatchFiniteDifferences) {
  for (const Case& c : kCases) {
    SCOPED_TRACE(name(c));
    Tensor x = test::random_tensor({2, 3, c.h, c.w}, 1).set_requires_grad();
    Tensor w = test::random_tensor({3, 2, c.k, c.k}, 2).set_requires_grad();
    Tensor b = test::random_tensor({2}, 3).set_requires_grad();
    KILN_EXPECT_GRADCHECK(
        [&c](const TensorList& in) {
          return ops::conv_transpose2d(in[0], in[1], in[2], options(c, Act::tanh));
        },
        {x, w, b});
  }
}

}  // namespace
}  // namespace kiln
