// The diffusion plugin's tasks: train (DDPM, epsilon or v prediction, EMA weights) and generate
// (DDPM / DDIM, classifier-free guidance, image-to-image, intermediate strips).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "kiln/plugin.hpp"
#include "schedule.hpp"
#include "unet.hpp"

namespace diffusion {

inline constexpr const char* kPluginName = "diffusion";
inline constexpr const char* kPluginVersion = "1.0.0";

std::vector<kiln::ParamSpec> train_params();
std::vector<kiln::ParamSpec> generate_params();

// A trained model rebuilt from a file written by diffusion/train (EMA weights).
struct LoadedModel {
  std::unique_ptr<UNet> net;
  Schedule schedule;
  std::string prediction;
  std::vector<std::string> class_names;
};
LoadedModel load_model(const std::string& file);

std::unique_ptr<kiln::Task> make_train_task(const kiln::Params& p, kiln::TaskContext& ctx);
std::unique_ptr<kiln::Task> make_generate_task(const kiln::Params& p, kiln::TaskContext& ctx);

}  // namespace diffusion
