// A broken plugin for tests: its descriptor, written by hand, claims plugin ABI version 999.
// The factory must never be called; if it were, it would abort the test.
#include <cstdlib>

#include "kiln/plugin.hpp"

extern "C" const KilnPluginDescriptor kiln_badabi_descriptor = {
    kKilnPluginMagic, 999, sizeof(KilnPluginDescriptor), 0, "9.9.9", KILN_TOOLCHAIN_ID,
    "badabi",         {}};

namespace {
kiln::Plugin* create_never() {
  std::abort();
}
}  // namespace

BOOST_DLL_ALIAS(kiln_badabi_descriptor, kiln_plugin_descriptor)
BOOST_DLL_ALIAS(create_never, kiln_create_plugin)
