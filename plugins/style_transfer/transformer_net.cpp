#include "transformer_net.hpp"

#include <algorithm>

#include "kiln/error.hpp"
#include "kiln/ops.hpp"

namespace kiln::style {

ConvNorm::ConvNorm(std::int64_t in, std::int64_t out, std::int64_t k, std::int64_t stride,
                   bool instance_norm, Generator& gen) {
  conv_ = register_module(
      "conv",
      std::make_shared<nn::Conv2d>(
          in, out, k, ops::Conv2dOptions{.stride = {stride, stride}, .padding = {k / 2, k / 2}},
          true, gen));
  std::int64_t groups = out;
  if (!instance_norm) {
    groups = std::min<std::int64_t>(8, out);
    while (out % groups != 0) --groups;
  }
  norm_ = register_module("norm", std::make_shared<nn::GroupNorm>(groups, out));
}

Tensor ConvNorm::forward(const Tensor& x, bool relu) const {
  Tensor h = norm_->forward(conv_->forward(x));
  return relu ? ops::relu(h) : h;
}

ResidualBlock::ResidualBlock(std::int64_t c, bool instance_norm, Generator& gen) {
  a_ = register_module("a", std::make_shared<ConvNorm>(c, c, 3, 1, instance_norm, gen));
  b_ = register_module("b", std::make_shared<ConvNorm>(c, c, 3, 1, instance_norm, gen));
}

Tensor ResidualBlock::forward(const Tensor& x) const {
  return ops::add(x, b_->forward(a_->forward(x, true), false));
}

TransformerNet::TransformerNet(std::int64_t w, std::int64_t blocks, bool inorm, Generator& gen) {
  KILN_CHECK(w >= 1 && blocks >= 0, "style_transfer: bad transformer net size");
  c1_ = register_module("conv1", std::make_shared<ConvNorm>(3, w, 9, 1, inorm, gen));
  c2_ = register_module("conv2", std::make_shared<ConvNorm>(w, 2 * w, 3, 2, inorm, gen));
  c3_ = register_module("conv3", std::make_shared<ConvNorm>(2 * w, 4 * w, 3, 2, inorm, gen));
  for (std::int64_t k = 0; k < blocks; ++k) {
    res_.push_back(register_module("res" + std::to_string(k),
                                   std::make_shared<ResidualBlock>(4 * w, inorm, gen)));
  }
  c4_ = register_module("up1", std::make_shared<ConvNorm>(4 * w, 2 * w, 3, 1, inorm, gen));
  c5_ = register_module("up2", std::make_shared<ConvNorm>(2 * w, w, 3, 1, inorm, gen));
  c6_ = register_module("conv6", std::make_shared<nn::Conv2d>(
                                     w, 3, 9, ops::Conv2dOptions{.padding = {4, 4}}, true, gen));
}

Tensor TransformerNet::forward(const Tensor& x) const {
  KILN_CHECK(x.dim() == 4 && x.size(1) == 3 && x.size(2) % 4 == 0 && x.size(3) % 4 == 0,
             "style_transfer: the style network needs [N, 3, H, W] with H and W multiples of 4, "
             "got ",
             shape_str(x.shape()));
  Tensor h = c3_->forward(c2_->forward(c1_->forward(x, true), true), true);
  for (const auto& r : res_) h = r->forward(h);
  h = c4_->forward(ops::upsample_nearest2d(h, 2), true);
  h = c5_->forward(ops::upsample_nearest2d(h, 2), true);
  return ops::sigmoid(c6_->forward(h));
}

}  // namespace kiln::style
