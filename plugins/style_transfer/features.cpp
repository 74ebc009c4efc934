#include "features.hpp"

#include <algorithm>
#include <cmath>
#include <set>
#include <sstream>

#include "kiln/error.hpp"
#include "kiln/ops.hpp"
#include "kiln/random.hpp"
#include "kiln/safetensors.hpp"

namespace kiln::style {
namespace {

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

// Index of the deepest wanted layer in `order`.
std::size_t deepest(const std::vector<std::string>& order, const std::vector<std::string>& wanted) {
  std::size_t last = 0;
  for (const auto& w : wanted) {
    const auto it = std::find(order.begin(), order.end(), w);
    last = std::max(last, static_cast<std::size_t>(it - order.begin()));
  }
  return last;
}

bool contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

// ------------------------------------------------------------------------------ random net

class RandomNet final : public FeatureNet {
 public:
  explicit RandomNet(const RandomNetOptions& o) : o_(o) {
    KILN_CHECK(o.levels >= 1 && o.levels <= 8, "style_transfer: random_levels must be 1..8, got ",
               o.levels);
    KILN_CHECK(o.width >= 2 && o.width <= 1024,
               "style_transfer: random_width must be 2..1024, got ", o.width);
    const std::int64_t c1 = std::max(1, o.width / 2), c2 = o.width;
    for (int l = 0; l < o.levels; ++l) {
      w1_.push_back(random_weight({c1, 3, 5, 5}, static_cast<std::uint64_t>(l), 0));
      w2_.push_back(random_weight({c2, c1, 3, 3}, static_cast<std::uint64_t>(l), 1));
      names_.push_back("s" + std::to_string(l) + "_1");
      names_.push_back("s" + std::to_string(l) + "_2");
    }
  }
  std::string name() const override { return "random"; }
  std::vector<std::string> layers() const override { return names_; }

  FeatureMap forward(const Tensor& x, const std::vector<std::string>& wanted) const override {
    check_layers(wanted, "layers");
    FeatureMap out;
    if (wanted.empty()) return out;
    const std::size_t last = deepest(names_, wanted);
    Tensor level = ops::add_scalar(x, -0.5f);
    for (int l = 0; l < o_.levels && static_cast<std::size_t>(2 * l) <= last; ++l) {
      if (l > 0) level = ops::avg_pool2d(level, {.kernel = {2, 2}});
      const Tensor h1 =
          ops::conv2d(level, w1_[l], Tensor(), {.padding = {2, 2}, .act = ops::Act::relu});
      if (contains(wanted, names_[2 * l])) out[names_[2 * l]] = h1;
      if (static_cast<std::size_t>(2 * l + 1) > last) break;
      const Tensor h2 =
          ops::conv2d(h1, w2_[l], Tensor(), {.padding = {1, 1}, .act = ops::Act::relu});
      if (contains(wanted, names_[2 * l + 1])) out[names_[2 * l + 1]] = h2;
    }
    return out;
  }
  std::vector<std::string> default_content_layers() const override {
    return {"s" + std::to_string(std::min(2, o_.levels - 1)) + "_2"};
  }
  std::vector<std::string> default_style_layers() const override {
    std::vector<std::string> v;
    for (int l = 0; l < o_.levels; ++l) {
      v.push_back("s" + std::to_string(l) + "_1");
      v.push_back("s" + std::to_string(l) + "_2");
    }
    return v;
  }
  std::vector<std::string> default_dream_layers() const override {
    return {"s" + std::to_string(o_.levels - 1) + "_2"};
  }
  double floats_per_pixel() const override {
    double f = 0, area = 1;
    for (int l = 0; l < o_.levels; ++l) {
      f += (3.0 + o_.width / 2 + o_.width) * area;
      area /= 4;
    }
    return f;
  }

 private:
  Tensor random_weight(const Shape& shape, std::uint64_t level, std::uint64_t layer) const {
    Tensor w = Tensor::empty(shape);
    const std::int64_t fan_in = shape[1] * shape[2] * shape[3];
    Philox rng(o_.seed, level, layer);
    rng.fill_normal(w.data<float>(), w.numel(), 0.f,
                    static_cast<float>(std::sqrt(2.0 / static_cast<double>(fan_in))));
    return w;
  }

  RandomNetOptions o_;
  std::vector<Tensor> w1_, w2_;
  std::vector<std::string> names_;
};

// ------------------------------------------------------------------------------ VGG-19

struct VggLayer {
  enum Kind { conv, relu, pool } kind;
  std::string name;
  int index = -1;  // index into the weights, for conv layers
};

class Vgg19 final : public FeatureNet {
 public:
  Vgg19(std::vector<Tensor> w, std::vector<Tensor> b, bool avg)
      : w_(std::move(w)), b_(std::move(b)), avg_(avg) {
    const int per_block[5] = {2, 2, 4, 4, 4};
    int c = 0;
    for (int blk = 0; blk < 5; ++blk) {
      for (int i = 0; i < per_block[blk]; ++i) {
        const std::string suffix = std::to_string(blk + 1) + "_" + std::to_string(i + 1);
        layers_.push_back({VggLayer::conv, "conv" + suffix, c++});
        layers_.push_back({VggLayer::relu, "relu" + suffix, -1});
      }
      layers_.push_back({VggLayer::pool, "pool" + std::to_string(blk + 1), -1});
    }
    for (const auto& l : layers_) names_.push_back(l.name);
    const Tensor mean = Tensor::from_vector({0.485f, 0.456f, 0.406f}, {1, 3, 1, 1});
    const Tensor inv_std = Tensor::from_vector({1 / 0.229f, 1 / 0.224f, 1 / 0.225f}, {1, 3, 1, 1});
    mean_ = mean;
    inv_std_ = inv_std;
  }
  std::string name() const override { return "vgg19"; }
  std::vector<std::string> layers() const override { return names_; }

