// Small text helpers shared by the host: "did you mean" suggestions and number formatting.
#pragma once

#include <cstdint>
#include <optional>
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

// A non-empty run of decimal digits as a number (no sign, no spaces); nullopt otherwise.
std::optional<std::int64_t> parse_digits(std::string_view s);
// `s` is "<prefix><digits><suffix>": the number, else nullopt.
std::optional<std::int64_t> number_between(std::string_view s, std::string_view prefix,
                                           std::string_view suffix);
// A name safe as a file stem or stage id: letters, digits, '_', '-', '.', not starting with '-'
// or '.'.
bool is_safe_name(std::string_view s);
// A C-like identifier: a letter or '_', then letters, digits and '_'.
bool is_identifier(std::string_view s);

}  // namespace kiln::host
