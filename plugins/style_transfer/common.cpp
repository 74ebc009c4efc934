#include "common.hpp"

#include "imaging.hpp"
#include "kiln/error.hpp"

namespace kiln::style {

void append(std::vector<ParamSpec>& specs, const std::vector<ParamSpec>& more) {
  specs.insert(specs.end(), more.begin(), more.end());
}

std::vector<ParamSpec> net_params() {
  return {
      ParamSpec::choice("net", "random", {"random", "vgg19"},
                        "Feature network: 'random' (built in, multi-scale random filters, no "
                        "download) or 'vgg19' (weights from vgg_weights)"),
      ParamSpec::path("vgg_weights",
                      "VGG-19 safetensors file with torchvision names (features.N.weight/bias); "
                      "required with net = \"vgg19\"")
          .make_optional(),
      ParamSpec::choice("pooling", "avg", {"avg", "max"},
                        "VGG-19 pooling: average (Gatys et al.) or max (torchvision)"),
      ParamSpec::integer("random_seed", 7, "Seed of the random net's filters").at_least(0),
      ParamSpec::integer("random_levels", 4, "Pyramid levels of the random net").range(1, 8),
      ParamSpec::integer("random_width", 64, "Channels of each level of the random net")
          .range(2, 1024),
  };
}

std::unique_ptr<FeatureNet> make_net(const Params& p) {
  if (p.string("net") == "vgg19") {
    KILN_CHECK(p.has("vgg_weights"),
               "style_transfer: net = \"vgg19\" needs vgg_weights = \"<file>.safetensors\" (a "
               "torchvision VGG-19 state dict saved as safetensors); or use net = \"random\"");
    return load_vgg19(p.string("vgg_weights"), p.string("pooling") == "avg");
  }
  return make_random_net({.seed = static_cast<std::uint64_t>(p.integer("random_seed")),
                          .levels = static_cast<int>(p.integer("random_levels")),
                          .width = static_cast<int>(p.integer("random_width"))});
}

std::vector<ParamSpec> loss_params(double style_weight, double tv_weight) {
  return {
      ParamSpec::strings("content_layers", {},
                         "Layers whose activations the result keeps from the content image "
                         "(empty: the net's default, s2_2 / relu4_2)"),
      ParamSpec::strings("style_layers", {},
                         "Layers whose Gram matrices the result takes from the style (empty: "
                         "the net's default, every random layer / relu1_1..relu5_1)"),
      ParamSpec::numbers("style_layer_weights", {},
                         "Weight of each style layer (empty: 1 / number of style layers)"),
      ParamSpec::number("content_weight", 1.0, "Weight of the content loss").range(0, 1e9),
      ParamSpec::number("style_weight", style_weight, "Weight of the style loss").range(0, 1e9),
      ParamSpec::number("tv_weight", tv_weight, "Weight of the total-variation loss").range(0, 1e9),
  };
}

LossOptions loss_options(const Params& p, const FeatureNet& net) {
  LossOptions o;
  o.content_layers = p.strings("content_layers");
  if (o.content_layers.empty()) o.content_layers = net.default_content_layers();
  o.style_layers = p.strings("style_layers");
  if (o.style_layers.empty()) o.style_layers = net.default_style_layers();
  o.style_layer_weights = p.numbers("style_layer_weights");
  o.content_weight = p.number("content_weight");
  o.style_weight = p.number("style_weight");
  o.tv_weight = p.number("tv_weight");
  return o;
}

std::vector<ParamSpec> style_params() {
  return {
      ParamSpec::path("style",
                      "Style image (PNG/JPEG), or a folder of them blended with style_weights"),
      ParamSpec::numbers("style_weights", {},
                         "Blend weight of each style image, in file-name order (empty: equal; 0 "
                         "leaves an image out)"),
      ParamSpec::number("style_scale", 1.0,
                        "Size of the style images relative to the output (their longer side)")
          .range(0.05, 8),
  };
}

StyleImages load_styles(const Params& p, std::int64_t long_side, std::int64_t max_pixels) {
  StyleImages s;
  const auto files = list_images(p.string("style"), "style");
  std::vector<double> w = p.numbers("style_weights");
  if (w.empty()) w.assign(files.size(), 1.0);
  KILN_CHECK(w.size() == files.size(), "style_transfer: style_weights has ", w.size(),
             " values but 'style' = '", p.string("style"), "' holds ", files.size(),
             " image(s); give one weight per image (in file-name order)");
  for (std::size_t i = 0; i < files.size(); ++i) {
    KILN_CHECK(w[i] >= 0, "style_transfer: style_weights[", i, "] = ", w[i], " is negative");
    if (w[i] == 0) continue;
    const Image img = load_rgb(files[i], "style", max_pixels);
    const auto [sw, sh] = fit_long_side(img.width, img.height, long_side);
    s.images.push_back(image_batch(img, sw, sh));
    s.weights.push_back(w[i]);
  }
  KILN_CHECK(!s.images.empty(), "style_transfer: every style_weights value is 0");
  return s;
}

}  // namespace kiln::style
