// A small, strict JSON reader and writer for the subset file headers need (safetensors): objects,
// arrays, strings and integers. Anything else (floats, true/false/null, duplicate keys, trailing
// bytes, invalid UTF-8, nesting past a depth limit) is rejected with a ValueError; no input can
// make it crash or recurse without bound.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace minidl::nn {

struct JsonMember;

/// One JSON value of the supported subset.
struct JsonValue {
  enum class Kind { Integer, String, Array, Object };
  Kind kind = Kind::Integer;
  int64_t integer = 0;
  std::string string;
  std::vector<JsonValue> array;
  std::vector<JsonMember> object;  // keys unique, in file order

  /// The member named key, or nullptr.
  const JsonValue* find(std::string_view key) const;
  /// "integer", "string", "array", "object": for error messages.
  const char* kind_name() const;
};

/// One member of a JSON object.
struct JsonMember {
  std::string key;
  JsonValue value;
};

/// Parses `text` as one JSON value of the subset. Errors are ValueErrors starting with
/// "[<what>]" and giving the byte offset of the problem.
JsonValue parse_json(std::string_view text, const char* what = "json");

/// `s` as a JSON string literal (quotes, escapes); throws ValueError if s is not valid UTF-8.
std::string json_quote(std::string_view s, const char* what = "json");

/// Throws ValueError naming `what` unless s is valid UTF-8 (no overlongs, no surrogates).
void check_utf8(std::string_view s, const char* what);

}  // namespace minidl::nn
