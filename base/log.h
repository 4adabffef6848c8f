// Logging: one named spdlog logger per area ("core", "autograd", "compiler", "runtime",
// "bench", "nn"), all on stderr, level from MINIDL_LOG_LEVEL (trace, debug, info, warn, error,
// critical, off, in any case; default warn; any other value warns and gives warn).
#pragma once

#include <spdlog/spdlog.h>

#include <memory>

namespace minidl {

/// The logger of an area, created on first use.
spdlog::logger& log(const char* area);

}  // namespace minidl
