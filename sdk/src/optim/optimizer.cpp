#include <cmath>
#include <set>
#include <utility>

#include "kiln/autograd.hpp"
#include "kiln/optim.hpp"
#include "ops/op_util.hpp"
#include "optim/internal.hpp"

namespace kiln::optim {

namespace {
constexpr const char* kMaster = "master";
}  // namespace

Optimizer::Optimizer(nn::NamedTensors params) : params_(std::move(params)) {
  KILN_CHECK(!params_.empty(),
             "optimizer: the parameter list is empty; pass the model's named_parameters()");
  std::set<std::string> names;
  std::set<std::pair<const void*, std::int64_t>> seen;  // (storage, offset) of each parameter
  bool any_bf16 = false;
  for (const auto& [name, p] : params_) {
    KILN_CHECK(!name.empty(), "optimizer: a parameter has an empty name");
    KILN_CHECK(p.defined(), "optimizer: parameter '", name, "' is undefined");
    KILN_CHECK(p.dtype() == DType::f32 || p.dtype() == DType::bf16, "optimizer: parameter '", name,
               "' is ", dtype_name(p.dtype()), "; only f32 and bf16 parameters can be optimised");
    KILN_CHECK(p.is_contiguous(), "optimizer: parameter '", name, "' of shape ",
               shape_str(p.shape()),
               " is not a plain contiguous tensor; optimise the tensor itself, not a view");
    KILN_CHECK(names.insert(name).second, "optimizer: parameter name '", name,
               "' appears more than once");
    KILN_CHECK(seen.insert({p.impl()->storage.get(), p.offset()}).second, "optimizer: parameter '",
               name, "' is the same tensor as an earlier parameter; each tensor may appear once");
    any_bf16 = any_bf16 || p.dtype() == DType::bf16;
  }
  if (any_bf16) declare_slot(kMaster);
}

void Optimizer::zero_grad() {
  for (auto& np : params_) np.second.zero_grad();
}

TensorList Optimizer::params() const {
  TensorList out;
  out.reserve(params_.size());
  for (const auto& np : params_) out.push_back(np.second);
  return out;
}

void Optimizer::declare_slot(const std::string& slot_name) {
  KILN_CHECK(!slot_name.empty() && slot_name.find('.') == std::string::npos,
             "optimizer: slot name '", slot_name, "' must be non-empty and contain no '.'");
  for (const auto& s : slots_) {
    if (s.first == slot_name) return;
  }
  slots_.emplace_back(slot_name, std::vector<Tensor>(params_.size()));
}

Tensor& Optimizer::slot(const std::string& slot_name, std::size_t param_index) {
  KILN_CHECK(param_index < params_.size(), "optimizer: slot '", slot_name,
             "' requested for parameter ", param_index, " of ", params_.size());
  declare_slot(slot_name);
  for (auto& s : slots_) {
    if (s.first != slot_name) continue;
    Tensor& t = s.second[param_index];
    if (!t.defined()) t = Tensor::zeros(params_[param_index].second.shape(), DType::f32);
    return t;
  }
  throw Error("optimizer: slot '" + slot_name + "' vanished");  // unreachable: declared above
}

bool Optimizer::has_slot(const std::string& slot_name, std::size_t param_index) const {
  for (const auto& s : slots_) {
    if (s.first == slot_name) {
      return param_index < s.second.size() && s.second[param_index].defined();
    }
  }
  return false;
}

void Optimizer::check_lr(const char* who) const {
  KILN_CHECK(std::isfinite(lr_) && lr_ >= 0.f, who,
             ": the learning rate must be finite and >= 0, got ", lr_);
}

void Optimizer::apply_update(const UpdateKernel& kernel) {
  NoGradGuard no_grad;
  struct Item {
    std::size_t index;
    float* w;
    const float* g;
    std::uint16_t* bf16;  // the bf16 parameter when w is its master copy
    Tensor grad_f32;      // keeps a converted gradient alive
  };
  std::vector<Item> items;
  std::vector<std::int64_t> sizes;
  for (std::size_t i = 0; i < params_.size(); ++i) {
    const auto& [name, p] = params_[i];
    const Tensor grad = p.grad();
    if (!grad.defined()) continue;
    KILN_CHECK(grad.shape() == p.shape(), "optimizer: the gradient of parameter '", name,
               "' has shape ", shape_str(grad.shape()), " but the parameter has shape ",
               shape_str(p.shape()));
    Item it{i, nullptr, nullptr, nullptr, Tensor()};
    it.grad_f32 = grad.dtype() == DType::f32 && grad.is_contiguous()
                      ? grad
                      : ops::detail::as_f32(grad, "optimizer", "gradient");
    it.g = it.grad_f32.data<float>();
    if (p.dtype() == DType::bf16) {
      it.w = slot(kMaster, i).data<float>();
      it.bf16 = p.data<std::uint16_t>();
    } else {
      it.w = p.data<float>();
    }
    items.push_back(std::move(it));
    sizes.push_back(p.numel());
  }
  const std::vector<detail::Chunk> chunks = detail::make_chunks(sizes);
  detail::run_chunks(chunks, [&](std::size_t, const detail::Chunk& c) {
    const Item& it = items[c.item];
    if (it.bf16 != nullptr) {
      // Take the parameter's value wherever it no longer matches the rounded master (first use,
      // or written from outside since the last step).
      float* __restrict w = it.w;
      const std::uint16_t* __restrict b = it.bf16;
      for (std::int64_t j = c.begin; j < c.end; ++j) {
        if (f32_to_bf16(w[j]) != b[j]) w[j] = bf16_to_f32(b[j]);
      }
    }
    kernel(it.index, it.w, it.g, c.begin, c.end);
    if (it.bf16 != nullptr) {
      const float* __restrict w = it.w;
      std::uint16_t* __restrict b = it.bf16;
      for (std::int64_t j = c.begin; j < c.end; ++j) b[j] = f32_to_bf16(w[j]);
    }
  });
  for (const Item& it : items) params_[it.index].second.bump_version();
}

TensorMap Optimizer::state_dict() const {
  TensorMap out;
  for (const auto& [slot_name, tensors] : slots_) {
    for (std::size_t i = 0; i < tensors.size(); ++i) {
      if (tensors[i].defined()) out[slot_name + "." + params_[i].first] = tensors[i].clone();
    }
  }
  out["step"] = Tensor::from_ints({steps_}, {}, DType::s64);
  return out;
}

void Optimizer::load_state_dict(const TensorMap& state) {
  const auto step_it = state.find("step");
  KILN_CHECK(step_it != state.end(),
             "optimizer load_state_dict: the state has no 'step' entry (an integer scalar)");
  KILN_CHECK(step_it->second.defined() && step_it->second.numel() == 1,
             "optimizer load_state_dict: 'step' must be a scalar, got shape ",
             step_it->second.defined() ? shape_str(step_it->second.shape()) : "undefined");
  const std::int64_t step = step_it->second.to_int_vector()[0];
  KILN_CHECK(step >= 0, "optimizer load_state_dict: 'step' must be >= 0, got ", step);

  std::string slot_list;
  for (const auto& s : slots_) slot_list += (slot_list.empty() ? "" : ", ") + s.first;
  struct Entry {
    std::size_t slot, param;
    Tensor value;
  };
  std::vector<Entry> entries;
  // Validate everything before changing anything.
  for (const auto& [key, t] : state) {
    if (key == "step") continue;
    const std::size_t dot = key.find('.');
    std::size_t s = slots_.size();
    if (dot != std::string::npos) {
      for (std::size_t k = 0; k < slots_.size(); ++k) {
        if (slots_[k].first == key.substr(0, dot)) s = k;
      }
    }
    KILN_CHECK(s < slots_.size(), "optimizer load_state_dict: unexpected entry '", key,
               "'; this optimiser keeps ", slot_list.empty() ? "no per-parameter state" : slot_list,
               " (keys '<slot>.<parameter name>') and 'step'");
    const std::string pname = key.substr(dot + 1);
    std::size_t p = params_.size();
    for (std::size_t k = 0; k < params_.size(); ++k) {
      if (params_[k].first == pname) p = k;
    }
    KILN_CHECK(p < params_.size(), "optimizer load_state_dict: entry '", key,
               "' belongs to parameter '", pname, "', which this optimiser does not have");
    const Tensor& param = params_[p].second;
    KILN_CHECK(t.defined() && is_floating(t.dtype()), "optimizer load_state_dict: entry '", key,
               "' must be a floating tensor, got ",
               t.defined() ? dtype_name(t.dtype()) : "an undefined tensor");
    KILN_CHECK(t.shape() == param.shape(), "optimizer load_state_dict: entry '", key,
               "' has shape ", shape_str(t.shape()), " but parameter '", pname, "' has shape ",
               shape_str(param.shape()));
    KILN_CHECK(slots_[s].first != kMaster || param.dtype() == DType::bf16,
               "optimizer load_state_dict: entry '", key, "' is a master copy but parameter '",
               pname, "' is ", dtype_name(param.dtype()), ", not bf16");
    entries.push_back({s, p, t});
  }
  NoGradGuard no_grad;
  for (auto& s : slots_) {
    for (Tensor& t : s.second) t = Tensor();
  }
  for (const Entry& e : entries) {
    Tensor copy = Tensor::empty(e.value.shape(), DType::f32);
    copy.copy_(e.value);  // never aliases the caller's tensor
    slots_[e.slot].second[e.param] = copy;
  }
  steps_ = step;
}

}  // namespace kiln::optim
