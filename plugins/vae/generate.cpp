// vae/generate, vae/reconstruct and vae/denoise: one image per sample index, batched by the host.
#include <cmath>

#include "kiln/autograd.hpp"
#include "kiln/image.hpp"
#include "kiln/ops.hpp"
#include "kiln/random.hpp"
#include "tasks.hpp"

namespace kiln::vae {

namespace {

ParamSpec model_param() {
  return ParamSpec::path("model",
                         "A model trained by vae/train (\"@stage\" or a .safetensors file)");
}

// Bernoulli draws of pixel probabilities: row r from Philox(seed, keys[r], kPixelStream).
Tensor sample_pixels(const Tensor& probs, const std::vector<std::int64_t>& keys,
                     std::uint64_t seed) {
  Tensor p = probs.contiguous().clone();
  const std::int64_t per = p.numel() / p.size(0);
  float* d = p.data<float>();
  for (std::size_t r = 0; r < keys.size(); ++r) {
    Philox rng(seed, static_cast<std::uint64_t>(keys[r]), kPixelStream);
    float* row = d + static_cast<std::int64_t>(r) * per;
    for (std::int64_t i = 0; i < per; ++i) row[i] = rng.uniform() < row[i] ? 1.f : 0.f;
  }
  return p;
}

// ---------------------------------------------------------------- generate

class GenerateVae final : public GenerateTask {
 public:
  GenerateVae(const Params& p, TaskContext&) : params_(p) {
    model_ = load_model(p.string("model"));
    KILN_CHECK(model_->config().variational(), "vae/generate: '", p.string("model"),
               "' is an autoencoder (mode ae/dae), which has no prior to sample; train with "
               "mode = \"vae\", or use the reconstruct / denoise tasks");
  }

  std::vector<Artifact> generate(const SampleRequest& req) override {
    NoGradGuard ng;
    const Config& cfg = model_->config();
    const float temperature = static_cast<float>(params_.number("temperature"));
    Tensor z = randn_for_samples(req.indices, {cfg.latent}, req.seed, kLatentStream);
    if (temperature != 1.f) z = z * temperature;
    Tensor x = model_->decode_mean(z).contiguous();
    if (params_.string("pixels") == "sample") x = sample_pixels(x, req.indices, req.seed);
    std::vector<Artifact> out;
    for (std::size_t r = 0; r < req.indices.size(); ++r) {
      out.push_back(
          Artifact::make_image(req.indices[r], row_image(x, static_cast<std::int64_t>(r))));
    }
    return out;
  }

 private:
  Params params_;
  std::shared_ptr<Model> model_;
};

// ---------------------------------------------------------------- reconstruct / denoise

// Images of a dataset, one sample per dataset row (sample index = row).
class FromData : public GenerateTask {
 public:
  FromData(const Params& p, const char* task) : params_(p), task_(task) {
    model_ = load_model(p.string("model"));
    const Config& cfg = model_->config();
    DataSpec spec = input_spec(p);
    spec.channels = static_cast<int>(cfg.image_c);
    data_ = load_data(spec);
    const auto& im = *data_.images;
    KILN_CHECK(
        im.channels() == cfg.image_c && im.height() == cfg.image_h && im.width() == cfg.image_w,
        "vae/", task_, ": the images of '", spec.path, "' are ", im.channels(), "x", im.height(),
        "x", im.width(), " (CxHxW) but the model '", p.string("model"), "' takes ",
        cfg.image_shape_str(), "; resize the images or train a model on them");
  }

  std::int64_t default_count() const override { return data_.dataset->size(); }

 protected:
  data::Batch batch_of(const SampleRequest& req) const {
    for (std::int64_t i : req.indices) {
      KILN_CHECK(i >= 0 && i < data_.dataset->size(), "vae/", task_, ": sample ", i,
                 " is beyond the ", data_.dataset->size(), " images of '", params_.string("data"),
                 "'; lower count");
    }
    return data_.dataset->get_batch(req.indices);
  }
  // The code of `x`: the posterior mean, or (sample_latent) a draw from Philox(seed, i).
  Tensor code(const Tensor& x, const SampleRequest& req) const {
    const Encoded e = model_->encode(x);
    if (!params_.boolean("sample_latent") || !model_->config().variational()) return e.mu;
    return model_->reparameterize(
        e, randn_for_samples(req.indices, {model_->config().latent}, req.seed, kLatentStream));
  }
  static void label_info(Artifact& a, const data::Batch& b, std::size_t r,
                         const data::ImageDataset& im) {
    const std::int64_t label = b.at("label").to_int_vector()[r];
    a.info["label"] = std::to_string(label);
    if (label >= 0 && label < static_cast<std::int64_t>(im.class_names().size()))
      a.info["class"] = im.class_names()[static_cast<std::size_t>(label)];
  }

