#include "kiln/tensor_map.hpp"

#include <algorithm>

#include "kiln/error.hpp"

namespace kiln {

void add_prefixed(TensorMap& into, std::string_view prefix, const TensorMap& part) {
  for (const auto& [name, t] : part) {
    std::string key(prefix);
    key += name;
    const bool added = into.emplace(key, t).second;
    KILN_CHECK(added, "add_prefixed: '", key, "' is already in the map");
  }
}

std::vector<TensorMap> split_prefixed(const TensorMap& state,
                                      const std::vector<std::string>& prefixes,
                                      std::string_view who,
                                      const std::vector<std::string>& others) {
  std::vector<TensorMap> parts(prefixes.size());
  for (const auto& [name, t] : state) {
    if (std::find(others.begin(), others.end(), name) != others.end()) continue;
    std::size_t best = prefixes.size();
    for (std::size_t i = 0; i < prefixes.size(); ++i) {
      if (name.rfind(prefixes[i], 0) == 0 &&
          (best == prefixes.size() || prefixes[i].size() > prefixes[best].size())) {
        best = i;
      }
    }
    if (best == prefixes.size()) {
      std::string expected;
      for (const std::string& p : prefixes) expected += (expected.empty() ? "'" : ", '") + p + "*'";
      for (const std::string& o : others) expected += (expected.empty() ? "'" : ", '") + o + "'";
      throw Error(std::string(who) + ": unexpected tensor '" + name +
                  "' in the training state (expected " + expected +
                  "); was it written by another plugin or task?");
    }
    parts[best].emplace(name.substr(prefixes[best].size()), t);
  }
  return parts;
}

}  // namespace kiln
