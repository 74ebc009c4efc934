// The convolutional VAE / autoencoder of the vae plugin: architecture, losses and checkpoints.
//
// Encoder: per entry c of `channels`, Conv(k4, s2, p1) + ReLU (each halves H and W), flatten,
// Linear -> [mu | logvar] (2 * latent outputs; `latent` for the autoencoders).
// Decoder: Linear(latent -> C_last * h * w) + ReLU, reshape, then per level in reverse a
// ConvTranspose(k4, s2, p1) (+ ReLU except the last), ending in the image channels: logits
// (Bernoulli) or the pre-sigmoid mean (Gaussian). With channels [32, 64] and latent 32 on 28x28
// images this is workload B3 of bench/peers/vae.py (371 k parameters).
//
// Parameter names (the checkpoint keys) follow a PyTorch module with ModuleLists:
//   encoder.convs.<i>.{weight,bias}, encoder.fc.{weight,bias},
//   decoder.fc.{weight,bias}, decoder.deconvs.<i>.{weight,bias}
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kiln/nn.hpp"
#include "kiln/plugin.hpp"
#include "kiln/tensor.hpp"

namespace kiln::vae {

inline constexpr const char* kPluginName = "vae";
inline constexpr const char* kPluginVersion = "1.0.0";

enum class Mode { vae, ae, dae };
enum class Likelihood { bernoulli, gaussian };

struct Config {
  Mode mode = Mode::vae;
  Likelihood likelihood = Likelihood::bernoulli;
  std::int64_t latent = 32;
  std::vector<std::int64_t> channels = {32, 64};
  float beta = 1.f;
  float sigma = 0.1f;  // Gaussian likelihood: the fixed standard deviation of each pixel
  // Image shape [C, H, W]; H and W divisible by 2^levels.
  std::int64_t image_c = 1, image_h = 28, image_w = 28;
  bool variational() const { return mode == Mode::vae; }
  std::string image_shape_str() const;
};

// The model parameters every task reads back from a checkpoint (a subset of train's).
std::vector<ParamSpec> architecture_params();
// Config from resolved parameters (architecture_params() keys) and an image shape.
Config config_from(const Params& p, std::int64_t c, std::int64_t h, std::int64_t w);

// A list of modules named "0", "1", ... (PyTorch's nn.ModuleList).
template <typename M>
class ModuleList : public nn::Module {
 public:
  void push_back(std::shared_ptr<M> m) {
    items_.push_back(register_module(std::to_string(items_.size()), std::move(m)));
  }
  const std::vector<std::shared_ptr<M>>& items() const { return items_; }

 private:
  std::vector<std::shared_ptr<M>> items_;
};

class Encoder : public nn::Module {
 public:
  Encoder(const Config& cfg, Generator& gen);
  // x [N, C, H, W] -> [N, 2 * latent] (vae) or [N, latent] (ae, dae).
  Tensor forward(const Tensor& x) const;

 private:
  std::shared_ptr<ModuleList<nn::Conv2d>> convs_;
  std::shared_ptr<nn::Linear> fc_;
};

class Decoder : public nn::Module {
 public:
  Decoder(const Config& cfg, Generator& gen);
  // z [N, latent] -> [N, C, H, W] logits (pre-sigmoid); with `sigmoid`, the sigmoid is fused
  // into the last layer (inference).
  Tensor forward(const Tensor& z, bool sigmoid = false) const;

 private:
  Config cfg_;
  std::int64_t h0_, w0_;
  std::shared_ptr<nn::Linear> fc_;
  std::shared_ptr<ModuleList<nn::ConvTranspose2d>> deconvs_;
};

struct Encoded {
  Tensor mu;      // [N, latent]: the posterior mean (the code itself for an autoencoder)
  Tensor logvar;  // [N, latent] (vae only; undefined otherwise)
};

// Per-example loss terms, in nats per image.
struct LossTerms {
  Tensor recon;  // [N] -log p(x | z)
  Tensor kl;     // [N] KL(q(z|x) || p(z)) (zeros for autoencoders)
};

class Model : public nn::Module {
 public:
  Model(const Config& cfg, std::uint64_t init_seed);
  const Config& config() const { return cfg_; }

  Encoded encode(const Tensor& x) const;
  // z = mu + exp(logvar / 2) * eps for a vae; mu otherwise (eps ignored).
  Tensor reparameterize(const Encoded& e, const Tensor& eps) const;
  // Pixel means in [0, 1].
  Tensor decode_mean(const Tensor& z) const;
  // Per-example terms of the loss for decoder output `out` (pre-sigmoid) against `target`.
  LossTerms loss_terms(const Tensor& out, const Tensor& target, const Encoded& e) const;
  // The training objective for a batch: mean over the batch of recon + beta * kl.
  Tensor objective(const LossTerms& t) const;

  std::shared_ptr<Encoder> encoder;
  std::shared_ptr<Decoder> decoder;

 private:
  Config cfg_;
};

// Checks the image shape against the architecture (divisible by 2^levels, big enough).
void check_shape(const Config& cfg);

// A trained model loaded from `path`: a checkpoint of the vae plugin (model.safetensors of a
// train stage, or one of its periodic checkpoints). Errors name the file and say what to do.
std::shared_ptr<Model> load_model(const std::string& path);

// Checkpoint metadata with the architecture (kiln.* keys plus "vae.image_shape").
std::map<std::string, std::string> model_metadata(const Params& train_params, const Config& cfg);

}  // namespace kiln::vae
