// The train and generate tasks through the plugin's task interface: a tiny model trained for a
// few steps, guided and image-to-image generation, strips, and every bad input.
#include <gtest/gtest.h>

#include <cmath>

#include "diffusion_test_util.hpp"
#include "kiln/image.hpp"
#include "kiln/safetensors.hpp"
#include "sampler.hpp"

namespace diffusion {
namespace {

using kiln::Params;
using kiln::Tensor;
using test::Context;

class Tasks : public ::testing::Test {
 protected:
  // One tiny model trained for 3 steps, shared by the tests of this suite.
  static void SetUpTestSuite() {
    dir_ = new kiln::test::TempDir();
    Context ctx(dir_->path());
    auto task = make_train_task(test::tiny_train_params(), ctx);
    kiln::TrainTask* t = task->as_train();
    kiln::data::DataLoader loader(t->train_data(), {.batch_size = 8, .seed = 1});
    for (std::int64_t b = 0; b < 3; ++b) {
      const kiln::Metrics m = t->train_step(loader.get(0, b), {.step = b, .batch = b, .seed = 5});
      ASSERT_TRUE(std::isfinite(m.at("loss")));
    }
    val_loss_ = t->evaluate().at("val_loss");
    const kiln::Checkpoint c = t->export_model();
    kiln::save_safetensors(model(), c.tensors, c.metadata);
  }
  static void TearDownTestSuite() { delete dir_; }
  static std::filesystem::path model() { return dir_->path() / "model.safetensors"; }

  std::vector<kiln::Artifact> generate(std::map<std::string, kiln::ParamValue> v,
                                       const std::vector<std::int64_t>& indices) {
    v["model"] = model().string();
    if (!v.count("steps")) v["steps"] = std::int64_t{3};
    Context ctx(dir_->path());
    auto task = make_generate_task(test::generate_params_with(v), ctx);
    return task->as_generate()->generate({indices, 9});
  }

  static kiln::test::TempDir* dir_;
  static double val_loss_;
};
kiln::test::TempDir* Tasks::dir_ = nullptr;
double Tasks::val_loss_ = 0;

TEST_F(Tasks, TrainingIsReproducibleAndResumable) {
  EXPECT_TRUE(std::isfinite(val_loss_));
  // Two tasks with the same seed and steps end in the same state; a third that loads the state
  // after step 1 continues to the same state.
  auto run = [&](kiln::TrainTask* t, kiln::data::DataLoader& l, std::int64_t from,
                 std::int64_t to) {
    for (std::int64_t b = from; b < to; ++b)
      t->train_step(l.get(0, b), {.step = b, .batch = b, .seed = 5});
  };
  Context ctx(dir_->path());
  auto a = make_train_task(
      test::tiny_train_params({{"prediction", std::string("v")}, {"val_images", std::int64_t{0}}}),
      ctx);
  auto b = make_train_task(
      test::tiny_train_params({{"prediction", std::string("v")}, {"val_images", std::int64_t{0}}}),
      ctx);
  kiln::data::DataLoader la(a->as_train()->train_data(), {.batch_size = 8, .seed = 1});
  run(a->as_train(), la, 0, 2);
  const kiln::TensorMap mid = a->as_train()->state();
  kiln::TensorMap saved;
  for (const auto& [k, t] : mid) saved[k] = t.clone();
  run(a->as_train(), la, 2, 3);
  b->as_train()->load_state(saved);
  run(b->as_train(), la, 2, 3);
  const kiln::TensorMap sa = a->as_train()->state(), sb = b->as_train()->state();
  ASSERT_EQ(sa.size(), sb.size());
  for (const auto& [k, t] : sa) EXPECT_EQ(t.to_vector(), sb.at(k).to_vector()) << k;
  EXPECT_TRUE(sa.count("ema.conv_in.weight"));
  EXPECT_TRUE(sa.count("optim.step"));
}

TEST_F(Tasks, GuidedSamplesWithLabels) {
  const auto out =
      generate({{"labels", std::vector<std::int64_t>{7, -1}}, {"guidance", 2.5}}, {0, 1, 2});
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0].info.at("label"), "7");
  EXPECT_EQ(out[0].info.at("class"), "Sneaker");
  EXPECT_EQ(out[1].info.at("label"), "-1");
  EXPECT_EQ(out[2].info.at("label"), "7");
  EXPECT_EQ(out[0].image.width, 28);
  EXPECT_EQ(out[0].image.channels, 1);
  // Sample 2 alone is the same image (DDPM, so with noise at every step).
  const auto batch = generate({{"sampler", std::string("ddpm")}}, {0, 1, 2});
  const auto alone = generate({{"sampler", std::string("ddpm")}}, {2});
  ASSERT_EQ(alone.size(), 1u);
  int worst = 0;
  for (std::size_t i = 0; i < alone[0].image.pixels.size(); ++i) {
    worst =
        std::max(worst, std::abs(int(alone[0].image.pixels[i]) - int(batch[2].image.pixels[i])));
  }
  EXPECT_LE(worst, 1);
}

