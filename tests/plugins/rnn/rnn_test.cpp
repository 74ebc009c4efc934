#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "kiln/autograd.hpp"
#include "kiln/data.hpp"
#include "kiln/ops.hpp"
#include "kiln/safetensors.hpp"
#include "model.hpp"
#include "support/test_support.hpp"
#include "tasks.hpp"

namespace kiln_rnn {
namespace {

namespace fs = std::filesystem;
using kiln::Params;
using kiln::Tensor;

class TestContext final : public kiln::TaskContext {
 public:
  explicit TestContext(fs::path dir, std::uint64_t seed = 3,
                       kiln::DType precision = kiln::DType::f32)
      : dir_(std::move(dir)), seed_(seed), precision_(precision) {}
  std::string stage_id() const override { return "test"; }
  fs::path work_dir() const override { return dir_; }
  std::uint64_t seed() const override { return seed_; }
  kiln::DType precision() const override { return precision_; }
  void progress(std::int64_t, std::int64_t, const std::string&) override {}
  bool cancelled() const override { return false; }
  void stream_text(std::string_view chunk) override { streamed += chunk; }
  std::string streamed;

 private:
  fs::path dir_;
  std::uint64_t seed_;
  kiln::DType precision_;
};

Params resolve(const std::vector<kiln::ParamSpec>& spec,
               std::map<std::string, kiln::ParamValue> v) {
  return Params::resolve(spec, Params(std::move(v)));
}

void write(const fs::path& p, const std::string& s) {
  std::ofstream(p, std::ios::binary) << s;
}

std::string repeated(const std::string& unit, int n) {
  std::string s;
  for (int i = 0; i < n; ++i) s += unit;
  return s;
}

// A tiny model trained for `steps` steps on `text`; returns the path of its checkpoint.
struct Trained {
  fs::path model;
  std::vector<double> losses;
  std::vector<double> carried;
  std::int64_t per_epoch = 0;
};
Trained train_tiny(const kiln::test::TempDir& dir, const std::string& text, int steps,
                   bool shuffle = false, double dropout = 0.0, const std::string& cell = "lstm") {
  write(dir / "corpus.txt", text);
  TestContext ctx(dir.path());
  const Params p = resolve(train_param_specs(), {{"data", (dir / "corpus.txt").string()},
                                                 {"embed", std::int64_t{8}},
                                                 {"hidden", std::int64_t{24}},
                                                 {"layers", std::int64_t{2}},
                                                 {"dropout", dropout},
                                                 {"cell", cell},
                                                 {"seq_len", std::int64_t{16}},
                                                 {"streams", std::int64_t{4}},
                                                 {"lr", 3e-2},
                                                 {"val_fraction", 0.1}});
  auto task = make_train_task(p, ctx);
  kiln::TrainTask& t = *task->as_train();
  kiln::data::DataLoader loader(t.train_data(),
                                {.batch_size = 4, .shuffle = shuffle, .seed = 5, .prefetch = 0});
  Trained out;
  const std::int64_t per = loader.batches_per_epoch();
  out.per_epoch = per;
  for (int s = 0; s < steps; ++s) {
    kiln::StepInfo info{s, s / per, s % per, 9};
    kiln::Metrics m = t.train_step(loader.get(info.epoch, info.batch), info);
    out.losses.push_back(m.at("loss"));
    out.carried.push_back(m.at("carried"));
  }
  kiln::Checkpoint c = t.export_model();
  out.model = dir / "model.safetensors";
  kiln::save_safetensors(out.model, c.tensors, c.metadata);
  return out;
}

std::vector<kiln::Artifact> generate(const fs::path& model, std::vector<std::int64_t> indices,
                                     std::map<std::string, kiln::ParamValue> extra,
                                     std::uint64_t seed = 11, std::string* streamed = nullptr,
                                     kiln::DType precision = kiln::DType::f32) {
  extra["model"] = model.string();
  TestContext ctx(model.parent_path(), 3, precision);
  auto task = make_generate_task(resolve(generate_param_specs(), extra), ctx);
  auto out = task->as_generate()->generate({std::move(indices), seed});
  if (streamed) *streamed = ctx.streamed;
  return out;
}

TEST(RnnModel, ParameterNamesAreTorchs) {
  kiln::Generator gen(1);
  ModelConfig cfg;
  cfg.vocab = 10;
  cfg.embed = 4;
  cfg.hidden = 6;
  cfg.layers = 2;
  CharRnn net(cfg, gen);
  std::vector<std::string> names;
  for (auto& [k, v] : net.state_dict()) names.push_back(k);
  EXPECT_EQ(names, (std::vector<std::string>{
                       "embed.weight", "head.bias", "head.weight", "rnn.bias_hh_l0",
                       "rnn.bias_hh_l1", "rnn.bias_ih_l0", "rnn.bias_ih_l1", "rnn.weight_hh_l0",
                       "rnn.weight_hh_l1", "rnn.weight_ih_l0", "rnn.weight_ih_l1"}));
  EXPECT_EQ(net.state_dict().at("rnn.weight_ih_l0").shape(), (kiln::Shape{24, 4}));
  cfg.cell = "gru";
  CharRnn gru(cfg, gen);
  EXPECT_EQ(gru.state_dict().at("rnn.weight_hh_l1").shape(), (kiln::Shape{18, 6}));
}

// Two chunks with the state carried give the same logits as the whole sequence at once: the
// truncated-BPTT forward pass sees exactly the untruncated sequence.
TEST(RnnModel, CarriedStateEqualsOneLongSequence) {
  for (const char* cell : {"lstm", "gru"}) {
    kiln::Generator gen(2);
    ModelConfig cfg;
    cfg.cell = cell;
    cfg.vocab = 7;
    cfg.embed = 5;
    cfg.hidden = 8;
    cfg.layers = 2;
    CharRnn net(cfg, gen);
    net.eval();
    kiln::NoGradGuard ng;
    std::vector<std::int32_t> a = {1, 2, 3, 4, 5, 6, 0, 1, 2}, b = {3, 3, 1, 0, 6, 5, 4, 2, 1};
    RnnState none, s1, s2, sfull;
    const Tensor full = net.forward(time_major({a.data(), b.data()}, 9), none, sfull, nullptr);
    const Tensor p1 = net.forward(time_major({a.data(), b.data()}, 4), none, s1, nullptr);
    const Tensor p2 = net.forward(time_major({a.data() + 4, b.data() + 4}, 5), s1, s2, nullptr);
    std::vector<float> f = full.to_vector(), x = p1.to_vector(), y = p2.to_vector();
    x.insert(x.end(), y.begin(), y.end());
    ASSERT_EQ(f.size(), x.size());
    for (std::size_t i = 0; i < f.size(); ++i) EXPECT_NEAR(f[i], x[i], 1e-5) << cell << " " << i;
    EXPECT_TRUE(kiln::test::all_close(s2.h, sfull.h, 1e-5f, 1e-6f));
  }
}

// sequence_nll against a direct computation: log-softmax of one full forward pass.
TEST(RnnModel, SequenceNllMatchesDirectLogSoftmax) {
  kiln::Generator gen(4);
  ModelConfig cfg;
  cfg.vocab = 6;
  cfg.embed = 3;
  cfg.hidden = 5;
  cfg.layers = 1;
  CharRnn net(cfg, gen);
  net.eval();
  std::vector<std::int32_t> ids = {0, 1, 2, 3, 4, 5, 0, 2, 4, 1, 3, 5, 5};
  const NllResult r = sequence_nll(net, ids, /*streams=*/1, /*seq_len=*/5);
  EXPECT_EQ(r.chars, 12);
  kiln::NoGradGuard ng;
  RnnState none, out;
  const Tensor lp =
      kiln::ops::log_softmax(net.forward(time_major({ids.data()}, 12), none, out, nullptr));
  const std::vector<float> v = lp.to_vector();
  double nats = 0;
  for (int t = 0; t < 12; ++t) nats -= v[static_cast<std::size_t>(t * 6 + ids[t + 1])];
  EXPECT_NEAR(r.nats, nats, 1e-4);
  // An untrained model is close to uniform: about log(V) nats per character.
  EXPECT_NEAR(r.nats / 12, std::log(6.0), 0.2);
}

TEST(RnnTrain, StateCarriesOnlyAcrossContiguousBatchesAndLossFalls) {
  kiln::test::TempDir dir;
  const Trained t = train_tiny(dir, repeated("the cat sat on the mat.\n", 40), 20);
  // Step 0 starts each epoch from zeros; the next steps continue their streams.
  ASSERT_LT(t.per_epoch, 20);
  EXPECT_EQ(t.carried[0], 0.0);
  EXPECT_EQ(t.carried[1], 1.0);
  EXPECT_EQ(t.carried[static_cast<std::size_t>(t.per_epoch) - 1], 1.0);
  EXPECT_EQ(t.carried[static_cast<std::size_t>(t.per_epoch)], 0.0);
  EXPECT_LT(t.losses.back(), 0.5 * t.losses.front());
  kiln::test::TempDir dir2;
  const Trained s =
      train_tiny(dir2, repeated("the cat sat on the mat.\n", 40), 4, /*shuffle=*/true);
  for (double c : s.carried) EXPECT_EQ(c, 0.0);
}

TEST(RnnTrain, StateRoundTripAndClearErrors) {
  kiln::test::TempDir dir;
  write(dir / "c.txt", repeated("abcd\n", 60));
  TestContext ctx(dir.path());
  auto params = [&](std::int64_t streams) {
    return resolve(train_param_specs(), {{"data", (dir / "c.txt").string()},
                                         {"embed", std::int64_t{4}},
                                         {"hidden", std::int64_t{8}},
                                         {"seq_len", std::int64_t{8}},
                                         {"streams", streams}});
  };
  auto a = make_train_task(params(4), ctx);
  auto b = make_train_task(params(2), ctx);
  const kiln::TensorMap sa = a->as_train()->state();
  EXPECT_TRUE(sa.count("carry.h") && sa.count("carry.c") && sa.count("carry.chunk"));
  try {
    b->as_train()->load_state(sa);
    ADD_FAILURE() << "a state with another stream count was accepted";
  } catch (const kiln::Error& e) {
    EXPECT_NE(std::string(e.what()).find("carry.h"), std::string::npos) << e.what();
  }
  // Too little text for streams * seq_len.
  try {
    make_train_task(params(100), ctx);
    ADD_FAILURE() << "too little text was accepted";
  } catch (const kiln::Error& e) {
    EXPECT_NE(std::string(e.what()).find("c.txt"), std::string::npos) << e.what();
  }
  EXPECT_THROW(make_train_task(
                   resolve(train_param_specs(), {{"data", (dir / "missing.txt").string()}}), ctx),
               kiln::Error);
}

TEST(RnnGenerate, SameSeedSameTextAndIndependentOfTheBatch) {
  kiln::test::TempDir dir;
  const Trained t = train_tiny(dir, repeated("hello world, hello kiln.\n", 40), 20);
  for (const std::string quantize : {"none", "int8"}) {
    SCOPED_TRACE("quantize = " + quantize);
    const std::map<std::string, kiln::ParamValue> opts = {{"max_tokens", std::int64_t{40}},
                                                          {"quantize", quantize}};
    const auto all = generate(t.model, {0, 1, 2, 3}, opts);
    const auto again = generate(t.model, {0, 1, 2, 3}, opts);
    const auto alone = generate(t.model, {2}, opts);
    const auto other = generate(t.model, {0, 1, 2, 3}, opts, 12);
    ASSERT_EQ(all.size(), 4u);
    for (std::size_t i = 0; i < 4; ++i) {
      EXPECT_EQ(all[i].index, static_cast<std::int64_t>(i));
      EXPECT_EQ(all[i].text, again[i].text);
      EXPECT_EQ(kiln::text::decode_utf8(all[i].text).size(), 40u);
    }
    EXPECT_EQ(alone[0].text, all[2].text);
    EXPECT_NE(all[0].text, all[1].text);
    int same = 0;
    for (std::size_t i = 0; i < 4; ++i) same += all[i].text == other[i].text;
    EXPECT_LT(same, 4);
  }
}

TEST(RnnGenerate, Bf16IsReproducibleAndFollowsTheModel) {
  kiln::test::TempDir dir;
  const Trained t = train_tiny(dir, repeated("abc", 200), 25);
  const kiln::DType bf16 = kiln::DType::bf16;
  const std::map<std::string, kiln::ParamValue> opts = {{"prompt", std::string("ab")},
                                                        {"max_tokens", std::int64_t{30}}};
  const auto a = generate(t.model, {0, 1, 2}, opts, 11, nullptr, bf16);
  const auto b = generate(t.model, {0, 1, 2}, opts, 11, nullptr, bf16);
  ASSERT_EQ(a.size(), 3u);
  for (std::size_t i = 0; i < 3; ++i) EXPECT_EQ(a[i].text, b[i].text);
  const auto greedy =
      generate(t.model, {0},
               {{"prompt", std::string("ab")}, {"greedy", true}, {"max_tokens", std::int64_t{8}}},
               11, nullptr, bf16);
  EXPECT_EQ(greedy[0].text.substr(0, 8), "abcabcab");
}

TEST(RnnEvaluate, Bf16ScoresWithinAHundredthOfABitOfF32) {
  kiln::test::TempDir dir;
  const Trained t = train_tiny(dir, repeated("hello world, hello kiln.\n", 40), 20);
  write(dir / "eval.txt", repeated("hello kiln, hello world.\n", 8));
  auto bpc = [&](kiln::DType precision) {
    TestContext ctx(dir.path(), 3, precision);
    auto task =
        make_evaluate_task(resolve(evaluate_param_specs(), {{"model", t.model.string()},
                                                            {"data", (dir / "eval.txt").string()},
                                                            {"streams", std::int64_t{1}}}),
                           ctx);
    return task->as_run()->run().at(0).metrics.at("bpc");
  };
  const double f32 = bpc(kiln::DType::f32), bf16 = bpc(kiln::DType::bf16);
  EXPECT_NE(f32, bf16);  // the recurrent layers really ran in bf16
  EXPECT_NEAR(bf16, f32, 0.01);
}

TEST(RnnGenerate, Int8IsReproducibleAndFollowsTheModel) {
  kiln::test::TempDir dir;
  const Trained t = train_tiny(dir, repeated("abc", 200), 25);
  const std::map<std::string, kiln::ParamValue> opts = {{"prompt", std::string("ab")},
                                                        {"max_tokens", std::int64_t{30}},
                                                        {"quantize", std::string("int8")}};
  const auto a = generate(t.model, {0, 1, 2}, opts, 11);
  const auto b = generate(t.model, {0, 1, 2}, opts, 11);
  ASSERT_EQ(a.size(), 3u);
  for (std::size_t i = 0; i < 3; ++i) EXPECT_EQ(a[i].text, b[i].text);
  const auto greedy = generate(t.model, {0},
                               {{"prompt", std::string("ab")},
                                {"greedy", true},
                                {"max_tokens", std::int64_t{8}},
                                {"quantize", std::string("int8")}},
                               11);
  EXPECT_EQ(greedy[0].text.substr(0, 8), "abcabcab");
}

TEST(RnnEvaluate, Int8ScoresWithinTwoHundredthsOfABitOfF32) {
  kiln::test::TempDir dir;
  const Trained t = train_tiny(dir, repeated("hello world, hello kiln.\n", 40), 20);
  write(dir / "eval.txt", repeated("hello kiln, hello world.\n", 8));
  auto bpc = [&](const std::string& quantize) {
    TestContext ctx(dir.path(), 3);
    auto task =
        make_evaluate_task(resolve(evaluate_param_specs(), {{"model", t.model.string()},
                                                            {"data", (dir / "eval.txt").string()},
                                                            {"streams", std::int64_t{1}},
                                                            {"quantize", quantize}}),
                           ctx);
    return task->as_run()->run().at(0).metrics.at("bpc");
  };
  const double f32 = bpc("none"), int8 = bpc("int8");
  EXPECT_NE(f32, int8);  // the recurrent layers really ran in int8
  EXPECT_NEAR(int8, f32, 0.02);
}

TEST(RnnGenerate, Int8NeedsAnLstmModel) {
  kiln::test::TempDir dir;
  const Trained t = train_tiny(dir, repeated("abc", 50), 2, false, 0.0, "gru");
  try {
    generate(t.model, {0}, {{"quantize", std::string("int8")}});
    ADD_FAILURE() << "int8 was accepted for a GRU model";
  } catch (const kiln::Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("rnn/generate: quantize = \"int8\" needs an LSTM model, but '" +
                     t.model.string() + "' is a gru"),
              std::string::npos)
        << m;
  }
}

TEST(RnnGenerate, PromptStreamingStopStringsAndUnknownCharacters) {
  kiln::test::TempDir dir;
  const Trained t = train_tiny(dir, repeated("abc", 200), 25);
  std::string streamed;
  const auto g =
      generate(t.model, {0},
               {{"prompt", std::string("ab")}, {"greedy", true}, {"max_tokens", std::int64_t{8}}},
               11, &streamed);
  EXPECT_EQ(g[0].text.substr(0, 5), "abcab");  // greedy continues the pattern
  EXPECT_EQ(streamed, g[0].text + "\n");       // one sequence streams as it goes
  EXPECT_EQ(g[0].info.at("prompt"), "ab");
  const auto s = generate(
      t.model, {0},
      {{"prompt", std::string("ab")}, {"greedy", true}, {"stop", std::vector<std::string>{"bc"}}});
  EXPECT_EQ(s[0].text, "abca");  // generated "cabc": the text ends before "bc"
  EXPECT_EQ(s[0].info.at("end"), "stop");
  try {
    generate(t.model, {0}, {{"prompt", std::string("abZ")}});
    ADD_FAILURE() << "an unseen prompt character was accepted";
  } catch (const kiln::Error& e) {
    EXPECT_NE(std::string(e.what()).find("U+005A 'Z'"), std::string::npos) << e.what();
  }
  const auto skipped = generate(t.model, {0},
                                {{"prompt", std::string("abZ")},
                                 {"unknown", std::string("skip")},
                                 {"greedy", true},
                                 {"max_tokens", std::int64_t{1}}});
  EXPECT_EQ(skipped[0].text, "abc");
}

TEST(RnnEvaluate, BitsPerCharacterAndSkippedCharacters) {
  kiln::test::TempDir dir;
  const Trained t = train_tiny(dir, repeated("abc", 200), 25);
  write(dir / "eval.txt", repeated("abc", 33) + "xyz");
  TestContext ctx(dir.path());
  auto task =
      make_evaluate_task(resolve(evaluate_param_specs(), {{"model", t.model.string()},
                                                          {"data", (dir / "eval.txt").string()},
                                                          {"streams", std::int64_t{1}}}),
                         ctx);
  const auto out = task->as_run()->run();
  ASSERT_EQ(out.size(), 1u);
  const kiln::Metrics& m = out[0].metrics;
  EXPECT_EQ(m.at("skipped_chars"), 3.0);
  EXPECT_EQ(m.at("chars"), 99.0);  // 99 + a newline appended, 100 known, 99 predicted
  EXPECT_LT(m.at("bpc"), 1.0);  // the pattern is learnt (uniform over a, b, c and newline: 2 bits)
  EXPECT_NEAR(m.at("bpc"), m.at("nats_per_char") / std::log(2.0), 1e-9);
  auto strict =
      make_evaluate_task(resolve(evaluate_param_specs(), {{"model", t.model.string()},
                                                          {"data", (dir / "eval.txt").string()},
                                                          {"unknown", std::string("error")}}),
                         ctx);
  EXPECT_THROW(strict->as_run()->run(), kiln::Error);
}

TEST(RnnModel, CheckpointHoldsTheVocabularyAndRejectsForeignFiles) {
  kiln::test::TempDir dir;
  const Trained t = train_tiny(dir, repeated("x\xc3\xa9y\n", 200), 2);
  const LoadedModel m = load_model(t.model.string());
  EXPECT_EQ(m.vocab.size(), 4);
  EXPECT_EQ(m.vocab.token_text(3), "\xc3\xa9");
  kiln::Safetensors f = kiln::load_safetensors(t.model);
  f.tensors.erase("vocab");
  kiln::save_safetensors(dir / "novocab.safetensors", f.tensors, f.metadata);
  try {
    load_model((dir / "novocab.safetensors").string());
    ADD_FAILURE();
  } catch (const kiln::Error& e) {
    EXPECT_NE(std::string(e.what()).find("vocabulary"), std::string::npos) << e.what();
  }
  kiln::save_safetensors(dir / "other.safetensors", {{"w", Tensor::zeros({2})}}, {});
  EXPECT_THROW(load_model((dir / "other.safetensors").string()), kiln::Error);
}

}  // namespace
}  // namespace kiln_rnn

