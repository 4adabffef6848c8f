// Command-line options for the examples: `--name value`, each declared with a default and a help
// line. Unknown options, missing values, unparsable numbers and unusable devices print the usage
// and exit with status 2.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "base/device.h"
#include "base/error.h"
#include "minidl/minidl.h"
#include "runtime/cuda.h"

class Args {
 public:
  Args(std::string program, std::string summary) : program_(std::move(program)), summary_(std::move(summary)) {}

  /// Declares `--name value` with a default; `metavar` names the value in the usage when the
  /// default is empty.
  Args& option(const std::string& name, const std::string& def, const std::string& help,
               const std::string& metavar = "VALUE") {
    options_.push_back({name, def.empty() ? metavar : def, help});
    values_[name] = def;
    return *this;
  }

  /// Declares a boolean `--name` (no value), off unless given.
  Args& flag(const std::string& name, const std::string& help) {
    options_.push_back({name, "", help});
    values_[name] = "0";
    flags_.push_back(name);
    return *this;
  }

  /// Reads argv; on --help prints the usage and exits 0, on a bad argument exits 2.
  void parse(int argc, char** argv) {
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      if (a == "--help" || a == "-h") usage(stdout), std::exit(0);
      if (a.rfind("--", 0) != 0 || !values_.count(a.substr(2))) fail("unknown argument '" + a + "'");
      const std::string name = a.substr(2);
      if (is_flag(name)) {
        values_[name] = "1";
        continue;
      }
      if (i + 1 >= argc) fail(a + " needs a value");
      values_[name] = argv[++i];
    }
  }

  /// Whether the flag `--name` was given.
  bool enabled(const std::string& name) const { return values_.at(name) == "1"; }

  std::string str(const std::string& name) const { return values_.at(name); }
  /// The value as an integer >= min.
  long long integer(const std::string& name, long long min = 0) const {
    const std::string& v = values_.at(name);
    char* end = nullptr;
    const long long x = std::strtoll(v.c_str(), &end, 10);
    if (v.empty() || *end != '\0' || x < min)
      fail("--" + name + " must be an integer >= " + std::to_string(min) + ", got '" + v + "'");
    return x;
  }
  /// The value as a number > 0.
  double number(const std::string& name) const {
    const std::string& v = values_.at(name);
    char* end = nullptr;
    const double x = std::strtod(v.c_str(), &end);
    if (v.empty() || *end != '\0' || !(x > 0)) fail("--" + name + " must be a number > 0, got '" + v + "'");
    return x;
  }
  /// The value as a Device that exists on this machine.
  minidl::Device device(const std::string& name = "device") const {
    minidl::Device d;
    try {
      d = minidl::Device::parse(values_.at(name));
    } catch (const minidl::Error& e) {
      fail(e.what());
    }
    if (d.is_cuda() && !minidl::cuda::is_available())
      fail("--" + name + " " + d.str() + ": " + minidl::cuda::unavailable_reason());
    return d;
  }

  /// Prints the message and the usage to stderr and exits with status 2.
  [[noreturn]] void fail(const std::string& msg) const {
    std::fprintf(stderr, "%s: %s\n\n", program_.c_str(), msg.c_str());
    usage(stderr);
    std::exit(2);
  }

 private:
  struct Option {
    std::string name, shown, help;  // shown: the default, or the metavar when there is none
  };

  void usage(FILE* out) const {
    std::fprintf(out, "usage: %s [options]\n%s\n\noptions:\n", program_.c_str(), summary_.c_str());
    for (const Option& o : options_) {
      const std::string lhs = "--" + o.name + " " + o.shown;
      std::fprintf(out, "  %-28s %s\n", lhs.c_str(), o.help.c_str());
    }
    std::fprintf(out, "  %-28s %s\n", "--help", "show this help");
  }

  bool is_flag(const std::string& name) const {
    for (const auto& f : flags_)
      if (f == name) return true;
    return false;
  }

  std::string program_, summary_;
  std::vector<Option> options_;
  std::vector<std::string> flags_;
  std::map<std::string, std::string> values_;
};