  FeatureMap forward(const Tensor& x, const std::vector<std::string>& wanted) const override {
    check_layers(wanted, "layers");
    FeatureMap out;
    if (wanted.empty()) return out;
    const std::size_t last = deepest(names_, wanted);
    Tensor h = ops::mul(ops::sub(x, mean_), inv_std_);
    for (std::size_t i = 0; i <= last; ++i) {
      const VggLayer& l = layers_[i];
      if (l.kind == VggLayer::conv) {
        // Fuse the ReLU unless the pre-activation itself is wanted.
        const bool fuse = !contains(wanted, l.name);
        h = ops::conv2d(h, w_[l.index], b_[l.index],
                        {.padding = {1, 1}, .act = fuse ? ops::Act::relu : ops::Act::none});
        if (!fuse) out[l.name] = h;
        if (fuse) {
          ++i;  // the relu layer is done
          if (contains(wanted, layers_[i].name)) out[layers_[i].name] = h;
        }
      } else if (l.kind == VggLayer::relu) {
        h = ops::relu(h);
        if (contains(wanted, l.name)) out[l.name] = h;
      } else {
        h = avg_ ? ops::avg_pool2d(h, {.kernel = {2, 2}}) : ops::max_pool2d(h, {.kernel = {2, 2}});
        if (contains(wanted, l.name)) out[l.name] = h;
      }
    }
    return out;
  }
  std::vector<std::string> default_content_layers() const override { return {"relu4_2"}; }
  std::vector<std::string> default_style_layers() const override {
    return {"relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"};
  }
  std::vector<std::string> default_dream_layers() const override { return {"relu4_2"}; }
  double floats_per_pixel() const override {
    double f = 3, area = 1;
    for (const auto& l : layers_) {
      if (l.kind == VggLayer::conv) f += static_cast<double>(w_[l.index].size(0)) * area;
      if (l.kind == VggLayer::pool) area /= 4;
    }
    return f;
  }

 private:
  std::vector<Tensor> w_, b_;
  bool avg_;
  std::vector<VggLayer> layers_;
  std::vector<std::string> names_;
  Tensor mean_, inv_std_;
};

}  // namespace

void FeatureNet::check_layers(const std::vector<std::string>& names, const std::string& key) const {
  const std::vector<std::string> all = layers();
  for (const auto& n : names) {
    KILN_CHECK(contains(all, n), "style_transfer: '", key, "' names layer '", n, "', which the '",
               name(), "' feature net does not have; its layers are ", join(all));
  }
}

std::unique_ptr<FeatureNet> make_random_net(const RandomNetOptions& opts) {
  return std::make_unique<RandomNet>(opts);
}

const std::vector<int>& vgg19_conv_indices() {
  static const std::vector<int> idx = {0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34};
  return idx;
}

std::unique_ptr<FeatureNet> load_vgg19(const std::filesystem::path& file, bool average_pooling) {
  Safetensors st = load_safetensors(file);
  std::vector<Tensor> w, b;
  std::int64_t in = 3;
  for (int idx : vgg19_conv_indices()) {
    const std::string wk = "features." + std::to_string(idx) + ".weight";
    const std::string bk = "features." + std::to_string(idx) + ".bias";
    for (const auto& k : {wk, bk}) {
      if (st.tensors.count(k) == 0) {
        std::vector<std::string> some;
        for (const auto& [name, t] : st.tensors) {
          if (some.size() < 6) some.push_back(name);
        }
        throw Error("style_transfer: '" + file.string() + "' has no tensor '" + k +
                    "'; a VGG-19 file needs torchvision's names features.N.weight and "
                    "features.N.bias for N in 0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, "
                    "30, 32, 34 (the file has " +
                    std::to_string(st.tensors.size()) + " tensors" +
                    (some.empty() ? std::string() : ", e.g. " + join(some)) + ")");
      }
    }
    Tensor wt = st.tensors.at(wk), bt = st.tensors.at(bk);
    KILN_CHECK(wt.dtype() == DType::f32 && bt.dtype() == DType::f32, "style_transfer: '",
               file.string(), "': '", wk, "' and '", bk, "' must be floating point");
    KILN_CHECK(wt.dim() == 4 && wt.size(1) == in && wt.size(2) == 3 && wt.size(3) == 3,
               "style_transfer: '", file.string(), "': '", wk, "' has shape ",
               shape_str(wt.shape()), ", expected [out, ", in, ", 3, 3] (", in,
               " = the output channels of the previous convolution)");
    KILN_CHECK(bt.dim() == 1 && bt.size(0) == wt.size(0), "style_transfer: '", file.string(),
               "': '", bk, "' has shape ", shape_str(bt.shape()), ", expected [", wt.size(0), "]");
    in = wt.size(0);
    w.push_back(wt.contiguous());
    b.push_back(bt.contiguous());
  }
  return std::make_unique<Vgg19>(std::move(w), std::move(b), average_pooling);
}

}  // namespace kiln::style
