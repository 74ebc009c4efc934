// transformer/train: next-token pre-training of a GPT on a text corpus tokenized with BPE.
#include <chrono>
#include <cmath>

#include "kiln/autograd.hpp"
#include "kiln/context.hpp"
#include "kiln/optim.hpp"
#include "kiln/tensor_map.hpp"
#include "kiln/text.hpp"
#include "tasks.hpp"

namespace kiln::gpt {
namespace {

std::vector<std::int32_t> to_ids(const std::vector<std::int64_t>& v) {
  return std::vector<std::int32_t>(v.begin(), v.end());
}

class TrainGpt final : public TrainTask {
 public:
  TrainGpt(const Params& p, TaskContext& ctx) : params_(p) {
    text::Corpus corpus = text::load_corpus({p.string("data")});
    const auto max_bytes = static_cast<std::size_t>(p.integer("max_bytes"));
    if (max_bytes > 0 && corpus.text.size() > max_bytes) {
      // Cut at a line start so no UTF-8 sequence is split; keep the documents that remain.
      std::size_t cut = corpus.text.rfind('\n', max_bytes);
      cut = cut == std::string::npos ? max_bytes : cut + 1;
      corpus.text.resize(cut);
      std::vector<text::CorpusDocument> docs;
      for (auto d : corpus.documents) {
        if (d.offset >= cut) break;
        d.size = std::min(d.size, cut - d.offset);
        docs.push_back(d);
      }
      corpus.documents = docs;
    }
    const text::TextSplit split = text::split_text(corpus, p.number("val_fraction"));
    const auto t0 = std::chrono::steady_clock::now();
    if (p.has("tokenizer")) {
      const std::filesystem::path dir = p.string("tokenizer");
      tok_ = text::BpeTokenizer::load(dir / "vocab.json", dir / "merges.txt");
    } else {
      tok_ = text::BpeTokenizer::train(split.train, {.vocab_size = p.integer("vocab_size")});
    }
    const std::vector<std::int64_t> train_ids = tok_.encode(split.train);
    const std::vector<std::int64_t> val_ids = tok_.encode(split.validation);
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    log_info("transformer/train: ", corpus.describe(), "; tokenizer of ", tok_.vocab_size(),
             " tokens (", p.has("tokenizer") ? "loaded" : "trained", "), ", train_ids.size(),
             " training and ", val_ids.size(), " validation tokens (",
             static_cast<double>(split.train.size()) /
                 static_cast<double>(std::max<std::size_t>(train_ids.size(), 1)),
             " bytes per token), in ", secs, " s");
    const std::int64_t context = p.integer("context");
    KILN_CHECK(static_cast<std::int64_t>(train_ids.size()) > context,
               "transformer/train: the "
               "training text has ",
               train_ids.size(), " tokens, fewer than one window of context ",
               "+ 1 = ", context + 1, "; use more data or a smaller context");
    train_ = std::make_shared<text::TokenWindows>(text::make_ids(to_ids(train_ids)), context);
    if (static_cast<std::int64_t>(val_ids.size()) > context) {
      val_ = std::make_shared<text::TokenWindows>(text::make_ids(to_ids(val_ids)), context);
    }
    Generator gen(ctx.seed());
    model_ = std::make_shared<Gpt>(config_from(p, tok_.vocab_size()), gen);
    log_info("transformer/train: GPT with ", model_->config().describe(), ", ",
             model_->num_parameters(), " parameters");
    nn::NamedTensors decay, no_decay;
    for (auto& [name, t] : model_->named_parameters()) {
      const bool matrix = t.dim() == 2 && name != "transformer.wpe.weight";
      (matrix ? decay : no_decay).emplace_back(name, t);
    }
    const optim::AdamOptions o{.lr = static_cast<float>(p.number("lr")),
                               .beta1 = static_cast<float>(p.number("beta1")),
                               .beta2 = static_cast<float>(p.number("beta2")),
                               .eps = 1e-8f,
                               .weight_decay = static_cast<float>(p.number("weight_decay"))};
    opt_decay_ = std::make_unique<optim::AdamW>(decay, o);
    optim::AdamOptions o0 = o;
    o0.weight_decay = 0.f;
    opt_plain_ = std::make_unique<optim::AdamW>(no_decay, o0);
    KILN_CHECK(p.integer("warmup") <= p.integer("decay_steps"),
               "transformer/train: warmup = ", p.integer("warmup"),
               " is longer than decay_steps = ", p.integer("decay_steps"));
    sched_ = std::make_unique<optim::WarmupCosineLR>(static_cast<float>(p.number("lr")),
                                                     p.integer("warmup"), p.integer("decay_steps"),
                                                     static_cast<float>(p.number("min_lr")));
  }

