// minidl-bench: one executable, one subcommand per file. A file registers its subcommand with
// MINIDL_BENCH_SUBCOMMAND("name", "what it measures", function); the function takes the
// arguments after the subcommand name and returns the exit code.
#pragma once

#include <string>
#include <vector>

namespace minidl::bench {

using SubcommandMain = int (*)(const std::vector<std::string>& args);

struct Subcommand {
  const char* name;
  const char* what;
  SubcommandMain main;
};

/// Adds a subcommand (called at static-initialisation time by MINIDL_BENCH_SUBCOMMAND).
bool register_subcommand(const Subcommand& s);
/// Every registered subcommand, sorted by name.
std::vector<Subcommand> subcommands();

}  // namespace minidl::bench

#define MINIDL_BENCH_CONCAT_(a, b) a##b
#define MINIDL_BENCH_CONCAT(a, b) MINIDL_BENCH_CONCAT_(a, b)
#define MINIDL_BENCH_SUBCOMMAND(NAME, WHAT, FN)                                \
  static const bool MINIDL_BENCH_CONCAT(minidl_bench_registered_, __LINE__) = \
      ::minidl::bench::register_subcommand({NAME, WHAT, FN})
