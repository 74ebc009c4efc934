// Symbol visibility. Every Kiln target builds with -fvisibility=hidden; the SDK's public API is
// marked KILN_API so that only it is exported from libkiln_sdk.so.
#pragma once

#define KILN_API __attribute__((visibility("default")))