  std::shared_ptr<const data::Dataset> train_data() override { return train_; }

  Metrics train_step(const data::Batch& batch, const StepInfo& info) override {
    model_->train();
    opt_decay_->zero_grad();
    opt_plain_->zero_grad();
    Philox rng(info.seed, static_cast<std::uint64_t>(info.step), 1);
    const Tensor loss = model_->loss(batch.at("input"), batch.at("target"), &rng);
    loss.backward();
    const TensorList params = model_->parameters();
    const float clip = static_cast<float>(params_.number("clip"));
    const float norm = clip > 0.f ? optim::clip_grad_norm(params, clip) : optim::grad_norm(params);
    const float lr = sched_->lr(info.step);
    opt_decay_->set_lr(lr);
    opt_plain_->set_lr(lr);
    opt_decay_->step();
    opt_plain_->step();
    return {{"loss", loss.item()}, {"lr", lr}, {"grad_norm", norm}};
  }

  Metrics evaluate() override {
    if (!val_ || val_->size() == 0) return {};
    NoGradGuard ng;
    model_->eval();
    std::int64_t n = val_->size();
    if (params_.integer("val_windows") > 0) n = std::min(n, params_.integer("val_windows"));
    double total = 0;
    std::int64_t tokens = 0;
    constexpr std::int64_t kBatch = 16;
    for (std::int64_t s = 0; s < n; s += kBatch) {
      std::vector<std::int64_t> idx;
      for (std::int64_t i = s; i < std::min(n, s + kBatch); ++i) idx.push_back(i);
      const data::Batch b = val_->get_batch(idx);
      const Tensor target = b.at("target");
      const double l = model_->loss(b.at("input"), target).item();
      total += l * static_cast<double>(target.numel());
      tokens += target.numel();
    }
    model_->train();
    const double mean = total / static_cast<double>(tokens);
    return {{"val_loss", mean}, {"val_ppl", std::exp(mean)}};
  }

  TensorMap state() const override {
    TensorMap s = model_->state_dict();
    kiln::add_prefixed(s, "optim.decay.", opt_decay_->state_dict());
    kiln::add_prefixed(s, "optim.plain.", opt_plain_->state_dict());
    return s;
  }

  void load_state(const TensorMap& state) override {
    // The model's names carry no prefix: "" takes every name that is not an optimiser's.
    const auto parts =
        kiln::split_prefixed(state, {"", "optim.decay.", "optim.plain."}, "transformer/train");
    const TensorMap &model = parts[0], &decay = parts[1], &plain = parts[2];
    const TensorMap mine = state_keys();
    for (const auto& [k, t] : mine) {
      KILN_CHECK(state.count(k) == 1, "transformer/train: the saved state lacks '", k,
                 "'; it was made by another configuration or is damaged");
    }
    model_->load_state_dict(model);
    opt_decay_->load_state_dict(decay);
    opt_plain_->load_state_dict(plain);
  }

  Checkpoint export_model() const override {
    Checkpoint c;
    for (auto& [k, t] : model_->state_dict()) c.tensors[k] = t.detach().clone();
    c.metadata = checkpoint_metadata(kPluginName, kPluginVersion, "train", params_);
    c.metadata[kVocabKey] = tok_.vocab_json();
    c.metadata[kMergesKey] = tok_.merges_txt();
    return c;
  }

 private:
  // The keys state() has now (optimiser slots appear after the first step).
  TensorMap state_keys() const { return state(); }

  Params params_;
  text::BpeTokenizer tok_;
  std::shared_ptr<text::TokenWindows> train_, val_;
  std::shared_ptr<Gpt> model_;
  std::unique_ptr<optim::AdamW> opt_decay_, opt_plain_;
  std::unique_ptr<optim::Schedule> sched_;
};

}  // namespace

std::unique_ptr<Task> make_train_task(const Params& p, TaskContext& ctx) {
  return std::make_unique<TrainGpt>(p, ctx);
}

}  // namespace kiln::gpt
