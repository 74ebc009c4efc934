// Training a tiny U-Net for a few hundred steps lowers the validation loss well below that of the
// zero-initialised network (which predicts eps = 0: loss 1 for eps prediction).
#include <gtest/gtest.h>

#include <cmath>

#include "diffusion_test_util.hpp"
#include "kiln/context.hpp"

namespace diffusion {
namespace {

TEST(DiffusionSlow, TrainingLowersTheValidationLoss) {
  // One compute thread: with two, OpenMP's spinning barriers cost most of the time on a loaded
  // shared machine (docs/pipelines.md, Threads); the result does not depend on it.
  kiln::set_num_threads(1);
  kiln::test::TempDir dir;
  test::Context ctx(dir.path());
  auto task = make_train_task(test::tiny_train_params({{"limit", std::int64_t{2048}},
                                                       {"val_images", std::int64_t{128}},
                                                       {"timesteps", std::int64_t{100}},
                                                       {"channels", std::int64_t{16}},
                                                       {"lr", 2e-3},
                                                       {"warmup", std::int64_t{20}}}),
                              ctx);
  kiln::TrainTask* t = task->as_train();
  const double before = t->evaluate().at("val_loss");
  EXPECT_NEAR(before, 1.0, 0.05);  // eps ~ N(0, 1) against a zero prediction
  kiln::data::DataLoader loader(t->train_data(), {.batch_size = 32, .seed = 3});
  for (std::int64_t s = 0; s < 200; ++s) {
    const auto b = s % loader.batches_per_epoch();
    const kiln::Metrics m =
        t->train_step(loader.get(s / loader.batches_per_epoch(), b), {.step = s, .seed = 5});
    ASSERT_TRUE(std::isfinite(m.at("loss"))) << "step " << s;
  }
  const double after = t->evaluate().at("val_loss");
  EXPECT_LT(after, 0.25) << "val_loss " << before << " -> " << after;
}

}  // namespace
}  // namespace diffusion
