// SourceBuilder: the small builder over fmt that every code generator writes CUDA source with.
// Lines are appended with the current indentation; open()/close() bracket a block.
//
//   SourceBuilder b;
//   b.open("for (int i = 0; i < {}; ++i)", n);   // "for (...) {", then indents
//   b.line("acc += x[i];");
//   b.close();                                   // "}"
#pragma once

#include <spdlog/fmt/fmt.h>

#include <string>
#include <string_view>
#include <utility>

namespace minidl::codegen {

class SourceBuilder {
 public:
  /// Appends one formatted line at the current indentation.
  template <class... A>
  SourceBuilder& line(fmt::format_string<A...> f, A&&... args) {
    return raw_line(fmt::format(f, std::forward<A>(args)...));
  }
  /// Appends an empty line.
  SourceBuilder& blank();
  /// Appends "// text", one comment line per line of text.
  SourceBuilder& comment(std::string_view text);
  /// Appends "<formatted> {" (just "{" for an empty format) and indents what follows.
  template <class... A>
  SourceBuilder& open(fmt::format_string<A...> f, A&&... args) {
    std::string head = fmt::format(f, std::forward<A>(args)...);
    raw_line(head.empty() ? std::string("{") : head + " {");
    ++indent_;
    return *this;
  }
  /// Dedents and appends "}" followed by suffix (";" after a struct, " else {" ...).
  SourceBuilder& close(std::string_view suffix = "");
  /// Appends a line as is (indented), for text built elsewhere.
  SourceBuilder& raw_line(std::string_view text);

  /// The source so far.
  const std::string& str() const { return out_; }

 private:
  std::string out_;
  int indent_ = 0;
};

/// A C++ float literal that round-trips v ("0.125f", "1.0f", "3e+38f"); finite v only.
std::string float_literal(double v);
/// The same for double ("0.125").
std::string double_literal(double v);

}  // namespace minidl::codegen
