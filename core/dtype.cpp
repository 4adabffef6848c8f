#include "core/dtype.h"

#include <algorithm>
#include <cctype>

#include "base/error.h"

namespace minidl {

size_t itemsize(DType t) {
  switch (t) {
    case kBool: return 1;
    case kInt32: return 4;
    case kInt64: return 8;
    case kFloat16: return 2;
    case kBFloat16: return 2;
    case kFloat32: return 4;
    case kFloat64: return 8;
  }
  return 0;
}

const char* dtype_name(DType t) {
  switch (t) {
    case kBool: return "bool";
    case kInt32: return "int32";
    case kInt64: return "int64";
    case kFloat16: return "float16";
    case kBFloat16: return "bfloat16";
    case kFloat32: return "float32";
    case kFloat64: return "float64";
  }
  return "?";
}

DType dtype_from_string(const std::string& in) {
  std::string s = in;
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  if (s == "float32" || s == "f32" || s == "fp32" || s == "float") return kFloat32;
  if (s == "float64" || s == "f64" || s == "fp64" || s == "double") return kFloat64;
  if (s == "float16" || s == "f16" || s == "fp16" || s == "half") return kFloat16;
  if (s == "bfloat16" || s == "bf16") return kBFloat16;
  if (s == "int32" || s == "i32" || s == "int") return kInt32;
  if (s == "int64" || s == "i64" || s == "long") return kInt64;
  if (s == "bool") return kBool;
  throw DTypeError(fmt::format("[dtype] unknown dtype '{}' (expected float32, float64, float16, "
                               "bfloat16, int32, int64 or bool)", in));
}

bool is_floating(DType t) {
  return t == kFloat16 || t == kBFloat16 || t == kFloat32 || t == kFloat64;
}
bool is_integral(DType t) { return t == kInt32 || t == kInt64; }

DType promote_types(DType a, DType b) {
  if (a == b) return a;
  auto category = [](DType t) { return t == kBool ? 0 : is_integral(t) ? 1 : 2; };
  if (category(a) != category(b)) return category(a) > category(b) ? a : b;
  if (category(a) == 1) return kInt64;  // int32 with int64
  // Two different floating types.
  if ((a == kFloat16 && b == kBFloat16) || (a == kBFloat16 && b == kFloat16)) return kFloat32;
  return itemsize(a) >= itemsize(b) ? a : b;
}

void throw_unsupported_dtype(const char* op, DType t) {
  throw DTypeError(fmt::format("[{}] unsupported dtype {}", op, dtype_name(t)));
}

}  // namespace minidl
