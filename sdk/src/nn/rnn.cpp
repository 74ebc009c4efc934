#include "kiln/nn/rnn.hpp"

#include <cmath>
#include <string>

#include "kiln/autograd.hpp"

namespace kiln::nn {

RnnBase::RnnBase(const char* kind, std::int64_t gates, std::int64_t input_size,
                 std::int64_t hidden_size, std::int64_t num_layers, float dropout, Generator& gen)
    : input_size_(input_size),
      hidden_size_(hidden_size),
      num_layers_(num_layers),
      dropout_(dropout) {
  KILN_CHECK(input_size > 0, kind, ": input_size must be positive, got ", input_size);
  KILN_CHECK(hidden_size > 0, kind, ": hidden_size must be positive, got ", hidden_size);
  KILN_CHECK(num_layers >= 1, kind, ": num_layers must be at least 1, got ", num_layers);
  KILN_CHECK(std::isfinite(dropout) && dropout >= 0.f && dropout <= 1.f, kind,
             ": dropout must be in [0, 1], got ", dropout);
  const float bound = 1.f / std::sqrt(static_cast<float>(hidden_size));
  const std::int64_t rows = gates * hidden_size;
  // PyTorch's order: per layer weight_ih, weight_hh, bias_ih, bias_hh.
  for (std::int64_t l = 0; l < num_layers; ++l) {
    const std::string sfx = "_l" + std::to_string(l);
    const std::int64_t in = l == 0 ? input_size : hidden_size;
    auto param = [&](const std::string& name, const Shape& shape) {
      return register_parameter(name + sfx, Tensor::rand(shape, gen, -bound, bound));
    };
    weights_.w_ih.push_back(param("weight_ih", {rows, in}));
    weights_.w_hh.push_back(param("weight_hh", {rows, hidden_size}));
    weights_.b_ih.push_back(param("bias_ih", {rows}));
    weights_.b_hh.push_back(param("bias_hh", {rows}));
  }
}

LSTM::LSTM(std::int64_t input_size, std::int64_t hidden_size, std::int64_t num_layers,
           float dropout, Generator& gen)
    : RnnBase("LSTM", 4, input_size, hidden_size, num_layers, dropout, gen) {}

ops::RnnOutput LSTM::forward(const Tensor& x, const Tensor& h0, const Tensor& c0,
                             Philox* rng) const {
  return ops::lstm(x, h0, c0, weights(), dropout(), is_training(), rng);
}

GRU::GRU(std::int64_t input_size, std::int64_t hidden_size, std::int64_t num_layers, float dropout,
         Generator& gen)
    : RnnBase("GRU", 3, input_size, hidden_size, num_layers, dropout, gen) {}

ops::RnnOutput GRU::forward(const Tensor& x, const Tensor& h0, Philox* rng) const {
  return ops::gru(x, h0, weights(), dropout(), is_training(), rng);
}

}  // namespace kiln::nn
