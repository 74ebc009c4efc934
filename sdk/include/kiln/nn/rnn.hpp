// nn::LSTM and nn::GRU — multi-layer recurrent layers with PyTorch's parameters and semantics.
//
//   kiln::nn::LSTM lstm(/*input_size=*/64, /*hidden_size=*/512, /*num_layers=*/2,
//   /*dropout=*/0.1f); kiln::Philox rng(seed, step, /*stream=*/1);                   // dropout
//   masks (training only) kiln::ops::RnnOutput o = lstm.forward(x, h, c, &rng);          // x [T,
//   N, 64]
//   // o.y [T, N, 512]; o.h, o.c [2, N, 512]: pass o.h.detach(), o.c.detach() to the next chunk
//   lstm.named_parameters();  // weight_ih_l0 [2048, 64], weight_hh_l0 [2048, 512], bias_ih_l0,
//                             // bias_hh_l0 [2048], weight_ih_l1 [2048, 512], ...
//
// Parameters are named and shaped exactly as torch.nn.LSTM / torch.nn.GRU's (gates stacked along
// dim 0: LSTM i, f, g, o; GRU r, z, n), so state dicts move between Kiln and PyTorch unchanged.
// All are initialised U(-1/sqrt(H), 1/sqrt(H)) as PyTorch does, from the given generator.
//
// Maths per layer (x_t the layer input, h_{t-1} its previous hidden state):
//   LSTM: i, f, g, o = σ, σ, tanh, σ (W_ih x_t + b_ih + W_hh h_{t-1} + b_hh) split in four;
//         c_t = f * c_{t-1} + i * g;  h_t = o * tanh(c_t)
//   GRU:  r = σ(W_ir x + b_ir + W_hr h + b_hr);  z = σ(W_iz x + b_iz + W_hz h + b_hz)
//         n = tanh(W_in x + b_in + r * (W_hn h + b_hn));  h_t = (1 - z) * n + z * h_{t-1}
// Layer l > 0 reads layer l-1's outputs, with dropout (probability `dropout`) applied to them in
// training mode; `forward` then needs a Philox generator for the masks.
// Shapes: x [T, N, input_size]; h0, c0 [num_layers, N, hidden_size] or undefined (zeros).
#pragma once

#include <cstdint>

#include "kiln/export.hpp"
#include "kiln/nn/module.hpp"
#include "kiln/ops.hpp"
#include "kiln/random.hpp"

namespace kiln::nn {

// The parameters and sizes LSTM and GRU share (G = 4 gates for LSTM, 3 for GRU).
class KILN_API RnnBase : public Module {
 public:
  std::int64_t input_size() const { return input_size_; }
  std::int64_t hidden_size() const { return hidden_size_; }
  std::int64_t num_layers() const { return num_layers_; }
  float dropout() const { return dropout_; }
  // The parameters as the functional ops take them (handles shared with named_parameters()).
  const ops::RnnWeights& weights() const { return weights_; }

 protected:
  RnnBase(const char* kind, std::int64_t gates, std::int64_t input_size, std::int64_t hidden_size,
          std::int64_t num_layers, float dropout, Generator& gen);

 private:
  std::int64_t input_size_, hidden_size_, num_layers_;
  float dropout_;
  ops::RnnWeights weights_;
};

class KILN_API LSTM : public RnnBase {
 public:
  LSTM(std::int64_t input_size, std::int64_t hidden_size, std::int64_t num_layers = 1,
       float dropout = 0.f, Generator& gen = default_generator());
  // y [T, N, H], h and c [num_layers, N, H]. `rng` is used only for dropout in training mode.
  ops::RnnOutput forward(const Tensor& x, const Tensor& h0 = Tensor(), const Tensor& c0 = Tensor(),
                         Philox* rng = nullptr) const;
};

class KILN_API GRU : public RnnBase {
 public:
  GRU(std::int64_t input_size, std::int64_t hidden_size, std::int64_t num_layers = 1,
      float dropout = 0.f, Generator& gen = default_generator());
  // y [T, N, H], h [num_layers, N, H] (c undefined).
  ops::RnnOutput forward(const Tensor& x, const Tensor& h0 = Tensor(), Philox* rng = nullptr) const;
};

}  // namespace kiln::nn
