// Feature networks for style transfer and Deep Dream: an image batch in, named layer activations
// out.
//
//   auto net = kiln::style::make_random_net({.seed = 7});          // no download needed
//   auto vgg = kiln::style::load_vgg19("vgg19.safetensors", true);  // torchvision names
//   auto feats = net->forward(x, {"s0_2", "s2_2"});                 // x [N, 3, H, W] in [0, 1]
//
// "random" (the default): an image pyramid (each level a 2x2 average pool of the one above) and
// at every level two random convolutions with ReLU: 5x5 (3 -> width/2) then 3x3 (width/2 ->
// width), weights N(0, 2 / fan_in) drawn from Philox(seed, level, layer), biases zero. Layers
// "s<level>_1" and "s<level>_2". Random convolutional filters over several scales capture texture
// statistics well enough for Gram-matrix style losses (Ustyuzhaninov et al. 2016, "Texture
// synthesis using shallow convolutional networks with random filters"; He et al. 2016, "A
// powerful generative model using random weights for the deep image representation"). Input is
// centred: x - 0.5.
//
// "vgg19": torchvision's VGG-19 feature stack read from a safetensors file with torchvision's
// names (features.N.weight / features.N.bias for the 16 convolutions N = 0, 2, 5, 7, 10, 12, 14,
// 16, 19, 21, 23, 25, 28, 30, 32, 34). Channel counts come from the file (each convolution's input
// channels must equal the previous one's output channels, the first takes 3), so a VGG-shaped
// file with fewer channels works too. Layers conv1_1, relu1_1, ..., pool5 as in Gatys et al.;
// pooling max (torchvision) or average (Gatys' choice). Input normalised with ImageNet's
// mean/std as torchvision models expect.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "kiln/tensor.hpp"

namespace kiln::style {

using FeatureMap = std::map<std::string, Tensor>;

class FeatureNet {
 public:
  virtual ~FeatureNet() = default;
  virtual std::string name() const = 0;
  // Every layer name, in forward order.
  virtual std::vector<std::string> layers() const = 0;
  // Activations [N, C, h, w] of the `wanted` layers (validated names), computing only as far as
  // the deepest of them. Differentiable in x.
  virtual FeatureMap forward(const Tensor& x, const std::vector<std::string>& wanted) const = 0;
  virtual std::vector<std::string> default_content_layers() const = 0;
  virtual std::vector<std::string> default_style_layers() const = 0;
  virtual std::vector<std::string> default_dream_layers() const = 0;
  // Floats of activations kept per input pixel by a forward pass (for memory estimates).
  virtual double floats_per_pixel() const = 0;

  // Throws kiln::Error naming `key` and the valid layers when a name is not a layer.
  void check_layers(const std::vector<std::string>& names, const std::string& key) const;
};

struct RandomNetOptions {
  std::uint64_t seed = 7;
  int levels = 4;  // pyramid levels
  int width = 64;  // channels of the second convolution of each level
};
std::unique_ptr<FeatureNet> make_random_net(const RandomNetOptions& opts);

// The conv indices of torchvision's vgg19().features.
const std::vector<int>& vgg19_conv_indices();
std::unique_ptr<FeatureNet> load_vgg19(const std::filesystem::path& file, bool average_pooling);

}  // namespace kiln::style
