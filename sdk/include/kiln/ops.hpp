// Differentiable tensor operations (the functional API; nn/ wraps them in modules).
//
//   namespace ops = kiln::ops;
//   Tensor h = ops::conv2d(x, w, b, {.stride = {2, 2}, .padding = {1, 1}, .act = ops::Act::relu});
//   Tensor p = ops::softmax(ops::linear(h.flatten(1), w2, b2), -1);
//   Tensor loss = ops::cross_entropy(logits, labels);
//
// Shapes follow PyTorch: images are [N, C, H, W], linear weights [out, in], conv weights
// [out, in/groups, kh, kw], conv-transpose weights [in, out/groups, kh, kw], sequences for RNNs
// [T, N, C]. Each op validates its arguments and throws kiln::Error naming the op, the argument
// and the shapes it got. Unless noted, ops take f32 tensors; matmul, linear, conv2d and
// conv_transpose2d also take bf16 (computing in bf16 with f32 accumulation).
//
// Where oneDNN has a primitive, the op uses it (primitives cached by shape; bias and activation
// fused as post-ops); the rest are hand-written and parallelised with TBB.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "kiln/export.hpp"
#include "kiln/tensor.hpp"

namespace kiln {
class Philox;
}

namespace kiln::ops {

// Activations that can be fused into linear / conv as a oneDNN post-op.
// Values are part of the plugin ABI: append only.
enum class Act : std::uint8_t {
  none = 0,
  relu = 1,
  leaky_relu = 2,  // slope `act_alpha`
  tanh = 3,
  sigmoid = 4,
  gelu = 5,       // exact (erf)
  gelu_tanh = 6,  // tanh approximation, as GPT-2
  silu = 7,
};

enum class Reduction : std::uint8_t { none = 0, mean = 1, sum = 2 };

// ---------------------------------------------------------------- elementwise (broadcasting)
// Results are f32. An f32 operand in a dense oneDNN layout (a convolution's output: nChw16c,
// channels-last) keeps that layout in the result when the other operand has the same shape (it
// is reordered into the layout if it differs) or holds one value per channel and / or sample
// ([N, C, 1, 1], [1, C, 1, 1], [C, 1, 1], a scalar); other cases compute on plain data. Call
// contiguous() before reading a result with data<T>().
KILN_API Tensor add(const Tensor& a, const Tensor& b);
KILN_API Tensor sub(const Tensor& a, const Tensor& b);
KILN_API Tensor mul(const Tensor& a, const Tensor& b);
KILN_API Tensor div(const Tensor& a, const Tensor& b);
KILN_API Tensor add_scalar(const Tensor& a, float s);
KILN_API Tensor mul_scalar(const Tensor& a, float s);
KILN_API Tensor neg(const Tensor& a);
KILN_API Tensor exp(const Tensor& a);
KILN_API Tensor log(const Tensor& a);
KILN_API Tensor sqrt(const Tensor& a);
KILN_API Tensor square(const Tensor& a);
KILN_API Tensor abs(const Tensor& a);
KILN_API Tensor pow(const Tensor& a, float exponent);
KILN_API Tensor clamp(const Tensor& a, float lo, float hi);
KILN_API Tensor maximum(const Tensor& a, const Tensor& b);
KILN_API Tensor minimum(const Tensor& a, const Tensor& b);
// where(cond != 0, a, b); cond is not differentiated.
KILN_API Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);

// ---------------------------------------------------------------- activations (oneDNN eltwise)
KILN_API Tensor relu(const Tensor& x);
KILN_API Tensor leaky_relu(const Tensor& x, float slope = 0.01f);
KILN_API Tensor tanh(const Tensor& x);
KILN_API Tensor sigmoid(const Tensor& x);
KILN_API Tensor gelu(const Tensor& x, bool tanh_approximation = false);
KILN_API Tensor silu(const Tensor& x);
KILN_API Tensor softplus(const Tensor& x);
KILN_API Tensor activation(const Tensor& x, Act act, float alpha = 0.f);

// ---------------------------------------------------------------- softmax (oneDNN)
// Over any dimension of an f32 or bf16 tensor (the result keeps x's dtype); a blocked oneDNN
// layout is accepted and kept, so softmax over the channels of a conv output needs no reorder.
KILN_API Tensor softmax(const Tensor& x, std::int64_t dim = -1);
KILN_API Tensor log_softmax(const Tensor& x, std::int64_t dim = -1);

