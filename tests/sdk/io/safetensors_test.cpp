#include "kiln/safetensors.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <fstream>

#include "kiln/file_io.hpp"
#include "support/test_support.hpp"

namespace kiln {
namespace {

TEST(Safetensors, RoundTripIsExact) {
  test::TempDir dir;
  TensorMap m;
  m["a.weight"] = test::random_tensor({3, 5}, 1);
  m["b"] = test::random_tensor({7}, 2).to(DType::bf16);
  m["ids"] = Tensor::from_ints({1, -2, 3}, {3});
  m["scalar"] = Tensor::scalar(4.f);
  m["pixels"] = Tensor::from_ints({0, 255}, {2}, DType::u8);
  save_safetensors(dir / "m.safetensors", m, {{"kiln.plugin", "test"}});
  Safetensors r = load_safetensors(dir / "m.safetensors");
  ASSERT_EQ(r.tensors.size(), m.size());
  EXPECT_EQ(r.metadata.at("kiln.plugin"), "test");
  for (const auto& [name, t] : m) {
    const Tensor& u = r.tensors.at(name);
    EXPECT_EQ(u.dtype(), t.dtype()) << name;
    EXPECT_EQ(u.shape(), t.shape()) << name;
    ASSERT_EQ(u.nbytes(), t.nbytes());
    EXPECT_EQ(std::memcmp(u.raw_data(), t.raw_data(), t.nbytes()), 0) << name;
  }
}

TEST(Safetensors, ReadsPyTorchWrittenFile) {
  // tests/fixtures/gen/safetensors_fixture.py writes this with torch's own tensor bytes.
  Safetensors f = test::load_fixture("torch_safetensors.safetensors");
  EXPECT_EQ(f.metadata.at("writer"), "torch");
  const Tensor& a = f.tensors.at("arange_f32");
  EXPECT_EQ(a.shape(), (Shape{2, 3}));
  EXPECT_EQ(a.to_vector(), (std::vector<float>{0, 1, 2, 3, 4, 5}));
  const Tensor& b = f.tensors.at("bf16");
  EXPECT_EQ(b.dtype(), DType::bf16);
  EXPECT_EQ(b.to_vector(), (std::vector<float>{1.5f, -2.f, 0.25f}));
  const Tensor& h = f.tensors.at("f16");
  EXPECT_EQ(h.dtype(), DType::f32);  // converted on read
  EXPECT_EQ(h.to_vector(), (std::vector<float>{0.5f, -1.f, 65504.f}));
  EXPECT_EQ(f.tensors.at("i64").to_int_vector(), (std::vector<std::int64_t>{-1, 0, 7}));
  // The normal tensor's values were also written as text by the script.
  EXPECT_TRUE(test::all_close(f.tensors.at("normal"), f.tensors.at("normal_copy"), 0, 0));
}

std::string header_file(const std::string& json, std::size_t data_bytes, std::uint64_t claim = 0) {
  std::string s(8, '\0');
  const std::uint64_t n = claim ? claim : json.size();
  for (int i = 0; i < 8; ++i)
    s[static_cast<std::size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xff);
  return s + json + std::string(data_bytes, '\0');
}

void expect_error(const std::string& bytes, const std::string& needle) {
  try {
    parse_safetensors(bytes, "bad.safetensors");
    ADD_FAILURE() << "no error for " << needle;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("bad.safetensors"), std::string::npos) << e.what();
  }
}

TEST(Safetensors, BadFilesAreClearErrors) {
  expect_error("abc", "truncated");
  expect_error(header_file("{}", 0, 1ull << 50), "header claims");
  expect_error(header_file("{not json", 0), "not valid JSON");
  expect_error(header_file("[1,2]", 0), "not a JSON object");
  expect_error(header_file(R"({"x":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}})", 8), "F64");
  expect_error(header_file(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 4),
               "outside");
  expect_error(header_file(R"({"x":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8),
               "needs 12 bytes");
  expect_error(
      header_file(
          R"({"x":{"dtype":"F32","shape":[1099511627776,1099511627776],"data_offsets":[0,8]}})", 8),
      "absurd");
  expect_error(header_file(R"({"x":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4),
               "negative");
  expect_error(header_file(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                           R"("y":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                           8),
               "overlap");
  expect_error(header_file(R"({"x":{"dtype":"F32"}})", 0), "lacks");
}

TEST(Safetensors, TruncatedFileOnDisk) {
  test::TempDir dir;
  save_safetensors(dir / "ok.safetensors", {{"w", test::random_tensor({100}, 1)}});
  std::string bytes = read_file(dir / "ok.safetensors");
  write_file_atomic(dir / "cut.safetensors", bytes.substr(0, bytes.size() - 10));
  EXPECT_THROW(load_safetensors(dir / "cut.safetensors"), Error);
  EXPECT_THROW(load_safetensors(dir / "missing.safetensors"), Error);
  EXPECT_THROW(load_safetensors(dir.path()), Error);
}

TEST(AtomicFile, UncommittedLeavesTargetUntouched) {
  test::TempDir dir;
  write_file_atomic(dir / "f", "good");
  {
    AtomicFile f(dir / "f");
    f.stream() << "half-writ";
  }
  EXPECT_EQ(read_file(dir / "f"), "good");
  std::size_t n = 0;
  for (auto& e : std::filesystem::directory_iterator(dir.path())) (void)e, ++n;
  EXPECT_EQ(n, 1u);  // no temporary left behind
  EXPECT_THROW(AtomicFile(dir / "no" / "such" / "dir" / "f"), Error);
}

}  // namespace
}  // namespace kiln
