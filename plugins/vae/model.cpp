#include "model.hpp"

#include <cmath>
#include <filesystem>

#include "kiln/ops.hpp"
#include "kiln/random.hpp"
#include "kiln/safetensors.hpp"

namespace kiln::vae {

namespace {
constexpr float kLog2Pi = 1.8378770664093453f;
constexpr const char* kShapeKey = "vae.image_shape";
}  // namespace

std::string Config::image_shape_str() const {
  return std::to_string(image_c) + "x" + std::to_string(image_h) + "x" + std::to_string(image_w);
}

std::vector<ParamSpec> architecture_params() {
  return {
      ParamSpec::choice("mode", "vae", {"vae", "ae", "dae"},
                        "vae: variational autoencoder; ae: plain autoencoder; dae: denoising "
                        "autoencoder (trained on corrupted inputs, see noise_kind / noise)"),
      ParamSpec::integer("latent", 32, "Size of the latent code").range(1, 1024),
      ParamSpec::integers("channels", {32, 64},
                          "Channels of the encoder's stride-2 conv layers (one entry per layer, "
                          "each halves the image; the decoder mirrors them)")
          .range(1, 1024),
      ParamSpec::choice("likelihood", "bernoulli", {"bernoulli", "gaussian"},
                        "Pixel likelihood: bernoulli (BCE on logits) or gaussian (fixed sigma)"),
      ParamSpec::number("sigma", 0.1, "Standard deviation of the gaussian likelihood")
          .range(1e-3, 10),
      ParamSpec::number("beta", 1.0, "Weight of the KL term (beta-VAE); vae mode only")
          .range(0, 1000),
  };
}

Config config_from(const Params& p, std::int64_t c, std::int64_t h, std::int64_t w) {
  Config cfg;
  const std::string& mode = p.string("mode");
  cfg.mode = mode == "ae" ? Mode::ae : mode == "dae" ? Mode::dae : Mode::vae;
  cfg.likelihood =
      p.string("likelihood") == "gaussian" ? Likelihood::gaussian : Likelihood::bernoulli;
  cfg.latent = p.integer("latent");
  cfg.channels = p.integers("channels");
  cfg.beta = static_cast<float>(p.number("beta"));
  cfg.sigma = static_cast<float>(p.number("sigma"));
  cfg.image_c = c;
  cfg.image_h = h;
  cfg.image_w = w;
  check_shape(cfg);
  return cfg;
}

void check_shape(const Config& cfg) {
  KILN_CHECK(!cfg.channels.empty() && cfg.channels.size() <= 5,
             "vae: 'channels' needs 1 to 5 entries (one per stride-2 conv layer), got ",
             cfg.channels.size());
  const std::int64_t f = std::int64_t{1} << cfg.channels.size();
  KILN_CHECK(cfg.image_c == 1 || cfg.image_c == 3 || cfg.image_c == 4,
             "vae: images must have 1, 3 or 4 channels, got ", cfg.image_c);
  KILN_CHECK(cfg.image_h % f == 0 && cfg.image_w % f == 0 && cfg.image_h >= f && cfg.image_w >= f,
             "vae: images of ", cfg.image_h, "x", cfg.image_w, " cannot go through ",
             cfg.channels.size(), " stride-2 layers (height and width must be multiples of ", f,
             "); use fewer 'channels' entries or resize the images");
}

// ---------------------------------------------------------------- encoder / decoder

Encoder::Encoder(const Config& cfg, Generator& gen) {
  convs_ = register_module("convs", std::make_shared<ModuleList<nn::Conv2d>>());
  std::int64_t in = cfg.image_c;
  for (std::int64_t c : cfg.channels) {
    convs_->push_back(std::make_shared<nn::Conv2d>(
        in, c, 4, ops::Conv2dOptions{.stride = {2, 2}, .padding = {1, 1}, .act = ops::Act::relu},
        true, gen));
    in = c;
  }
  const std::int64_t f = std::int64_t{1} << cfg.channels.size();
  const std::int64_t flat = in * (cfg.image_h / f) * (cfg.image_w / f);
  fc_ = register_module("fc", std::make_shared<nn::Linear>(
                                  flat, cfg.variational() ? 2 * cfg.latent : cfg.latent, gen));
}

Tensor Encoder::forward(const Tensor& x) const {
  Tensor h = x;
  for (const auto& c : convs_->items()) h = c->forward(h);
  return fc_->forward(h.flatten(1));
}

Decoder::Decoder(const Config& cfg, Generator& gen) : cfg_(cfg) {
  const std::int64_t f = std::int64_t{1} << cfg.channels.size();
  h0_ = cfg.image_h / f;
  w0_ = cfg.image_w / f;
  const std::int64_t top = cfg.channels.back();
  fc_ = register_module("fc", std::make_shared<nn::Linear>(cfg.latent, top * h0_ * w0_, gen));
  deconvs_ = register_module("deconvs", std::make_shared<ModuleList<nn::ConvTranspose2d>>());
  const auto n = static_cast<std::int64_t>(cfg.channels.size());
  for (std::int64_t i = n - 1; i >= 0; --i) {
    const std::int64_t in = cfg.channels[static_cast<std::size_t>(i)];
    const std::int64_t out = i > 0 ? cfg.channels[static_cast<std::size_t>(i - 1)] : cfg.image_c;
    deconvs_->push_back(std::make_shared<nn::ConvTranspose2d>(
        in, out, 4,
        ops::ConvTranspose2dOptions{
            .stride = {2, 2}, .padding = {1, 1}, .act = i > 0 ? ops::Act::relu : ops::Act::none},
        true, gen));
  }
}

Tensor Decoder::forward(const Tensor& z, bool sigmoid) const {
  Tensor h = fc_->forward(z, {.act = ops::Act::relu});
  h = h.reshape({z.size(0), cfg_.channels.back(), h0_, w0_});
  const auto& layers = deconvs_->items();
  for (std::size_t i = 0; i < layers.size(); ++i) {
    // The last layer (one output channel) runs as a GEMM and col2im in the SDK, the others on
    // oneDNN's deconvolution (ops::conv_transpose2d picks).
    h = layers[i]->forward(h);
    if (i + 1 == layers.size() && sigmoid) h = ops::sigmoid(h);
  }
  return h;
}

// ---------------------------------------------------------------- model

Model::Model(const Config& cfg, std::uint64_t init_seed) : cfg_(cfg) {
  check_shape(cfg);
  Generator gen(init_seed);
  encoder = register_module("encoder", std::make_shared<Encoder>(cfg, gen));
  decoder = register_module("decoder", std::make_shared<Decoder>(cfg, gen));
}

Encoded Model::encode(const Tensor& x) const {
  KILN_CHECK(x.dim() == 4 && x.size(1) == cfg_.image_c && x.size(2) == cfg_.image_h &&
                 x.size(3) == cfg_.image_w,
             "vae: the model takes images of ", cfg_.image_shape_str(), " (CxHxW), got ",
             shape_str(x.shape()));
  Tensor h = encoder->forward(x);
  if (!cfg_.variational()) return {h, Tensor()};
  TensorList parts = ops::split(h, {cfg_.latent, cfg_.latent}, 1);
  return {parts[0], parts[1]};
}

Tensor Model::reparameterize(const Encoded& e, const Tensor& eps) const {
  if (!cfg_.variational()) return e.mu;
  return e.mu + ops::exp(e.logvar * 0.5f) * eps;
}

Tensor Model::decode_mean(const Tensor& z) const {
  return decoder->forward(z, true);
}

LossTerms Model::loss_terms(const Tensor& out, const Tensor& target, const Encoded& e) const {
  LossTerms t;
  const std::vector<std::int64_t> pixels = {1, 2, 3};
  if (cfg_.likelihood == Likelihood::bernoulli) {
    t.recon = ops::sum(ops::bce_with_logits(out, target, ops::Reduction::none), pixels);
  } else {
    // -log N(x; sigmoid(out), sigma^2) summed over pixels.
    const float inv = 1.f / (2.f * cfg_.sigma * cfg_.sigma);
    const float d = static_cast<float>(cfg_.image_c * cfg_.image_h * cfg_.image_w);
    const float konst = d * (0.5f * kLog2Pi + std::log(cfg_.sigma));
    t.recon = ops::sum(ops::square(ops::sigmoid(out) - target), pixels) * inv + konst;
  }
  if (cfg_.variational()) {
    t.kl = ops::sum(ops::gaussian_kl(e.mu, e.logvar, ops::Reduction::none), {1});
  } else {
    t.kl = Tensor::zeros({out.size(0)});
  }
  return t;
}

Tensor Model::objective(const LossTerms& t) const {
  if (!cfg_.variational() || cfg_.beta == 0.f) return ops::mean(t.recon);
  return ops::mean(t.recon + t.kl * cfg_.beta);
}

// ---------------------------------------------------------------- checkpoints

std::map<std::string, std::string> model_metadata(const Params& train_params, const Config& cfg) {
  auto meta = checkpoint_metadata(kPluginName, kPluginVersion, "train", train_params);
  meta[kShapeKey] = cfg.image_shape_str();
  return meta;
}

std::shared_ptr<Model> load_model(const std::string& path) {
  KILN_CHECK(std::filesystem::is_regular_file(path), "vae: the model file '", path,
             "' does not exist; train one with the vae plugin's 'train' task (or point 'model' "
             "at models/vae-fashion.safetensors)");
  Safetensors f = load_safetensors(path);
  const Params p = checkpoint_params(f.metadata, kPluginName, architecture_params(), path);
  auto shape = f.metadata.find(kShapeKey);
  KILN_CHECK(shape != f.metadata.end(), "vae: '", path, "' lacks the '", kShapeKey,
             "' metadata; it was not written by the vae plugin's train task");
  long long c = 0, h = 0, w = 0;
  char tail = 0;
  KILN_CHECK(std::sscanf(shape->second.c_str(), "%lldx%lldx%lld%c", &c, &h, &w, &tail) == 3,
             "vae: '", path, "' has a malformed '", kShapeKey, "' = \"", shape->second,
             "\" (expected CxHxW)");
  const Config cfg = config_from(p, c, h, w);
  auto model = std::make_shared<Model>(cfg, 0);
  // model.safetensors holds the parameters by name; a periodic training checkpoint holds them
  // under "state.model.".
  TensorMap weights;
  const std::string prefix = "state.model.";
  for (auto& [k, t] : f.tensors) {
    if (k.rfind(prefix, 0) == 0) weights[k.substr(prefix.size())] = t;
  }
  if (weights.empty()) weights = std::move(f.tensors);
  try {
    model->load_state_dict(weights, true);
  } catch (const Error& e) {
    throw Error("vae: '" + path + "' does not fit its own architecture (" + e.what() +
                "); the file is damaged or was edited");
  }
  model->eval();
  return model;
}

}  // namespace kiln::vae
