// Regression losses. (Classification and likelihood losses live in loss_classification.cpp.)
#include "ops/op_util.hpp"

namespace kiln::ops {
namespace {
Tensor reduce(const Tensor& per_element, Reduction r) {
  switch (r) {
    case Reduction::none:
      return per_element;
    case Reduction::sum:
      return sum(per_element);
    case Reduction::mean:
      return mean(per_element);
  }
  throw Error("loss: unknown reduction");
}

void check_same_shape(const Tensor& a, const Tensor& b, const char* op) {
  detail::require_defined(a, op, "prediction");
  detail::require_defined(b, op, "target");
  KILN_CHECK(a.shape() == b.shape(), op, ": prediction shape ", shape_str(a.shape()),
             " differs from target shape ", shape_str(b.shape()));
}
}  // namespace

Tensor mse_loss(const Tensor& pred, const Tensor& target, Reduction reduction) {
  check_same_shape(pred, target, "mse_loss");
  return reduce(square(sub(pred, target)), reduction);
}

Tensor l1_loss(const Tensor& pred, const Tensor& target, Reduction reduction) {
  check_same_shape(pred, target, "l1_loss");
  return reduce(abs(sub(pred, target)), reduction);
}

}  // namespace kiln::ops
