// Element types, their sizes and names, promotion, and the dtype dispatch macros that turn a
// runtime DType into a C++ type for a kernel body.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "core/half.h"

namespace minidl {

enum class DType : uint8_t { Bool, Int32, Int64, Float16, BFloat16, Float32, Float64 };

constexpr DType kBool = DType::Bool;
constexpr DType kInt32 = DType::Int32;
constexpr DType kInt64 = DType::Int64;
constexpr DType kFloat16 = DType::Float16;
constexpr DType kBFloat16 = DType::BFloat16;
constexpr DType kFloat32 = DType::Float32;
constexpr DType kFloat64 = DType::Float64;

/// Bytes per element.
size_t itemsize(DType t);
/// "float32", "bfloat16", ... (PyTorch's names).
const char* dtype_name(DType t);
/// Parses "float32"/"f32"/"fp32", "bfloat16"/"bf16", ...; throws DTypeError on anything else.
DType dtype_from_string(const std::string& s);
bool is_floating(DType t);
bool is_integral(DType t);  // Int32, Int64 (not Bool)
/// Result type of a binary op: bool < integers < floating, and the wider within a category.
/// float16 with bfloat16 gives float32, as in PyTorch.
DType promote_types(DType a, DType b);

// NOTE [Compute type]
// float16 and bfloat16 are storage types: kernels load them, compute in float and store back.
// float64 computes in double, everything else in its own type.
template <class T>
struct ComputeType {
  using type = T;
};
template <>
struct ComputeType<Half> {
  using type = float;
};
template <>
struct ComputeType<BFloat16> {
  using type = float;
};
template <class T>
using compute_t = typename ComputeType<T>::type;

template <DType D>
struct CppType;
template <>
struct CppType<kBool> {
  using type = bool;
};
template <>
struct CppType<kInt32> {
  using type = int32_t;
};
template <>
struct CppType<kInt64> {
  using type = int64_t;
};
template <>
struct CppType<kFloat16> {
  using type = Half;
};
template <>
struct CppType<kBFloat16> {
  using type = BFloat16;
};
template <>
struct CppType<kFloat32> {
  using type = float;
};
template <>
struct CppType<kFloat64> {
  using type = double;
};

template <class T>
constexpr DType dtype_of();
template <>
constexpr DType dtype_of<bool>() { return kBool; }
template <>
constexpr DType dtype_of<int32_t>() { return kInt32; }
template <>
constexpr DType dtype_of<int64_t>() { return kInt64; }
template <>
constexpr DType dtype_of<Half>() { return kFloat16; }
template <>
constexpr DType dtype_of<BFloat16>() { return kBFloat16; }
template <>
constexpr DType dtype_of<float>() { return kFloat32; }
template <>
constexpr DType dtype_of<double>() { return kFloat64; }

[[noreturn]] void throw_unsupported_dtype(const char* op, DType t);

}  // namespace minidl

// Calls BODY with `scalar_t` bound to the C++ type of DTYPE. The _FLOAT variant accepts the four
// floating types, _ALL every type. Unsupported types throw a DTypeError naming OP.
#define MINIDL_DTYPE_CASE(D, ...)                        \
  case D: {                                              \
    using scalar_t = typename ::minidl::CppType<D>::type; \
    __VA_ARGS__();                                       \
    break;                                               \
  }
#define MINIDL_DISPATCH_FLOAT(DTYPE, OP, ...)                         \
  switch (DTYPE) {                                                    \
    MINIDL_DTYPE_CASE(::minidl::kFloat32, __VA_ARGS__)                \
    MINIDL_DTYPE_CASE(::minidl::kFloat64, __VA_ARGS__)                \
    MINIDL_DTYPE_CASE(::minidl::kFloat16, __VA_ARGS__)                \
    MINIDL_DTYPE_CASE(::minidl::kBFloat16, __VA_ARGS__)               \
    default: ::minidl::throw_unsupported_dtype(OP, DTYPE);            \
  }
#define MINIDL_DISPATCH_ALL(DTYPE, OP, ...)                           \
  switch (DTYPE) {                                                    \
    MINIDL_DTYPE_CASE(::minidl::kFloat32, __VA_ARGS__)                \
    MINIDL_DTYPE_CASE(::minidl::kFloat64, __VA_ARGS__)                \
    MINIDL_DTYPE_CASE(::minidl::kFloat16, __VA_ARGS__)                \
    MINIDL_DTYPE_CASE(::minidl::kBFloat16, __VA_ARGS__)               \
    MINIDL_DTYPE_CASE(::minidl::kInt32, __VA_ARGS__)                  \
    MINIDL_DTYPE_CASE(::minidl::kInt64, __VA_ARGS__)                  \
    MINIDL_DTYPE_CASE(::minidl::kBool, __VA_ARGS__)                   \
    default: ::minidl::throw_unsupported_dtype(OP, DTYPE);            \
  }
