// PyTorch parity checks against tests/fixtures/ops.safetensors (written by
// tests/fixtures/gen/ops_fixture.py). A case `name` holds inputs `name/<input>` (possibly an
// alias of an earlier case's input, recorded in the metadata), projections
// `name/R<i>`, outputs `name/out<i>` and gradients `name/grad_<input>` of
// L = sum_i sum(out_i * R_i); an input is differentiated when its gradient is stored.
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "kiln/autograd.hpp"
#include "kiln/ops.hpp"
#include "support/test_support.hpp"

namespace kiln::test {

using MultiOpFn = std::function<TensorList(const TensorList&)>;

inline const Safetensors& ops_fixture() {
  static const Safetensors fixture = load_fixture("ops.safetensors");
  return fixture;
}

// An input shared between cases is stored once; the metadata maps "alias:<key>" to it.
inline std::string fixture_key(const std::string& key) {
  const auto& meta = ops_fixture().metadata;
  auto it = meta.find("alias:" + key);
  return it == meta.end() ? key : it->second;
}

inline bool fixture_has(const std::string& key) {
  return ops_fixture().tensors.count(fixture_key(key)) > 0;
}

inline const Tensor& fixture_tensor(const std::string& key) {
  const auto& t = ops_fixture().tensors;
  auto it = t.find(fixture_key(key));
  if (it == t.end()) throw Error("ops.safetensors has no tensor '" + key + "'");
  return it->second;
}

// Fresh copies of the case's inputs; those with a stored gradient require grad (when `grad`).
inline TensorList fixture_inputs(const std::string& name, const std::vector<std::string>& inputs,
                                 bool grad) {
  TensorList xs;
  for (const std::string& in : inputs) {
    Tensor x = fixture_tensor(name + "/" + in).clone();
    if (grad && fixture_has(name + "/grad_" + in)) x.set_requires_grad();
    xs.push_back(x);
  }
  return xs;
}

inline std::size_t fixture_outputs(const std::string& name) {
  std::size_t n = 0;
  while (fixture_has(name + "/out" + std::to_string(n))) ++n;
  return n;
}

// Forward outputs and input gradients of `fn` against the fixture (f32, relative 1e-4).
inline void expect_parity_multi(const std::string& name, const std::vector<std::string>& inputs,
                                const MultiOpFn& fn, float rtol = 1e-4f, float atol = 1e-5f) {
  SCOPED_TRACE("fixture case " + name);
  TensorList xs = fixture_inputs(name, inputs, true);
  const TensorList outs = fn(xs);
  const std::size_t n = fixture_outputs(name);
  ASSERT_GT(n, 0u) << "no outputs stored for " << name;
  ASSERT_EQ(outs.size(), n);
  Tensor loss;
  for (std::size_t i = 0; i < n; ++i) {
    const std::string idx = std::to_string(i);
    EXPECT_TRUE(all_close(outs[i], fixture_tensor(name + "/out" + idx), rtol, atol))
        << "output " << i;
    if (!outs[i].requires_grad()) continue;
    Tensor li = ops::sum(ops::mul(outs[i], fixture_tensor(name + "/R" + idx)));
    loss = loss.defined() ? ops::add(loss, li) : li;
  }
  bool any_grad = false;
  for (std::size_t k = 0; k < inputs.size(); ++k) any_grad = any_grad || xs[k].requires_grad();
  if (!any_grad) return;
  ASSERT_TRUE(loss.defined()) << "the op recorded no gradient";
  loss.backward();
  for (std::size_t k = 0; k < inputs.size(); ++k) {
    if (!xs[k].requires_grad()) continue;
    const Tensor expected = fixture_tensor(name + "/grad_" + inputs[k]);
    const Tensor got = xs[k].grad().defined() ? xs[k].grad() : Tensor::zeros(expected.shape());
    EXPECT_TRUE(all_close(got, expected, rtol, atol)) << "gradient of " << inputs[k];
  }
}

inline void expect_parity(const std::string& name, const std::vector<std::string>& inputs,
                          const std::function<Tensor(const TensorList&)>& fn, float rtol = 1e-4f,
                          float atol = 1e-5f) {
  expect_parity_multi(
      name, inputs, [&](const TensorList& xs) { return TensorList{fn(xs)}; }, rtol, atol);
}

// Forward only, with autograd off (ops may take a different path when no gradient is needed).
inline void expect_forward_parity(const std::string& name, const std::vector<std::string>& inputs,
                                  const std::function<Tensor(const TensorList&)>& fn,
                                  float rtol = 1e-4f, float atol = 1e-5f) {
  SCOPED_TRACE("fixture case " + name + " (no grad)");
  NoGradGuard ng;
  const TensorList xs = fixture_inputs(name, inputs, false);
  EXPECT_TRUE(all_close(fn(xs), fixture_tensor(name + "/out0"), rtol, atol));
}

}  // namespace kiln::test
