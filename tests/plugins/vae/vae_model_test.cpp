// The vae plugin's model against PyTorch (tests/fixtures/gen/vae_fixture.py), and its helpers.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>

#include "kiln/random.hpp"
#include "model.hpp"
#include "support/test_support.hpp"
#include "tasks.hpp"

namespace kiln::vae {
namespace {

Config small_config() {
  Config c;
  c.channels = {4, 8};
  c.latent = 3;
  c.image_c = 1;
  c.image_h = c.image_w = 8;
  c.beta = 2.f;
  return c;
}

std::shared_ptr<Model> fixture_model(const Safetensors& f, const Config& cfg) {
  auto m = std::make_shared<Model>(cfg, 7);
  TensorMap w;
  for (const auto& [k, t] : m->state_dict()) w[k] = f.tensors.at(k);
  m->load_state_dict(w, true);
  return m;
}

TEST(VaeModel, ParameterNamesAndShapesAreThoseOfThePyTorchPeer) {
  const Safetensors f = test::load_fixture("vae.safetensors");
  const Model m(small_config(), 1);
  std::size_t n = 0;
  for (const auto& [k, t] : m.state_dict()) {
    ASSERT_EQ(f.tensors.count(k), 1u) << k;
    EXPECT_EQ(t.shape(), f.tensors.at(k).shape()) << k;
    ++n;
  }
  EXPECT_EQ(n, 12u);  // 2 convs, 2 deconvs, 2 linears, weight and bias each
  // Workload B3: latent 32, channels 32, 64 on 28x28 has 370,945 parameters (PyTorch counts
  // the same: bench/peers/vae.py).
  EXPECT_EQ(Model(Config{}, 1).num_parameters(), 370945);
}

TEST(VaeModel, LossTermsAndGradientsMatchPyTorch) {
  const Safetensors f = test::load_fixture("vae.safetensors");
  const Config cfg = small_config();
  auto m = fixture_model(f, cfg);
  const Tensor& x = f.tensors.at("x");
  const Encoded e = m->encode(x);
  const Tensor out = m->decoder->forward(m->reparameterize(e, f.tensors.at("eps")));
  const LossTerms t = m->loss_terms(out, x, e);
  EXPECT_TRUE(test::all_close(t.recon, f.tensors.at("recon"), 1e-4f, 1e-3f));
  EXPECT_TRUE(test::all_close(t.kl, f.tensors.at("kl"), 1e-4f, 1e-4f));
  Tensor loss = m->objective(t);
  EXPECT_NEAR(loss.item(), f.tensors.at("loss").item(),
              1e-3 * std::abs(f.tensors.at("loss").item()));
  loss.backward();
  for (const auto& [k, p] : m->named_parameters()) {
    ASSERT_TRUE(p.grad().defined()) << k;
    EXPECT_TRUE(test::all_close(p.grad(), f.tensors.at("grad." + k), 1e-3f, 1e-3f)) << k;
  }
}

TEST(VaeModel, GaussianLikelihoodAndDecodeMatchPyTorch) {
  const Safetensors f = test::load_fixture("vae.safetensors");
  Config cfg = small_config();
  cfg.likelihood = Likelihood::gaussian;
  cfg.sigma = 0.5f;
  auto m = fixture_model(f, cfg);
  const Tensor& x = f.tensors.at("x");
  const Encoded e = m->encode(x);
  const Tensor out = m->decoder->forward(m->reparameterize(e, f.tensors.at("eps")));
  EXPECT_TRUE(
      test::all_close(m->loss_terms(out, x, e).recon, f.tensors.at("recon_gauss"), 1e-4f, 1e-3f));
  NoGradGuard ng;
  EXPECT_TRUE(test::all_close(m->decode_mean(f.tensors.at("z")).contiguous(),
                              f.tensors.at("decoded"), 1e-4f, 1e-5f));
}

TEST(VaeModel, AutoencoderHasNoKlAndADeterministicCode) {
  Config cfg = small_config();
  cfg.mode = Mode::ae;
  Model m(cfg, 3);
  const Tensor x = test::random_tensor({2, 1, 8, 8}, 5, 0.f, 1.f);
  const Encoded e = m.encode(x);
  EXPECT_FALSE(e.logvar.defined());
  EXPECT_EQ(e.mu.shape(), (Shape{2, 3}));
  EXPECT_TRUE(m.reparameterize(e, Tensor::ones({2, 3})).same(e.mu));
  const LossTerms t = m.loss_terms(m.decoder->forward(e.mu), x, e);
  EXPECT_EQ(t.kl.to_vector(), (std::vector<float>{0.f, 0.f}));
}

TEST(VaeModel, ShapesThatDoNotFitTheLayersAreRefused) {
  Config cfg = small_config();
  cfg.image_h = 10;  // not a multiple of 4
  try {
    Model m(cfg, 1);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("multiples of 4"), std::string::npos) << e.what();
  }
  Model m(small_config(), 1);
  try {
    m.encode(Tensor::zeros({1, 1, 16, 16}));
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("1x8x8"), std::string::npos) << e.what();
  }
}

