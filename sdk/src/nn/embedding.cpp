#include "kiln/nn/embedding.hpp"

#include "kiln/nn/init.hpp"
#include "kiln/ops.hpp"

namespace kiln::nn {

Embedding::Embedding(std::int64_t num_embeddings, std::int64_t embedding_dim, Generator& gen) {
  KILN_CHECK(num_embeddings > 0 && embedding_dim > 0,
             "Embedding: num_embeddings and "
             "embedding_dim must be positive, got ",
             num_embeddings, " and ", embedding_dim);
  weight = register_parameter("weight", Tensor::empty({num_embeddings, embedding_dim}));
  init::normal_(weight, gen, 0.f, 1.f);
}

Tensor Embedding::forward(const Tensor& ids) const {
  return ops::embedding(ids, weight);
}

}  // namespace kiln::nn
