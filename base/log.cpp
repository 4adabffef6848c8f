#include "base/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>

#include <mutex>
#include <string>
#include <utility>

#include "base/env.h"
#include "base/error.h"

namespace minidl {

namespace {

// The level MINIDL_LOG_LEVEL asks for, and the warning to give when it names no level.
struct LevelFromEnv {
  spdlog::level::level_enum level = spdlog::level::warn;
  std::string warning;
};

LevelFromEnv level_from_env() {
  LevelFromEnv l;
  try {
    if (auto v = env_choice("MINIDL_LOG_LEVEL",
                            {"trace", "debug", "info", "warn", "warning", "error", "err", "critical", "off"}))
      l.level = spdlog::level::from_str(*v);
  } catch (const ValueError& e) {
    l.warning = fmt::format("{}; using the default, warn", e.what());
  }
  return l;
}

}  // namespace

spdlog::logger& log(const char* area) {
  static const LevelFromEnv env = level_from_env();  // env_choice does not log: no recursion
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  std::string name = std::string("minidl.") + area;
  if (auto existing = spdlog::get(name)) return *existing;
  auto logger = spdlog::stderr_color_mt(name);
  logger->set_pattern("[%H:%M:%S.%e] [%n] [%^%l%$] %v");
  logger->set_level(env.level);
  static bool warned = false;  // by the first logger, once
  if (!env.warning.empty() && !std::exchange(warned, true)) logger->warn(env.warning);
  return *logger;
}

}  // namespace minidl
