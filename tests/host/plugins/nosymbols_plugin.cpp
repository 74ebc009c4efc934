// A broken plugin for tests: a shared library that exports nothing Kiln looks for.
extern "C" __attribute__((visibility("default"))) int kiln_nosymbols_answer() {
  return 42;
}
