#include "bench/args.h"

#include <algorithm>

#include "base/error.h"

namespace minidl::bench {

Args::Args(const std::vector<std::string>& argv, const std::vector<std::string>& value_options,
           const std::vector<std::string>& flags) {
  auto known = [](const std::vector<std::string>& v, const std::string& s) {
    return std::find(v.begin(), v.end(), s) != v.end();
  };
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& a = argv[i];
    MINIDL_CHECK(a.rfind("--", 0) == 0, ValueError, "[args] unexpected argument '{}'", a);
    const size_t eq = a.find('=');
    const bool inline_value = eq != std::string::npos;
    const std::string name(a, 2, inline_value ? eq - 2 : std::string::npos);
    std::string value = inline_value ? std::string(a, eq + 1) : std::string();
    if (known(flags, name)) {
      MINIDL_CHECK(!inline_value, ValueError, "[args] --{} takes no value", name);
      values_.insert_or_assign(name, std::string(1, '1'));  // (not = "1": GCC 12 -Wrestrict false positive)
    } else if (known(value_options, name)) {
      if (!inline_value) {
        MINIDL_CHECK(i + 1 < argv.size(), ValueError, "[args] --{} needs a value", name);
        value = argv[++i];
      }
      values_[name] = value;
    } else {
      throw ValueError(fmt::format("[args] unknown option --{} (see --help)", name));
    }
  }
}

std::string Args::str(const std::string& name, const std::string& fallback) const {
  auto it = values_.find(name);
  return it == values_.end() ? fallback : it->second;
}

namespace {
int64_t parse_int(const std::string& name, const std::string& s) {
  size_t used = 0;
  int64_t v = 0;
  try {
    v = std::stoll(s, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  MINIDL_CHECK(used == s.size() && !s.empty(), ValueError, "[args] --{} expects an integer, got '{}'",
               name, s);
  return v;
}

}  // namespace

std::vector<std::string> split_list(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t end = s.find(sep, start);
    if (end == std::string::npos) end = s.size();
    out.push_back(s.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

int64_t Args::integer(const std::string& name, int64_t fallback) const {
  return has(name) ? parse_int(name, str(name, "")) : fallback;
}

std::vector<int64_t> Args::int_list(const std::string& name,
                                    const std::vector<int64_t>& fallback) const {
  if (!has(name)) return fallback;
  std::vector<int64_t> out;
  for (const auto& s : split_list(str(name, ""))) {
    const int64_t v = parse_int(name, s);
    MINIDL_CHECK(v > 0, ValueError, "[args] --{} expects positive integers, got {}", name, v);
    out.push_back(v);
  }
  return out;
}

std::vector<std::string> Args::str_list(const std::string& name,
                                        const std::vector<std::string>& fallback) const {
  if (!has(name)) return fallback;
  std::vector<std::string> out = split_list(str(name, ""));
  for (const auto& s : out) MINIDL_CHECK(!s.empty(), ValueError, "[args] --{} has an empty item", name);
  return out;
}

}  // namespace minidl::bench