// ---------------------------------------------------------------- reductions
KILN_API Tensor sum(const Tensor& x);  // all elements -> shape {}
KILN_API Tensor sum(const Tensor& x, const std::vector<std::int64_t>& dims, bool keepdim = false);
KILN_API Tensor mean(const Tensor& x);
KILN_API Tensor mean(const Tensor& x, const std::vector<std::int64_t>& dims, bool keepdim = false);
// Max over one dimension (values differentiable; ties send the gradient to the first maximum).
KILN_API Tensor amax(const Tensor& x, std::int64_t dim, bool keepdim = false);
// Index of the maximum along `dim` (s64, not differentiable).
KILN_API Tensor argmax(const Tensor& x, std::int64_t dim, bool keepdim = false);

// ---------------------------------------------------------------- linear algebra (oneDNN matmul)
// Batched matrix product with broadcasting batch dimensions: [..., M, K] x [..., K, N].
// A 1-d operand is promoted as in numpy. Either operand may be a transposed view.
KILN_API Tensor matmul(const Tensor& a, const Tensor& b);
// y = x W^T + b over the last dimension of x: x [..., in], w [out, in], b [out] or undefined.
struct LinearOptions {
  Act act = Act::none;
  float act_alpha = 0.f;
};
KILN_API Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b = Tensor(),
                       const LinearOptions& opts = {});

// ---------------------------------------------------------------- convolution (oneDNN)
struct Conv2dOptions {
  std::array<std::int64_t, 2> stride{1, 1};
  std::array<std::int64_t, 2> padding{0, 0};
  std::array<std::int64_t, 2> dilation{1, 1};
  std::int64_t groups = 1;
  Act act = Act::none;  // fused post-op
  float act_alpha = 0.f;
  // DType::bf16 computes in bf16 even when x and w are f32: x is converted by the reorder the
  // primitive reads it through, and w once into its packed bf16 layout, cached until w changes
  // (so a model keeps f32 master weights and gets f32 weight gradients). f32: x and w decide.
  DType precision = DType::f32;
};
// x [N, Cin, H, W], w [Cout, Cin/groups, kh, kw], b [Cout] or undefined.
// Output [N, Cout, Ho, Wo], Ho = (H + 2 padding - dilation (kh - 1) - 1) / stride + 1.
// The output may hold a blocked oneDNN layout (e.g. nChw16c) that the next conv, norm, pooling,
// activation or element-wise op reads without a reorder; other ops make it plain when they need
// to.
// bf16: when x or w is bf16, both are computed in bf16 (f32 accumulation) and the output is f32;
// gradients come back in each input's dtype. The activation is fused as a post-op unless a
// gradient is needed and it cannot be recovered from the output (gelu, silu), in which case it
// runs as a separate op.
KILN_API Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& b = Tensor(),
                       const Conv2dOptions& opts = {});

struct ConvTranspose2dOptions {
  std::array<std::int64_t, 2> stride{1, 1};
  std::array<std::int64_t, 2> padding{0, 0};
  std::array<std::int64_t, 2> output_padding{0, 0};
  std::array<std::int64_t, 2> dilation{1, 1};
  std::int64_t groups = 1;
  Act act = Act::none;
  float act_alpha = 0.f;
  DType precision = DType::f32;  // as Conv2dOptions::precision
};
// x [N, Cin, H, W], w [Cin, Cout/groups, kh, kw] (PyTorch layout), b [Cout] or undefined.
// Output [N, Cout, Ho, Wo], Ho = (H - 1) stride - 2 padding + dilation (kh - 1) + output_padding
// + 1. output_padding must be smaller than stride or dilation (as PyTorch); oneDNN additionally
// cannot add output rows beyond padding + stride - 1, so output_padding >= padding + stride (only
// possible with dilation > stride) is rejected. Layouts, bf16 and fusion as conv2d.
KILN_API Tensor conv_transpose2d(const Tensor& x, const Tensor& w, const Tensor& b = Tensor(),
                                 const ConvTranspose2dOptions& opts = {});

// ---------------------------------------------------------------- pooling and resampling
// x [N, C, H, W] (f32 or bf16, any layout: the output keeps x's layout and dtype). Floor mode:
// Ho = (H + 2 padding - kernel) / stride + 1; padding at most half the kernel. Max pooling never
// picks a padded position; average pooling divides by kh * kw (count_include_pad) or by the
// number of in-bounds positions. upsample_nearest2d repeats each pixel scale x scale times.
struct Pool2dOptions {
  std::array<std::int64_t, 2> kernel{2, 2};
  std::array<std::int64_t, 2> stride{0, 0};  // 0 = same as kernel
  std::array<std::int64_t, 2> padding{0, 0};
  bool count_include_pad = true;  // avg pooling only
};
KILN_API Tensor max_pool2d(const Tensor& x, const Pool2dOptions& opts);
KILN_API Tensor avg_pool2d(const Tensor& x, const Pool2dOptions& opts);
KILN_API Tensor upsample_nearest2d(const Tensor& x, std::int64_t scale);

