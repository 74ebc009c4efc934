#include "kiln/autograd.hpp"

#include <algorithm>
#include <unordered_map>
#include <unordered_set>

#include "core/tensor_impl.hpp"
#include "kiln/ops.hpp"

namespace kiln {
namespace {
thread_local bool g_grad_enabled = true;
}

bool grad_enabled() {
  return g_grad_enabled;
}
void set_grad_enabled(bool on) {
  g_grad_enabled = on;
}

bool needs_grad(std::initializer_list<Tensor> inputs) {
  if (!g_grad_enabled) return false;
  for (const Tensor& t : inputs) {
    if (t.defined() && t.requires_grad()) return true;
  }
  return false;
}

bool needs_grad(const TensorList& inputs) {
  if (!g_grad_enabled) return false;
  for (const Tensor& t : inputs) {
    if (t.defined() && t.requires_grad()) return true;
  }
  return false;
}

TensorList Node::apply(const TensorList& grad_outputs) {
  KILN_CHECK(fn_, "backward through '", name_,
             "' a second time: the graph was already freed by "
             "an earlier backward()");
  return fn_(grad_outputs);
}

void record(const std::string& name, const TensorList& inputs, const std::vector<Tensor*>& outputs,
            BackwardFn fn) {
  auto node = std::make_shared<Node>(name, std::move(fn));
  node->next_edges.reserve(inputs.size());
  for (const Tensor& in : inputs) {
    Edge e;
    if (in.defined() && in.requires_grad()) {
      if (in.grad_fn()) {
        e.node = in.grad_fn();
        e.output_nr = in.output_nr();
      } else {
        e.leaf = in.impl_ptr();
      }
    }
    node->next_edges.push_back(std::move(e));
  }
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    TensorImpl* impl = outputs[i]->impl();
    KILN_CHECK(impl != nullptr, "record: output ", i, " of '", name, "' is undefined");
    KILN_CHECK(is_floating(impl->dtype), "record: output ", i, " of '", name,
               "' is not floating and cannot carry a gradient");
    impl->requires_grad = true;
    impl->grad_fn = node;
    impl->output_nr = static_cast<int>(i);
    node->output_shapes.push_back(impl->shape);
    node->output_dtypes.push_back(impl->dtype);
  }
}

namespace {

void accumulate(Tensor& slot, const Tensor& g) {
  if (!slot.defined()) {
    slot = g;
  } else {
    slot = slot + g;
  }
}

void accumulate_leaf(TensorImpl& leaf, const Tensor& g) {
  KILN_CHECK(g.shape() == leaf.shape, "backward: gradient of shape ", shape_str(g.shape()),
             " for a leaf of shape ", shape_str(leaf.shape));
  Tensor gg = g.dtype() == leaf.dtype ? g.contiguous() : g.to(leaf.dtype).contiguous();
  if (!leaf.grad.defined()) {
    // Own the gradient: the incoming tensor may be shared with another branch or a view.
    leaf.grad = gg.shares_storage(g) && gg.same(g) ? gg.clone() : gg;
    leaf.grad = leaf.grad.detach();
  } else {
    leaf.grad = (leaf.grad + gg).detach();
  }
}

}  // namespace

