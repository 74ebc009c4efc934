// Helpers shared by the vae plugin's tasks: corruption, scoring, AUROC, images.
#include <algorithm>
#include <cmath>

#include "kiln/autograd.hpp"
#include "kiln/image.hpp"
#include "kiln/ops.hpp"
#include "kiln/random.hpp"
#include "tasks.hpp"

namespace kiln::vae {

Noise noise_from(const std::string& name) {
  if (name == "masking") return Noise::masking;
  if (name == "salt_pepper") return Noise::salt_pepper;
  return Noise::gaussian;
}

ParamSpec noise_kind_param() {
  return ParamSpec::choice("noise_kind", "gaussian", {"gaussian", "masking", "salt_pepper"},
                           "Corruption: gaussian (additive, clamped to [0, 1]), masking (pixels "
                           "set to 0) or salt_pepper (pixels set to 0 or 1)");
}

Tensor corrupt(const Tensor& x_in, const std::vector<std::int64_t>& keys, std::uint64_t seed,
               std::uint64_t stream, Noise kind, float level) {
  const Tensor x = x_in.detach().contiguous();
  KILN_CHECK(x.dim() >= 1 && x.size(0) == static_cast<std::int64_t>(keys.size()),
             "vae: corrupt: ", keys.size(), " keys for a batch of shape ", shape_str(x.shape()));
  Tensor y = x.clone();
  const std::int64_t b = x.size(0);
  const std::int64_t per = b > 0 ? x.numel() / b : 0;
  float* out = y.data<float>();
  for (std::int64_t r = 0; r < b; ++r) {
    Philox rng(seed, static_cast<std::uint64_t>(keys[static_cast<std::size_t>(r)]), stream);
    float* row = out + r * per;
    for (std::int64_t i = 0; i < per; ++i) {
      switch (kind) {
        case Noise::gaussian:
          row[i] = std::clamp(row[i] + level * rng.normal(), 0.f, 1.f);
          break;
        case Noise::masking:
          if (rng.uniform() < level) row[i] = 0.f;
          break;
        case Noise::salt_pepper: {
          const float u = rng.uniform();
          if (u < level) row[i] = u < level * 0.5f ? 0.f : 1.f;
          break;
        }
      }
    }
  }
  return y;
}

Scores score_batch(const Model& m, const Tensor& x, const std::vector<std::int64_t>& keys,
                   std::uint64_t seed, bool posterior_mean) {
  NoGradGuard ng;
  const Config& cfg = m.config();
  const Encoded e = m.encode(x);
  Tensor z = e.mu;
  if (cfg.variational() && !posterior_mean) {
    z = m.reparameterize(e, randn_for_samples(keys, {cfg.latent}, seed, kEvalStream));
  }
  const Tensor out = m.decoder->forward(z);
  const LossTerms t = m.loss_terms(out, x, e);
  Scores s;
  s.recon = t.recon.to_vector();
  s.kl = t.kl.to_vector();
  s.nelbo.resize(s.recon.size());
  for (std::size_t i = 0; i < s.recon.size(); ++i) s.nelbo[i] = s.recon[i] + s.kl[i];
  return s;
}

double auroc(const std::vector<double>& scores, const std::vector<bool>& positive) {
  KILN_CHECK(scores.size() == positive.size(), "auroc: ", scores.size(), " scores for ",
             positive.size(), " labels");
  std::vector<std::size_t> order(scores.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(),
            [&](std::size_t a, std::size_t b) { return scores[a] < scores[b]; });
  // Sum of the (tie-averaged, 1-based) ranks of the positives.
  double rank_sum = 0, n_pos = 0;
  for (std::size_t i = 0; i < order.size();) {
    std::size_t j = i;
    while (j < order.size() && scores[order[j]] == scores[order[i]]) ++j;
    const double avg_rank = (static_cast<double>(i + 1) + static_cast<double>(j)) / 2.0;
    for (std::size_t k = i; k < j; ++k) {
      if (positive[order[k]]) {
        rank_sum += avg_rank;
        n_pos += 1;
      }
    }
    i = j;
  }
  const double n_neg = static_cast<double>(scores.size()) - n_pos;
  if (n_pos == 0 || n_neg == 0) return std::nan("");
  return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg);
}

Image row_image(const Tensor& batch, std::int64_t row) {
  return tensor_to_image(batch.select(0, row).contiguous(), 0.f, 1.f);
}

Image hstack(const std::vector<Image>& images, int gap) {
  KILN_CHECK(!images.empty(), "vae: hstack of no images");
  Image out;
  out.height = images[0].height;
  out.channels = images[0].channels;
  for (const Image& im : images) {
    KILN_CHECK(im.height == out.height && im.channels == out.channels,
               "vae: hstack: images of different heights or channels");
    out.width += im.width;
  }
  out.width += gap * static_cast<int>(images.size() - 1);
  out.pixels.assign(static_cast<std::size_t>(out.width) * out.height * out.channels, 0);
  int x0 = 0;
  for (const Image& im : images) {
    for (int y = 0; y < im.height; ++y) {
      std::copy(im.at(y, 0), im.at(y, 0) + static_cast<std::size_t>(im.width) * im.channels,
                out.at(y, x0));
    }
    x0 += im.width + gap;
  }
  return out;
}

}  // namespace kiln::vae
