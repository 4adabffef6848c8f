// Environment variables (docs/env_vars.md lists them): one reader per kind of value, so that
// every value that does not parse is reported the same way, naming the variable:
//   [env] MINIDL_LOG_LEVEL='banana' is not one of trace, debug, info, warn, error, critical, off
// Sizes that do not parse are errors (a limit asked for is never dropped); other unknown values
// warn and give the default.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>

namespace minidl {

/// The variable's value; nullopt when it is unset.
std::optional<std::string> env_string(const char* name);

/// The value in lowercase when it is one of `choices` (lowercase names, compared in any case);
/// nullopt when unset. Any other value, "" included, throws ValueError naming the variable.
std::optional<std::string> env_choice(const char* name, std::initializer_list<const char*> choices);

/// A switch: 1/0, on/off, true/false or yes/no in any case; `fallback` when unset. Any other
/// value warns (once per variable, naming it) and gives `fallback`.
bool env_flag(const char* name, bool fallback);

/// A size in bytes in parse_bytes' format ("6GiB", "512MB"); nullopt when unset. A value that
/// does not parse throws ValueError naming the variable.
std::optional<int64_t> env_bytes(const char* name);

}  // namespace minidl