void backward(const TensorList& roots, const TensorList& grads) {
  KILN_CHECK(grads.empty() || grads.size() == roots.size(), "backward: ", roots.size(),
             " roots but ", grads.size(), " gradients");
  NoGradGuard no_grad;

  // Seed gradients.
  std::unordered_map<Node*, TensorList> pending;
  std::vector<std::shared_ptr<Node>> starts;
  for (std::size_t i = 0; i < roots.size(); ++i) {
    const Tensor& r = roots[i];
    KILN_CHECK(r.defined(), "backward: root ", i, " is undefined");
    KILN_CHECK(r.requires_grad(),
               "backward: the tensor does not require grad (no parameter that "
               "requires grad contributed to it, or it was computed under NoGradGuard)");
    Tensor g = grads.empty() ? Tensor() : grads[i];
    if (!g.defined()) {
      KILN_CHECK(r.numel() == 1,
                 "backward: a gradient must be given for a non-scalar root of "
                 "shape ",
                 shape_str(r.shape()));
      g = Tensor::ones(r.shape(), r.dtype());
    }
    KILN_CHECK(g.shape() == r.shape(), "backward: gradient shape ", shape_str(g.shape()),
               " does not match root shape ", shape_str(r.shape()));
    if (!r.grad_fn()) {
      accumulate_leaf(*r.impl(), g);
      continue;
    }
    Node* n = r.grad_fn().get();
    TensorList& slots = pending[n];
    slots.resize(n->output_shapes.size());
    accumulate(slots[static_cast<std::size_t>(r.output_nr())], g);
    starts.push_back(r.grad_fn());
  }

  // Dependency counts over the reachable graph.
  std::unordered_map<Node*, int> deps;
  std::unordered_set<Node*> seen;
  std::vector<Node*> stack;
  for (auto& s : starts) {
    if (seen.insert(s.get()).second) stack.push_back(s.get());
  }
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (const Edge& e : n->next_edges) {
      if (!e.node) continue;
      deps[e.node.get()]++;
      if (seen.insert(e.node.get()).second) stack.push_back(e.node.get());
    }
  }

  // Process nodes whose consumers are all done (Kahn's algorithm). Holding shared_ptrs keeps
  // nodes alive while queued even if the user dropped the outputs.
  std::vector<std::shared_ptr<Node>> ready;
  std::unordered_set<Node*> queued;
  for (auto& s : starts) {
    if (deps[s.get()] == 0 && queued.insert(s.get()).second) ready.push_back(s);
  }
  while (!ready.empty()) {
    std::shared_ptr<Node> node = ready.back();
    ready.pop_back();
    TensorList grad_out = std::move(pending[node.get()]);
    pending.erase(node.get());
    grad_out.resize(node->output_shapes.size());
    for (std::size_t i = 0; i < grad_out.size(); ++i) {
      if (!grad_out[i].defined()) {
        grad_out[i] = Tensor::zeros(node->output_shapes[i], node->output_dtypes[i]);
      }
    }
    TensorList grad_in = node->apply(grad_out);
    node->release();
    KILN_CHECK(grad_in.size() == node->next_edges.size(), "backward of '", node->name(),
               "' returned ", grad_in.size(), " gradients for ", node->next_edges.size(),
               " inputs");
    for (std::size_t i = 0; i < grad_in.size(); ++i) {
      const Edge& e = node->next_edges[i];
      if (!e.valid()) continue;
      const Tensor& g = grad_in[i];
      if (e.leaf) {
        if (g.defined()) accumulate_leaf(*e.leaf, g);
        continue;
      }
      Node* next = e.node.get();
      if (g.defined()) {
        TensorList& slots = pending[next];
        slots.resize(next->output_shapes.size());
        const auto k = static_cast<std::size_t>(e.output_nr);
        KILN_CHECK(g.shape() == next->output_shapes[k], "backward of '", node->name(),
                   "' produced a gradient of shape ", shape_str(g.shape()), " for input ", i,
                   " of shape ", shape_str(next->output_shapes[k]));
        accumulate(slots[k], g);
      }
      if (--deps[next] == 0 && queued.insert(next).second) ready.push_back(e.node);
    }
  }
}

Tensor sum_to(const Tensor& grad, const Shape& shape) {
  const Shape& gs = grad.shape();
  if (gs == shape) return grad;
  KILN_CHECK(gs.size() >= shape.size(), "sum_to: cannot reduce ", shape_str(gs), " to ",
             shape_str(shape));
  const std::size_t lead = gs.size() - shape.size();
  std::vector<std::int64_t> dims;
  for (std::size_t i = 0; i < gs.size(); ++i) {
    if (i < lead) {
      dims.push_back(static_cast<std::int64_t>(i));
    } else if (shape[i - lead] == 1 && gs[i] != 1) {
      dims.push_back(static_cast<std::int64_t>(i));
    } else {
      KILN_CHECK(shape[i - lead] == gs[i], "sum_to: cannot reduce ", shape_str(gs), " to ",
                 shape_str(shape));
    }
  }
  Tensor r = dims.empty() ? grad : ops::sum(grad, dims, true);
  return r.reshape(shape);
}

}  // namespace kiln