// ---------------------------------------------------------------- normalisation (oneDNN)
// Normalisation ops return f32 (a bf16 x is converted). batch_norm and group_norm keep x's
// layout (blocked or plain); layer_norm works on plain data.
//
// Batch norm over channel dim 1 of [N, C, ...]. In training, uses batch statistics and updates
// running_mean / running_var in place (momentum as PyTorch, unbiased running variance); in
// evaluation, uses the running statistics. weight / bias may be undefined (affine off).
// running_mean / running_var (contiguous f32 [C]) may be undefined in training.
KILN_API Tensor batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias,
                           const Tensor& running_mean, const Tensor& running_var, bool training,
                           float momentum = 0.1f, float eps = 1e-5f);
// Normalises over the last `normalized_dims` dimensions; weight/bias have those dims' shape.
KILN_API Tensor layer_norm(const Tensor& x, std::int64_t normalized_dims, const Tensor& weight,
                           const Tensor& bias, float eps = 1e-5f);
// x [N, C, ...], C divisible by groups; weight/bias [C] or undefined.
KILN_API Tensor group_norm(const Tensor& x, std::int64_t groups, const Tensor& weight,
                           const Tensor& bias, float eps = 1e-5f);

// ---------------------------------------------------------------- shape
// concat: same dtype (any), same shape outside `dim`; blocked inputs are joined by oneDNN and
// the result may be blocked. split / chunk return views of x (no copy); chunk follows PyTorch
// (pieces of ceil(n / chunks), so possibly fewer than `chunks`). stack: equal shapes.
KILN_API Tensor concat(const TensorList& xs, std::int64_t dim);
KILN_API TensorList split(const Tensor& x, const std::vector<std::int64_t>& sizes,
                          std::int64_t dim);
KILN_API TensorList chunk(const Tensor& x, std::int64_t chunks, std::int64_t dim);
KILN_API Tensor stack(const TensorList& xs, std::int64_t dim);

// ---------------------------------------------------------------- regularisation
// Inverted dropout: zeroes each element with probability p and scales the rest by 1/(1-p).
// The mask comes from `rng`; identity when !training or p == 0 (rng untouched); p == 1 gives
// zeros. The call draws one 64-bit key from rng; element i is kept when word (i % 32) / 8 of
// the Philox4x32-10 block with counter {i / 32 * 8 + i % 8, 0, 0, 0} under that key is
// >= p * 2^32. So the mask depends on (rng state, i) only, never on the thread count.
KILN_API Tensor dropout(const Tensor& x, float p, bool training, Philox& rng);

// ---------------------------------------------------------------- embedding
// ids: s32 or s64 of any shape, values in [0, weight.size(0)); weight [V, D] (f32 or bf16)
// -> [..., D] in weight's dtype. The weight gradient is dense [V, D] and bitwise deterministic.
KILN_API Tensor embedding(const Tensor& ids, const Tensor& weight);

// ---------------------------------------------------------------- attention
// q [..., Lq, D], k [..., Lk, D], v [..., Lk, Dv] -> [..., Lq, Dv].
// softmax(q k^T * scale + mask) v; `causal` masks key positions j > i + (Lk - Lq), so a query
// block appended to a cache attends to every cached key. `mask` (optional) is added to the
// scores and broadcasts to [..., Lq, Lk]. scale <= 0 means 1/sqrt(D). Batch dims of q, k, v
// broadcast. f32 or bf16 operands; the result is f32. A query row with no admissible key (every
// score -inf) gives zeros. Without autograd and for Lq <= 16 (cached decoding) a fused kernel
// reads k and v (which may be strided views of a preallocated cache, f32 or bf16) exactly once.
KILN_API Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                             bool causal = false, const Tensor& mask = Tensor(),
                                             float scale = 0.f);

// ---------------------------------------------------------------- recurrent (oneDNN RNN)
// Weights per layer as PyTorch names them: w_ih [G*H, in], w_hh [G*H, H], b_ih [G*H], b_hh [G*H]
// with G = 4 for LSTM (gates i, f, g, o) and G = 3 for GRU (gates r, z, n; PyTorch semantics,
// i.e. oneDNN's linear-before-reset GRU).
struct RnnWeights {
  TensorList w_ih, w_hh, b_ih, b_hh;  // one entry per layer
};
struct RnnOutput {
  Tensor y;  // [T, N, H] outputs of the last layer
  Tensor h;  // [L, N, H] final hidden states
  Tensor c;  // [L, N, H] final cell states (LSTM only)
};
// x [T, N, in]; h0, c0 [L, N, H] or undefined (zeros). `dropout` applies between layers in
// training, drawing its masks from `rng` (which may be null when dropout == 0) and advancing it.
// Weights and biases are f32; b_ih / b_hh may be empty (no biases). Gradients reach x, h0, c0
// (also when they are computed by earlier ops) and every weight and bias.
KILN_API RnnOutput lstm(const Tensor& x, const Tensor& h0, const Tensor& c0, const RnnWeights& w,
                        float dropout = 0.f, bool training = false, Philox* rng = nullptr);
