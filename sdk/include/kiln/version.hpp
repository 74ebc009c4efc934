// SDK and plugin ABI versions.
//
// KILN_ABI_VERSION changes whenever a plugin built against an older SDK could misbehave with this
// one: a changed virtual interface, a changed layout of a type that crosses the plugin boundary,
// a changed meaning of a descriptor field. docs/plugin-authoring.md lists the rules.
#pragma once

#define KILN_VERSION_MAJOR 0
#define KILN_VERSION_MINOR 1
#define KILN_VERSION_PATCH 0
#define KILN_VERSION_STRING "0.1.0"

#define KILN_ABI_VERSION 2

namespace kiln {
inline constexpr int kAbiVersion = KILN_ABI_VERSION;
inline constexpr const char* kVersion = KILN_VERSION_STRING;
}  // namespace kiln
