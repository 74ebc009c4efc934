// The `kiln` command line: run, validate, plugins, inspect, check-plugin, --version, help.
#pragma once

namespace kiln::host {

// Parses the arguments, runs the command and returns the exit code (see host_error.hpp). Never
// throws: every error is printed as a message for a person.
int kiln_main(int argc, char** argv);

}  // namespace kiln::host
