#include "model.hpp"

#include "kiln/ops.hpp"

namespace kiln_gan {

namespace nn = kiln::nn;
namespace ops = kiln::ops;
using kiln::Tensor;

Generator::Generator(const GanSizes& s, kiln::Generator& gen) : s_(s) {
  const std::int64_t in = s.nz + (s.classes > 0 ? s.embed : 0);
  const ops::ConvTranspose2dOptions up{.stride = {2, 2}, .padding = {1, 1}};
  convt1_ =
      register_module("convt1", std::make_shared<nn::ConvTranspose2d>(
                                    in, 4 * s.ngf, 7, ops::ConvTranspose2dOptions{}, false, gen));
  bn1_ = register_module("bn1", std::make_shared<nn::BatchNorm2d>(4 * s.ngf));
  convt2_ = register_module(
      "convt2", std::make_shared<nn::ConvTranspose2d>(4 * s.ngf, 2 * s.ngf, 4, up, false, gen));
  bn2_ = register_module("bn2", std::make_shared<nn::BatchNorm2d>(2 * s.ngf));
  convt3_ = register_module(
      "convt3", std::make_shared<nn::ConvTranspose2d>(2 * s.ngf, s.ngf, 4, up, false, gen));
  bn3_ = register_module("bn3", std::make_shared<nn::BatchNorm2d>(s.ngf));
  convt4_ = register_module(
      "convt4", std::make_shared<nn::ConvTranspose2d>(
                    s.ngf, 1, 3, ops::ConvTranspose2dOptions{.padding = {1, 1}}, false, gen));
  if (s.classes > 0) {
    embed_ = register_module("embed", std::make_shared<nn::Embedding>(s.classes, s.embed, gen));
  }
}

Tensor Generator::forward(const Tensor& z, const Tensor& labels) {
  const std::int64_t n = z.size(0);
  Tensor in = z;
  if (embed_) in = ops::concat({z, embed_->forward(labels)}, 1);
  Tensor h = in.reshape({n, in.size(1), 1, 1});
  h = ops::relu(bn1_->forward(convt1_->forward(h, compute_)));
  h = ops::relu(bn2_->forward(convt2_->forward(h, compute_)));
  h = ops::relu(bn3_->forward(convt3_->forward(h, compute_)));
  return ops::tanh(convt4_->forward(h));
}

Discriminator::Discriminator(const GanSizes& s, kiln::Generator& gen) : s_(s) {
  const ops::Conv2dOptions down{.stride = {2, 2}, .padding = {1, 1}};
  conv1_ = register_module(
      "conv1",
      std::make_shared<nn::Conv2d>(
          1, s.ndf, 4,
          ops::Conv2dOptions{
              .stride = {2, 2}, .padding = {1, 1}, .act = ops::Act::leaky_relu, .act_alpha = 0.2f},
          false, gen));
  conv2_ =
      register_module("conv2", std::make_shared<nn::Conv2d>(s.ndf, 2 * s.ndf, 4, down, false, gen));
  bn2_ = register_module("bn2", std::make_shared<nn::BatchNorm2d>(2 * s.ndf));
  conv3_ = register_module("conv3",
                           std::make_shared<nn::Conv2d>(2 * s.ndf, 4 * s.ndf, 3, down, false, gen));
  bn3_ = register_module("bn3", std::make_shared<nn::BatchNorm2d>(4 * s.ndf));
  conv4_ = register_module(
      "conv4", std::make_shared<nn::Conv2d>(4 * s.ndf, 1, 4, ops::Conv2dOptions{}, false, gen));
  if (s.classes > 0) {
    embed_ = register_module("embed", std::make_shared<nn::Embedding>(s.classes, 4 * s.ndf, gen));
  }
}

Tensor Discriminator::forward(const Tensor& x, const Tensor& labels) {
  Tensor h = conv1_->forward(x);
  h = ops::leaky_relu(bn2_->forward(conv2_->forward(h)), 0.2f);
  h = ops::leaky_relu(bn3_->forward(conv3_->forward(h)), 0.2f);
  Tensor logit = conv4_->forward(h).reshape({x.size(0)});
  if (embed_) {
    const Tensor phi = ops::sum(h, {2, 3});  // [N, 4 ndf]
    logit = ops::add(logit, ops::sum(ops::mul(phi, embed_->forward(labels)), {1}));
  }
  return logit;
}

StepLosses dcgan_step(Generator& g, Discriminator& d, kiln::optim::Optimizer& opt_g,
                      kiln::optim::Optimizer& opt_d, const Tensor& real, const Tensor& labels,
                      const Tensor& z, bool hinge) {
  const std::int64_t n = real.size(0);
  g.train();
  d.train();
  StepLosses s;
  opt_d.zero_grad();
  s.d_real = d.forward(real, labels);
  const Tensor fake = g.forward(z, labels);
  s.d_fake = d.forward(fake.detach(), labels);
  if (hinge) {
    s.loss_d = ops::add(ops::mean(ops::relu(ops::add_scalar(ops::neg(s.d_real), 1.f))),
                        ops::mean(ops::relu(ops::add_scalar(s.d_fake, 1.f))));
  } else {
    s.loss_d = ops::add(ops::bce_with_logits(s.d_real, Tensor::ones({n})),
                        ops::bce_with_logits(s.d_fake, Tensor::zeros({n})));
  }
  s.loss_d.backward();
  opt_d.step();
  opt_g.zero_grad();
  const Tensor d_gen = d.forward(fake, labels);
  s.loss_g = hinge ? ops::neg(ops::mean(d_gen)) : ops::bce_with_logits(d_gen, Tensor::ones({n}));
  s.loss_g.backward();
  opt_g.step();
  return s;
}

void dcgan_init(nn::Module& m, kiln::Generator& gen) {
  for (auto& [name, t] : m.named_parameters()) {
    const bool bn = name.rfind("bn", 0) == 0;
    const bool embed = name.rfind("embed", 0) == 0;
    const bool bias = name.size() >= 4 && name.substr(name.size() - 4) == "bias";
    if (bn && bias) {
      nn::init::zeros_(t);
    } else if (bn) {
      nn::init::normal_(t, gen, 1.f, 0.02f);
    } else if (embed) {
      // The generator's label embedding stays N(0, 1) like z; the projection starts small.
      if (t.size(1) != 0 && dynamic_cast<Discriminator*>(&m) != nullptr) {
        nn::init::normal_(t, gen, 0.f, 0.02f);
      }
    } else {
      nn::init::normal_(t, gen, 0.f, 0.02f);
    }
  }
}

}  // namespace kiln_gan
