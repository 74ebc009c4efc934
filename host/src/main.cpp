#include "cli.hpp"

int main(int argc, char** argv) {
  return kiln::host::kiln_main(argc, argv);
}
