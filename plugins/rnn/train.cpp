// rnn/train: truncated back-propagation through time over contiguous text streams.
//
// The training text is cut into `streams` contiguous streams (kiln::text::TokenStreams). With
// batch_size = streams and shuffle = false, batch c holds chunk c of every stream, so the
// recurrent state left by batch c - 1 is the right initial state for batch c: the task carries it
// (detached) from step to step, and the carried state is part of state() so that a resumed run
// continues exactly. Any other batch (shuffled, another batch size, the first chunk of an epoch)
// starts from zeros; the step metric `carried` says which happened.
#include <cmath>

#include "kiln/autograd.hpp"
#include "kiln/error.hpp"
#include "kiln/ops.hpp"
#include "kiln/optim.hpp"
#include "kiln/tensor_map.hpp"
#include "model.hpp"
#include "tasks.hpp"

namespace kiln_rnn {

namespace {

using kiln::Params;
using kiln::Tensor;
using kiln::TensorMap;

constexpr std::uint64_t kDropoutStream = 1;

class TrainTask final : public kiln::TrainTask {
 public:
  TrainTask(const Params& p, kiln::TaskContext& ctx) : params_(p), ctx_(ctx) {
    const kiln::text::Corpus corpus = kiln::text::load_corpus(corpus_sources(p), corpus_options(p));
    const kiln::text::TextSplit split = kiln::text::split_text(corpus, p.number("val_fraction"));
    // The vocabulary covers the whole corpus, so validation never meets an unseen character.
    vocab_ = kiln::text::CharVocab::from_text(corpus.text);
    streams_ = p.integer("streams");
    seq_len_ = p.integer("seq_len");
    auto train_ids = kiln::text::make_ids(vocab_.encode(split.train));
    try {
      train_ = std::make_shared<kiln::text::TokenStreams>(train_ids, streams_, seq_len_);
    } catch (const kiln::Error& e) {
      throw kiln::Error("rnn/train: '" + p.string("data") + "': " + e.what());
    }
    val_ids_ = vocab_.encode(split.validation);
    if (p.integer("val_max_chars") > 0 &&
        static_cast<std::int64_t>(val_ids_.size()) > p.integer("val_max_chars")) {
      val_ids_.resize(static_cast<std::size_t>(p.integer("val_max_chars")));
    }
    kiln::Generator gen(ctx.seed());
    net_ = std::make_unique<CharRnn>(ModelConfig::from(p, vocab_.size()), gen);
    opt_ = std::make_unique<kiln::optim::Adam>(
        net_->named_parameters(),
        kiln::optim::AdamOptions{.lr = static_cast<float>(p.number("lr"))});
    const float lr = static_cast<float>(p.number("lr"));
    if (p.integer("decay_steps") > 0) {
      sched_ = std::make_unique<kiln::optim::CosineLR>(lr, p.integer("decay_steps"),
                                                       static_cast<float>(p.number("lr_min")));
    } else {
      sched_ = std::make_unique<kiln::optim::ConstantLR>(lr);
    }
    const std::int64_t L = p.integer("layers"), H = p.integer("hidden");
    carry_h_ = Tensor::zeros({L, streams_, H});
    if (net_->is_lstm()) carry_c_ = Tensor::zeros({L, streams_, H});
    carry_chunk_ = Tensor::from_ints({-1}, {1});
  }

  std::shared_ptr<const kiln::data::Dataset> train_data() override { return train_; }

