// vae/encode, vae/interpolate and vae/score: one-shot tasks over a dataset or a few inputs.
#include <cmath>
#include <filesystem>

#include "kiln/autograd.hpp"
#include "kiln/image.hpp"
#include "kiln/ops.hpp"
#include "kiln/random.hpp"
#include "tasks.hpp"

namespace kiln::vae {

namespace {

constexpr std::int64_t kChunk = 256;

ParamSpec model_param() {
  return ParamSpec::path("model",
                         "A model trained by vae/train (\"@stage\" or a .safetensors file)");
}

LoadedData data_for(const Params& p, const Model& m, const char* task) {
  const Config& cfg = m.config();
  DataSpec spec = input_spec(p);
  spec.channels = static_cast<int>(cfg.image_c);
  LoadedData d = load_data(spec);
  const auto& im = *d.images;
  KILN_CHECK(
      im.channels() == cfg.image_c && im.height() == cfg.image_h && im.width() == cfg.image_w,
      "vae/", task, ": the images of '", spec.path, "' are ", im.channels(), "x", im.height(), "x",
      im.width(), " (CxHxW) but the model '", p.string("model"), "' takes ", cfg.image_shape_str(),
      "; resize the images or train a model on them");
  return d;
}

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

// ---------------------------------------------------------------- encode

class EncodeVae final : public RunTask {
 public:
  EncodeVae(const Params& p, TaskContext& ctx) : params_(p), ctx_(ctx) {
    model_ = load_model(p.string("model"));
    data_ = data_for(p, *model_, "encode");
  }

  std::vector<Artifact> run() override {
    NoGradGuard ng;
    const Config& cfg = model_->config();
    const std::int64_t n = data_.dataset->size();
    Tensor mu = Tensor::empty({n, cfg.latent});
    Tensor logvar = cfg.variational() ? Tensor::empty({n, cfg.latent}) : Tensor();
    std::vector<std::int64_t> labels, rows;
    for (std::int64_t lo = 0; lo < n; lo += kChunk) {
      std::vector<std::int64_t> idx;
      for (std::int64_t i = lo; i < std::min(n, lo + kChunk); ++i) idx.push_back(i);
      const data::Batch b = data_.dataset->get_batch(idx);
      const Encoded e = model_->encode(b.at("image"));
      const auto m = static_cast<std::int64_t>(idx.size());
      mu.slice(0, lo, lo + m).copy_(e.mu);
      if (logvar.defined()) logvar.slice(0, lo, lo + m).copy_(e.logvar);
      for (std::int64_t v : b.at("label").to_int_vector()) labels.push_back(v);
      for (std::int64_t v : b.at("index").to_int_vector()) rows.push_back(v);
      ctx_.progress(lo + m, n, "image");
      if (ctx_.cancelled()) throw Error("vae/encode: cancelled");
    }
    TensorMap t{{"mu", mu},
                {"label", Tensor::from_ints(labels, {n})},
                {"index", Tensor::from_ints(rows, {n})}};
    if (logvar.defined()) t["logvar"] = logvar;
    std::map<std::string, std::string> meta{{"vae.model", params_.string("model")},
                                            {"vae.data", data_.describe()},
                                            {"vae.mode", cfg.variational() ? "vae" : "ae"}};
    std::vector<Artifact> out;
    out.push_back(Artifact::make_tensors("latents", std::move(t), std::move(meta)));
    out.push_back(Artifact::make_metrics({{"images", static_cast<double>(n)}}));
    return out;
  }

