#include "base/env.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <mutex>
#include <set>

#include "base/allocator.h"
#include "base/error.h"
#include "base/log.h"

namespace minidl {

std::optional<std::string> env_string(const char* name) {
  const char* v = std::getenv(name);
  if (!v) return std::nullopt;
  return std::string(v);
}

std::optional<std::string> env_choice(const char* name, std::initializer_list<const char*> choices) {
  std::optional<std::string> v = env_string(name);
  if (!v) return v;
  std::string lower = *v;
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (std::find(choices.begin(), choices.end(), lower) != choices.end()) return lower;
  std::string names;
  for (const char* c : choices) names += (names.empty() ? "" : ", ") + std::string(c);
  throw ValueError(fmt::format("[env] {}='{}' is not one of {}", name, *v, names));
}

bool env_flag(const char* name, bool fallback) {
  try {
    const std::optional<std::string> v =
        env_choice(name, {"1", "0", "on", "off", "true", "false", "yes", "no"});
    if (!v) return fallback;
    return *v == "1" || *v == "on" || *v == "true" || *v == "yes";
  } catch (const ValueError& e) {
    static std::mutex mu;
    static std::set<std::string> warned;
    std::lock_guard<std::mutex> lock(mu);
    if (warned.insert(name).second)
      log("core").warn("{}; using the default, {}", e.what(), fallback ? "on" : "off");
    return fallback;
  }
}

std::optional<int64_t> env_bytes(const char* name) {
  const std::optional<std::string> v = env_string(name);
  if (!v) return std::nullopt;
  try {
    return parse_bytes(*v);
  } catch (const ValueError& e) {
    std::string why = e.what();
    if (why.rfind("[memory] ", 0) == 0) why.erase(0, 9);
    throw ValueError(fmt::format("[env] {}='{}': {}", name, *v, why));
  }
}

}  // namespace minidl
