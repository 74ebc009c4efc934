#include "kiln/file_io.hpp"

#include <gtest/gtest.h>

#include "support/test_support.hpp"

namespace kiln {
namespace {
namespace fs = std::filesystem;

TEST(WriteFileReplace, WritesAndReplacesWithoutLeavingTemporaries) {
  test::TempDir dir;
  write_file_replace(dir / "a.txt", "first");
  EXPECT_EQ(read_file(dir / "a.txt"), "first");
  write_file_replace(dir / "a.txt", std::string("sec\0nd", 6));
  EXPECT_EQ(read_file(dir / "a.txt"), std::string("sec\0nd", 6));
  int files = 0;
  for (const auto& e : fs::directory_iterator(dir.path())) files += e.is_regular_file();
  EXPECT_EQ(files, 1);
}

TEST(WriteFileReplace, NamesThePathWhenItCannotWrite) {
  test::TempDir dir;
  try {
    write_file_replace(dir / "missing" / "a.txt", "x");
    FAIL() << "expected kiln::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("missing/a.txt"), std::string::npos) << e.what();
  }
  // A folder in the way of the target: the rename fails and the folder is untouched.
  fs::create_directories(dir / "taken" / "inner");
  EXPECT_THROW(write_file_replace(dir / "taken", "x"), Error);
  EXPECT_TRUE(fs::is_directory(dir / "taken" / "inner"));
  int files = 0;
  for (const auto& e : fs::directory_iterator(dir.path())) files += e.is_regular_file();
  EXPECT_EQ(files, 0) << "a temporary was left behind";
}

}  // namespace
}  // namespace kiln
