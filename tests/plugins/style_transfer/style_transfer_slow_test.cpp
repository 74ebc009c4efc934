// Longer runs: the Gatys optimisation and the feed-forward network bring their losses down to
// documented bounds.
#include <cmath>

#include "kiln/data.hpp"
#include "style_test_util.hpp"

namespace kiln::style {
namespace {
using namespace kiln::style::test;

TEST(StylizeSlow, LbfgsBringsTheStyleLossDownTwentyfold) {
  kiln::test::TempDir dir;
  Ctx ctx(dir.path());
  auto task = make_stylize(resolve(stylize_spec(), {{"content", kContent},
                                                    {"style", kStyle},
                                                    {"size", std::int64_t{64}},
                                                    {"iterations", std::int64_t{60}}}),
                           ctx);
  const auto arts = task->as_run()->run();
  const Artifact* m = find(arts, ArtifactKind::metrics);
  ASSERT_NE(m, nullptr);
  EXPECT_LT(m->metrics.at("style_loss"), 0.05 * m->metrics.at("initial_style_loss"));
  EXPECT_LT(m->metrics.at("content_loss"), 2.0);  // the content is still there
}

TEST(FastSlow, TrainingLowersTheLoss) {
  kiln::test::TempDir dir;
  Ctx ctx(dir.path(), 2);
  auto task = make_train_fast(
      resolve(train_fast_spec(), merge({{"data", (kAssets / "train").string()},
                                        {"style", (kAssets / "style" / "mosaic.png").string()},
                                        {"image_size", std::int64_t{32}},
                                        {"width", std::int64_t{8}},
                                        {"residual_blocks", std::int64_t{2}},
                                        {"lr", 0.005}},
                                       tiny_net())),
      ctx);
  TrainTask* t = task->as_train();
  data::DataLoader loader(t->train_data(), {.batch_size = 4, .shuffle = true, .seed = 1});
  const std::int64_t per = loader.batches_per_epoch();
  double first = 0, last = 0;
  const int steps = 60;
  for (int s = 0; s < steps; ++s) {
    const Metrics m = t->train_step(loader.get(s / per, s % per), {s, s / per, s % per, 1});
    if (s < 8) first += m.at("loss") / 8;
    if (s >= steps - 8) last += m.at("loss") / 8;
  }
  EXPECT_LT(last, 0.5 * first) << "first " << first << ", last " << last;
}

}  // namespace
}  // namespace kiln::style
