// A broken plugin for tests: a valid descriptor, but its factory throws.
#include "kiln/plugin.hpp"

namespace {
class ThrowingPlugin final : public kiln::Plugin {
 public:
  ThrowingPlugin() { throw kiln::Error("throws: cannot start (this plugin always fails)"); }
  kiln::PluginInfo info() const override { return {}; }
  std::unique_ptr<kiln::Task> create_task(const std::string&, const kiln::Params&,
                                          kiln::TaskContext&) override {
    return nullptr;
  }
};
}  // namespace

KILN_PLUGIN(ThrowingPlugin, "throws")