 private:
  Params params_;
  TaskContext& ctx_;
  std::shared_ptr<Model> model_;
  LoadedData data_;
};

// ---------------------------------------------------------------- interpolate

class InterpolateVae final : public RunTask {
 public:
  InterpolateVae(const Params& p, TaskContext& ctx) : params_(p), ctx_(ctx) {
    model_ = load_model(p.string("model"));
    const bool a = p.has("image_a"), b = p.has("image_b");
    KILN_CHECK(a == b,
               "vae/interpolate: give both image_a and image_b, or neither (then "
               "'indices' of 'data', or 'seeds', choose the endpoints)");
    const Config& cfg = model_->config();
    if (a) {
      ends_ = {load_image(p.string("image_a")), load_image(p.string("image_b"))};
      source_ = "images";
    } else if (p.has("data")) {
      const std::vector<std::int64_t> idx = p.integers("indices");
      KILN_CHECK(idx.size() == 2,
                 "vae/interpolate: 'indices' must hold two image indices of "
                 "'data', got ",
                 idx.size());
      Params q = p;
      q.set("limit", std::int64_t{0});
      const LoadedData d = data_for(q, *model_, "interpolate");
      for (std::int64_t i : idx) {
        KILN_CHECK(i >= 0 && i < d.dataset->size(), "vae/interpolate: index ", i,
                   " is outside the ", d.dataset->size(), " images of '", p.string("data"), "'");
      }
      const data::Batch batch = d.dataset->get_batch(idx);
      ends_ = {batch.at("image").select(0, 0).contiguous(),
               batch.at("image").select(0, 1).contiguous()};
      source_ = "data";
    } else {
      KILN_CHECK(cfg.variational(), "vae/interpolate: '", p.string("model"),
                 "' is an autoencoder, whose codes have no prior to draw 'seeds' from; give "
                 "image_a and image_b, or 'data' and 'indices'");
      const std::vector<std::int64_t> s = p.integers("seeds");
      KILN_CHECK(s.size() == 2 && s[0] >= 0 && s[1] >= 0,
                 "vae/interpolate: 'seeds' must hold two seeds >= 0, got ", s.size(), " values");
      source_ = "seeds";
    }
  }

  std::vector<Artifact> run() override {
    NoGradGuard ng;
    const Config& cfg = model_->config();
    const std::int64_t steps = params_.integer("steps");
    std::int64_t rows = 1;
    Tensor za, zb;  // [rows, latent]
    if (source_ == "seeds") {
      rows = params_.integer("rows");
      const std::vector<std::int64_t> s = params_.integers("seeds");
      std::vector<std::int64_t> r(static_cast<std::size_t>(rows));
      for (std::int64_t i = 0; i < rows; ++i) r[static_cast<std::size_t>(i)] = i;
      za = randn_for_samples(r, {cfg.latent}, static_cast<std::uint64_t>(s[0]), kLatentStream);
      zb = randn_for_samples(r, {cfg.latent}, static_cast<std::uint64_t>(s[1]), kLatentStream);
    } else {
      const Tensor x = ops::stack({ends_[0], ends_[1]}, 0);
      const Tensor mu = model_->encode(x).mu.contiguous();
      za = mu.slice(0, 0, 1).contiguous();
      zb = mu.slice(0, 1, 2).contiguous();
    }
    const bool slerp = params_.string("method") == "slerp";
    Tensor path = Tensor::empty({rows * steps, cfg.latent});
    float* out = path.data<float>();
    for (std::int64_t r = 0; r < rows; ++r) {
      const float* a = za.data<float>() + r * cfg.latent;
      const float* b = zb.data<float>() + r * cfg.latent;
      double na = 0, nb = 0, dot = 0;
      for (std::int64_t k = 0; k < cfg.latent; ++k) {
        na += double(a[k]) * a[k];
        nb += double(b[k]) * b[k];
        dot += double(a[k]) * b[k];
      }
      const double cosv = dot / std::max(1e-12, std::sqrt(na * nb));
      const double omega = std::acos(std::clamp(cosv, -1.0, 1.0));
      for (std::int64_t s = 0; s < steps; ++s) {
        const double t = static_cast<double>(s) / static_cast<double>(steps - 1);
        double wa = 1 - t, wb = t;
        if (slerp && std::sin(omega) > 1e-6) {
          wa = std::sin((1 - t) * omega) / std::sin(omega);
          wb = std::sin(t * omega) / std::sin(omega);
        }
        float* o = out + (r * steps + s) * cfg.latent;
        for (std::int64_t k = 0; k < cfg.latent; ++k)
          o[k] = static_cast<float>(wa * a[k] + wb * b[k]);
      }
    }
    const Tensor x = model_->decode_mean(path).contiguous();
    std::vector<Image> tiles;
    for (std::int64_t i = 0; i < rows * steps; ++i) tiles.push_back(row_image(x, i));
    std::vector<Artifact> out_a;
    Artifact grid =
        Artifact::make_image(-1, make_grid(tiles, static_cast<int>(steps)), "interpolation");
    grid.info = {{"source", source_},
                 {"steps", std::to_string(steps)},
                 {"rows", std::to_string(rows)},
                 {"method", params_.string("method")}};
    out_a.push_back(std::move(grid));
    out_a.push_back(Artifact::make_tensors(
        "latents", {{"z", path.reshape({rows, steps, cfg.latent}).contiguous()}},
        {{"vae.source", source_}, {"vae.method", params_.string("method")}}));
    return out_a;
  }

