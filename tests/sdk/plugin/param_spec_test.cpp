// ParamSpec::path with and without a default.
#include <gtest/gtest.h>

#include "kiln/plugin.hpp"

namespace kiln {
namespace {

TEST(ParamSpecPath, WithoutADefaultItIsRequired) {
  const ParamSpec p = ParamSpec::path("model", "A trained model");
  EXPECT_EQ(p.type, ParamType::path);
  EXPECT_TRUE(p.required());
  EXPECT_EQ(p.describe(), "path, required");
}

TEST(ParamSpecPath, ADefaultMakesItOptionalAndIsShown) {
  const ParamSpec p = ParamSpec::path("data", "/usr/share/datasets/fashion-mnist", "Dataset");
  EXPECT_EQ(p.type, ParamType::path);
  EXPECT_FALSE(p.required());
  EXPECT_EQ(std::get<std::string>(p.default_value), "/usr/share/datasets/fashion-mnist");
  EXPECT_EQ(p.describe(), "path, default \"/usr/share/datasets/fashion-mnist\"");
  EXPECT_EQ(p.check(ParamValue{std::string("elsewhere")}), "");
  EXPECT_NE(p.check(ParamValue{std::string()}), "");  // an empty path is refused
}

}  // namespace
}  // namespace kiln
