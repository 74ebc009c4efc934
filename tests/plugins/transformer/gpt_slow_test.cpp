// transformer/train end to end on part of the fortunes corpus: the validation loss falls from
// ln(vocab) to a bound within 120 steps, through the task's own data pipeline and DataLoader.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "kiln/data.hpp"
#include "tasks.hpp"

namespace kiln::gpt {
namespace {

class QuietContext final : public TaskContext {
 public:
  std::string stage_id() const override { return "train"; }
  std::filesystem::path work_dir() const override { return std::filesystem::temp_directory_path(); }
  std::uint64_t seed() const override { return 42; }
  DType precision() const override { return DType::f32; }
  void progress(std::int64_t, std::int64_t, const std::string&) override {}
  bool cancelled() const override { return false; }
  void stream_text(std::string_view) override {}
};

TEST(GptSlow, TrainingOnFortunesLowersValidationLoss) {
  if (!std::filesystem::exists("/usr/share/games/fortunes/fortunes")) {
    GTEST_SKIP() << "the fortunes package is not installed";
  }
  QuietContext ctx;
  const Params p = Params::resolve(
      train_params(), Params({{"data", std::string("/usr/share/games/fortunes/fortunes")},
                              {"vocab_size", std::int64_t{1024}},
                              {"context", std::int64_t{64}},
                              {"layers", std::int64_t{2}},
                              {"heads", std::int64_t{4}},
                              {"dim", std::int64_t{64}},
                              {"lr", 3e-3},
                              {"min_lr", 3e-4},
                              {"warmup", std::int64_t{10}},
                              {"decay_steps", std::int64_t{120}},
                              {"val_windows", std::int64_t{64}}}));
  auto task = make_train_task(p, ctx);
  TrainTask& t = *task->as_train();
  const double before = t.evaluate().at("val_loss");
  EXPECT_NEAR(before, std::log(1024.0), 0.3);
  data::DataLoader loader(t.train_data(), {.batch_size = 16, .shuffle = true, .seed = 1});
  double last = 0;
  for (std::int64_t s = 0; s < 120; ++s) {
    const std::int64_t per = loader.batches_per_epoch();
    const Metrics m = t.train_step(loader.get(s / per, s % per), {s, s / per, s % per, 42});
    last = m.at("loss");
    ASSERT_TRUE(std::isfinite(last));
  }
  const Metrics after = t.evaluate();
  std::printf("val loss %.3f -> %.3f (ppl %.1f), last train loss %.3f\n", before,
              after.at("val_loss"), after.at("val_ppl"), last);
  EXPECT_LT(after.at("val_loss"), 5.2);  // 4.81 measured
  EXPECT_NEAR(after.at("val_ppl"), std::exp(after.at("val_loss")), 1e-6 * after.at("val_ppl"));
}

}  // namespace
}  // namespace kiln::gpt
