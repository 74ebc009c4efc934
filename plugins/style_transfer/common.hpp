// Parameters shared by the tasks of the style_transfer plugin, and the task factories.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "features.hpp"
#include "kiln/plugin.hpp"
#include "losses.hpp"

namespace kiln::style {

inline constexpr const char* kPluginName = "style_transfer";
inline constexpr const char* kPluginVersion = "1.0.0";

// net, vgg_weights, pooling, random_seed, random_levels, random_width.
std::vector<ParamSpec> net_params();
std::unique_ptr<FeatureNet> make_net(const Params& p);

// content_layers, style_layers, style_layer_weights, content_weight, style_weight, tv_weight.
std::vector<ParamSpec> loss_params(double style_weight, double tv_weight);
LossOptions loss_options(const Params& p, const FeatureNet& net);

// style (file or folder), style_weights, style_size: the style images as [1, 3, h, w] with their
// blend weights; each is resized so that its longer side is `long_side` (0: as it is).
struct StyleImages {
  std::vector<Tensor> images;
  std::vector<double> weights;
};
std::vector<ParamSpec> style_params();
StyleImages load_styles(const Params& p, std::int64_t long_side, std::int64_t max_pixels);

// Appends `more` to `specs`.
void append(std::vector<ParamSpec>& specs, const std::vector<ParamSpec>& more);

// Task descriptions and factories (stylize.cpp, fast.cpp, dream.cpp).
TaskSpec stylize_spec();
std::unique_ptr<Task> make_stylize(const Params& p, TaskContext& ctx);
TaskSpec train_fast_spec();
std::unique_ptr<Task> make_train_fast(const Params& p, TaskContext& ctx);
TaskSpec stylize_fast_spec();
std::unique_ptr<Task> make_stylize_fast(const Params& p, TaskContext& ctx);
TaskSpec dream_spec();
std::unique_ptr<Task> make_dream(const Params& p, TaskContext& ctx);

}  // namespace kiln::style
