#include "text.hpp"

#include <gtest/gtest.h>

namespace kiln::host {
namespace {

TEST(EditDistance, CountsEditsAndTranspositions) {
  EXPECT_EQ(edit_distance("", ""), 0u);
  EXPECT_EQ(edit_distance("latent", "latent"), 0u);
  EXPECT_EQ(edit_distance("latnet", "latent"), 1u);  // transposition
  EXPECT_EQ(edit_distance("lr", "lr_"), 1u);
  EXPECT_EQ(edit_distance("epoch", "epochs"), 1u);
  EXPECT_EQ(edit_distance("kitten", "sitting"), 3u);
  EXPECT_EQ(edit_distance("abc", ""), 3u);
}

TEST(ClosestMatch, SuggestsOnlyLikelyTypos) {
  const std::vector<std::string> keys = {"epochs", "batch_size", "latent", "lr", "seed"};
  EXPECT_EQ(closest_match("epoch", keys), "epochs");
  EXPECT_EQ(closest_match("batchsize", keys), "batch_size");
  EXPECT_EQ(closest_match("latnet", keys), "latent");
  EXPECT_EQ(closest_match("rl", keys), "lr");
  EXPECT_EQ(closest_match("temperature", keys), "");
  EXPECT_EQ(closest_match("xyz", keys), "");
  EXPECT_EQ(did_you_mean("seeed", keys), " (did you mean 'seed'?)");
  EXPECT_EQ(did_you_mean("colour_space", keys), "");
}

TEST(TextFormat, ListsDurationsAndPadding) {
  EXPECT_EQ(quoted_list({}), "");
  EXPECT_EQ(quoted_list({"a"}), "'a'");
  EXPECT_EQ(quoted_list({"a", "b", "c"}), "'a', 'b' and 'c'");
  EXPECT_EQ(format_duration(5.4), "5s");
  EXPECT_EQ(format_duration(185), "3m05s");
  EXPECT_EQ(format_duration(3720), "1h02m");
  EXPECT_EQ(format_duration(-1), "?");
  EXPECT_EQ(pad_number(42, 6), "000042");
  EXPECT_EQ(pad_number(1234567, 6), "1234567");
}

}  // namespace
}  // namespace kiln::host

namespace kiln::host {
namespace {

TEST(NamePatterns, DigitsSafeNamesAndIdentifiers) {
  EXPECT_EQ(parse_digits("0042"), 42);
  EXPECT_EQ(parse_digits(""), std::nullopt);
  EXPECT_EQ(parse_digits("4a"), std::nullopt);
  EXPECT_EQ(parse_digits("-4"), std::nullopt);
  EXPECT_EQ(number_between("step-120.safetensors", "step-", ".safetensors"), 120);
  EXPECT_EQ(number_between("step-.safetensors", "step-", ".safetensors"), std::nullopt);
  EXPECT_EQ(number_between("step-1.safetensors.tmp", "step-", ".safetensors"), std::nullopt);
  EXPECT_EQ(number_between("000007.png", "", ".png"), 7);
  EXPECT_TRUE(is_safe_name("train"));
  EXPECT_TRUE(is_safe_name("stage_2.b-c"));
  EXPECT_FALSE(is_safe_name(""));
  EXPECT_FALSE(is_safe_name(".hidden"));
  EXPECT_FALSE(is_safe_name("-x"));
  EXPECT_FALSE(is_safe_name("a/b"));
  EXPECT_FALSE(is_safe_name("a b"));
  EXPECT_TRUE(is_identifier("latent_dim2"));
  EXPECT_TRUE(is_identifier("_x"));
  EXPECT_FALSE(is_identifier("2x"));
  EXPECT_FALSE(is_identifier("a-b"));
  EXPECT_FALSE(is_identifier(""));
}

}  // namespace
}  // namespace kiln::host