  kiln::Metrics train_step(const kiln::data::Batch& batch, const kiln::StepInfo& info) override {
    const Tensor& input = batch.at("input");
    const Tensor& target = batch.at("target");
    const std::int64_t B = input.size(0), T = input.size(1);
    // Does this batch continue the previous one stream by stream?
    std::int64_t chunk = -1;
    if (B == streams_ && batch.count("stream") && batch.count("chunk")) {
      const auto st = batch.at("stream").to_int_vector();
      const auto ch = batch.at("chunk").to_int_vector();
      bool aligned = true;
      for (std::int64_t r = 0; r < B && aligned; ++r) {
        aligned = st[static_cast<std::size_t>(r)] == r && ch[static_cast<std::size_t>(r)] == ch[0];
      }
      if (aligned) chunk = ch[0];
    }
    const std::int64_t prev = carry_chunk_.data<std::int64_t>()[0];
    const bool carried = chunk > 0 && prev == chunk - 1;

    std::vector<const std::int32_t*> rows_in, rows_tg;
    std::vector<std::int32_t> buf_in(static_cast<std::size_t>(B * T)), buf_tg(buf_in.size());
    const auto* pin = input.data<std::int64_t>();
    const auto* ptg = target.data<std::int64_t>();
    for (std::size_t k = 0; k < buf_in.size(); ++k) {
      buf_in[k] = static_cast<std::int32_t>(pin[k]);
      buf_tg[k] = static_cast<std::int32_t>(ptg[k]);
    }
    for (std::int64_t r = 0; r < B; ++r) {
      rows_in.push_back(buf_in.data() + r * T);
      rows_tg.push_back(buf_tg.data() + r * T);
    }
    RnnState init;
    if (carried) init = {carry_h_, carry_c_};
    net_->train();
    kiln::Philox rng(info.seed, static_cast<std::uint64_t>(info.step), kDropoutStream);
    RnnState out;
    Tensor logits = net_->forward(time_major(rows_in, T), init, out, &rng);
    Tensor loss = kiln::ops::cross_entropy(logits, time_major(rows_tg, T).reshape({T * B}));
    opt_->zero_grad();
    loss.backward();
    const double clip = params_.number("clip");
    const float norm = clip > 0
                           ? kiln::optim::clip_grad_norm(opt_->params(), static_cast<float>(clip))
                           : kiln::optim::grad_norm(opt_->params());
    opt_->set_lr(sched_->lr(info.step));
    opt_->step();
    if (chunk >= 0) {
      carry_h_.copy_(out.h.detach());
      if (carry_c_.defined()) carry_c_.copy_(out.c.detach());
    }
    carry_chunk_.data<std::int64_t>()[0] = chunk;
    const double l = loss.item();
    return {{"loss", l},
            {"bpc", l / std::log(2.0)},
            {"grad_norm", norm},
            {"lr", opt_->lr()},
            {"carried", carried ? 1.0 : 0.0}};
  }

  kiln::Metrics evaluate() override {
    if (val_ids_.size() < 2) return {};
    net_->eval();
    const NllResult r =
        sequence_nll(*net_, val_ids_, streams_, seq_len_, [this] { return ctx_.cancelled(); });
    net_->train();
    if (r.chars == 0) return {};
    const double nats = r.nats / static_cast<double>(r.chars);
    return {{"val_loss", nats},
            {"val_bpc", nats / std::log(2.0)},
            {"val_chars", static_cast<double>(r.chars)}};
  }

  TensorMap state() const override {
    TensorMap s;
    kiln::add_prefixed(s, "model.", net_->state_dict());
    kiln::add_prefixed(s, "optim.", opt_->state_dict());
    s["carry.h"] = carry_h_;
    if (carry_c_.defined()) s["carry.c"] = carry_c_;
    s["carry.chunk"] = carry_chunk_;
    return s;
  }

  void load_state(const TensorMap& state) override {
    const TensorMap mine = this->state();
    std::vector<std::string>
        carry;  // the carried state's names: carry.h, carry.c (LSTM), carry.chunk
    for (const auto& [k, v] : mine) {
      if (k.rfind("carry.", 0) == 0) carry.push_back(k);
    }
    const auto parts = kiln::split_prefixed(state, {"model.", "optim."}, "rnn/train", carry);
    const TensorMap &model = parts[0], &optim = parts[1];
    for (const char* k : {"carry.h", "carry.c", "carry.chunk"}) {
      if (!mine.count(k)) continue;
      auto it = state.find(k);
      KILN_CHECK(it != state.end(), "rnn/train: the saved state lacks '", k, "'");
      KILN_CHECK(it->second.shape() == mine.at(k).shape(), "rnn/train: the saved '", k,
                 "' has shape ", kiln::shape_str(it->second.shape()), ", expected ",
                 kiln::shape_str(mine.at(k).shape()),
                 " (layers, streams and hidden must match the run that saved it)");
    }
    net_->load_state_dict(model);
    opt_->load_state_dict(optim);
    carry_h_.copy_(state.at("carry.h"));
    if (carry_c_.defined()) carry_c_.copy_(state.at("carry.c"));
    carry_chunk_.copy_(state.at("carry.chunk"));
  }

  kiln::Checkpoint export_model() const override {
    return {model_tensors(*net_, vocab_),
            kiln::checkpoint_metadata(kPluginName, kPluginVersion, "train", params_)};
  }

 private:
  Params params_;
  kiln::TaskContext& ctx_;
  kiln::text::CharVocab vocab_;
  std::int64_t streams_, seq_len_;
  std::shared_ptr<kiln::text::TokenStreams> train_;
  std::vector<std::int32_t> val_ids_;
  std::unique_ptr<CharRnn> net_;
  std::unique_ptr<kiln::optim::Adam> opt_;
  std::unique_ptr<kiln::optim::Schedule> sched_;
  Tensor carry_h_, carry_c_, carry_chunk_;
};

}  // namespace

std::unique_ptr<kiln::Task> make_train_task(const Params& p, kiln::TaskContext& ctx) {
  return std::make_unique<TrainTask>(p, ctx);
}

}  // namespace kiln_rnn
