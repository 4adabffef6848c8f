#include "core/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>

#include <cstdlib>
#include <mutex>

namespace minidl {

spdlog::logger& log(const char* area) {
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  std::string name = std::string("minidl.") + area;
  if (auto existing = spdlog::get(name)) return *existing;
  auto logger = spdlog::stderr_color_mt(name);
  logger->set_pattern("[%H:%M:%S.%e] [%n] [%^%l%$] %v");
  spdlog::level::level_enum level = spdlog::level::warn;
  if (const char* env = std::getenv("MINIDL_LOG_LEVEL")) level = spdlog::level::from_str(env);
  logger->set_level(level);
  return *logger;
}

}  // namespace minidl
