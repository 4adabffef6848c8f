// Command-line flags for the examples: `--name value` and `--switch`, each declared with a
// default and a help line. Unknown flags, missing values and unparsable numbers print the usage
// and exit with status 2.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

class Args {
 public:
  Args(std::string program, std::string summary) : program_(std::move(program)), summary_(std::move(summary)) {}

  /// Declares `--name value` with a default.
  Args& option(const std::string& name, const std::string& def, const std::string& help) {
    flags_.push_back({name, def, help, false});
    values_[name] = def;
    return *this;
  }
  /// Declares a `--name` switch (off by default).
  Args& flag(const std::string& name, const std::string& help) {
    flags_.push_back({name, "", help, true});
    values_[name] = "";
    return *this;
  }

  /// Reads argv; on --help prints the usage and exits 0, on a bad argument exits 2.
  void parse(int argc, char** argv) {
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      if (a == "--help" || a == "-h") usage(stdout), std::exit(0);
      const Flag* f = find(a.rfind("--", 0) == 0 ? a.substr(2) : "");
      if (!f) fail("unknown argument '" + a + "'");
      if (f->is_switch) {
        values_[f->name].assign(1, '1');  // (assign: GCC 12 warns on = "1")
      } else {
        if (i + 1 >= argc) fail("--" + f->name + " needs a value");
        values_[f->name] = argv[++i];
      }
    }
  }

  std::string str(const std::string& name) const { return values_.at(name); }
  bool on(const std::string& name) const { return !values_.at(name).empty(); }
  /// The value as an integer >= min; exits with a usage error otherwise.
  long long integer(const std::string& name, long long min = 0) const {
    const std::string& v = values_.at(name);
    char* end = nullptr;
    const long long x = std::strtoll(v.c_str(), &end, 10);
    if (v.empty() || *end != '\0' || x < min)
      fail("--" + name + " must be an integer >= " + std::to_string(min) + ", got '" + v + "'");
    return x;
  }
  /// The value as a number > 0 (or >= 0 when allow_zero); exits with a usage error otherwise.
  double number(const std::string& name, bool allow_zero = false) const {
    const std::string& v = values_.at(name);
    char* end = nullptr;
    const double x = std::strtod(v.c_str(), &end);
    if (v.empty() || *end != '\0' || !(allow_zero ? x >= 0 : x > 0))
      fail("--" + name + " must be a number " + (allow_zero ? ">= 0" : "> 0") + ", got '" + v + "'");
    return x;
  }

  [[noreturn]] void fail(const std::string& msg) const {
    std::fprintf(stderr, "%s: %s\n\n", program_.c_str(), msg.c_str());
    usage(stderr);
    std::exit(2);
  }

 private:
  struct Flag {
    std::string name, def, help;
    bool is_switch;
  };

  const Flag* find(const std::string& name) const {
    for (const Flag& f : flags_)
      if (f.name == name) return &f;
    return nullptr;
  }

  void usage(FILE* out) const {
    std::fprintf(out, "usage: %s [options]\n%s\n\noptions:\n", program_.c_str(), summary_.c_str());
    for (const Flag& f : flags_) {
      const std::string lhs = "--" + f.name + (f.is_switch ? "" : " " + (f.def.empty() ? "VALUE" : f.def));
      std::fprintf(out, "  %-28s %s\n", lhs.c_str(), f.help.c_str());
    }
    std::fprintf(out, "  %-28s %s\n", "--help", "show this help");
  }

  std::string program_, summary_;
  std::vector<Flag> flags_;
  std::map<std::string, std::string> values_;
};
