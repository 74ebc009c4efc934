// nn::Module — a layer or model with named parameters, buffers and sub-modules.
//
//   class Mlp : public kiln::nn::Module {
//    public:
//     Mlp(int64_t in, int64_t hidden, int64_t out)
//         : fc1(register_module("fc1", std::make_shared<kiln::nn::Linear>(in, hidden))),
//           fc2(register_module("fc2", std::make_shared<kiln::nn::Linear>(hidden, out))) {}
//     kiln::Tensor forward(const kiln::Tensor& x) {
//       return fc2->forward(kiln::ops::relu(fc1->forward(x)));
//     }
//     std::shared_ptr<kiln::nn::Linear> fc1, fc2;
//   };
//   Mlp m(784, 256, 10);
//   m.named_parameters();   // {"fc1.weight", ...}, {"fc1.bias", ...}, {"fc2.weight", ...}, ...
//   kiln::save_safetensors("mlp.safetensors", m.state_dict());
//
// Names are dotted paths, as in PyTorch, so checkpoints map one to one onto a PyTorch
// module's state_dict(). Parameters require grad; buffers (e.g. batch-norm running statistics)
// do not. A Tensor is a handle, so the member and the registry share the same data;
// load_state_dict copies into the existing tensors, keeping every handle valid.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "kiln/export.hpp"
#include "kiln/tensor.hpp"

namespace kiln::nn {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

class KILN_API Module {
 public:
  Module() = default;
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  NamedTensors named_parameters() const;
  TensorList parameters() const;
  NamedTensors named_buffers() const;
  // Parameters and buffers, sorted by name.
  TensorMap state_dict() const;
  // Copies every tensor of `state` into the matching parameter or buffer. With `strict`, a
  // missing or unexpected key is an error; a shape mismatch is always an error. Messages name
  // the key, the expected shape and the one found.
  void load_state_dict(const TensorMap& state, bool strict = true);
  std::int64_t num_parameters() const;

  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }
  void zero_grad();

  const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& children() const {
    return children_;
  }

 protected:
  Tensor register_parameter(const std::string& name, Tensor t, bool requires_grad = true);
  Tensor register_buffer(const std::string& name, Tensor t);
  template <typename M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> m) {
    add_child(name, m);
    return m;
  }
  // Called by train(); override to propagate to state that is not a child module.
  virtual void on_train(bool) {}

 private:
  void add_child(const std::string& name, std::shared_ptr<Module> m);
  void collect(const std::string& prefix, NamedTensors& out, bool params) const;

  std::vector<std::pair<std::string, Tensor>> params_;
  std::vector<std::pair<std::string, Tensor>> buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;
};

}  // namespace kiln::nn
