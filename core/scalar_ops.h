// Scalar functors: the single definition of every pointwise op's math, shared by the CPU
// kernels (g++), the precompiled CUDA kernels (nvcc) and the code the fusion compiler generates
// (NVRTC, which gets this file embedded as a string at build time). Keep it free of includes
// beyond <math.h>-level functions, which all three compilers provide.
//
// Functors take and return compute types (float, double, int32_t, int64_t, bool); see
// NOTE [Compute type] in core/dtype.h.
#pragma once

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define MINIDL_HD __host__ __device__ __forceinline__
#else
#include <cmath>
#define MINIDL_HD inline
#endif

// X(Enum, "name"): the unary pointwise ops. The functor has the same name as the enum value.
#define MINIDL_UNARY_OPS(X) \
  X(Neg, "neg")             \
  X(Exp, "exp")             \
  X(Log, "log")             \
  X(Sqrt, "sqrt")           \
  X(Rsqrt, "rsqrt")         \
  X(Abs, "abs")             \
  X(Sign, "sign")           \
  X(Tanh, "tanh")           \
  X(Sigmoid, "sigmoid")     \
  X(Relu, "relu")           \
  X(Gelu, "gelu")           \
  X(Silu, "silu")

// X(Enum, "name"): the binary pointwise ops (comparisons return bool).
#define MINIDL_BINARY_OPS(X) \
  X(Add, "add")              \
  X(Sub, "sub")              \
  X(Mul, "mul")              \
  X(Div, "div")              \
  X(Pow, "pow")              \
  X(Maximum, "maximum")      \
  X(Minimum, "minimum")      \
  X(Eq, "eq")                \
  X(Ne, "ne")                \
  X(Lt, "lt")                \
  X(Le, "le")                \
  X(Gt, "gt")                \
  X(Ge, "ge")

namespace minidl {
namespace sop {

#define MINIDL_FLOAT_FN(NAME, FEXPR, DEXPR)                          \
  struct NAME {                                                      \
    MINIDL_HD float operator()(float x) const { return FEXPR; }      \
    MINIDL_HD double operator()(double x) const { return DEXPR; }    \
  };

struct Neg {
  template <class T>
  MINIDL_HD T operator()(T x) const { return -x; }
};
MINIDL_FLOAT_FN(Exp, ::expf(x), ::exp(x))
MINIDL_FLOAT_FN(Log, ::logf(x), ::log(x))
MINIDL_FLOAT_FN(Sqrt, ::sqrtf(x), ::sqrt(x))
MINIDL_FLOAT_FN(Rsqrt, 1.0f / ::sqrtf(x), 1.0 / ::sqrt(x))
struct Abs {
  template <class T>
  MINIDL_HD T operator()(T x) const { return x < T(0) ? -x : x; }
};
struct Sign {
  template <class T>
  MINIDL_HD T operator()(T x) const { return T((T(0) < x) - (x < T(0))); }
};
MINIDL_FLOAT_FN(Tanh, ::tanhf(x), ::tanh(x))
MINIDL_FLOAT_FN(Sigmoid, 1.0f / (1.0f + ::expf(-x)), 1.0 / (1.0 + ::exp(-x)))
struct Relu {
  template <class T>
  MINIDL_HD T operator()(T x) const { return x > T(0) ? x : T(0); }
};
// GELU, tanh approximation: 0.5 x (1 + ::tanh(::sqrt(2/pi) (x + 0.044715 x^3))).
MINIDL_FLOAT_FN(Gelu, 0.5f * x * (1.0f + ::tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x))),
                0.5 * x * (1.0 + ::tanh(0.7978845608028654 * (x + 0.044715 * x * x * x))))
MINIDL_FLOAT_FN(Silu, x / (1.0f + ::expf(-x)), x / (1.0 + ::exp(-x)))
#undef MINIDL_FLOAT_FN

struct Add {
  template <class T>
  MINIDL_HD T operator()(T a, T b) const { return a + b; }
};
struct Sub {
  template <class T>
  MINIDL_HD T operator()(T a, T b) const { return a - b; }
};
struct Mul {
  template <class T>
  MINIDL_HD T operator()(T a, T b) const { return a * b; }
};
struct Div {
  template <class T>
  MINIDL_HD T operator()(T a, T b) const { return a / b; }
};
struct Pow {
  MINIDL_HD float operator()(float a, float b) const { return ::powf(a, b); }
  MINIDL_HD double operator()(double a, double b) const { return ::pow(a, b); }
};
// maximum/minimum propagate NaN, as PyTorch's do.
struct Maximum {
  template <class T>
  MINIDL_HD T operator()(T a, T b) const { return (a != a) ? a : ((b != b) ? b : (a > b ? a : b)); }
};
struct Minimum {
  template <class T>
  MINIDL_HD T operator()(T a, T b) const { return (a != a) ? a : ((b != b) ? b : (a < b ? a : b)); }
};
struct Eq {
  template <class T>
  MINIDL_HD bool operator()(T a, T b) const { return a == b; }
};
struct Ne {
  template <class T>
  MINIDL_HD bool operator()(T a, T b) const { return a != b; }
};
struct Lt {
  template <class T>
  MINIDL_HD bool operator()(T a, T b) const { return a < b; }
};
struct Le {
  template <class T>
  MINIDL_HD bool operator()(T a, T b) const { return a <= b; }
};
struct Gt {
  template <class T>
  MINIDL_HD bool operator()(T a, T b) const { return a > b; }
};
struct Ge {
  template <class T>
  MINIDL_HD bool operator()(T a, T b) const { return a >= b; }
};

struct Where {
  template <class T>
  MINIDL_HD T operator()(bool c, T a, T b) const { return c ? a : b; }
};

}  // namespace sop
}  // namespace minidl
