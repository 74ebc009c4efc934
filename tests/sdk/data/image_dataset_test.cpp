#include <gtest/gtest.h>

#include <oneapi/tbb/parallel_for.h>

#include <cstring>

#include "kiln/data.hpp"
#include "kiln/file_io.hpp"
#include "kiln/image.hpp"
#include "kiln/random.hpp"
#include "support/test_support.hpp"

namespace kiln::data {
namespace {

namespace fs = std::filesystem;
const fs::path kFashion = "/usr/share/datasets/fashion-mnist";

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

#define EXPECT_ERROR_WITH(stmt, ...)                                           \
  do {                                                                         \
    const std::string kiln_msg = error_of([&] { stmt; });                      \
    EXPECT_FALSE(kiln_msg.empty()) << #stmt << " did not throw kiln::Error";   \
    for (const std::string& kiln_part : std::vector<std::string>{__VA_ARGS__}) \
      EXPECT_NE(kiln_msg.find(kiln_part), std::string::npos)                   \
          << kiln_msg << "  /  expected: " << kiln_part;                       \
  } while (0)

Image solid(int w, int h, int c, std::uint8_t base) {
  Image img{w, h, c, {}};
  for (int i = 0; i < w * h * c; ++i) img.pixels.push_back(static_cast<std::uint8_t>(base + i));
  return img;
}

// Loaded once for the whole binary (decompressing 47 MB takes a moment).
const ImageDataset& fashion_train() {
  static const std::shared_ptr<ImageDataset> d = load_fashion_mnist(kFashion, "train");
  return *d;
}
const std::shared_ptr<ImageDataset>& fashion_test() {
  static const std::shared_ptr<ImageDataset> d = load_fashion_mnist(kFashion, "test");
  return d;
}

TEST(FashionMnist, LoadsTrainAndTest) {
  const ImageDataset& train = fashion_train();
  EXPECT_EQ(train.size(), 60000);
  EXPECT_EQ(train.images().shape(), (Shape{60000, 1, 28, 28}));
  EXPECT_EQ(train.channels(), 1);
  EXPECT_EQ(train.height(), 28);
  EXPECT_EQ(train.width(), 28);
  EXPECT_EQ(train.labels().dtype(), DType::s64);
  EXPECT_EQ(train.labels().to_int_vector()[0], 9);
  EXPECT_EQ(train.class_names(), fashion_mnist_classes());
  EXPECT_EQ(train.class_names()[9], "Ankle boot");
  EXPECT_NE(train.describe().find("60000 images 1x28x28, 10 classes"), std::string::npos)
      << train.describe();
  const auto& test = fashion_test();
  EXPECT_EQ(test->size(), 10000);
  EXPECT_EQ(test->images().shape(), (Shape{10000, 1, 28, 28}));
  const std::vector<std::int64_t> labels = test->labels().to_int_vector();
  EXPECT_EQ(*std::min_element(labels.begin(), labels.end()), 0);
  EXPECT_EQ(*std::max_element(labels.begin(), labels.end()), 9);
}

TEST(FashionMnist, BatchesAreScaledPixels) {
  const ImageDataset& train = fashion_train();
  const Batch b = train.get_batch({0, 59999, 0});
  EXPECT_EQ(b.at("image").shape(), (Shape{3, 1, 28, 28}));
  EXPECT_EQ(b.at("image").dtype(), DType::f32);
  EXPECT_EQ(b.at("label").to_int_vector()[0], 9);
  EXPECT_EQ(b.at("index").to_int_vector(), (std::vector<std::int64_t>{0, 59999, 0}));
  const std::uint8_t* raw = train.images().data<std::uint8_t>();
  const std::vector<float> img = b.at("image").to_vector();
  for (int k = 0; k < 784; ++k) {
    ASSERT_EQ(img[static_cast<std::size_t>(k)], raw[k] / 255.f);
    ASSERT_EQ(img[static_cast<std::size_t>(784 + k)], raw[59999 * 784 + k] / 255.f);
    ASSERT_EQ(img[static_cast<std::size_t>(2 * 784 + k)], img[static_cast<std::size_t>(k)]);
  }
  float lo = 1, hi = 0;
  for (float v : img) {
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  EXPECT_EQ(lo, 0.f);
  EXPECT_LE(hi, 1.f);
  EXPECT_GT(hi, 0.5f);
}

TEST(FashionMnist, ConcurrentBatchesAreIdentical) {
  const ImageDataset& train = fashion_train();
  std::vector<std::int64_t> idx;
  for (int i = 0; i < 256; ++i) idx.push_back((i * 7919) % 60000);
  const std::vector<float> ref = train.get_batch(idx).at("image").to_vector();
  std::vector<std::vector<float>> outs(8);
  oneapi::tbb::parallel_for(0, 8, [&](int t) {
    outs[static_cast<std::size_t>(t)] = train.get_batch(idx).at("image").to_vector();
  });
  for (const auto& o : outs) EXPECT_EQ(o, ref);
}

TEST(FashionMnist, PlainFilesAndMissingFiles) {
  test::TempDir dir;
  // Uncompressed copies of the test split (as some distributions ship them), written from the
  // data the gzip files gave.
  const auto& gz = fashion_test();
  auto header = [](std::vector<std::uint32_t> dims) {
    std::string h = {0, 0, 8, static_cast<char>(dims.size())};
    for (std::uint32_t d : dims) {
      for (int k = 3; k >= 0; --k) h += static_cast<char>(d >> (8 * k));
    }
    return h;
  };
  std::string labels = header({10000});
  for (std::int64_t l : gz->labels().to_int_vector()) labels += static_cast<char>(l);
  write_file_atomic(dir / "t10k-labels-idx1-ubyte", labels);
  write_file_atomic(dir / "t10k-images-idx3-ubyte",
                    header({10000, 28, 28}) +
                        std::string(static_cast<const char*>(gz->images().raw_data()), 7840000));
  const auto plain = load_fashion_mnist(dir.path(), "t10k");
  EXPECT_EQ(plain->size(), 10000);
  EXPECT_EQ(std::memcmp(plain->images().raw_data(), gz->images().raw_data(), 10000 * 784), 0);
  EXPECT_EQ(plain->labels().to_int_vector(), gz->labels().to_int_vector());
  EXPECT_ERROR_WITH(load_fashion_mnist(dir.path(), "train"), "train-images-idx3-ubyte.gz",
                    (dir / "train-images-idx3-ubyte").string(), "dataset-fashion-mnist");
  EXPECT_ERROR_WITH(load_fashion_mnist(kFashion, "validation"), "'validation'", "\"test\"");
}

TEST(ImageDataset, ConstructionErrors) {
  const Tensor imgs = Tensor::zeros({2, 1, 3, 3}, DType::u8);
  EXPECT_ERROR_WITH(
      ImageDataset(Tensor::zeros({2, 1, 3, 3}), Tensor::zeros({2}, DType::s64), {}, "x"), "u8",
      "f32");
  EXPECT_ERROR_WITH(
      ImageDataset(Tensor::zeros({2, 3, 3}, DType::u8), Tensor::zeros({2}, DType::s64), {}, "x"),
      "[N, C, H, W]");
  EXPECT_ERROR_WITH(ImageDataset(imgs, Tensor::zeros({3}, DType::s64), {}, "x"), "[2]");
  EXPECT_ERROR_WITH(ImageDataset(imgs, Tensor::zeros({2}), {}, "x"), "integers");
  EXPECT_ERROR_WITH(ImageDataset(imgs, Tensor::from_ints({0, 2}, {2}), {"a", "b"}, "x"), "label 1",
                    "2 classes");
  EXPECT_ERROR_WITH(ImageDataset(imgs, Tensor::from_ints({0, -1}, {2}), {}, "x"), "negative");
  ImageDataset ok(imgs, Tensor::from_ints({0, 1}, {2}, DType::s32), {}, "src");
  EXPECT_EQ(ok.labels().dtype(), DType::s64);
  EXPECT_ERROR_WITH(ok.get_batch({0, 2}), "index 2", "[0, 2)", "src");
  EXPECT_ERROR_WITH(ok.get_batch({-1}), "index -1");
  EXPECT_EQ(ok.get_batch({}).at("image").shape(), (Shape{0, 1, 3, 3}));
}

TEST(ImageDataset, IdxImagesWithoutLabels) {
  test::TempDir dir;
  std::string bytes = {0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 3};
  bytes += std::string("\x00\x01\x02\x03\x04\x05\xff\xfe\xfd\xfc\xfb\xfa", 12);
  write_file_atomic(dir / "imgs", bytes);
  const auto d = load_idx_images(dir / "imgs", "");
  EXPECT_EQ(d->images().shape(), (Shape{2, 1, 2, 3}));
  EXPECT_EQ(d->labels().to_int_vector(), (std::vector<std::int64_t>{0, 0}));
  EXPECT_FLOAT_EQ(d->get_batch({1}).at("image").to_vector()[0], 1.f);
  // Labels whose count disagrees with the images.
  write_file_atomic(dir / "labels",
                    std::string("\x00\x00\x08\x01\x00\x00\x00\x03\x01\x02\x03", 11));
  EXPECT_ERROR_WITH(load_idx_images(dir / "imgs", dir / "labels"), "[3]", "2 images");
  write_file_atomic(dir / "labels2", std::string("\x00\x00\x08\x01\x00\x00\x00\x02\x04\x01", 10));
  const auto named = load_idx_images(dir / "imgs", dir / "labels2");
  EXPECT_EQ(named->class_names(), (std::vector<std::string>{"0", "1", "2", "3", "4"}));
  // f32 "images" are refused.
  write_file_atomic(dir / "f32",
                    std::string("\x00\x00\x0d\x01\x00\x00\x00\x01\x00\x00\x00\x00", 12));
  EXPECT_ERROR_WITH(load_idx_images(dir / "f32", ""), "u8");
}

TEST(ImageFolder, ClassSubfolders) {
  test::TempDir dir;
  for (const char* c : {"dog", "cat", ".cache"}) fs::create_directories(dir / c);
  write_png(dir / "dog" / "b.png", solid(4, 3, 3, 10));
  write_png(dir / "dog" / "a.PNG", solid(4, 3, 1, 50));  // grey: converted to RGB
  fs::create_directories(dir / "dog" / "nested");
  write_png(dir / "dog" / "nested" / "c.png", solid(4, 3, 4, 90));  // RGBA: alpha dropped
  write_png(dir / "cat" / "x.png", solid(4, 3, 3, 120));
  write_png(dir / ".cache" / "ignored.png", solid(4, 3, 3, 0));
  write_file_atomic(dir / "cat" / "notes.txt", "not an image");

  const auto d = load_image_folder(dir.path(), 3, 0, 0);
  EXPECT_EQ(d->class_names(), (std::vector<std::string>{"cat", "dog"}));
  ASSERT_EQ(d->size(), 4);
  EXPECT_EQ(d->images().shape(), (Shape{4, 3, 3, 4}));
  EXPECT_EQ(d->labels().to_int_vector(), (std::vector<std::int64_t>{0, 1, 1, 1}));
  // Order within a class is by path: dog/a.PNG, dog/b.png, dog/nested/c.png.
  const std::uint8_t* px = d->images().data<std::uint8_t>();
  const std::int64_t per = 3 * 3 * 4;
  EXPECT_EQ(px[0], 120);               // cat/x.png, R of pixel 0
  EXPECT_EQ(px[12], 121);              // cat/x.png, G of pixel 0 (CHW layout)
  EXPECT_EQ(px[per + 0], 50);          // dog/a.PNG grey 50 -> R
  EXPECT_EQ(px[per + 12], 50);         // -> G
  EXPECT_EQ(px[2 * per + 1], 13);      // dog/b.png, R of pixel 1
  EXPECT_EQ(px[3 * per + 1], 90 + 4);  // dog/nested/c.png, R of pixel 1 (RGBA stride 4)
  const Batch b = d->get_batch({3});
  EXPECT_FLOAT_EQ(b.at("image").to_vector()[1], 94 / 255.f);
  EXPECT_EQ(b.at("label").to_int_vector()[0], 1);
}

TEST(ImageFolder, FlatFolderResizeAndJpeg) {
  test::TempDir dir;
  write_png(dir / "one.png", solid(8, 6, 3, 0));
  fs::copy_file(test::fixture_path("images") / "rgb.jpg", dir / "two.jpeg");  // 13x9
  EXPECT_ERROR_WITH(load_image_folder(dir.path(), 3, 0, 0), "two.jpeg", "13x9x3", "one.png",
                    "8x6x3");
  const auto d = load_image_folder(dir.path(), 1, 5, 7);
  EXPECT_EQ(d->images().shape(), (Shape{2, 1, 5, 7}));
  EXPECT_EQ(d->labels().to_int_vector(), (std::vector<std::int64_t>{0, 0}));
  ASSERT_EQ(d->class_names().size(), 1u);
  // Channels 0 keeps the first image's channel count (grey here).
  test::TempDir grey;
  write_png(grey / "a.png", solid(2, 2, 1, 5));
  write_png(grey / "b.png", solid(2, 2, 3, 5));
  EXPECT_EQ(load_image_folder(grey.path(), 0, 0, 0)->channels(), 1);
}

TEST(ImageFolder, Errors) {
  test::TempDir dir;
  EXPECT_ERROR_WITH(load_image_folder(dir / "nope", 3, 0, 0), "does not exist");
  EXPECT_ERROR_WITH(load_image_folder(dir.path(), 3, 0, 0), "no PNG or JPEG");
  fs::create_directories(dir / "a");
  fs::create_directories(dir / "b");
  write_png(dir / "a" / "x.png", solid(2, 2, 3, 0));
  EXPECT_ERROR_WITH(load_image_folder(dir.path(), 3, 0, 0), "class folder 'b'", "no PNG");
  write_png(dir / "b" / "y.png", solid(2, 2, 3, 0));
  write_png(dir / "loose.png", solid(2, 2, 3, 0));
  EXPECT_ERROR_WITH(load_image_folder(dir.path(), 3, 0, 0), "loose.png", "class");
  fs::remove(dir / "loose.png");
  EXPECT_EQ(load_image_folder(dir.path(), 3, 0, 0)->size(), 2);
  write_file_atomic(dir / "b" / "z.png", "garbage, not a png");
  EXPECT_ERROR_WITH(load_image_folder(dir.path(), 3, 0, 0), "z.png");
  EXPECT_ERROR_WITH(load_image_folder(dir.path(), 2, 0, 0), "channels");
  EXPECT_ERROR_WITH(load_image_folder(dir.path(), 3, 4, 0), "height and width");
}

}  // namespace
}  // namespace kiln::data