  Params params_;
  const char* task_;
  std::shared_ptr<Model> model_;
  LoadedData data_;
};

class ReconstructVae final : public FromData {
 public:
  ReconstructVae(const Params& p, TaskContext&) : FromData(p, "reconstruct") {}

  std::vector<Artifact> generate(const SampleRequest& req) override {
    NoGradGuard ng;
    const data::Batch b = batch_of(req);
    const Tensor& x = b.at("image");
    const Tensor y = model_->decode_mean(code(x, req)).contiguous();
    const bool pair = params_.string("layout") == "pair";
    std::vector<Artifact> out;
    for (std::size_t r = 0; r < req.indices.size(); ++r) {
      const auto row = static_cast<std::int64_t>(r);
      Image rec = row_image(y, row);
      double err = 0;
      const Image orig = row_image(x, row);
      for (std::size_t k = 0; k < rec.pixels.size(); ++k)
        err += std::abs(int(rec.pixels[k]) - int(orig.pixels[k]));
      Artifact a = Artifact::make_image(req.indices[r], pair ? hstack({orig, rec}) : rec);
      label_info(a, b, r, *data_.images);
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.4f", err / 255.0 / static_cast<double>(rec.pixels.size()));
      a.info["mean_abs_error"] = buf;
      out.push_back(std::move(a));
    }
    return out;
  }
};

class DenoiseVae final : public FromData {
 public:
  DenoiseVae(const Params& p, TaskContext&) : FromData(p, "denoise") {}

  std::vector<Artifact> generate(const SampleRequest& req) override {
    NoGradGuard ng;
    const data::Batch b = batch_of(req);
    const Tensor& clean = b.at("image");
    const float level = static_cast<float>(params_.number("noise"));
    // noise = 0: the inputs are noisy already.
    const Tensor noisy = level > 0 ? corrupt(clean, req.indices, req.seed, kNoiseStream,
                                             noise_from(params_.string("noise_kind")), level)
                                   : clean;
    const Tensor y = model_->decode_mean(code(noisy, req)).contiguous();
    const bool strip = params_.string("layout") == "strip";
    std::vector<Artifact> out;
    for (std::size_t r = 0; r < req.indices.size(); ++r) {
      const auto row = static_cast<std::int64_t>(r);
      Image den = row_image(y, row);
      Image shown = den;
      if (strip) {
        shown = level > 0 ? hstack({row_image(clean, row), row_image(noisy, row), den})
                          : hstack({row_image(noisy, row), den});
      }
      Artifact a = Artifact::make_image(req.indices[r], std::move(shown));
      label_info(a, b, r, *data_.images);
      out.push_back(std::move(a));
    }
    return out;
  }
};

}  // namespace

std::vector<ParamSpec> generate_params() {
  return {
      model_param(),
      ParamSpec::number("temperature", 1.0, "Scale of the prior's standard deviation").range(0, 10),
      ParamSpec::choice("pixels", "mean", {"mean", "sample"},
                        "mean: the decoder's pixel means; sample: Bernoulli draws of them")};
}

std::vector<ParamSpec> reconstruct_params() {
  std::vector<ParamSpec> p = {model_param()};
  for (ParamSpec& s : input_params("test")) p.push_back(s);
  p.push_back(ParamSpec::choice("layout", "pair", {"pair", "single"},
                                "pair: the input beside its reconstruction; single: only the "
                                "reconstruction"));
  p.push_back(ParamSpec::boolean("sample_latent", false,
                                 "Decode a draw from q(z|x) (from Philox(seed, index)) instead "
                                 "of its mean"));
  return p;
}

std::vector<ParamSpec> denoise_params() {
  std::vector<ParamSpec> p = {model_param()};
  for (ParamSpec& s : input_params("test")) p.push_back(s);
  p.push_back(noise_kind_param());
  p.push_back(ParamSpec::number("noise", 0.3,
                                "Noise added to each image before denoising (Philox(seed, "
                                "index)); 0: the images are noisy already")
                  .range(0, 1));
  p.push_back(ParamSpec::choice("layout", "strip", {"strip", "single"},
                                "strip: clean, noisy and denoised side by side (noisy and "
                                "denoised when noise = 0); single: only the denoised image"));
  p.push_back(ParamSpec::boolean("sample_latent", false,
                                 "Decode a draw from q(z|x) instead of its mean (vae models)"));
  return p;
}

std::unique_ptr<Task> make_generate(const Params& p, TaskContext& ctx) {
  return std::make_unique<GenerateVae>(p, ctx);
}
std::unique_ptr<Task> make_reconstruct(const Params& p, TaskContext& ctx) {
  return std::make_unique<ReconstructVae>(p, ctx);
}
std::unique_ptr<Task> make_denoise(const Params& p, TaskContext& ctx) {
  return std::make_unique<DenoiseVae>(p, ctx);
}

}  // namespace kiln::vae
