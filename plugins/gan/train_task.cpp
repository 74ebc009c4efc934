// gan/train: the examples/dcgan loop. Per step: D on the real batch and on G(z) (detached), one
// Adam step on D; then D(G(z)) for the generator's loss, one Adam step on G; then the EMA of G.
// Losses: non-saturating BCE (D: -log s(D(x)) - log(1 - s(D(G(z)))), G: -log s(D(G(z)))) or
// hinge (D: relu(1 - D(x)) + relu(1 + D(G(z))), G: -D(G(z))). Conditional models are fed the
// real batch's labels on both sides. z for step t comes from Philox(seed, t, 5).
#include <algorithm>
#include <cmath>

#include "kiln/autograd.hpp"
#include "kiln/data.hpp"
#include "kiln/ops.hpp"
#include "kiln/optim.hpp"
#include "kiln/safetensors.hpp"
#include "kiln/tensor_map.hpp"
#include "tasks.hpp"

namespace kiln_gan {

using kiln::Params;
using kiln::ParamSpec;
using kiln::Tensor;
using kiln::TensorMap;
namespace ops = kiln::ops;

std::vector<ParamSpec> train_params() {
  return {ParamSpec::path("data", "/usr/share/datasets/fashion-mnist",
                          "Fashion-MNIST folder (or MNIST in the same layout)"),
          ParamSpec::integer("nz", 100, "Latent size").range(1, 4096),
          ParamSpec::integer("ngf", 64, "Generator width (channels of its last hidden layer)")
              .range(1, 1024),
          ParamSpec::integer("ndf", 64, "Discriminator width (channels of its first layer)")
              .range(1, 1024),
          ParamSpec::boolean("conditional", false,
                             "Class-conditional: label embedding in G, projection in D"),
          ParamSpec::integer("embed", 16, "Size of the generator's label embedding").range(1, 1024),
          ParamSpec::choice("loss", "bce", {"bce", "hinge"},
                            "Non-saturating BCE (DCGAN) or hinge loss"),
          ParamSpec::number("lr_g", 2e-4, "Generator Adam learning rate").range(1e-7, 1),
          ParamSpec::number("lr_d", 2e-4, "Discriminator Adam learning rate").range(1e-7, 1),
          ParamSpec::number("beta1", 0.5, "Adam beta1 (both optimisers)").range(0, 0.999),
          ParamSpec::number("beta2", 0.999, "Adam beta2 (both optimisers)").range(0, 0.9999),
          ParamSpec::number("ema", 0.999,
                            "Decay of the generator's exponential moving average, exported for "
                            "generation (0: export the raw generator)")
              .range(0, 0.99999),
          ParamSpec::integer("train_count", 0, "Training images used (0: all 60000)").at_least(0)};
}

GanSizes sizes_of(const Params& p) {
  GanSizes s;
  s.nz = p.integer("nz");
  s.ngf = p.integer("ngf");
  s.ndf = p.integer("ndf");
  s.classes = p.boolean("conditional") ? 10 : 0;
  s.embed = p.integer("embed");
  return s;
}

namespace {

class TrainGan final : public kiln::TrainTask {
 public:
  TrainGan(const Params& p, kiln::TaskContext& ctx) : p_(p), ctx_(ctx), gen_(ctx.seed()) {
    const GanSizes s = sizes_of(p);
    g_ = std::make_unique<Generator>(s, gen_);
    d_ = std::make_unique<Discriminator>(s, gen_);
    ema_ = std::make_unique<Generator>(s, gen_);
    dcgan_init(*g_, gen_);
    dcgan_init(*d_, gen_);
    ema_->load_state_dict(g_->state_dict());
    ema_->eval();
    const auto adam = [&](const char* lr) {
      return kiln::optim::AdamOptions{.lr = static_cast<float>(p.number(lr)),
                                      .beta1 = static_cast<float>(p.number("beta1")),
                                      .beta2 = static_cast<float>(p.number("beta2"))};
    };
    opt_g_ = std::make_unique<kiln::optim::Adam>(g_->named_parameters(), adam("lr_g"));
    opt_d_ = std::make_unique<kiln::optim::Adam>(d_->named_parameters(), adam("lr_d"));
    auto train = kiln::data::load_fashion_mnist(p.string("data"), "train");
    if (p.integer("train_count") > 0 && p.integer("train_count") < train->size()) {
      std::vector<std::int64_t> idx(static_cast<std::size_t>(p.integer("train_count")));
      for (std::size_t i = 0; i < idx.size(); ++i) idx[i] = static_cast<std::int64_t>(i);
      train_ = kiln::data::subset(train, idx);
    } else {
      train_ = train;
    }
    ema_steps_ = Tensor::zeros({}, kiln::DType::s64);
  }

  std::shared_ptr<const kiln::data::Dataset> train_data() override { return train_; }