TEST(VaeHelpers, AurocIsTheMannWhitneyStatistic) {
  EXPECT_DOUBLE_EQ(auroc({1, 2, 3, 4}, {false, false, true, true}), 1.0);
  EXPECT_DOUBLE_EQ(auroc({1, 2, 3, 4}, {true, true, false, false}), 0.0);
  EXPECT_DOUBLE_EQ(auroc({5, 5, 5, 5}, {true, false, true, false}), 0.5);
  EXPECT_TRUE(std::isnan(auroc({1, 2}, {true, true})));
  // Against counting pairs directly (ties half) on random scores with many ties.
  Philox rng(3);
  std::vector<double> s;
  std::vector<bool> pos;
  for (int i = 0; i < 300; ++i) {
    s.push_back(static_cast<double>(rng.below(20)));
    pos.push_back(rng.uniform() < 0.3f);
  }
  double wins = 0, pairs = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    for (std::size_t j = 0; j < s.size(); ++j) {
      if (!pos[i] || pos[j]) continue;
      pairs += 1;
      wins += s[i] > s[j] ? 1.0 : s[i] == s[j] ? 0.5 : 0.0;
    }
  }
  EXPECT_NEAR(auroc(s, pos), wins / pairs, 1e-12);
}

TEST(VaeHelpers, CorruptionDependsOnTheKeyAloneAndStaysInRange) {
  const Tensor x = test::random_tensor({4, 1, 8, 8}, 9, 0.f, 1.f);
  for (Noise kind : {Noise::gaussian, Noise::masking, Noise::salt_pepper}) {
    const Tensor all = corrupt(x, {10, 11, 12, 13}, 5, kNoiseStream, kind, 0.4f);
    const Tensor one = corrupt(x.slice(0, 2, 3), {12}, 5, kNoiseStream, kind, 0.4f);
    EXPECT_EQ(all.slice(0, 2, 3).contiguous().to_vector(), one.to_vector());
    for (float v : all.to_vector()) {
      EXPECT_GE(v, 0.f);
      EXPECT_LE(v, 1.f);
    }
    EXPECT_NE(all.to_vector(), x.to_vector());
  }
  // masking at 0.5 zeroes about half of the pixels of a white image
  const Tensor white = Tensor::ones({8, 1, 16, 16});
  const std::vector<float> m =
      corrupt(white, {0, 1, 2, 3, 4, 5, 6, 7}, 1, kNoiseStream, Noise::masking, 0.5f).to_vector();
  const auto zeros = std::count(m.begin(), m.end(), 0.f);
  EXPECT_NEAR(static_cast<double>(zeros) / static_cast<double>(m.size()), 0.5, 0.05);
}

}  // namespace
}  // namespace kiln::vae