namespace kiln_rnn {
namespace {

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// The real `kiln` binary: train, then generate one streamed sample and evaluate.
TEST(RnnPipeline, TrainGenerateEvaluateWithTheKilnBinary) {
  kiln::test::TempDir dir;
  write(dir / "corpus.txt", repeated(repeated("abc", 10) + "\n", 30));
  write(dir / "p.toml", R"([pipeline]
name = "p"
seed = 4
[compute]
threads = 1
[[stage]]
id = "train"
plugin = "rnn"
task = "train"
data = "corpus.txt"
embed = 4
hidden = 16
layers = 1
seq_len = 16
streams = 4
batch_size = 4
shuffle = false
lr = 0.03
epochs = 3
[[stage]]
id = "gen"
plugin = "rnn"
task = "generate"
model = "@train"
prompt = "ab"
greedy = true
max_tokens = 7
count = 1
stream = true
[[stage]]
id = "bpc"
plugin = "rnn"
task = "evaluate"
model = "@train"
data = "corpus.txt"
streams = 2
)");
  const std::string cmd = "cd '" + dir.path().string() + "' && OMP_WAIT_POLICY=PASSIVE '" +
                          std::string(KILN_EXE) + "' run p.toml > out.txt 2> err.txt";
  const int rc = std::system(cmd.c_str());
  ASSERT_EQ(rc, 0) << slurp(dir / "err.txt");
  const std::string sample = slurp(dir / "runs/p/gen/samples/000000.txt");
  EXPECT_EQ(sample, "abcabcabc");
  EXPECT_EQ(slurp(dir / "out.txt"), sample + "\n");  // streamed to stdout, nothing else
  EXPECT_NE(slurp(dir / "runs/p/gen/manifest.jsonl").find("\"prompt\""), std::string::npos);
  EXPECT_NE(slurp(dir / "err.txt").find("val_bpc"), std::string::npos);
  EXPECT_NE(slurp(dir / "err.txt").find("bpc = "), std::string::npos);
}

}  // namespace
}  // namespace kiln_rnn

