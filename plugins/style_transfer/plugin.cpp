// The style_transfer plugin: Gatys optimisation (`stylize`), a feed-forward style network
// (`train-fast`, `stylize-fast`) and Deep Dream (`dream`), on a built-in random feature net or
// VGG-19 weights. See docs/models/style_transfer.md.
#include "kiln/plugin.hpp"
#include "common.hpp"
#include "kiln/error.hpp"

namespace kiln::style {
namespace {

class StylePlugin final : public Plugin {
 public:
  PluginInfo info() const override {
    return {kPluginName,
            kPluginVersion,
            "style_transfer",
            "Neural style transfer (Gatys optimisation, fast feed-forward nets) and Deep Dream",
            {stylize_spec(), train_fast_spec(), stylize_fast_spec(), dream_spec()}};
  }

  std::unique_ptr<Task> create_task(const std::string& task, const Params& params,
                                    TaskContext& ctx) override {
    const PluginInfo i = info();
    const TaskSpec* spec = i.find(task);
    KILN_CHECK(spec != nullptr, "style_transfer: no task '", task,
               "'; the tasks are stylize, train-fast, stylize-fast and dream");
    const Params p = Params::resolve(spec->params, params);
    if (task == "stylize") return make_stylize(p, ctx);
    if (task == "train-fast") return make_train_fast(p, ctx);
    if (task == "stylize-fast") return make_stylize_fast(p, ctx);
    return make_dream(p, ctx);
  }
};

}  // namespace
}  // namespace kiln::style

KILN_PLUGIN(kiln::style::StylePlugin, "style_transfer")
// Tiny settings for `kiln check-plugin`: the images that ship in configs/style/.
KILN_PLUGIN_CONFORMANCE(
    "{\"stylize\": {\"content\": \"" KILN_STYLE_ASSETS
    "/content/landscape.png\", \"style\": \"" KILN_STYLE_ASSETS
    "/style/waves.png\", \"size\": 24, \"iterations\": 2, \"random_levels\": 2, \"random_width\": "
    "8},"
    " \"train-fast\": {\"data\": \"" KILN_STYLE_ASSETS "/train\", \"style\": \"" KILN_STYLE_ASSETS
    "/style/mosaic.png\", \"image_size\": 16, \"width\": 4, \"residual_blocks\": 1,"
    " \"random_levels\": 2, \"random_width\": 8, \"batch_size\": 2, \"max_steps\": 2},"
    " \"stylize-fast\": {\"model\": \"@train-fast\", \"input\": \"" KILN_STYLE_ASSETS
    "/content\", \"size\": 20, \"count\": 2, \"batch\": 2},"
    " \"dream\": {\"input\": \"" KILN_STYLE_ASSETS
    "/content/still_life.png\", \"size\": 24,"
    " \"octaves\": 2, \"steps\": 2, \"random_levels\": 2, \"random_width\": 8}}")
