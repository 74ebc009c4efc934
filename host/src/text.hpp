// Small text helpers shared by the host: "did you mean" suggestions and number formatting.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::host {

// Optimal-string-alignment distance (insertions, deletions, substitutions, transpositions).
std::size_t edit_distance(std::string_view a, std::string_view b);
// The candidate closest to `word` when it is close enough to be a likely typo (distance at
// most 1 for short words, 2 up to 8 letters, 3 beyond), otherwise "". Ties keep the first.
std::string closest_match(std::string_view word, const std::vector<std::string>& candidates);
// " (did you mean 'x'?)" or "".
std::string did_you_mean(std::string_view word, const std::vector<std::string>& candidates);
// "'a', 'b' and 'c'".
std::string quoted_list(const std::vector<std::string>& items);
// Seconds as "1h02m", "3m05s" or "12s".
std::string format_duration(double seconds);
// Zero-padded decimal: pad(42, 6) == "000042".
std::string pad_number(std::int64_t value, int width);

}  // namespace kiln::host
