#include "compiler/codegen/source_builder.h"

#include "base/error.h"

namespace minidl::codegen {

SourceBuilder& SourceBuilder::raw_line(std::string_view text) {
  if (!text.empty()) out_.append(static_cast<size_t>(indent_) * 2, ' ');
  out_.append(text);
  out_.push_back('\n');
  return *this;
}

SourceBuilder& SourceBuilder::blank() { return raw_line(""); }

SourceBuilder& SourceBuilder::comment(std::string_view text) {
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view piece = text.substr(start, end - start);
    std::string text = "//";
    if (!piece.empty()) text.append(" ").append(piece);
    raw_line(text);
    start = end + 1;
  }
  return *this;
}

SourceBuilder& SourceBuilder::close(std::string_view suffix) {
  MINIDL_CHECK(indent_ > 0, ValueError, "[codegen] close() without a matching open()");
  --indent_;
  std::string text(1, '}');
  text.append(suffix);
  return raw_line(text);
}

namespace {
// "1" -> "1.0": a literal with a suffix needs a decimal point or an exponent.
std::string with_point(std::string s) {
  if (s.find_first_of(".eE") == std::string::npos) s += ".0";
  return s;
}
}  // namespace

std::string float_literal(double v) { return with_point(fmt::format("{:.9g}", v)) + "f"; }
std::string double_literal(double v) { return with_point(fmt::format("{:.17g}", v)); }

}  // namespace minidl::codegen
