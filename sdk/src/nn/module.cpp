#include "kiln/nn/module.hpp"

#include <algorithm>
#include <set>

#include "kiln/autograd.hpp"

namespace kiln::nn {

namespace {
void check_name(const std::string& name, const char* what) {
  KILN_CHECK(!name.empty() && name.find('.') == std::string::npos, what, " name '", name,
             "' must be non-empty and contain no '.'");
}
}  // namespace

Tensor Module::register_parameter(const std::string& name, Tensor t, bool requires_grad) {
  check_name(name, "parameter");
  KILN_CHECK(t.defined(), "register_parameter: '", name, "' is undefined");
  for (auto& [n, _] : params_) KILN_CHECK(n != name, "parameter '", name, "' registered twice");
  Tensor p = t.detach();
  if (requires_grad) p.set_requires_grad(true);
  params_.emplace_back(name, p);
  return p;
}

Tensor Module::register_buffer(const std::string& name, Tensor t) {
  check_name(name, "buffer");
  KILN_CHECK(t.defined(), "register_buffer: '", name, "' is undefined");
  Tensor b = t.detach();
  buffers_.emplace_back(name, b);
  return b;
}

void Module::add_child(const std::string& name, std::shared_ptr<Module> m) {
  check_name(name, "module");
  KILN_CHECK(m != nullptr, "register_module: '", name, "' is null");
  for (auto& [n, _] : children_) KILN_CHECK(n != name, "module '", name, "' registered twice");
  children_.emplace_back(name, std::move(m));
}

void Module::collect(const std::string& prefix, NamedTensors& out, bool params) const {
  for (const auto& [name, t] : params ? params_ : buffers_) out.emplace_back(prefix + name, t);
  for (const auto& [name, child] : children_) child->collect(prefix + name + ".", out, params);
}

NamedTensors Module::named_parameters() const {
  NamedTensors out;
  collect("", out, true);
  return out;
}

TensorList Module::parameters() const {
  TensorList out;
  for (auto& [_, t] : named_parameters()) out.push_back(t);
  return out;
}

NamedTensors Module::named_buffers() const {
  NamedTensors out;
  collect("", out, false);
  return out;
}

TensorMap Module::state_dict() const {
  TensorMap out;
  for (auto& [n, t] : named_parameters()) out[n] = t;
  for (auto& [n, t] : named_buffers()) out[n] = t;
  return out;
}

void Module::load_state_dict(const TensorMap& state, bool strict) {
  NoGradGuard ng;
  const TensorMap mine = state_dict();
  std::vector<std::string> missing;
  for (const auto& [name, t] : mine) {
    auto it = state.find(name);
    if (it == state.end()) {
      missing.push_back(name);
      continue;
    }
    KILN_CHECK(it->second.shape() == t.shape(), "load_state_dict: '", name, "' has shape ",
               shape_str(it->second.shape()), " in the checkpoint but the model expects ",
               shape_str(t.shape()), " (was the checkpoint made with other settings?)");
    Tensor dst = t;
    dst.copy_(it->second);
  }
  if (!strict) return;
  if (!missing.empty()) {
    std::string list;
    for (std::size_t i = 0; i < missing.size() && i < 5; ++i) list += (i ? ", " : "") + missing[i];
    if (missing.size() > 5) list += ", ... (" + std::to_string(missing.size()) + " in all)";
    throw Error("load_state_dict: the checkpoint lacks " + list);
  }
  for (const auto& [name, _] : state) {
    KILN_CHECK(mine.count(name), "load_state_dict: the checkpoint has '", name,
               "', which this model does not have");
  }
}

std::int64_t Module::num_parameters() const {
  std::int64_t n = 0;
  for (auto& [_, t] : named_parameters()) n += t.numel();
  return n;
}

void Module::train(bool on) {
  training_ = on;
  on_train(on);
  for (auto& [_, c] : children_) c->train(on);
}

void Module::zero_grad() {
  for (auto& [_, t] : named_parameters()) t.zero_grad();
}

}  // namespace kiln::nn
