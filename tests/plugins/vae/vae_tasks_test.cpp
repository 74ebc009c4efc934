// The vae plugin's tasks through the real `kiln` binary: a tiny pipeline of every task, and bad
// input (missing model, a checkpoint of another plugin, images of the wrong size, ...).
#include <nlohmann/json.hpp>

#include "host_test_util.hpp"
#include "kiln/image.hpp"
#include "kiln/safetensors.hpp"

namespace kiln::vae {
namespace {

namespace fs = std::filesystem;
using host::test::contains;
using host::test::read_text;
using host::test::Result;
using host::test::write_text;

const std::string kFashion = "/usr/share/datasets/fashion-mnist";

// A tiny model trained in the folder's run "base" (once per test).
class VaeTasks : public ::testing::Test {
 protected:
  Result kiln(const std::vector<std::string>& args) {
    return host::test::run_kiln(args, dir_.path(), {}, 120);
  }
  std::string head() const {
    return "[pipeline]\nseed = 3\nrun_dir = \"run\"\n[compute]\nthreads = 1\n";
  }
  std::string train_stage(const std::string& extra = "") const {
    return "[[stage]]\nid = \"train\"\nplugin = \"vae\"\ntask = \"train\"\ndata = \"" + kFashion +
           "\"\nsplit = \"test\"\nlimit = 64\nlatent = 2\nchannels = [4, 8]\nbatch_size = 16\n"
           "max_steps = 3\n" +
           extra;
  }
  fs::path pipeline(const std::string& name, const std::string& body) {
    return write_text(dir_ / name, head() + body);
  }
  // Trains the tiny model; returns its path.
  fs::path trained(const std::string& extra = "") {
    const fs::path p = pipeline("train.toml", train_stage(extra));
    const Result r = kiln({"run", p.string()});
    EXPECT_EQ(r.code, 0) << r.all();
    return dir_ / "run" / "train" / "model.safetensors";
  }
  test::TempDir dir_;
};

TEST_F(VaeTasks, EveryTaskRunsInOnePipeline) {
  const fs::path p = pipeline("all.toml", train_stage() + R"(
[[stage]]
id = "samples"
plugin = "vae"
task = "generate"
model = "@train"
count = 6
grid = 3

[[stage]]
id = "rec"
plugin = "vae"
task = "reconstruct"
model = "@train"
data = "/usr/share/datasets/fashion-mnist"
limit = 5

[[stage]]
id = "den"
plugin = "vae"
task = "denoise"
model = "@train"
data = "/usr/share/datasets/fashion-mnist"
count = 4
noise_kind = "masking"

[[stage]]
id = "enc"
plugin = "vae"
task = "encode"
model = "@train"
data = "/usr/share/datasets/fashion-mnist"
limit = 7

[[stage]]
id = "interp"
plugin = "vae"
task = "interpolate"
model = "@train"
steps = 5
rows = 2
method = "slerp"

[[stage]]
id = "interp_data"
plugin = "vae"
task = "interpolate"
model = "@train"
data = "/usr/share/datasets/fashion-mnist"
indices = [0, 5]
steps = 4

[[stage]]
id = "score"
plugin = "vae"
task = "score"
model = "@train"
data = "/usr/share/datasets/fashion-mnist"
limit = 50
anomaly_class = 9
)");
  const Result r = kiln({"run", p.string()});
  ASSERT_EQ(r.code, 0) << r.all();
  const fs::path run = dir_ / "run";
  // generate: 6 samples of 28x28 grey and a 3-column grid
  EXPECT_TRUE(fs::exists(run / "samples" / "samples" / "000005.png"));
  const Image s0 = read_image(run / "samples" / "samples" / "000000.png");
  EXPECT_EQ(s0.width, 28);
  EXPECT_EQ(s0.channels, 1);
  EXPECT_EQ(read_image(run / "samples" / "grid.png").width, 3 * 28 + 4 * 2);
  // reconstruct: the default count is the dataset (limit 5); each image a pair with a gap
  EXPECT_TRUE(fs::exists(run / "rec" / "samples" / "000004.png"));
  EXPECT_FALSE(fs::exists(run / "rec" / "samples" / "000005.png"));
  EXPECT_EQ(read_image(run / "rec" / "samples" / "000000.png").width, 28 * 2 + 2);
  EXPECT_TRUE(contains(read_text(run / "rec" / "manifest.jsonl"), "\"class\":\"Ankle boot\""));
  // denoise: clean | noisy | denoised
  EXPECT_EQ(read_image(run / "den" / "samples" / "000003.png").width, 28 * 3 + 4);
  // encode: mu and logvar [7, 2], labels of the first test images
  const Safetensors enc = load_safetensors(run / "enc" / "latents.safetensors");
  EXPECT_EQ(enc.tensors.at("mu").shape(), (Shape{7, 2}));
  EXPECT_EQ(enc.tensors.at("logvar").shape(), (Shape{7, 2}));
  EXPECT_EQ(enc.tensors.at("label").to_int_vector(),
            (std::vector<std::int64_t>{9, 2, 1, 1, 6, 1, 4}));
  // interpolate: 2 rows x 5 steps; the path's codes
  const Image grid = read_image(run / "interp" / "interpolation.png");
  EXPECT_EQ(grid.width, 5 * 28 + 6 * 2);
  EXPECT_EQ(grid.height, 2 * 28 + 3 * 2);
  EXPECT_EQ(load_safetensors(run / "interp" / "latents.safetensors").tensors.at("z").shape(),
            (Shape{2, 5, 2}));
  // interpolate between two dataset images: the endpoints are their posterior means
  const Safetensors path = load_safetensors(run / "interp_data" / "latents.safetensors");
  EXPECT_EQ(path.tensors.at("z").shape(), (Shape{1, 4, 2}));
  // score: a CSV row per image, and the AUROC of class 9 (Ankle boots) in the metrics
  const std::vector<std::string> rows =
      host::test::lines_of(read_text(run / "score" / "scores.csv"));
  ASSERT_EQ(rows.size(), 51u);
  EXPECT_EQ(rows[0], "index,label,class,score,recon,kl");
  EXPECT_EQ(rows[1].rfind("0,9,Ankle boot,", 0), 0u) << rows[1];
  const auto m = nlohmann::json::parse(read_text(run / "score" / "metrics.json"));
  EXPECT_GE(m.at("auroc").get<double>(), 0.0);
  EXPECT_LE(m.at("auroc").get<double>(), 1.0);
  EXPECT_GT(m.at("mean_score").get<double>(), 0.0);
}

TEST_F(VaeTasks, SamplesDependOnTheSeedAndIndexOnly) {
  const fs::path model = trained();
  auto gen = [&](const std::string& name, int batch) {
    const fs::path p =
        pipeline(name + ".toml",
                 "[[stage]]\nid = \"" + name +
                     "\"\nplugin = \"vae\"\ntask = \"generate\"\nmodel = \"" + model.string() +
                     "\"\ncount = 5\nbatch = " + std::to_string(batch) + "\npixels = \"sample\"\n");
    const Result r = kiln({"run", p.string()});
    EXPECT_EQ(r.code, 0) << r.all();
    return read_text(dir_ / "run" / name / "samples" / "000004.png");
  };
  EXPECT_EQ(gen("a", 5), gen("b", 2));
}

TEST_F(VaeTasks, TrainingWithoutAClassLeavesItOut) {
  const fs::path model = trained("exclude_class = 9\n");
  const fs::path p = pipeline("enc.toml",
                              "[[stage]]\nid = \"x\"\nplugin = \"vae\"\ntask = "
                              "\"train\"\ndata = \"" +
                                  kFashion + "\"\nsplit = \"test\"\nexclude_class = 10\n");
  const Result r = kiln({"run", p.string()});
  EXPECT_EQ(r.code, 1) << r.all();
  EXPECT_TRUE(contains(r.all(), "exclude_class 10 is not a class")) << r.all();
  EXPECT_TRUE(fs::exists(model));
}

TEST_F(VaeTasks, TrainsOnAFolderOfImages) {
  // Two class folders of 28x28 RGB PNGs: the model takes their 3 channels.
  for (int i = 0; i < 8; ++i) {
    Image im;
    im.width = im.height = 28;
    im.channels = 3;
    im.pixels.assign(28 * 28 * 3, static_cast<std::uint8_t>(20 * i));
    const fs::path d = dir_ / "pngs" / (i % 2 ? "b" : "a");
    fs::create_directories(d);
    write_png(d / (std::to_string(i) + ".png"), im);
  }
  const fs::path p = pipeline("png.toml",
                              "[[stage]]\nid = \"train\"\nplugin = \"vae\"\ntask = "
                              "\"train\"\ndata = \"pngs\"\nlatent = 2\nchannels = "
                              "[4]\nbatch_size = 4\nmax_steps = 2\n");
  const Result r = kiln({"run", p.string()});
  ASSERT_EQ(r.code, 0) << r.all();
  const Safetensors m = load_safetensors(dir_ / "run" / "train" / "model.safetensors");
  EXPECT_EQ(m.metadata.at("vae.image_shape"), "3x28x28");
  EXPECT_EQ(m.tensors.at("encoder.convs.0.weight").shape(), (Shape{4, 3, 4, 4}));
}

// ---------------------------------------------------------------- bad input

TEST_F(VaeTasks, AMissingModelFileIsAPipelineError) {
  const fs::path p = pipeline("m.toml",
                              "[[stage]]\nid = \"g\"\nplugin = \"vae\"\ntask = \"generate\"\n"
                              "model = \"nowhere/model.safetensors\"\ncount = 2\n");
  const Result r = kiln({"run", p.string()});
  EXPECT_EQ(r.code, 2) << r.all();
  EXPECT_TRUE(contains(r.all(), "nowhere/model.safetensors")) << r.all();
}

TEST_F(VaeTasks, ACheckpointOfAnotherPluginIsRefused) {
  const fs::path other = dir_ / "gan.safetensors";
  save_safetensors(other, {{"w", Tensor::zeros({2})}},
                   {{"kiln.plugin", "gan"}, {"kiln.params", "{}"}, {"kiln.task", "train"}});
  const fs::path plain = dir_ / "plain.safetensors";
  save_safetensors(plain, {{"w", Tensor::zeros({2})}});
  for (const auto& [file, expect] : std::vector<std::pair<fs::path, std::string>>{
           {other, "was made by the 'gan' plugin, not 'vae'"},
           {plain, "is not a Kiln model checkpoint"}}) {
    for (const char* task : {"generate", "reconstruct", "score"}) {
      const std::string data =
          std::string(task) == "generate" ? "count = 2\n" : "data = \"" + kFashion + "\"\n";
      const fs::path p =
          pipeline("o.toml", std::string("[[stage]]\nid = \"t\"\nplugin = "
                                         "\"vae\"\ntask = \"") +
                                 task + "\"\nmodel = \"" + file.string() + "\"\n" + data);
      const Result r = kiln({"run", p.string()});
      EXPECT_EQ(r.code, 1) << task << ": " << r.all();
      EXPECT_TRUE(contains(r.all(), expect)) << task << ": " << r.all();
      EXPECT_TRUE(contains(r.all(), file.string())) << r.all();
    }
  }
}

TEST_F(VaeTasks, ImagesOfTheWrongSizeAreRefused) {
  const fs::path model = trained();
  // A folder of 32x32 images for reconstruct, and a 30x30 endpoint for interpolate.
  Image im;
  im.width = im.height = 32;
  im.channels = 1;
  im.pixels.assign(32 * 32, 100);
  fs::create_directories(dir_ / "big");
  write_png(dir_ / "big" / "a.png", im);
  write_png(dir_ / "big" / "b.png", im);
  Image small = im;
  small.width = small.height = 30;
  small.pixels.assign(30 * 30, 7);
  write_png(dir_ / "small.png", small);
  {
    const fs::path p = pipeline("r.toml",
                                "[[stage]]\nid = \"r\"\nplugin = \"vae\"\ntask = "
                                "\"reconstruct\"\nmodel = \"" +
                                    model.string() + "\"\ndata = \"big\"\n");
    const Result r = kiln({"run", p.string()});
    EXPECT_EQ(r.code, 1) << r.all();
    EXPECT_TRUE(contains(r.all(), "are 1x32x32 (CxHxW) but the model")) << r.all();
    EXPECT_TRUE(contains(r.all(), "takes 1x28x28")) << r.all();
  }
  {
    const fs::path p = pipeline("i.toml",
                                "[[stage]]\nid = \"i\"\nplugin = \"vae\"\ntask = "
                                "\"interpolate\"\nmodel = \"" +
                                    model.string() +
                                    "\"\nimage_a = \"small.png\"\nimage_b = "
                                    "\"big/a.png\"\n");
    const Result r = kiln({"run", p.string()});
    EXPECT_EQ(r.code, 1) << r.all();
    EXPECT_TRUE(contains(r.all(), "small.png' is 30x30 pixels but the model takes 28x28"))
        << r.all();
  }
}

TEST_F(VaeTasks, InconsistentTaskSettingsAreClearErrors) {
  const fs::path model = trained();
  const std::string m = "model = \"" + model.string() + "\"\n";
  const std::string data = "data = \"" + kFashion + "\"\n";
  struct Case {
    std::string task, keys, expect;
  };
  const std::vector<Case> cases = {
      {"score", data + "anomaly_class = 12\n", "anomaly_class 12 is not a class"},
      {"score", data + "anomaly_class = 3\nlimit = 2\n",
       "cannot compute the AUROC of anomaly_class 3: the scored images hold none of that class"},
      {"interpolate", "image_a = \"" + model.string() + "\"\n",
       "give both image_a and image_b, or neither"},
      {"interpolate", data + "indices = [1, 2, 3]\n", "'indices' must hold two image indices"},
      {"interpolate", data + "indices = [1, 10000]\n", "index 10000 is outside the 10000 images"},
      {"interpolate", "seeds = [4]\n", "'seeds' must hold two seeds"},
      {"reconstruct", "data = \"" + (dir_ / "nothing").string() + "\"\n", "nothing"},
  };
  fs::create_directories(dir_ / "nothing");
  for (const Case& c : cases) {
    const fs::path p = pipeline("c.toml", "[[stage]]\nid = \"c\"\nplugin = \"vae\"\ntask = \"" +
                                              c.task + "\"\n" + m + c.keys);
    const Result r = kiln({"run", p.string()});
    EXPECT_EQ(r.code, 1) << c.task << " " << c.keys << ": " << r.all();
    EXPECT_TRUE(contains(r.all(), c.expect)) << c.task << " " << c.keys << ": " << r.all();
    EXPECT_TRUE(contains(r.all(), "vae")) << r.all();
  }
}

TEST_F(VaeTasks, AnAutoencoderHasNoPriorToSample) {
  const fs::path model = trained("mode = \"dae\"\n");
  const fs::path p = pipeline("g.toml",
                              "[[stage]]\nid = \"g\"\nplugin = \"vae\"\ntask = "
                              "\"generate\"\nmodel = \"" +
                                  model.string() + "\"\ncount = 2\n");
  const Result r = kiln({"run", p.string()});
  EXPECT_EQ(r.code, 1) << r.all();
  EXPECT_TRUE(contains(r.all(), "is an autoencoder (mode ae/dae), which has no prior")) << r.all();
  // ... but it denoises.
  const fs::path d = pipeline("d.toml",
                              "[[stage]]\nid = \"d\"\nplugin = \"vae\"\ntask = "
                              "\"denoise\"\nmodel = \"" +
                                  model.string() + "\"\ndata = \"" + kFashion +
                                  "\"\ncount = 2\nlayout = \"single\"\n");
  const Result rd = kiln({"run", d.string()});
  EXPECT_EQ(rd.code, 0) << rd.all();
  EXPECT_EQ(read_image(dir_ / "run" / "d" / "samples" / "000001.png").width, 28);
}

TEST_F(VaeTasks, InspectListsEveryTaskAndParameter) {
  const Result r = kiln({"inspect", "vae"});
  ASSERT_EQ(r.code, 0) << r.all();
  for (const char* s : {"train", "generate", "reconstruct", "denoise", "encode", "interpolate",
                        "score", "latent", "channels", "beta", "likelihood", "exclude_class",
                        "anomaly_class", "noise_kind", "temperature", "slerp"}) {
    EXPECT_TRUE(contains(r.out, s)) << s << "\n" << r.out;
  }
}

}  // namespace
}  // namespace kiln::vae