KILN_API RnnOutput gru(const Tensor& x, const Tensor& h0, const RnnWeights& w, float dropout = 0.f,
                       bool training = false, Philox* rng = nullptr);
// The same with a compute precision. DType::bf16 runs oneDNN's bf16 RNN primitives: the layer
// inputs and outputs, the hidden states and the weights in bf16 (each weight's packed bf16 copy
// is cached on it until it is written), the LSTM cell state, the biases and the accumulation in
// f32; the results are f32. It is for inference: when an input or a weight requires a gradient,
// bf16 is an error. DType::f32 is the overloads above.
KILN_API RnnOutput lstm(const Tensor& x, const Tensor& h0, const Tensor& c0, const RnnWeights& w,
                        DType precision, float dropout = 0.f, bool training = false,
                        Philox* rng = nullptr);
KILN_API RnnOutput gru(const Tensor& x, const Tensor& h0, const RnnWeights& w, DType precision,
                       float dropout = 0.f, bool training = false, Philox* rng = nullptr);

// int8 LSTM inference on oneDNN's u8/s8 RNN primitives (VNNI dot products where the CPU has
// them). Construction takes a snapshot of the weights (later writes to them are not seen) and
// quantizes each layer's gate rows [input_bound * w_ih[r] | w_hh[r]] to s8, one scale per row
// (weight_max() / max |row|: 127 where oneDNN uses VNNI, 63 on CPUs without it, whose u8 x s8
// instructions add product pairs in saturating 16-bit lanes). Layer inputs and hidden states travel
// as u8 = round(127 v + 128) for v in
// [-1, 1]: hidden states are in that range by construction (o * tanh(c)); the first layer's
// input is divided by `input_bound` first, and values beyond the bound saturate. Cell states,
// biases and the gate arithmetic stay f32. Results are f32 (y and h are multiples of 1/127).
// Inference only: an input that requires a gradient is an error. Calls from several threads run
// one at a time. Shapes as lstm() above; oneDNN's packed weights are prepared per (T, N, has
// state) and kept (the last eight shapes).
class KILN_API Int8Lstm {
 public:
  explicit Int8Lstm(const RnnWeights& w, float input_bound = 1.f);
  ~Int8Lstm();
  Int8Lstm(const Int8Lstm&) = delete;
  Int8Lstm& operator=(const Int8Lstm&) = delete;

  RnnOutput forward(const Tensor& x, const Tensor& h0 = Tensor(),
                    const Tensor& c0 = Tensor()) const;
  std::int64_t num_layers() const;
  std::int64_t input_size() const;
  std::int64_t hidden_size() const;
  float input_bound() const;
  float weight_max() const;  // the largest |s8 weight|: 127, or 63 without VNNI

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// ---------------------------------------------------------------- losses
KILN_API Tensor mse_loss(const Tensor& pred, const Tensor& target,
                         Reduction reduction = Reduction::mean);
KILN_API Tensor l1_loss(const Tensor& pred, const Tensor& target,
                        Reduction reduction = Reduction::mean);
// prob in [0, 1] (a value outside is an error); log terms clamped at -100 as PyTorch does.
// Both losses are differentiable in the target too.
KILN_API Tensor bce_loss(const Tensor& prob, const Tensor& target,
                         Reduction reduction = Reduction::mean);
KILN_API Tensor bce_with_logits(const Tensor& logits, const Tensor& target,
                                Reduction reduction = Reduction::mean);
// logits [N, C] (or [N, C, d1, ...]), target integer class ids [N] (or [N, d1, ...]).
// Targets equal to ignore_index contribute nothing; mean divides by the non-ignored count (so
// a batch whose targets are all ignored gives NaN, as PyTorch). label_smoothing eps in [0, 1]:
// the loss is (1 - eps) * nll + eps * mean over classes of -log p, as PyTorch. A 1-d [C] logit
// vector takes a 0-d target. Targets may be s64, s32 or u8.
KILN_API Tensor cross_entropy(const Tensor& logits, const Tensor& target,
                              Reduction reduction = Reduction::mean,
                              std::int64_t ignore_index = -100, float label_smoothing = 0.f);
// KL( N(mu, exp(logvar)) || N(0, 1) ) = -0.5 * sum(1 + logvar - mu^2 - exp(logvar)); `mean`
// divides by the batch size (dim 0), as the VAE literature reports per-example KL; `none`
// returns the per-element terms (mu's shape).
KILN_API Tensor gaussian_kl(const Tensor& mu, const Tensor& logvar,
                            Reduction reduction = Reduction::mean);

}  // namespace kiln::ops
