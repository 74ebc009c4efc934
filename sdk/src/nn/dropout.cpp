#include "kiln/nn/dropout.hpp"

#include "kiln/ops.hpp"

namespace kiln::nn {

Dropout::Dropout(float p) : p_(p) {
  KILN_CHECK(p >= 0.f && p <= 1.f, "Dropout: probability p must be in [0, 1], got ", p);
}

Tensor Dropout::forward(const Tensor& x, Philox& rng) const {
  return ops::dropout(x, p_, is_training(), rng);
}

}  // namespace kiln::nn