namespace kiln_rnn {
namespace {

// Six steps of truncated BPTT (state carried, clipping, Adam) against PyTorch from the same
// initial weights: tests/fixtures/gen/rnn_train_fixture.py.
TEST(RnnTrain, MatchesPyTorchStepForStep) {
  const kiln::Safetensors fx = kiln::test::load_fixture("rnn_train.safetensors");
  const std::string text = fx.metadata.at("text");
  for (const std::string cell : {"lstm", "gru"}) {
    kiln::test::TempDir dir;
    write(dir / "t.txt", text);
    TestContext ctx(dir.path());
    const Params p = resolve(train_param_specs(), {{"data", (dir / "t.txt").string()},
                                                   {"cell", cell},
                                                   {"embed", std::int64_t{5}},
                                                   {"hidden", std::int64_t{8}},
                                                   {"layers", std::int64_t{2}},
                                                   {"streams", std::int64_t{3}},
                                                   {"seq_len", std::int64_t{6}},
                                                   {"lr", 1e-2},
                                                   {"clip", 0.5},
                                                   {"val_fraction", 0.0}});
    auto task = make_train_task(p, ctx);
    kiln::TrainTask& t = *task->as_train();
    kiln::TensorMap state = t.state();
    int replaced = 0;
    for (auto& [k, v] : fx.tensors) {
      const std::string prefix = cell + ".init.";
      if (k.rfind(prefix, 0) != 0) continue;
      const std::string name = "model." + k.substr(prefix.size());
      ASSERT_TRUE(state.count(name)) << name;
      state[name] = v;
      ++replaced;
    }
    ASSERT_EQ(replaced, 11);
    t.load_state(state);
    kiln::data::DataLoader loader(t.train_data(),
                                  {.batch_size = 3, .shuffle = false, .prefetch = 0});
    const std::vector<float> losses = fx.tensors.at(cell + ".losses").to_vector();
    for (std::size_t s = 0; s < losses.size(); ++s) {
      const auto step = static_cast<std::int64_t>(s);
      const kiln::Metrics m = t.train_step(loader.get(0, step), {step, 0, step, 1});
      EXPECT_NEAR(m.at("loss"), losses[s], 2e-5 * (1 + losses[s])) << cell << " step " << s;
      EXPECT_EQ(m.at("carried"), s == 0 ? 0.0 : 1.0);
    }
    const kiln::TensorMap after = t.state();
    for (auto& [k, v] : fx.tensors) {
      const std::string prefix = cell + ".final.";
      if (k.rfind(prefix, 0) != 0) continue;
      EXPECT_TRUE(
          kiln::test::all_close(after.at("model." + k.substr(prefix.size())), v, 1e-4f, 1e-5f))
          << cell << " " << k;
    }
  }
}

}  // namespace
}  // namespace kiln_rnn
