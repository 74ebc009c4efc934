// Reverse-mode automatic differentiation.
//
// Every differentiable op, after computing its outputs, records one Node whose backward maps the
// gradients of its outputs to the gradients of its inputs:
//
//   Tensor square(const Tensor& x) {
//     Tensor y = x * x;                       // (already differentiable; this shows the pattern)
//     if (kiln::needs_grad({x})) {
//       kiln::record("square", {x}, {&y}, [xs = x.detach()](const kiln::TensorList& g) {
//         return kiln::TensorList{g[0] * xs * 2.f};
//       });
//     }
//     return y;
//   }
//
// Rules for a backward function:
//   * it receives one gradient per output, always defined (zeros for unused outputs);
//   * it returns one gradient per input, in order; an undefined Tensor means "no gradient";
//     a returned gradient must have its input's shape;
//   * it runs with grad mode off, and must capture inputs/outputs with `detach()` (capturing an
//     output itself would form a reference cycle);
//   * it runs at most once: the engine releases it afterwards.
//
// `kiln::NoGradGuard` turns recording off in a scope (inference, optimiser updates).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "kiln/export.hpp"
#include "kiln/tensor.hpp"

namespace kiln {

using BackwardFn = std::function<TensorList(const TensorList& grad_outputs)>;

// An edge from a node to the producer of one of its inputs: either another node's output or a
// leaf tensor whose .grad() accumulates.
struct Edge {
  std::shared_ptr<Node> node;
  int output_nr = 0;
  std::shared_ptr<TensorImpl> leaf;
  bool valid() const { return node != nullptr || leaf != nullptr; }
};

class KILN_API Node {
 public:
  Node(std::string name, BackwardFn fn) : name_(std::move(name)), fn_(std::move(fn)) {}
  virtual ~Node() = default;
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  const std::string& name() const { return name_; }
  TensorList apply(const TensorList& grad_outputs);
  void release() { fn_ = nullptr; }
  bool released() const { return !fn_; }

  std::vector<Edge> next_edges;
  // Shapes and dtypes of the outputs, to materialise zero gradients for unused outputs.
  std::vector<Shape> output_shapes;
  std::vector<DType> output_dtypes;

 private:
  std::string name_;
  BackwardFn fn_;
};

KILN_API bool grad_enabled();
KILN_API void set_grad_enabled(bool on);

class KILN_API NoGradGuard {
 public:
  NoGradGuard() : prev_(grad_enabled()) { set_grad_enabled(false); }
  ~NoGradGuard() { set_grad_enabled(prev_); }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool prev_;
};

class KILN_API EnableGradGuard {
 public:
  EnableGradGuard() : prev_(grad_enabled()) { set_grad_enabled(true); }
  ~EnableGradGuard() { set_grad_enabled(prev_); }
  EnableGradGuard(const EnableGradGuard&) = delete;
  EnableGradGuard& operator=(const EnableGradGuard&) = delete;

 private:
  bool prev_;
};

// True when grad mode is on and any defined input requires grad.
KILN_API bool needs_grad(std::initializer_list<Tensor> inputs);
KILN_API bool needs_grad(const TensorList& inputs);

// Records that `outputs` were computed from `inputs` by `name`, whose backward is `fn`.
// Undefined inputs are allowed (e.g. an absent bias); fn must return an undefined gradient for
// them. Marks the outputs as requiring grad.
KILN_API void record(const std::string& name, const TensorList& inputs,
                     const std::vector<Tensor*>& outputs, BackwardFn fn);

// Backpropagates from `roots` with the given seed gradients (same count; undefined = ones for
// one-element roots). Gradients accumulate into leaves' .grad(). Frees the graph as it goes.
KILN_API void backward(const TensorList& roots, const TensorList& grads = {});

// Reduces a broadcast gradient back to `shape` by summing over broadcast dimensions.
KILN_API Tensor sum_to(const Tensor& grad, const Shape& shape);

}  // namespace kiln
