// The denoising U-Net of DDPM (Ho et al. 2020): residual blocks with group norm and SiLU, a
// sinusoidal time embedding through a two-layer MLP added inside every block, single-head
// self-attention at the lowest resolution (after every block there and in the middle), skip
// connections by concatenation, stride-2 convolutions down and nearest x2 + conv up. With
// num_classes > 0 a learned class embedding (one extra row: the "no label" used for
// classifier-free guidance) is added to the time embedding.
//
//   diffusion::UNet net({.in_channels = 1, .image_size = 28, .channels = 64,
//                        .channel_mult = {1, 2, 4}, .res_blocks = 2, .num_classes = 10}, gen);
//   Tensor eps = net.forward(x_t, t, labels);   // x_t [N,1,28,28], t [N] f32, labels [N] s64
//
// Parameter names (the checkpoint keys, mirrored by bench/peers/ddpm.py so weights move to and
// from PyTorch): time_fc1, time_fc2, class_embed, conv_in, down.<level>.res.<j>.{norm1, conv1,
// temb, norm2, conv2, skip}, down.<level>.attn.<j>.{norm, qkv, proj}, down.<level>.downsample,
// mid.{res1, attn, res2}, up.<level>.res.<j>, up.<level>.attn.<j>, up.<level>.upsample,
// norm_out, conv_out. The last conv of each block, the attention output projection and conv_out
// start at zero, as in Ho et al.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kiln/nn.hpp"
#include "kiln/random.hpp"
#include "kiln/tensor.hpp"

namespace diffusion {

struct UNetConfig {
  std::int64_t in_channels = 1;
  std::int64_t image_size = 28;
  std::int64_t channels = 64;  // of the first level; also the sinusoidal embedding width
  std::vector<std::int64_t> channel_mult = {1, 2, 4};
  std::int64_t res_blocks = 2;   // per level going down; res_blocks + 1 going up
  std::int64_t groups = 32;      // group norm groups (every channel count must divide by it)
  bool attention = true;         // self-attention at the lowest resolution
  std::int64_t num_classes = 0;  // 0: unconditional
  // Throws kiln::Error naming the parameter when the configuration cannot be built.
  void check() const;
};

// Sinusoidal embedding of (possibly fractional) timesteps: [N] -> [N, dim], first half sin,
// second half cos, frequencies exp(-ln(10000) k / (dim/2 - 1)), as Ho et al.
kiln::Tensor timestep_embedding(const std::vector<float>& t, std::int64_t dim);

// A list of modules named "0", "1", ...
class ModuleList : public kiln::nn::Module {
 public:
  template <typename M>
  std::shared_ptr<M> add(std::shared_ptr<M> m) {
    return register_module(std::to_string(size_++), std::move(m));
  }
  // A child with a name of its own (e.g. "downsample").
  template <typename M>
  std::shared_ptr<M> add_named_module(const std::string& name, std::shared_ptr<M> m) {
    return register_module(name, std::move(m));
  }
  template <typename M>
  std::shared_ptr<M> add_named(const std::string& name) {
    return register_module(name, std::make_shared<M>());
  }
  std::int64_t size() const { return size_; }

 private:
  std::int64_t size_ = 0;
};

class ResBlock : public kiln::nn::Module {
 public:
  ResBlock(std::int64_t in, std::int64_t out, std::int64_t temb_dim, std::int64_t groups,
           kiln::Generator& gen);
  // x [N, in, H, W], temb_act = silu(embedding) [N, temb_dim].
  kiln::Tensor forward(const kiln::Tensor& x, const kiln::Tensor& temb_act, kiln::DType dt) const;

  std::shared_ptr<kiln::nn::GroupNorm> norm1, norm2;
  std::shared_ptr<kiln::nn::Conv2d> conv1, conv2, skip;
  std::shared_ptr<kiln::nn::Linear> temb;
};

class AttnBlock : public kiln::nn::Module {
 public:
  AttnBlock(std::int64_t channels, std::int64_t groups, kiln::Generator& gen);
  kiln::Tensor forward(const kiln::Tensor& x, kiln::DType dt) const;

  std::shared_ptr<kiln::nn::GroupNorm> norm;
  std::shared_ptr<kiln::nn::Linear> qkv, proj;
};

class UNet : public kiln::nn::Module {
 public:
  UNet(const UNetConfig& config, kiln::Generator& gen);

  // x [N, C, H, W]; t [N] timesteps; labels s64 [N] in [0, num_classes] (num_classes = no
  // label) or undefined (unconditional models, or every sample without a label).
  kiln::Tensor forward(const kiln::Tensor& x, const std::vector<float>& t,
                       const kiln::Tensor& labels = kiln::Tensor()) const;

  const UNetConfig& config() const { return config_; }
  // Convolutions and linear layers in bf16 (f32 accumulation) when set to DType::bf16.
  void set_compute_dtype(kiln::DType dt) { compute_ = dt; }

 private:
  struct Level {
    std::vector<std::shared_ptr<ResBlock>> res;
    std::vector<std::shared_ptr<AttnBlock>> attn;
    std::shared_ptr<kiln::nn::Conv2d> resample;
  };
  UNetConfig config_;
  kiln::DType compute_ = kiln::DType::f32;
  std::shared_ptr<kiln::nn::Linear> time_fc1_, time_fc2_;
  std::shared_ptr<kiln::nn::Embedding> class_embed_;
  std::shared_ptr<kiln::nn::Conv2d> conv_in_, conv_out_;
  std::shared_ptr<kiln::nn::GroupNorm> norm_out_;
  std::vector<Level> down_, up_;  // up_[i] is level i (applied from the last level to 0)
  std::shared_ptr<ResBlock> mid_res1_, mid_res2_;
  std::shared_ptr<AttnBlock> mid_attn_;
};

}  // namespace diffusion
