// nn::Dropout — inverted dropout that follows the module's training flag.
//
//   kiln::nn::Dropout drop(0.1f);
//   kiln::Philox rng(seed, step, /*stream=*/1);          // the caller owns the randomness
//   kiln::Tensor y = drop.forward(x, rng);               // training: zero w.p. 0.1, scale 1/0.9
//   drop.eval();
//   y = drop.forward(x, rng);                            // evaluation: y is x, rng untouched
//
// In training, each element is zeroed with probability p and the rest are scaled by 1/(1-p);
// the mask depends only on the Philox state (see ops::dropout). p is in [0, 1].
#pragma once

#include "kiln/export.hpp"
#include "kiln/nn/module.hpp"
#include "kiln/random.hpp"

namespace kiln::nn {

class KILN_API Dropout : public Module {
 public:
  explicit Dropout(float p = 0.5f);

  Tensor forward(const Tensor& x, Philox& rng) const;

  float p() const { return p_; }

 private:
  float p_;
};

}  // namespace kiln::nn
