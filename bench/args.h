// A small command-line parser for the bench subcommands: `--name value`, `--name=value` and
// boolean `--flag`. Unknown options, missing values and malformed numbers throw ValueError
// with a message naming the option.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace minidl::bench {

/// "a,b,,c" split at sep: {"a", "b", "", "c"} (empty items kept; "" gives {""}).
std::vector<std::string> split_list(const std::string& s, char sep = ',');

class Args {
 public:
  /// `value_options` take a value; `flags` do not. Everything else starting with -- is an error.
  Args(const std::vector<std::string>& argv, const std::vector<std::string>& value_options,
       const std::vector<std::string>& flags);

  bool has(const std::string& name) const { return values_.count(name) > 0; }
  std::string str(const std::string& name, const std::string& fallback) const;
  int64_t integer(const std::string& name, int64_t fallback) const;
  /// Comma-separated positive integers ("16,32,64").
  std::vector<int64_t> int_list(const std::string& name, const std::vector<int64_t>& fallback) const;
  /// Comma-separated words ("eager,compiled").
  std::vector<std::string> str_list(const std::string& name,
                                    const std::vector<std::string>& fallback) const;

 private:
  std::map<std::string, std::string> values_;
};

}  // namespace minidl::bench
