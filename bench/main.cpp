// minidl-bench SUBCOMMAND [options]; see --help.
#include <cstdio>
#include <string>
#include <vector>

#include "base/error.h"
#include "bench/bench.h"


namespace {

void usage(FILE* f) {
  std::fprintf(f, "usage: minidl-bench SUBCOMMAND [options]   (minidl-bench SUBCOMMAND --help)\n\n");
  for (const auto& s : minidl::bench::subcommands()) std::fprintf(f, "  %-10s %s\n", s.name, s.what);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const std::string name = argv[1];
  for (const auto& s : minidl::bench::subcommands()) {
    if (name != s.name) continue;
    try {
      return s.main(std::vector<std::string>(argv + 2, argv + argc));
    } catch (const minidl::Error& e) {
      std::fprintf(stderr, "minidl-bench %s: %s\n", s.name, e.what());
      return 1;
    }
  }
  std::fprintf(stderr, "minidl-bench: unknown subcommand '%s'\n\n", name.c_str());
  usage(stderr);
  return 2;
}