  kiln::Metrics train_step(const kiln::data::Batch& batch, const kiln::StepInfo& info) override {
    const bool hinge = p_.string("loss") == "hinge";
    const Tensor real = ops::add_scalar(ops::mul_scalar(batch.at("image"), 2.f), -1.f);
    const Tensor labels = batch.at("label");
    const std::int64_t n = real.size(0), nz = g_->sizes().nz;
    Tensor z = Tensor::empty({n, nz});
    kiln::Philox rng(info.seed, static_cast<std::uint64_t>(info.step), 5);
    rng.fill_normal(z.data<float>(), n * nz);
    const StepLosses s = dcgan_step(*g_, *d_, *opt_g_, *opt_d_, real, labels, z, hinge);
    update_ema();

    double real_score = 0, fake_score = 0;
    {
      const std::vector<float> r = s.d_real.detach().to_vector(), f = s.d_fake.detach().to_vector();
      for (float v : r) real_score += 1 / (1 + std::exp(-double(v)));
      for (float v : f) fake_score += 1 / (1 + std::exp(-double(v)));
    }
    const double loss_d = s.loss_d.item(), loss_g = s.loss_g.item();
    return {{"loss", loss_d + loss_g},
            {"loss_d", loss_d},
            {"loss_g", loss_g},
            {"d_real", real_score / static_cast<double>(n)},
            {"d_fake", fake_score / static_cast<double>(n)}};
  }

  TensorMap state() const override {
    TensorMap s;
    kiln::add_prefixed(s, "generator.", g_->state_dict());
    kiln::add_prefixed(s, "discriminator.", d_->state_dict());
    kiln::add_prefixed(s, "ema.", ema_->state_dict());
    kiln::add_prefixed(s, "optim_g.", opt_g_->state_dict());
    kiln::add_prefixed(s, "optim_d.", opt_d_->state_dict());
    s["ema_steps"] = ema_steps_;
    return s;
  }

  void load_state(const TensorMap& state) override {
    const auto parts = kiln::split_prefixed(
        state, {"generator.", "discriminator.", "ema.", "optim_g.", "optim_d."}, "gan/train",
        {"ema_steps"});
    KILN_CHECK(state.count("ema_steps"), "gan/train: the training state lacks 'ema_steps'");
    g_->load_state_dict(parts[0]);
    d_->load_state_dict(parts[1]);
    ema_->load_state_dict(parts[2]);
    opt_g_->load_state_dict(parts[3]);
    opt_d_->load_state_dict(parts[4]);
    ema_steps_.copy_(state.at("ema_steps"));
  }

  kiln::Checkpoint export_model() const override {
    kiln::Checkpoint c;
    const Generator& g = p_.number("ema") > 0 ? *ema_ : *g_;
    for (const auto& [k, v] : g.state_dict()) c.tensors["generator." + k] = v.detach().clone();
    c.metadata = kiln::checkpoint_metadata(kPluginName, kPluginVersion, "train", p_);
    c.metadata["gan.weights"] = p_.number("ema") > 0 ? "ema" : "raw";
    return c;
  }

 private:
  // ema = d ema + (1 - d) g over parameters and batch-norm statistics, with the decay warmed up
  // as min(ema, (1 + t) / (10 + t)) so early averages are not dominated by the initialisation.
  void update_ema() {
    const double decay = p_.number("ema");
    if (decay <= 0) return;
    std::int64_t& t = ema_steps_.data<std::int64_t>()[0];
    const float d = static_cast<float>(std::min(decay, (1.0 + t) / (10.0 + t)));
    ++t;
    kiln::NoGradGuard ng;
    const TensorMap src = g_->state_dict();
    for (const auto& [k, dst] : ema_->state_dict()) {
      const Tensor& s = src.at(k);
      if (dst.dtype() != kiln::DType::f32) {
        Tensor(dst).copy_(s);
        continue;
      }
      float* w = dst.data<float>();
      const Tensor sc = s.contiguous();
      const float* x = sc.data<float>();
      for (std::int64_t i = 0; i < dst.numel(); ++i) w[i] = d * w[i] + (1 - d) * x[i];
      dst.bump_version();
    }
  }

  Params p_;
  kiln::TaskContext& ctx_;
  kiln::Generator gen_;
  std::unique_ptr<Generator> g_, ema_;
  std::unique_ptr<Discriminator> d_;
  std::unique_ptr<kiln::optim::Adam> opt_g_, opt_d_;
  std::shared_ptr<const kiln::data::Dataset> train_;
  Tensor ema_steps_;
};

}  // namespace

std::unique_ptr<kiln::Task> make_train_task(const Params& p, kiln::TaskContext& ctx) {
  return std::make_unique<TrainGan>(p, ctx);
}

std::unique_ptr<Generator> load_generator(const std::filesystem::path& file) {
  kiln::Safetensors st = kiln::load_safetensors(file);
  const Params p = kiln::checkpoint_params(st.metadata, kPluginName, train_params(), file.string());
  kiln::Generator gen(0);
  auto g = std::make_unique<Generator>(sizes_of(p), gen);
  TensorMap weights;
  for (const auto& [k, v] : st.tensors) {
    KILN_CHECK(k.rfind("generator.", 0) == 0, "gan: '", file.string(), "' holds '", k,
               "', not a generator exported by gan/train");
    weights[k.substr(10)] = v;
  }
  g->load_state_dict(weights);
  g->eval();
  return g;
}

}  // namespace kiln_gan
