// Slow: a small model learns real text (a Debian fortune file) well past the unigram level.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "kiln/data.hpp"
#include "model.hpp"
#include "support/test_support.hpp"
#include "tasks.hpp"

namespace kiln_rnn {
namespace {

class Ctx final : public kiln::TaskContext {
 public:
  explicit Ctx(std::filesystem::path d) : d_(std::move(d)) {}
  std::string stage_id() const override { return "slow"; }
  std::filesystem::path work_dir() const override { return d_; }
  std::uint64_t seed() const override { return 1; }
  kiln::DType precision() const override { return kiln::DType::f32; }
  void progress(std::int64_t, std::int64_t, const std::string&) override {}
  bool cancelled() const override { return false; }
  void stream_text(std::string_view) override {}

 private:
  std::filesystem::path d_;
};

TEST(RnnSlow, LearnsAFortuneFileToAValidationBound) {
  const std::filesystem::path file = "/usr/share/games/fortunes/computers";
  if (!std::filesystem::exists(file)) GTEST_SKIP() << "fortunes not installed";
  kiln::test::TempDir dir;
  Ctx ctx(dir.path());
  using PV = kiln::ParamValue;
  const kiln::Params p =
      kiln::Params::resolve(train_param_specs(), kiln::Params({{"data", PV(file.string())},
                                                               {"hidden", PV(std::int64_t{128})},
                                                               {"embed", PV(std::int64_t{32})},
                                                               {"seq_len", PV(std::int64_t{64})},
                                                               {"streams", PV(std::int64_t{16})},
                                                               {"lr", PV(3e-3)}}));
  auto task = make_train_task(p, ctx);
  kiln::TrainTask& t = *task->as_train();
  const double before = t.evaluate().at("val_bpc");
  kiln::data::DataLoader loader(t.train_data(), {.batch_size = 16, .shuffle = false});
  const std::int64_t per = loader.batches_per_epoch();
  for (std::int64_t s = 0; s < 6 * per; ++s) {
    t.train_step(loader.get(s / per, s % per), {s, s / per, s % per, 1});
  }
  const double after = t.evaluate().at("val_bpc");
  const std::int64_t vocab = t.export_model().tensors.at("vocab").numel();
  EXPECT_NEAR(before, std::log2(static_cast<double>(vocab)), 0.5);  // untrained: near uniform
  EXPECT_LT(after, 3.0) << "validation bpc before training " << before;
}

}  // namespace
}  // namespace kiln_rnn
