// The feed-forward style network of Johnson et al. 2016 ("Perceptual losses for real-time style
// transfer"), with PyTorch-style parameter names:
//
//   conv1   9x9, 3 -> w            norm1, ReLU
//   conv2   3x3 stride 2, w -> 2w  norm2, ReLU
//   conv3   3x3 stride 2, 2w -> 4w norm3, ReLU
//   res<k>  k < blocks: conv1 3x3, norm1, ReLU, conv2 3x3, norm2, + input   (4w channels)
//   up1     nearest x2, conv4 3x3 4w -> 2w, norm4, ReLU
//   up2     nearest x2, conv5 3x3 2w -> w,  norm5, ReLU
//   conv6   9x9, w -> 3, sigmoid (output in [0, 1])
//
// Every convolution sees its input padded by repeating the edge pixels (replicate padding; zero
// padding makes a 9x9 convolution paint a frame around every image).
// Norms are instance norm (GroupNorm with one group per channel, as Ulyanov et al.) or group norm
// (8 groups, or fewer when the channels are fewer). Height and width must be multiples of 4.
#pragma once

#include <memory>
#include <vector>

#include "kiln/nn/conv2d.hpp"
#include "kiln/nn/group_norm.hpp"
#include "kiln/nn/module.hpp"
#include "kiln/random.hpp"

namespace kiln::style {

// x [N, C, H, W] -> [N, C, H + 2p, W + 2p], edges repeated; differentiable.
Tensor pad_replicate(const Tensor& x, std::int64_t p);

class ConvNorm : public nn::Module {
 public:
  ConvNorm(std::int64_t in, std::int64_t out, std::int64_t k, std::int64_t stride,
           bool instance_norm, Generator& gen);
  Tensor forward(const Tensor& x, bool relu) const;

 private:
  std::shared_ptr<nn::Conv2d> conv_;
  std::shared_ptr<nn::GroupNorm> norm_;
  std::int64_t pad_;
};

class ResidualBlock : public nn::Module {
 public:
  ResidualBlock(std::int64_t c, bool instance_norm, Generator& gen);
  Tensor forward(const Tensor& x) const;

 private:
  std::shared_ptr<ConvNorm> a_, b_;
};

class TransformerNet : public nn::Module {
 public:
  TransformerNet(std::int64_t width, std::int64_t blocks, bool instance_norm, Generator& gen);
  // x [N, 3, H, W] in [0, 1], H and W multiples of 4 -> [N, 3, H, W] in [0, 1].
  Tensor forward(const Tensor& x) const;

 private:
  std::shared_ptr<ConvNorm> c1_, c2_, c3_, c4_, c5_;
  std::vector<std::shared_ptr<ResidualBlock>> res_;
  std::shared_ptr<nn::Conv2d> c6_;
};

}  // namespace kiln::style