TEST_F(Tasks, ImageToImageAndStrip) {
  kiln::Image im;
  im.width = im.height = 20;  // resized to 28x28
  im.channels = 3;            // converted to grey
  for (int i = 0; i < 20 * 20 * 3; ++i) im.pixels.push_back(static_cast<std::uint8_t>(i % 251));
  const auto path = dir_->path() / "start.png";
  kiln::write_png(path, im);
  const auto zero = generate({{"init_image", path.string()}, {"strength", 0.0}}, {0});
  const Tensor expect =
      kiln::image_to_tensor(kiln::resize_image(kiln::convert_channels(im, 1), 28, 28));
  EXPECT_EQ(kiln::batch_to_images(expect.reshape({1, 1, 28, 28}))[0].pixels, zero[0].image.pixels);
  const auto strip = generate(
      {{"init_image", path.string()}, {"strength", 1.0}, {"strip", std::int64_t{4}}}, {0, 1});
  EXPECT_EQ(strip[0].image.width, 4 * 28 + 5 * 2);
  EXPECT_EQ(strip[0].image.height, 28 + 2 * 2);
}

TEST_F(Tasks, BadInputIsAClearError) {
  auto error_of = [&](std::map<std::string, kiln::ParamValue> v) -> std::string {
    try {
      if (!v.count("model")) v["model"] = model().string();
      Context ctx(dir_->path());
      auto task = make_generate_task(kiln::Params(v.size() ? v : v), ctx);
      return "";
    } catch (const kiln::Error& e) {
      return e.what();
    }
  };
  auto full = [&](std::map<std::string, kiln::ParamValue> v) {
    Params p =
        test::generate_params_with({{"model", model().string()}, {"steps", std::int64_t{3}}});
    for (auto& [k, x] : v) p.set(k, x);
    return p.values();
  };
  // Missing model file.
  EXPECT_NE(error_of(full({{"model", (dir_->path() / "nope.safetensors").string()}}))
                .find("nope.safetensors"),
            std::string::npos);
  // A checkpoint of another plugin.
  const auto other = dir_->path() / "other.safetensors";
  kiln::save_safetensors(other, {{"w", Tensor::zeros({2})}},
                         kiln::checkpoint_metadata("vae", "1.0.0", "train", Params()));
  const std::string wrong = error_of(full({{"model", other.string()}}));
  EXPECT_NE(wrong.find("vae"), std::string::npos) << wrong;
  // Label out of range.
  const std::string label = error_of(full({{"labels", std::vector<std::int64_t>{3, 10}}}));
  EXPECT_NE(label.find("label 10 is out of range"), std::string::npos) << label;
  EXPECT_NE(label.find("0 to 9"), std::string::npos) << label;
  // Strength outside [0, 1]: refused by the spec and by the task itself.
  EXPECT_NE(generate_params()[8].check(1.5), "");
  EXPECT_EQ(generate_params()[8].name, "strength");
  const std::string strength = error_of(full({{"strength", 1.5}}));
  EXPECT_NE(strength.find("'strength' must be between 0 and 1"), std::string::npos) << strength;
  EXPECT_NE(error_of(full({{"strength", -0.1}})), "");
  // Strip of one frame, more steps than timesteps.
  EXPECT_NE(error_of(full({{"strip", std::int64_t{1}}})).find("'strip'"), std::string::npos);
  EXPECT_NE(error_of(full({{"steps", std::int64_t{50}}})).find("20 timesteps"), std::string::npos);
  // A missing start image.
  EXPECT_NE(error_of(full({{"init_image", (dir_->path() / "none.png").string()}})).find("none.png"),
            std::string::npos);
  // Training: a data folder without Fashion-MNIST.
  Context ctx(dir_->path());
  try {
    make_train_task(test::tiny_train_params({{"data", dir_->path().string()}}), ctx);
    ADD_FAILURE() << "no error for a folder without IDX files";
  } catch (const kiln::Error& e) {
    EXPECT_NE(std::string(e.what()).find(dir_->path().string()), std::string::npos) << e.what();
  }
  // Groups that do not divide the channels.
  EXPECT_THROW(make_train_task(test::tiny_train_params({{"groups", std::int64_t{3}}}), ctx),
               kiln::Error);
}

TEST_F(Tasks, UnconditionalModelRefusesLabels) {
  Context ctx(dir_->path());
  auto task = make_train_task(
      test::tiny_train_params({{"conditional", false}, {"val_images", std::int64_t{0}}}), ctx);
  const kiln::Checkpoint c = task->as_train()->export_model();
  const auto path = dir_->path() / "uncond.safetensors";
  kiln::save_safetensors(path, c.tensors, c.metadata);
  Params p = test::generate_params_with({{"model", path.string()}, {"steps", std::int64_t{2}}});
  auto ok = make_generate_task(p, ctx);
  EXPECT_EQ(ok->as_generate()->generate({{0}, 1}).size(), 1u);
  p.set("labels", std::vector<std::int64_t>{2});
  try {
    make_generate_task(p, ctx);
    ADD_FAILURE() << "labels accepted by an unconditional model";
  } catch (const kiln::Error& e) {
    EXPECT_NE(std::string(e.what()).find("unconditional"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace diffusion
