#include "unet.hpp"

#include <cmath>

#include "kiln/autograd.hpp"
#include "kiln/error.hpp"
#include "kiln/ops.hpp"

namespace diffusion {

using kiln::DType;
using kiln::Tensor;
namespace ops = kiln::ops;
namespace nn = kiln::nn;

void UNetConfig::check() const {
  KILN_CHECK(in_channels >= 1 && in_channels <= 4, "diffusion: 'in_channels' must be 1 to 4, got ",
             in_channels);
  KILN_CHECK(channels >= 1, "diffusion: 'channels' must be positive, got ", channels);
  KILN_CHECK(channels % 2 == 0 && channels >= 4,
             "diffusion: 'channels' must be even and at least 4 (it is also the width of the "
             "sinusoidal time embedding), got ",
             channels);
  KILN_CHECK(!channel_mult.empty() && channel_mult.size() <= 6,
             "diffusion: 'channel_mult' must list 1 to 6 levels");
  KILN_CHECK(res_blocks >= 1, "diffusion: 'res_blocks' must be at least 1, got ", res_blocks);
  KILN_CHECK(groups >= 1, "diffusion: 'groups' must be at least 1, got ", groups);
  for (std::int64_t m : channel_mult) {
    KILN_CHECK(m >= 1, "diffusion: every 'channel_mult' entry must be at least 1, got ", m);
    KILN_CHECK(
        (channels * m) % groups == 0, "diffusion: 'groups' = ", groups, " does not divide the ",
        channels * m,
        " channels of a level (channels x channel_mult); choose groups dividing all of them");
  }
  const std::int64_t f = std::int64_t{1} << (channel_mult.size() - 1);
  KILN_CHECK(image_size >= f && image_size % f == 0, "diffusion: images of ", image_size, "x",
             image_size, " cannot be halved ", channel_mult.size() - 1,
             " times; use fewer 'channel_mult' levels or a size divisible by ", f);
  KILN_CHECK(num_classes >= 0, "diffusion: 'num_classes' must be >= 0, got ", num_classes);
}

Tensor timestep_embedding(const std::vector<float>& t, std::int64_t dim) {
  const std::int64_t half = dim / 2;
  const auto n = static_cast<std::int64_t>(t.size());
  Tensor out = Tensor::empty({n, dim});
  float* o = out.data<float>();
  const double scale = std::log(10000.0) / static_cast<double>(std::max<std::int64_t>(half - 1, 1));
  for (std::int64_t r = 0; r < n; ++r) {
    for (std::int64_t k = 0; k < half; ++k) {
      const float freq = static_cast<float>(std::exp(-scale * static_cast<double>(k)));
      const float a = t[static_cast<std::size_t>(r)] * freq;
      o[r * dim + k] = std::sin(a);
      o[r * dim + half + k] = std::cos(a);
    }
    if (dim % 2) o[r * dim + dim - 1] = 0.f;
  }
  return out;
}

namespace {

Tensor linear(const nn::Linear& l, const Tensor& x, DType dt) {
  if (dt == DType::bf16) {
    return ops::linear(x.to(DType::bf16), l.weight.to(DType::bf16), l.bias).to(DType::f32);
  }
  return l.forward(x);
}

void zero_module(const nn::Module& m) {
  kiln::NoGradGuard guard;
  for (const auto& [name, p] : m.named_parameters()) nn::init::zeros_(p);
}

}  // namespace

ResBlock::ResBlock(std::int64_t in, std::int64_t out, std::int64_t temb_dim, std::int64_t groups,
                   kiln::Generator& gen) {
  norm1 = register_module("norm1", std::make_shared<nn::GroupNorm>(groups, in));
  conv1 = register_module(
      "conv1", std::make_shared<nn::Conv2d>(in, out, 3, kiln::ops::Conv2dOptions{.padding = {1, 1}},
                                            true, gen));
  temb = register_module("temb", std::make_shared<nn::Linear>(temb_dim, out, true, gen));
  norm2 = register_module("norm2", std::make_shared<nn::GroupNorm>(groups, out));
  conv2 = register_module("conv2",
                          std::make_shared<nn::Conv2d>(
                              out, out, 3, kiln::ops::Conv2dOptions{.padding = {1, 1}}, true, gen));
  zero_module(*conv2);
  if (in != out) {
    skip = register_module(
        "skip", std::make_shared<nn::Conv2d>(in, out, 1, kiln::ops::Conv2dOptions{}, true, gen));
  }
}

Tensor ResBlock::forward(const Tensor& x, const Tensor& temb_act, DType dt) const {
  Tensor h = conv1->forward(ops::silu(norm1->forward(x)), dt);
  const Tensor e = linear(*temb, temb_act, dt);
  h = ops::add(h, e.reshape({e.size(0), e.size(1), 1, 1}));
  h = conv2->forward(ops::silu(norm2->forward(h)), dt);
  return ops::add(skip ? skip->forward(x, dt) : x, h);
}

AttnBlock::AttnBlock(std::int64_t channels, std::int64_t groups, kiln::Generator& gen) {
  norm = register_module("norm", std::make_shared<nn::GroupNorm>(groups, channels));
  qkv = register_module("qkv", std::make_shared<nn::Linear>(channels, 3 * channels, true, gen));
  proj = register_module("proj", std::make_shared<nn::Linear>(channels, channels, true, gen));
  zero_module(*proj);
}

Tensor AttnBlock::forward(const Tensor& x, DType dt) const {
  const std::int64_t n = x.size(0), c = x.size(1), hh = x.size(2), ww = x.size(3);
  // [N, C, H, W] -> [N, HW, C]
  Tensor h = norm->forward(x).contiguous().reshape({n, c, hh * ww}).transpose(1, 2).contiguous();
  const Tensor qkv_out = linear(*qkv, h, dt);  // [N, HW, 3C]
  const kiln::TensorList parts = ops::chunk(qkv_out, 3, -1);
  Tensor a = ops::scaled_dot_product_attention(parts[0].contiguous(), parts[1].contiguous(),
                                               parts[2].contiguous());
  a = linear(*proj, a, dt);  // [N, HW, C]
  a = a.transpose(1, 2).contiguous().reshape({n, c, hh, ww});
  return ops::add(x, a);
}

UNet::UNet(const UNetConfig& config, kiln::Generator& gen) : config_(config) {
  config_.check();
  const std::int64_t ch = config_.channels, temb_dim = 4 * ch, g = config_.groups;
  const auto levels = static_cast<std::int64_t>(config_.channel_mult.size());
  time_fc1_ = register_module("time_fc1", std::make_shared<nn::Linear>(ch, temb_dim, true, gen));
  time_fc2_ =
      register_module("time_fc2", std::make_shared<nn::Linear>(temb_dim, temb_dim, true, gen));
  if (config_.num_classes > 0) {
    class_embed_ = register_module(
        "class_embed", std::make_shared<nn::Embedding>(config_.num_classes + 1, temb_dim, gen));
  }
  const kiln::ops::Conv2dOptions same{.padding = {1, 1}};
  conv_in_ = register_module(
      "conv_in", std::make_shared<nn::Conv2d>(config_.in_channels, ch, 3, same, true, gen));

  std::vector<std::int64_t> skips = {ch};
  std::int64_t cur = ch;
  auto down = register_module("down", std::make_shared<ModuleList>());
  down_.resize(static_cast<std::size_t>(levels));
  for (std::int64_t i = 0; i < levels; ++i) {
    auto level = down->add(std::make_shared<ModuleList>());
    auto res = level->add_named<ModuleList>("res");
    std::shared_ptr<ModuleList> attn;
    const bool with_attn = config_.attention && i == levels - 1;
    if (with_attn) attn = level->add_named<ModuleList>("attn");
    const std::int64_t out = ch * config_.channel_mult[static_cast<std::size_t>(i)];
    Level& L = down_[static_cast<std::size_t>(i)];
    for (std::int64_t j = 0; j < config_.res_blocks; ++j) {
      L.res.push_back(res->add(std::make_shared<ResBlock>(cur, out, temb_dim, g, gen)));
      cur = out;
      if (with_attn) L.attn.push_back(attn->add(std::make_shared<AttnBlock>(cur, g, gen)));
      skips.push_back(cur);
    }
    if (i != levels - 1) {
      L.resample = level->add_named_module(
          "downsample",
          std::make_shared<nn::Conv2d>(
              cur, cur, 3, kiln::ops::Conv2dOptions{.stride = {2, 2}, .padding = {1, 1}}, true,
              gen));
      skips.push_back(cur);
    }
  }
  auto mid = register_module("mid", std::make_shared<ModuleList>());
  mid_res1_ = mid->add_named_module("res1", std::make_shared<ResBlock>(cur, cur, temb_dim, g, gen));
  if (config_.attention) {
    mid_attn_ = mid->add_named_module("attn", std::make_shared<AttnBlock>(cur, g, gen));
  }
  mid_res2_ = mid->add_named_module("res2", std::make_shared<ResBlock>(cur, cur, temb_dim, g, gen));

  // Levels are registered in index order (up.0 is the full-resolution level) but built from the
  // lowest one, the order in which they run.
  up_.resize(static_cast<std::size_t>(levels));
  std::vector<std::shared_ptr<ModuleList>> up_lists(static_cast<std::size_t>(levels));
  auto up = register_module("up", std::make_shared<ModuleList>());
  for (std::int64_t i = 0; i < levels; ++i)
    up_lists[static_cast<std::size_t>(i)] = up->add(std::make_shared<ModuleList>());
  for (std::int64_t i = levels - 1; i >= 0; --i) {
    auto& level = up_lists[static_cast<std::size_t>(i)];
    auto res = level->add_named<ModuleList>("res");
    std::shared_ptr<ModuleList> attn;
    const bool with_attn = config_.attention && i == levels - 1;
    if (with_attn) attn = level->add_named<ModuleList>("attn");
    const std::int64_t out = ch * config_.channel_mult[static_cast<std::size_t>(i)];
    Level& L = up_[static_cast<std::size_t>(i)];
    for (std::int64_t j = 0; j <= config_.res_blocks; ++j) {
      const std::int64_t skip = skips.back();
      skips.pop_back();
      L.res.push_back(res->add(std::make_shared<ResBlock>(cur + skip, out, temb_dim, g, gen)));
      cur = out;
      if (with_attn) L.attn.push_back(attn->add(std::make_shared<AttnBlock>(cur, g, gen)));
    }
    if (i != 0) {
      L.resample = level->add_named_module(
          "upsample", std::make_shared<nn::Conv2d>(cur, cur, 3, same, true, gen));
    }
  }
  norm_out_ = register_module("norm_out", std::make_shared<nn::GroupNorm>(g, cur));
  conv_out_ = register_module(
      "conv_out", std::make_shared<nn::Conv2d>(cur, config_.in_channels, 3, same, true, gen));
  zero_module(*conv_out_);
}

Tensor UNet::forward(const Tensor& x, const std::vector<float>& t, const Tensor& labels) const {
  const std::int64_t n = x.size(0);
  KILN_CHECK(x.dim() == 4 && x.size(1) == config_.in_channels && x.size(2) == config_.image_size &&
                 x.size(3) == config_.image_size,
             "diffusion: the U-Net takes [N, ", config_.in_channels, ", ", config_.image_size, ", ",
             config_.image_size, "] images, got ", kiln::shape_str(x.shape()));
  KILN_CHECK(static_cast<std::int64_t>(t.size()) == n, "diffusion: ", t.size(),
             " timesteps for a batch of ", n);
  const DType dt = compute_;
  Tensor emb = linear(*time_fc1_, timestep_embedding(t, config_.channels), dt);
  emb = linear(*time_fc2_, ops::silu(emb), dt);
  if (class_embed_ && labels.defined()) {
    KILN_CHECK(labels.numel() == n, "diffusion: ", labels.numel(), " labels for a batch of ", n);
    emb = ops::add(emb, class_embed_->forward(labels));
  }
  const Tensor temb = ops::silu(emb);

  std::vector<Tensor> hs;
  Tensor h = conv_in_->forward(x, dt);
  hs.push_back(h);
  for (const Level& L : down_) {
    for (std::size_t j = 0; j < L.res.size(); ++j) {
      h = L.res[j]->forward(h, temb, dt);
      if (!L.attn.empty()) h = L.attn[j]->forward(h, dt);
      hs.push_back(h);
    }
    if (L.resample) {
      h = L.resample->forward(h, dt);
      hs.push_back(h);
    }
  }
  h = mid_res1_->forward(h, temb, dt);
  if (mid_attn_) h = mid_attn_->forward(h, dt);
  h = mid_res2_->forward(h, temb, dt);
  for (auto it = up_.rbegin(); it != up_.rend(); ++it) {
    const Level& L = *it;
    for (std::size_t j = 0; j < L.res.size(); ++j) {
      h = L.res[j]->forward(ops::concat({h, hs.back()}, 1), temb, dt);
      hs.pop_back();
      if (!L.attn.empty()) h = L.attn[j]->forward(h, dt);
    }
    if (L.resample) h = L.resample->forward(ops::upsample_nearest2d(h, 2), dt);
  }
  return conv_out_->forward(ops::silu(norm_out_->forward(h)), dt);
}

}  // namespace diffusion