 private:
  Tensor load_image(const std::string& path) const {
    const Config& cfg = model_->config();
    Image im = read_image(path);
    KILN_CHECK(im.width == cfg.image_w && im.height == cfg.image_h, "vae/interpolate: '", path,
               "' is ", im.width, "x", im.height, " pixels but the model takes ", cfg.image_w, "x",
               cfg.image_h, "; resize it first");
    if (im.channels != cfg.image_c) im = convert_channels(im, static_cast<int>(cfg.image_c));
    return image_to_tensor(im);
  }

  Params params_;
  TaskContext& ctx_;
  std::shared_ptr<Model> model_;
  std::vector<Tensor> ends_;
  std::string source_;
};

// ---------------------------------------------------------------- score

class ScoreVae final : public RunTask {
 public:
  ScoreVae(const Params& p, TaskContext& ctx) : params_(p), ctx_(ctx) {
    model_ = load_model(p.string("model"));
    data_ = data_for(p, *model_, "score");
    const std::int64_t ac = p.integer("anomaly_class");
    const auto classes = static_cast<std::int64_t>(data_.images->class_names().size());
    KILN_CHECK(ac < std::max<std::int64_t>(classes, 1), "vae/score: anomaly_class ", ac,
               " is not a class of '", p.string("data"), "' (it has ", classes, " classes)");
  }

  std::vector<Artifact> run() override {
    const std::int64_t n = data_.dataset->size();
    const bool recon_only = params_.string("score") == "recon";
    const bool mean_code = params_.boolean("posterior_mean");
    const std::int64_t ac = params_.integer("anomaly_class");
    Table table{{"index", "label", "class", "score", "recon", "kl"}, {}};
    std::vector<double> scores;
    std::vector<bool> positive;
    double sum = 0, sum_recon = 0, sum_kl = 0;
    const auto& names = data_.images->class_names();
    for (std::int64_t lo = 0; lo < n; lo += kChunk) {
      std::vector<std::int64_t> idx;
      for (std::int64_t i = lo; i < std::min(n, lo + kChunk); ++i) idx.push_back(i);
      const data::Batch b = data_.dataset->get_batch(idx);
      const Scores s = score_batch(*model_, b.at("image"), idx, ctx_.seed(), mean_code);
      const std::vector<std::int64_t> labels = b.at("label").to_int_vector();
      const std::vector<std::int64_t> rows = b.at("index").to_int_vector();
      for (std::size_t r = 0; r < idx.size(); ++r) {
        const double score = recon_only ? s.recon[r] : s.nelbo[r];
        scores.push_back(score);
        positive.push_back(labels[r] == ac);
        sum += score;
        sum_recon += s.recon[r];
        sum_kl += s.kl[r];
        const std::string cls =
            labels[r] >= 0 && labels[r] < static_cast<std::int64_t>(names.size())
                ? names[static_cast<std::size_t>(labels[r])]
                : "";
        table.rows.push_back({std::to_string(rows[r]), std::to_string(labels[r]), cls, num(score),
                              num(s.recon[r]), num(s.kl[r])});
      }
      ctx_.progress(lo + static_cast<std::int64_t>(idx.size()), n, "image");
      if (ctx_.cancelled()) throw Error("vae/score: cancelled");
    }
    const double dn = static_cast<double>(n);
    Metrics m{{"images", dn},
              {"mean_score", sum / dn},
              {"mean_recon", sum_recon / dn},
              {"mean_kl", sum_kl / dn}};
    if (ac >= 0) {
      const double a = auroc(scores, positive);
      KILN_CHECK(!std::isnan(a), "vae/score: cannot compute the AUROC of anomaly_class ", ac,
                 ": the scored images hold ",
                 std::count(positive.begin(), positive.end(), true) == 0 ? "none of that class"
                                                                         : "only that class",
                 "; score a set with both (e.g. the whole test split)");
      m["auroc"] = a;
      double sp = 0, sn = 0, np = 0;
      for (std::size_t i = 0; i < scores.size(); ++i) {
        (positive[i] ? sp : sn) += scores[i];
        np += positive[i];
      }
      m["mean_score_anomaly"] = sp / np;
      m["mean_score_normal"] = sn / (dn - np);
    }
    std::vector<Artifact> out;
    out.push_back(Artifact::make_table("scores", std::move(table)));
    out.push_back(Artifact::make_metrics(m));
    return out;
  }

