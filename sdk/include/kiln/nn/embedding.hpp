// nn::Embedding — a lookup table of learned vectors, as torch.nn.Embedding.
//
//   kiln::nn::Embedding wte(50257, 768);                 // weight [50257, 768] ~ N(0, 1)
//   kiln::Tensor ids = kiln::Tensor::from_ints({15496, 995}, {1, 2});
//   kiln::Tensor h = wte.forward(ids);                   // [1, 2, 768]
//
// Shapes: ids (s32 or s64, any shape, values in [0, num_embeddings)) -> [..., embedding_dim].
// An id out of range is a kiln::Error naming the id. The weight's gradient is dense [V, D] and
// computed deterministically (see ops::embedding).
#pragma once

#include <cstdint>

#include "kiln/export.hpp"
#include "kiln/nn/module.hpp"
#include "kiln/random.hpp"

namespace kiln::nn {

class KILN_API Embedding : public Module {
 public:
  Embedding(std::int64_t num_embeddings, std::int64_t embedding_dim,
            Generator& gen = default_generator());

  Tensor forward(const Tensor& ids) const;

  std::int64_t num_embeddings() const { return weight.size(0); }
  std::int64_t embedding_dim() const { return weight.size(1); }

  Tensor weight;  // [num_embeddings, embedding_dim]
};

}  // namespace kiln::nn
