// The subcommand registry of minidl-bench.
#include "bench/bench.h"

#include <algorithm>

namespace minidl::bench {

namespace {
std::vector<Subcommand>& registry() {
  static std::vector<Subcommand> r;
  return r;
}
}  // namespace

bool register_subcommand(const Subcommand& s) {
  registry().push_back(s);
  return true;
}

std::vector<Subcommand> subcommands() {
  std::vector<Subcommand> r = registry();
  std::sort(r.begin(), r.end(), [](const Subcommand& a, const Subcommand& b) {
    return std::string(a.name) < b.name;
  });
  return r;
}

}  // namespace minidl::bench
