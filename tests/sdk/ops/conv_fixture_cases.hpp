// Helpers for the PyTorch fixture cases in tests/fixtures/conv.safetensors (written by
// tests/fixtures/gen/conv_fixture.py), shared by conv_test, pool_test, norm_test and the
// nn module tests.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "support/test_support.hpp"

namespace kiln::test {

inline const TensorMap& conv_fixture() {
  static const TensorMap tensors = load_fixture("conv.safetensors").tensors;
  return tensors;
}

// A fresh copy of fixture tensor `key` (so tests may mark it as requiring grad).
inline Tensor conv_fx(const std::string& key) {
  const TensorMap& t = conv_fixture();
  auto it = t.find(key);
  if (it == t.end()) throw Error("conv.safetensors has no tensor '" + key + "'");
  return it->second.clone();
}

// Runs fn on the inputs `<name>.<input>` (each requiring grad), then checks the output against
// `<name>.out` and the gradients of sum(out * <name>.r) against `<name>.g<input>`.
inline void expect_fixture_case(const std::string& name, const std::vector<std::string>& inputs,
                                const std::function<Tensor(const TensorList&)>& fn,
                                float rtol = 1e-4f, float atol = 2e-5f) {
  SCOPED_TRACE("fixture case " + name);
  TensorList in;
  for (const std::string& k : inputs) in.push_back(conv_fx(name + "." + k).set_requires_grad());
  Tensor out = fn(in);
  EXPECT_TRUE(all_close(out, conv_fx(name + ".out"), rtol, atol)) << "forward";
  ops::sum(ops::mul(out, conv_fx(name + ".r"))).backward();
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    ASSERT_TRUE(in[i].grad().defined()) << "no gradient for " << inputs[i];
    EXPECT_TRUE(all_close(in[i].grad(), conv_fx(name + ".g" + inputs[i]), rtol, atol))
        << "gradient of " << inputs[i];
  }
}

// Every element of `t` bitwise equal to `u` (same shape).
inline ::testing::AssertionResult bitwise_equal(const Tensor& t, const Tensor& u) {
  return all_close(t, u, 0.f, 0.f);
}

}  // namespace kiln::test
