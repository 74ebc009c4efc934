// The evaluation classifier: a small CNN for 28x28 grey images (Fashion-MNIST) whose penultimate
// layer gives the features of FID, KID and k-NN precision/recall.
//
//   conv 3x3 (1 -> c0) BN ReLU, max-pool 2   28 -> 14
//   conv 3x3 (c0 -> c1) BN ReLU, max-pool 2  14 -> 7
//   conv 3x3 (c1 -> c2) BN ReLU, max-pool 2   7 -> 3
//   fc (c2*9 -> hidden) ReLU                  <- features
//   dropout, fc (hidden -> classes)           <- logits
//
// Inputs are [N, 1, 28, 28] in [0, 1]; the model normalises them with Fashion-MNIST's mean and
// standard deviation itself. Parameter names are those of the equivalent PyTorch module
// (conv1.weight, bn1.running_mean, fc1.weight, ...).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "kiln/nn.hpp"
#include "kiln/random.hpp"

namespace kiln_eval {

struct ClassifierOutput {
  kiln::Tensor features;  // [N, hidden]
  kiln::Tensor logits;    // [N, classes]
};

class Classifier : public kiln::nn::Module {
 public:
  Classifier(const std::vector<std::int64_t>& channels, std::int64_t hidden, float dropout,
             std::int64_t classes, kiln::Generator& gen);

  // `rng` drives dropout in training mode (may be null in evaluation mode).
  ClassifierOutput forward(const kiln::Tensor& x, kiln::Philox* rng);

  std::int64_t hidden() const { return hidden_; }
  std::int64_t classes() const { return classes_; }

 private:
  std::shared_ptr<kiln::nn::Conv2d> conv1_, conv2_, conv3_;
  std::shared_ptr<kiln::nn::BatchNorm2d> bn1_, bn2_, bn3_;
  std::shared_ptr<kiln::nn::Linear> fc1_, fc2_;
  std::shared_ptr<kiln::nn::Dropout> drop_;
  std::int64_t hidden_, classes_;
};

// Features and class probabilities of `images` ([N, 1, 28, 28] in [0, 1]) in evaluation mode,
// `batch` images at a time.
struct Predictions {
  std::int64_t n = 0, hidden = 0, classes = 0;
  std::vector<float> features;  // [n, hidden]
  std::vector<float> probs;     // [n, classes]
  std::int64_t argmax(std::int64_t i) const;
};
Predictions predict(Classifier& model, const kiln::Tensor& images, std::int64_t batch);

// A classifier exported by eval/train, rebuilt from the parameters stored in the file.
std::unique_ptr<Classifier> load_classifier(const std::filesystem::path& file);

}  // namespace kiln_eval
