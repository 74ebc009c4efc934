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