 private:
  Params params_;
  TaskContext& ctx_;
  std::shared_ptr<Model> model_;
  LoadedData data_;
};

}  // namespace

std::vector<ParamSpec> encode_params() {
  std::vector<ParamSpec> p = {model_param()};
  for (ParamSpec& s : input_params("test")) p.push_back(s);
  return p;
}

std::vector<ParamSpec> interpolate_params() {
  std::vector<ParamSpec> p = {
      model_param(),
      ParamSpec::path("image_a", "First endpoint: an image file (with image_b)").make_optional(),
      ParamSpec::path("image_b", "Second endpoint: an image file (with image_a)").make_optional(),
      ParamSpec::path("data",
                      "Images to take the endpoints from, by 'indices' (without "
                      "image_a / image_b)")
          .make_optional(),
      ParamSpec::choice("split", "test", {"train", "test"},
                        "Which split of an IDX folder 'data' names"),
      ParamSpec::integers("indices", {0, 1}, "The two endpoint images' indices in 'data'")
          .at_least(0),
      ParamSpec::integers("seeds", {0, 1},
                          "Without images: the endpoints are prior draws Philox(seed, row) of "
                          "these two seeds")
          .at_least(0),
      ParamSpec::integer("rows", 1, "Without images: interpolations stacked as rows").range(1, 64),
      ParamSpec::integer("steps", 10, "Images per interpolation, endpoints included").range(2, 100),
      ParamSpec::choice("method", "linear", {"linear", "slerp"},
                        "linear, or spherical (slerp) interpolation of the codes"),
  };
  return p;
}

std::vector<ParamSpec> score_params() {
  std::vector<ParamSpec> p = {model_param()};
  for (ParamSpec& s : input_params("test")) p.push_back(s);
  p.push_back(ParamSpec::choice("score", "nelbo", {"nelbo", "recon"},
                                "nelbo: negative ELBO (recon + KL) in nats; recon: the "
                                "reconstruction term only"));
  p.push_back(ParamSpec::integer("anomaly_class", -1,
                                 "Report the AUROC of the score for this class against the rest "
                                 "(-1: none)")
                  .range(-1, 1000000));
  p.push_back(ParamSpec::boolean("posterior_mean", false,
                                 "Decode the posterior mean instead of one draw from "
                                 "Philox(seed, index)"));
  return p;
}

std::unique_ptr<Task> make_encode(const Params& p, TaskContext& ctx) {
  return std::make_unique<EncodeVae>(p, ctx);
}
std::unique_ptr<Task> make_interpolate(const Params& p, TaskContext& ctx) {
  return std::make_unique<InterpolateVae>(p, ctx);
}
std::unique_ptr<Task> make_score(const Params& p, TaskContext& ctx) {
  return std::make_unique<ScoreVae>(p, ctx);
}

}  // namespace kiln::vae
