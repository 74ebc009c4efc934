// vae/train: one Adam step per batch; evaluation on the test split (negative ELBO per image).
#include <cmath>

#include "kiln/autograd.hpp"
#include "kiln/ops.hpp"
#include "kiln/optim.hpp"
#include "kiln/random.hpp"
#include "kiln/tensor_map.hpp"
#include "tasks.hpp"

namespace kiln::vae {

std::vector<ParamSpec> train_params() {
  std::vector<ParamSpec> p = architecture_params();
  for (ParamSpec& s : input_params("train")) p.push_back(s);
  p.push_back(ParamSpec::integer("exclude_class", -1,
                                 "Leave this class out of training (and evaluation), e.g. to "
                                 "score it as an anomaly later; -1 keeps every class")
                  .range(-1, 1000000));
  p.push_back(ParamSpec::number("lr", 1e-3, "Adam learning rate").range(1e-7, 1));
  p.push_back(noise_kind_param());
  p.push_back(ParamSpec::number("noise", 0.3,
                                "dae mode: noise level (gaussian: standard deviation; masking, "
                                "salt_pepper: share of pixels)")
                  .range(0, 1));
  p.push_back(ParamSpec::integer("val_limit", 0,
                                 "Images of the test split used by evaluate() (IDX folders "
                                 "only; 0: all of them)")
                  .range(0, 100000000));
  return p;
}

namespace {

class TrainVae final : public TrainTask {
 public:
  TrainVae(const Params& p, TaskContext& ctx) : params_(p), ctx_(ctx) {
    DataSpec spec = input_spec(p);
    spec.exclude_class = p.integer("exclude_class");
    data_ = load_data(spec);
    const auto& im = *data_.images;
    cfg_ = config_from(p, im.channels(), im.height(), im.width());
    if (is_idx_folder(spec.path) && spec.split == "train") {
      DataSpec v = spec;
      v.split = "test";
      v.limit = p.integer("val_limit");
      val_ = load_data(v).dataset;
    }
    model_ = std::make_shared<Model>(cfg_, ctx.seed());
    model_->train();
    optim_ = std::make_unique<optim::Adam>(
        model_->named_parameters(), optim::AdamOptions{.lr = static_cast<float>(p.number("lr"))});
    noise_ = noise_from(p.string("noise_kind"));
    level_ = static_cast<float>(p.number("noise"));
  }

  std::shared_ptr<const data::Dataset> train_data() override { return data_.dataset; }

  Metrics train_step(const data::Batch& batch, const StepInfo& info) override {
    const Tensor& x = batch.at("image");
    const std::int64_t b = x.size(0);
    std::vector<std::int64_t> rows(static_cast<std::size_t>(b));
    for (std::int64_t r = 0; r < b; ++r) rows[static_cast<std::size_t>(r)] = r;
    const std::uint64_t step_seed = mix_seed(info.seed, static_cast<std::uint64_t>(info.step));
    Tensor input = x;
    if (cfg_.mode == Mode::dae) input = corrupt(x, rows, step_seed, kNoiseStream, noise_, level_);
    optim_->zero_grad();
    const Encoded e = model_->encode(input);
    Tensor eps;
    if (cfg_.variational()) eps = randn_for_samples(rows, {cfg_.latent}, step_seed, kLatentStream);
    const Tensor out = model_->decoder->forward(model_->reparameterize(e, eps));
    const LossTerms t = model_->loss_terms(out, x, e);
    Tensor loss = model_->objective(t);
    loss.backward();
    optim_->step();
    Metrics m{{"loss", loss.item()}, {"lr", optim_->lr()}};
    if (cfg_.variational()) {
      NoGradGuard ng;
      m["recon"] = ops::mean(t.recon.detach()).item();
      m["kl"] = ops::mean(t.kl.detach()).item();
    }
    return m;
  }

  Metrics evaluate() override {
    if (!val_) return {};
    NoGradGuard ng;
    model_->eval();
    double nelbo = 0, recon = 0, kl = 0;
    const std::int64_t n = val_->size();
    constexpr std::int64_t kChunk = 500;
    for (std::int64_t lo = 0; lo < n; lo += kChunk) {
      std::vector<std::int64_t> idx;
      for (std::int64_t i = lo; i < std::min(n, lo + kChunk); ++i) idx.push_back(i);
      const data::Batch b = val_->get_batch(idx);
      const Scores s = score_batch(*model_, b.at("image"), idx, ctx_.seed(), false);
      for (std::size_t r = 0; r < idx.size(); ++r) {
        nelbo += s.nelbo[r];
        recon += s.recon[r];
        kl += s.kl[r];
      }
    }
    model_->train();
    const double dn = static_cast<double>(n);
    Metrics m{{"val_recon", recon / dn}};
    if (cfg_.variational()) {
      m["val_nelbo"] = nelbo / dn;
      m["val_kl"] = kl / dn;
    }
    return m;
  }

  TensorMap state() const override {
    TensorMap s;
    kiln::add_prefixed(s, "model.", model_->state_dict());
    kiln::add_prefixed(s, "optim.", optim_->state_dict());
    return s;
  }

  void load_state(const TensorMap& state) override {
    const auto parts = kiln::split_prefixed(state, {"model.", "optim."}, "vae/train");
    const TensorMap &model = parts[0], &opt = parts[1];
    KILN_CHECK(!opt.empty(),
               "vae/train: the training state has no optimiser tensors (optim.*); "
               "it is not a vae/train checkpoint");
    model_->load_state_dict(model, true);
    optim_->load_state_dict(opt);
  }

  Checkpoint export_model() const override {
    TensorMap t;
    for (const auto& [k, v] : model_->state_dict()) t[k] = v.detach().contiguous().clone();
    return {std::move(t), model_metadata(params_, cfg_)};
  }

 private:
  Params params_;
  TaskContext& ctx_;
  LoadedData data_;
  std::shared_ptr<const data::Dataset> val_;
  Config cfg_;
  std::shared_ptr<Model> model_;
  std::unique_ptr<optim::Adam> optim_;
  Noise noise_ = Noise::gaussian;
  float level_ = 0.f;
};

}  // namespace

std::unique_ptr<Task> make_train(const Params& p, TaskContext& ctx) {
  return std::make_unique<TrainVae>(p, ctx);
}

}  // namespace kiln::vae
