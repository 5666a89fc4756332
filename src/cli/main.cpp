// The `ropekit` executable: everything lives in the ropekit_cli_lib library (tested in-process).
#include <iostream>

#include "cli.hpp"

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  return ropekit::cli::run(args, std::cout, std::cerr);
}
