// kiln::Error — the one exception type the SDK, plugins and host throw for bad input.
//
//   if (dims.size() != 4) throw kiln::Error("conv2d: input must be 4-d [N,C,H,W], got " +
//   str(dims)); KILN_CHECK(k > 0, "top_k: k must be positive, got ", k);
//
// Messages are sentences for a person: say what was wrong, with the offending value, and what
// to do. The host prints `what()` as is, prefixed with the stage and plugin.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

#include "kiln/export.hpp"

namespace kiln {

class KILN_API Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

namespace detail {
template <typename... Args>
std::string concat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
}  // namespace detail

}  // namespace kiln

// Throws kiln::Error with the streamed arguments when `cond` is false.
#define KILN_CHECK(cond, ...)                                              \
  do {                                                                     \
    if (!(cond)) throw ::kiln::Error(::kiln::detail::concat(__VA_ARGS__)); \
  } while (0)
