// Helpers for TensorMap: a training state made of several state dicts under name prefixes.
//
//   TensorMap state() const override {
//     TensorMap s;
//     kiln::add_prefixed(s, "model.", net_.state_dict());
//     kiln::add_prefixed(s, "optim.", opt_.state_dict());
//     return s;
//   }
//   void load_state(const TensorMap& state) override {
//     auto parts = kiln::split_prefixed(state, {"model.", "optim."}, "myplugin/train");
//     net_.load_state_dict(parts[0]);
//     opt_.load_state_dict(parts[1]);
//   }
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "kiln/export.hpp"
#include "kiln/tensor.hpp"

namespace kiln {

// Adds every entry of `part` to `into` as prefix + name. A name already in `into` is an Error (two
// parts would otherwise overwrite each other silently).
KILN_API void add_prefixed(TensorMap& into, std::string_view prefix, const TensorMap& part);

// The inverse of add_prefixed: one map per prefix (in the order given) of the entries of `state`
// whose names start with it, the prefix removed; the longest matching prefix wins ("optim.decay."
// before "optim."). Names listed in `others` are left out. Any other name is an Error naming
// `who`, the tensor and the prefixes expected, since it means the state was written by something
// else.
KILN_API std::vector<TensorMap> split_prefixed(const TensorMap& state,
                                               const std::vector<std::string>& prefixes,
                                               std::string_view who,
                                               const std::vector<std::string>& others = {});

}  // namespace kiln
