// The tasks of style_transfer on small images: losses fall, outputs have the promised sizes, bad
// input gives clear errors.
#include <cmath>
#include <fstream>

#include "kiln/data.hpp"
#include "kiln/safetensors.hpp"
#include "style_test_util.hpp"

namespace kiln::style {
namespace {
using namespace kiln::style::test;

std::vector<Artifact> run_stylize(const std::map<std::string, ParamValue>& extra,
                                  const fs::path& dir, std::uint64_t seed = 1) {
  Ctx ctx(dir, seed);
  const Params p = resolve(stylize_spec(), merge(merge({{"content", kContent},
                                                        {"style", kStyle},
                                                        {"size", std::int64_t{32}},
                                                        {"iterations", std::int64_t{12}}},
                                                       tiny_net()),
                                                 extra));
  auto task = make_stylize(p, ctx);
  return task->as_run()->run();
}

double metric(const std::vector<Artifact>& arts, const std::string& k) {
  const Artifact* m = find(arts, ArtifactKind::metrics);
  EXPECT_NE(m, nullptr);
  return m ? m->metrics.at(k) : NAN;
}

TEST(Stylize, LbfgsLowersTheStyleLoss) {
  kiln::test::TempDir dir;
  const auto arts = run_stylize({}, dir.path());
  const Artifact* img = find(arts, ArtifactKind::image);
  ASSERT_NE(img, nullptr);
  EXPECT_EQ(img->name, "stylized");
  EXPECT_EQ(img->image.width, 32);
  EXPECT_EQ(img->image.height, 32);
  EXPECT_EQ(img->image.channels, 3);
  EXPECT_LT(metric(arts, "style_loss"), 0.3 * metric(arts, "initial_style_loss"));
  EXPECT_LT(metric(arts, "total_loss"), 0.3 * metric(arts, "initial_total_loss"));
  EXPECT_GT(metric(arts, "content_loss"), 0.0);  // it moved away from the content
  const Artifact* table = find(arts, ArtifactKind::table);
  ASSERT_NE(table, nullptr);
  EXPECT_EQ(table->table.rows.size(), 12u);
}

TEST(Stylize, AdamFromNoiseWithTwoScalesAndPreservedColours) {
  kiln::test::TempDir dir;
  const auto arts = run_stylize({{"optimizer", std::string("adam")},
                                 {"lr", 0.05},
                                 {"init", std::string("noise")},
                                 {"scales", std::int64_t{2}},
                                 {"tv_weight", 1.0},
                                 {"preserve_colors", true}},
                                dir.path());
  EXPECT_LT(metric(arts, "total_loss"), metric(arts, "initial_total_loss"));
  EXPECT_EQ(metric(arts, "iterations"), 24);
  const Artifact* img = find(arts, ArtifactKind::image);
  ASSERT_NE(img, nullptr);
  EXPECT_EQ(img->image.width, 32);
  const Artifact* table = find(arts, ArtifactKind::table);
  ASSERT_NE(table, nullptr);
  EXPECT_EQ(table->table.rows.front()[1], "16");  // the coarse scale comes first
  EXPECT_EQ(table->table.rows.back()[1], "32");
  // Same seed, same result; another seed, other noise.
  const auto again = run_stylize({{"optimizer", std::string("adam")},
                                  {"lr", 0.05},
                                  {"init", std::string("noise")},
                                  {"scales", std::int64_t{2}},
                                  {"tv_weight", 1.0},
                                  {"preserve_colors", true}},
                                 dir.path());
  EXPECT_EQ(find(again, ArtifactKind::image)->image.pixels, img->image.pixels);
}

TEST(Stylize, InitImageBlendOfStylesAndFixedStepLbfgs) {
  kiln::test::TempDir dir;
  const auto arts = run_stylize({{"style", (kAssets / "style").string()},
                                 {"style_weights", std::vector<double>{1.0, 0.0, 2.0}},
                                 {"init", std::string("image")},
                                 {"init_image", (kAssets / "style" / "mosaic.png").string()},
                                 {"line_search", std::string("none")},
                                 {"size", std::int64_t{24}}},
                                dir.path());
  EXPECT_EQ(find(arts, ArtifactKind::image)->image.width, 24);
  EXPECT_LT(metric(arts, "total_loss"), metric(arts, "initial_total_loss"));
  EXPECT_EQ(metric(arts, "evaluations"), 13);  // one per iteration plus the first point
}

TEST(Stylize, OnAVgg19File) {
  // The fixture of tests/fixtures/gen/style_fixture.py is a VGG-19-shaped file (small widths).
  kiln::test::TempDir dir;
  const std::string vgg = kiln::test::fixture_path("style.safetensors").string();
  const auto arts = run_stylize(
      {{"net", std::string("vgg19")}, {"vgg_weights", vgg}, {"iterations", std::int64_t{6}}},
      dir.path());
  EXPECT_LT(metric(arts, "style_loss"), 0.5 * metric(arts, "initial_style_loss"));
  Ctx ctx(dir.path());
  auto dream = make_dream(resolve(dream_spec(), {{"net", std::string("vgg19")},
                                                 {"vgg_weights", vgg},
                                                 {"layers", std::vector<std::string>{"relu2_1"}},
                                                 {"size", std::int64_t{24}},
                                                 {"octaves", std::int64_t{2}},
                                                 {"steps", std::int64_t{3}}}),
                          ctx);
  const auto d = dream->as_run()->run();
  EXPECT_GT(metric(d, "final_objective"), metric(d, "initial_objective"));
}

TEST(Stylize, JpegAndGreyInputs) {
  kiln::test::TempDir dir;
  const fs::path images = fs::path(KILN_FIXTURE_DIR) / "images";
  const auto arts = run_stylize({{"content", (images / "rgb.jpg").string()},
                                 {"style", (images / "grey.jpg").string()},
                                 {"iterations", std::int64_t{3}},
                                 {"size", std::int64_t{0}}},
                                dir.path());
  const Image src = read_image(images / "rgb.jpg");
  const Artifact* img = find(arts, ArtifactKind::image);
  ASSERT_NE(img, nullptr);
  EXPECT_EQ(img->image.width, src.width);  // size 0: the content's own size
  EXPECT_EQ(img->image.height, src.height);
}

TEST(Stylize, BadInputIsAClearError) {
  kiln::test::TempDir dir;
  std::ofstream(dir / "not_an_image.png") << "hello";
  expect_error(
      [&] {
        run_stylize({{"content", (dir / "not_an_image.png").string()}}, dir.path());
      },
      {"not_an_image.png"});
  expect_error(
      [&] {
        run_stylize({{"content", (dir / "nothing.png").string()}}, dir.path());
      },
      {"content", "nothing.png", "not a file"});
  expect_error(
      [&] {
        run_stylize({{"size", std::int64_t{4000}}, {"memory_limit_mb", std::int64_t{64}}},
                    dir.path());
      },
      {"4000x4000", "memory_limit_mb = 64"});
  expect_error([&] { run_stylize({{"net", std::string("vgg19")}}, dir.path()); }, {"vgg_weights"});
  expect_error(
      [&] {
        run_stylize({{"style_layers", std::vector<std::string>{"relu9_9"}}}, dir.path());
      },
      {"style_layers", "relu9_9", "s0_1"});
  expect_error(
      [&] {
        run_stylize(
            {{"style", (kAssets / "style").string()}, {"style_weights", std::vector<double>{1.0}}},
            dir.path());
      },
      {"style_weights has 1", "3 image"});
  expect_error([&] { run_stylize({{"init", std::string("image")}}, dir.path()); }, {"init_image"});
  fs::create_directories(dir / "empty");
  expect_error(
      [&] {
        run_stylize({{"style", (dir / "empty").string()}}, dir.path());
      },
      {"style", "without PNG or JPEG"});
}

std::map<std::string, ParamValue> fast_params() {
  return merge({{"data", (kAssets / "train").string()},
                {"style", (kAssets / "style" / "mosaic.png").string()},
                {"image_size", std::int64_t{16}},
                {"width", std::int64_t{4}},
                {"residual_blocks", std::int64_t{1}}},
               tiny_net());
}

TEST(Fast, TrainStepsStateAndStylizeAFolder) {
  kiln::test::TempDir dir;
  Ctx ctx(dir.path(), 3);
  auto task = make_train_fast(resolve(train_fast_spec(), fast_params()), ctx);
  TrainTask* t = task->as_train();
  ASSERT_NE(t, nullptr);
  auto data = t->train_data();
  EXPECT_EQ(data->size(), 16);
  data::DataLoader loader(data, {.batch_size = 2, .shuffle = true, .seed = 1, .prefetch = 0});
  Metrics m;
  for (int s = 0; s < 3; ++s) {
    m = t->train_step(loader.get(0, s), {s, 0, s, 1});
    EXPECT_TRUE(std::isfinite(m.at("loss")));
  }
  EXPECT_GT(m.at("style_loss"), 0);
  // The state round-trips; a state without the optimiser is refused.
  const TensorMap st = t->state();
  EXPECT_EQ(st.count("optim.step"), 1u);
  auto other = make_train_fast(resolve(train_fast_spec(), fast_params()), ctx);
  other->as_train()->load_state(st);
  TensorMap broken = st;
  broken.erase("optim.step");
  expect_error([&] { other->as_train()->load_state(broken); }, {"optim.step"});

  const Checkpoint ck = t->export_model();
  save_safetensors(dir / "fast.safetensors", ck.tensors, ck.metadata);
  auto gen = make_stylize_fast(
      resolve(stylize_fast_spec(), {{"model", (dir / "fast.safetensors").string()},
                                    {"input", (kAssets / "content").string()},
                                    {"size", std::int64_t{30}}}),
      ctx);
  GenerateTask* g = gen->as_generate();
  ASSERT_NE(g, nullptr);
  EXPECT_EQ(g->default_count(), 2);  // the images in the folder
  const auto both = g->generate({{0, 1}, 1});
  ASSERT_EQ(both.size(), 2u);
  EXPECT_EQ(both[0].index, 0);
  EXPECT_EQ(both[1].index, 1);
  EXPECT_EQ(both[0].image.width, 30);  // not a multiple of 4: padded inside, cropped after
  EXPECT_EQ(both[0].info.at("source"), "landscape.png");
  const auto alone = g->generate({{1}, 1});
  int worst = 0;
  for (std::size_t i = 0; i < alone[0].image.pixels.size(); ++i) {
    worst = std::max(worst, std::abs(int(alone[0].image.pixels[i]) - int(both[1].image.pixels[i])));
  }
  EXPECT_LE(worst, 1);
  expect_error([&] { g->generate({{2}, 1}); }, {"sample 2", "2 image"});
  // A model of another task is refused.
  save_safetensors(dir / "other.safetensors", ck.tensors,
                   checkpoint_metadata("style_transfer", "1.0.0", "stylize", Params()));
  expect_error(
      [&] {
        make_stylize_fast(
            resolve(stylize_fast_spec(),
                    {{"model", (dir / "other.safetensors").string()}, {"input", kContent}}),
            ctx);
      },
      {"other.safetensors"});
}

TEST(Fast, ImageSizeMustBeAMultipleOfFour) {
  kiln::test::TempDir dir;
  Ctx ctx(dir.path());
  expect_error(
      [&] {
        make_train_fast(
            resolve(train_fast_spec(), merge(fast_params(), {{"image_size", std::int64_t{18}}})),
            ctx);
      },
      {"image_size", "multiple of 4", "18"});
}

TEST(Dream, RaisesTheObjective) {
  kiln::test::TempDir dir;
  Ctx ctx(dir.path(), 5);
  auto task = make_dream(resolve(dream_spec(), merge({{"input", kContent},
                                                      {"size", std::int64_t{32}},
                                                      {"octaves", std::int64_t{2}},
                                                      {"steps", std::int64_t{5}}},
                                                     tiny_net())),
                         ctx);
  const auto arts = task->as_run()->run();
  const Artifact* img = find(arts, ArtifactKind::image);
  ASSERT_NE(img, nullptr);
  EXPECT_EQ(img->image.width, 32);
  const Artifact* m = find(arts, ArtifactKind::metrics);
  ASSERT_NE(m, nullptr);
  EXPECT_GT(m->metrics.at("final_objective"), m->metrics.at("initial_objective"));
  EXPECT_EQ(m->metrics.at("steps"), 10);
  // From noise, without an input; bad layers are refused.
  auto noise = make_dream(resolve(dream_spec(), merge({{"size", std::int64_t{16}},
                                                       {"octaves", std::int64_t{1}},
                                                       {"steps", std::int64_t{2}}},
                                                      tiny_net())),
                          ctx);
  EXPECT_EQ(find(noise->as_run()->run(), ArtifactKind::image)->image.width, 16);
  expect_error(
      [&] {
        make_dream(resolve(dream_spec(),
                           merge({{"layers", std::vector<std::string>{"s5_1"}}}, tiny_net())),
                   ctx);
      },
      {"layers", "s5_1"});
}

}  // namespace
}  // namespace kiln::style
