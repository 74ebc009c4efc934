// The gan plugin: latent sampling, the losses of one step, and end-to-end runs of train,
// generate (labels, truncation, batch independence), interpolate and an eval stage after it.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "host_test_util.hpp"
#include "kiln/image.hpp"
#include "kiln/ops.hpp"
#include "model.hpp"
#include "tasks.hpp"

namespace kiln::host::test {
namespace {

using nlohmann::json;

TEST(GanModel, LatentsDependOnSeedAndIndexAndRespectTruncation) {
  std::vector<float> a(64), b(64), c(64), t(4096);
  kiln_gan::sample_latent(9, 3, 0, a.data(), 64);
  kiln_gan::sample_latent(9, 3, 0, b.data(), 64);
  kiln_gan::sample_latent(9, 4, 0, c.data(), 64);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  kiln_gan::sample_latent(9, 3, 0.5, t.data(), 4096);
  float widest = 0;
  for (float v : t) widest = std::max(widest, std::abs(v));
  EXPECT_LE(widest, 0.5f);
  EXPECT_GT(widest, 0.45f);
}

TEST(GanModel, StepLossesAreTheBceAndHingeFormulas) {
  for (bool hinge : {false, true}) {
    kiln::Generator gen(1);
    kiln_gan::GanSizes s{.nz = 8, .ngf = 4, .ndf = 4, .classes = 10, .embed = 4};
    kiln_gan::Generator g(s, gen);
    kiln_gan::Discriminator d(s, gen);
    kiln_gan::dcgan_init(g, gen);
    kiln_gan::dcgan_init(d, gen);
    kiln::optim::Adam og(g.named_parameters(), {.lr = 2e-4f});
    kiln::optim::Adam od(d.named_parameters(), {.lr = 2e-4f});
    const Tensor real = Tensor::rand({6, 1, 28, 28}, gen, -1.f, 1.f);
    const Tensor labels = Tensor::from_ints({0, 1, 2, 3, 4, 5}, {6});
    const Tensor z = Tensor::randn({6, 8}, gen);
    const kiln_gan::StepLosses l = kiln_gan::dcgan_step(g, d, og, od, real, labels, z, hinge);
    const std::vector<float> r = l.d_real.to_vector(), f = l.d_fake.to_vector();
    double want = 0;
    for (int i = 0; i < 6; ++i) {
      want += hinge ? std::max(0.0, 1.0 - r[i]) + std::max(0.0, 1.0 + f[i])
                    : std::log1p(std::exp(-double(r[i]))) + std::log1p(std::exp(double(f[i])));
    }
    EXPECT_NEAR(l.loss_d.item(), want / 6, 1e-5) << (hinge ? "hinge" : "bce");
    EXPECT_TRUE(std::isfinite(l.loss_g.item()));
  }
}

// [compute] precision = "bf16": the wide transposed convolutions compute in bf16; the images
// stay close to the f32 ones.
TEST(GanModel, Bf16GeneratorIsCloseToF32) {
  kiln::Generator gen(2);
  kiln_gan::GanSizes s{.nz = 16, .ngf = 16, .ndf = 4, .classes = 10, .embed = 4};
  kiln_gan::Generator g(s, gen);
  kiln_gan::dcgan_init(g, gen);
  const Tensor z = Tensor::randn({8, 16}, gen);
  const Tensor labels = Tensor::from_ints({0, 1, 2, 3, 4, 5, 6, 7}, {8});
  kiln::NoGradGuard ng;
  const Tensor a = g.forward(z, labels);
  g.set_compute_dtype(DType::bf16);
  const Tensor b = g.forward(z, labels);
  EXPECT_EQ(b.dtype(), DType::f32);
  EXPECT_TRUE(kiln::test::all_close(b, a, 5e-2f, 2e-2f));
  EXPECT_FALSE(kiln::test::all_close(b, a, 0.f, 0.f)) << "bf16 did not change the computation";
  EXPECT_TRUE(kiln::test::all_close(g.forward(z, labels), b, 0.f, 0.f));  // reproducible
}

class GanPlugin : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new kiln::test::TempDir();
    // 60 steps: enough for the batch-norm running statistics (momentum 0.1) to leave their
    // initial values, so that samples in evaluation mode differ from one another.
    write_text(dir_->path() / "train.toml", R"([pipeline]
seed = 3
[compute]
threads = 1
[[stage]]
id = "train"
plugin = "gan"
task = "train"
nz = 8
ngf = 4
ndf = 4
embed = 4
conditional = true
loss = "hinge"
train_count = 64
batch_size = 16
max_steps = 60
epochs = 20
)");
    const Result r = run_kiln({"run", (dir_->path() / "train.toml").string()}, dir_->path());
    ASSERT_EQ(r.code, 0) << r.all();
    model_ = dir_->path() / "runs/train/train/model.safetensors";
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  // One pipeline of `stages` (TOML) in <dir>/<name>.toml, run into runs/<name>.
  Result run(const std::string& name, const std::string& stages) {
    const fs::path file = write_text(dir_->path() / (name + ".toml"),
                                     "[pipeline]\nseed = 11\n[compute]\nthreads = 1\n" + stages);
    return run_kiln({"run", file.string()}, dir_->path(),
                    {{"KILN_PLUGIN_PATH", kTestPluginDir.string()}});
  }
  std::string gen_stage(const std::string& body) {
    return "[[stage]]\nid = \"samples\"\nplugin = \"gan\"\ntask = \"generate\"\nmodel = \"" +
           model_.string() + "\"\n" + body;
  }
  static kiln::test::TempDir* dir_;
  static fs::path model_;
};
kiln::test::TempDir* GanPlugin::dir_ = nullptr;
fs::path GanPlugin::model_;

TEST_F(GanPlugin, GeneratesRequestedLabelsIndependentlyOfTheBatch) {
  ASSERT_EQ(run("a", gen_stage("count = 6\nbatch = 6\nlabels = [3, 5]\n")).code, 0);
  const Result r = run("b", gen_stage("count = 6\nbatch = 1\nlabels = [3, 5]\n"));
  ASSERT_EQ(r.code, 0) << r.all();
  const fs::path a = dir_->path() / "runs/a/samples", b = dir_->path() / "runs/b/samples";
  EXPECT_EQ(tree_digest(a / "samples"), tree_digest(b / "samples"));
  const std::vector<std::string> lines = lines_of(read_text(a / "manifest.jsonl"));
  ASSERT_EQ(lines.size(), 6u);
  for (int i = 0; i < 6; ++i) {
    const json j = json::parse(lines[i]);
    EXPECT_EQ(j["info"]["label"], i % 2 ? "5" : "3");
    EXPECT_EQ(j["info"]["class"], i % 2 ? "Sandal" : "Dress");
  }
  const kiln::Image im = kiln::read_image(a / "samples/000000.png");
  EXPECT_EQ(im.width, 28);
  EXPECT_EQ(im.height, 28);
  EXPECT_EQ(im.channels, 1);
  // Truncation changes the samples, reproducibly.
  ASSERT_EQ(run("c", gen_stage("count = 6\nlabels = [3, 5]\ntruncation = 0.5\n")).code, 0);
  ASSERT_EQ(run("d", gen_stage("count = 6\nlabels = [3, 5]\ntruncation = 0.5\n")).code, 0);
  const auto c = tree_digest(dir_->path() / "runs/c/samples/samples");
  EXPECT_EQ(c, tree_digest(dir_->path() / "runs/d/samples/samples"));
  EXPECT_NE(c, tree_digest(a / "samples"));
}

TEST_F(GanPlugin, GeneratesInBf16WhenThePipelineAsks) {
  ASSERT_EQ(run("f32", gen_stage("count = 8\nbatch = 8\n")).code, 0);
  const fs::path file = write_text(dir_->path() / "bf16.toml",
                                   "[pipeline]\nseed = 11\n[compute]\nthreads = 1\n"
                                   "precision = \"bf16\"\n" +
                                       gen_stage("count = 8\nbatch = 8\n"));
  const Result r = run_kiln({"run", file.string()}, dir_->path(),
                            {{"KILN_PLUGIN_PATH", kTestPluginDir.string()}});
  ASSERT_EQ(r.code, 0) << r.all();
  double diff = 0;
  bool any = false;
  for (int i = 0; i < 8; ++i) {
    const std::string name = "samples/00000" + std::to_string(i) + ".png";
    const kiln::Image a = kiln::read_image(dir_->path() / "runs/f32/samples" / name);
    const kiln::Image b = kiln::read_image(dir_->path() / "runs/bf16/samples" / name);
    ASSERT_EQ(a.pixels.size(), b.pixels.size());
    for (std::size_t k = 0; k < a.pixels.size(); ++k) {
      const int d = std::abs(int(a.pixels[k]) - int(b.pixels[k]));
      diff += d;
      any = any || d != 0;
    }
  }
  EXPECT_TRUE(any) << "the bf16 run produced the f32 images: precision was not applied";
  EXPECT_LT(diff / (8.0 * 28 * 28), 2.0) << "mean absolute pixel difference (0-255)";
}

TEST_F(GanPlugin, InterpolateMakesARowPerWalk) {
  const Result r = run("i",
                       "[[stage]]\nid = \"walk\"\nplugin = \"gan\"\ntask = \"interpolate\"\n"
                       "model = \"" +
                           model_.string() + "\"\nrows = 3\nsteps = 5\n");
  ASSERT_EQ(r.code, 0) << r.all();
  const kiln::Image grid = kiln::read_image(dir_->path() / "runs/i/walk/interpolation.png");
  EXPECT_EQ(grid.width, 5 * 30 + 2);
  EXPECT_EQ(grid.height, 3 * 30 + 2);
}

TEST_F(GanPlugin, AnEvalStageReadsTheGenerateStageAndItsLabels) {
  const fs::path classifier = fs::path(KILN_SOURCE_DIR) / "models/eval-fashion.safetensors";
  ASSERT_TRUE(fs::exists(classifier));
  const Result r =
      run("e", gen_stage("count = 40\nbatch = 20\n") +
                   "[[stage]]\nid = \"eval\"\nplugin = \"eval\"\ntask = \"evaluate\"\nmodel = \"" +
                   classifier.string() +
                   "\"\nimages = \"@samples\"\nmin_samples = 40\nreference_count = 100\n"
                   "kid_subsets = 2\nkid_subset_size = 40\n");
  ASSERT_EQ(r.code, 0) << r.all();
  const json m = json::parse(read_text(dir_->path() / "runs/e/eval/metrics.json"));
  EXPECT_EQ(m["count"], 40);
  EXPECT_EQ(m["labelled_count"], 40);
  EXPECT_GT(m["fid"].get<double>(), 0.0);
}

TEST_F(GanPlugin, AModelOfAnotherPluginIsRefusedByName) {
  const fs::path classifier = fs::path(KILN_SOURCE_DIR) / "models/eval-fashion.safetensors";
  const Result r = run("bad",
                       "[[stage]]\nid = \"samples\"\nplugin = \"gan\"\ntask = \"generate\"\n"
                       "model = \"" +
                           classifier.string() + "\"\ncount = 2\n");
  EXPECT_EQ(r.code, 1) << r.all();
  EXPECT_TRUE(contains(r.all(), "eval-fashion.safetensors")) << r.all();
}

}  // namespace
}  // namespace kiln::host::test
