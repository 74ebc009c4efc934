#include "transformer_net.hpp"

#include <algorithm>

#include "kiln/error.hpp"
#include "kiln/ops.hpp"

namespace kiln::style {

Tensor pad_replicate(const Tensor& x_in, std::int64_t p) {
  if (p == 0) return x_in;
  const Tensor x = x_in.contiguous();
  const std::int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  const Tensor top = x.slice(2, 0, 1).expand({n, c, p, w});
  const Tensor bottom = x.slice(2, h - 1, h).expand({n, c, p, w});
  const Tensor rows = ops::concat({top, x, bottom}, 2);
  const Tensor left = rows.slice(3, 0, 1).expand({n, c, h + 2 * p, p});
  const Tensor right = rows.slice(3, w - 1, w).expand({n, c, h + 2 * p, p});
  return ops::concat({left, rows, right}, 3);
}

ConvNorm::ConvNorm(std::int64_t in, std::int64_t out, std::int64_t k, std::int64_t stride,
                   bool instance_norm, Generator& gen)
    : pad_(k / 2) {
  conv_ = register_module(
      "conv", std::make_shared<nn::Conv2d>(
                  in, out, k, ops::Conv2dOptions{.stride = {stride, stride}}, true, gen));
  std::int64_t groups = out;
  if (!instance_norm) {
    groups = std::min<std::int64_t>(8, out);
    while (out % groups != 0) --groups;
  }
  norm_ = register_module("norm", std::make_shared<nn::GroupNorm>(groups, out));
}

Tensor ConvNorm::forward(const Tensor& x, bool relu) const {
  Tensor h = norm_->forward(conv_->forward(pad_replicate(x, pad_)));
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
  c6_ = register_module("conv6",
                        std::make_shared<nn::Conv2d>(w, 3, 9, ops::Conv2dOptions{}, true, gen));
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
  return ops::sigmoid(c6_->forward(pad_replicate(h, 4)));
}

}  // namespace kiln::style
