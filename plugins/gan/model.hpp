// DCGAN for 28x28 grey images (the B1/B2 workload of the peer benchmarks), optionally
// class-conditional.
//
// Generator (z [N, nz] -> [N, 1, 28, 28] in [-1, 1]); conditional: z is concatenated with a
// learned label embedding [N, embed]:
//   convt1 ConvT(nz(+embed) -> 4 ngf, k7, s1, p0) BN ReLU    1 -> 7
//   convt2 ConvT(4 ngf -> 2 ngf, k4, s2, p1)      BN ReLU    7 -> 14
//   convt3 ConvT(2 ngf -> ngf, k4, s2, p1)        BN ReLU   14 -> 28
//   convt4 ConvT(ngf -> 1, k3, s1, p1)            tanh
// Discriminator ([N, 1, 28, 28] -> logits [N]); conditional: a projection term
// <embed(y), sum over positions of h3> is added to the logit (Miyato & Koyama 2018):
//   conv1 Conv(1 -> ndf, k4, s2, p1)             LReLU(0.2)   28 -> 14
//   conv2 Conv(ndf -> 2 ndf, k4, s2, p1)      BN LReLU(0.2)   14 -> 7
//   conv3 Conv(2 ndf -> 4 ndf, k3, s2, p1)    BN LReLU(0.2)    7 -> 4   (h3)
//   conv4 Conv(4 ndf -> 1, k4, s1, p0)                         4 -> 1
// Convolutions have no bias (as examples/dcgan); the sigmoid of the workload is folded into
// the loss (BCE with logits). Initialisation as examples/dcgan: conv weights N(0, 0.02), BN
// weights N(1, 0.02), BN biases 0, embeddings N(0, 1) (generator) and N(0, 0.02)
// (discriminator's projection).
#pragma once

#include <cstdint>
#include <memory>

#include "kiln/nn.hpp"
#include "kiln/optim.hpp"

namespace kiln_gan {

struct GanSizes {
  std::int64_t nz = 100, ngf = 64, ndf = 64, classes = 0, embed = 0;  // classes 0: unconditional
};

class Generator : public kiln::nn::Module {
 public:
  Generator(const GanSizes& s, kiln::Generator& gen);
  // z [N, nz]; labels s64 [N] (ignored when unconditional).
  kiln::Tensor forward(const kiln::Tensor& z, const kiln::Tensor& labels);
  const GanSizes& sizes() const { return s_; }
  // bf16: convt1-3 compute in bf16 from the f32 weights (f32 accumulation and outputs; the batch
  // norms stay f32). convt4, with one output channel, stays on the f32 GEMM route, which is
  // faster there than oneDNN's bf16 deconvolution.
  void set_compute_dtype(kiln::DType dt) { compute_ = dt; }

 private:
  GanSizes s_;
  kiln::DType compute_ = kiln::DType::f32;
  std::shared_ptr<kiln::nn::ConvTranspose2d> convt1_, convt2_, convt3_, convt4_;
  std::shared_ptr<kiln::nn::BatchNorm2d> bn1_, bn2_, bn3_;
  std::shared_ptr<kiln::nn::Embedding> embed_;
};

class Discriminator : public kiln::nn::Module {
 public:
  Discriminator(const GanSizes& s, kiln::Generator& gen);
  // x [N, 1, 28, 28] in [-1, 1] -> logits [N].
  kiln::Tensor forward(const kiln::Tensor& x, const kiln::Tensor& labels);

 private:
  GanSizes s_;
  std::shared_ptr<kiln::nn::Conv2d> conv1_, conv2_, conv3_, conv4_;
  std::shared_ptr<kiln::nn::BatchNorm2d> bn2_, bn3_;
  std::shared_ptr<kiln::nn::Embedding> embed_;
};

// One training step of the examples/dcgan loop (see train_task.cpp): D on `real` (in [-1, 1])
// and on G(z) detached, an Adam step on D, then G's loss through D and an Adam step on G.
struct StepLosses {
  kiln::Tensor loss_d, loss_g, d_real, d_fake;  // losses (scalars) and D's logits [N]
};
StepLosses dcgan_step(Generator& g, Discriminator& d, kiln::optim::Optimizer& opt_g,
                      kiln::optim::Optimizer& opt_d, const kiln::Tensor& real,
                      const kiln::Tensor& labels, const kiln::Tensor& z, bool hinge);

// examples/dcgan's weights_init over every module's parameters (by name).
void dcgan_init(kiln::nn::Module& m, kiln::Generator& gen);

}  // namespace kiln_gan
