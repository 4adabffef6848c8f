// The error hierarchy. Every user-facing failure throws one of these; nothing aborts on bad input.
// Messages start with the op in brackets and name the shapes, dtypes or devices involved:
//   [matmul] inner dimensions differ: a is (2, 3), b is (4, 5)
#pragma once

#include <spdlog/fmt/fmt.h>

#include <stdexcept>
#include <string>

namespace minidl {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};
/// Shapes that do not fit the op (mismatch, bad dim, bad view).
class ShapeError : public Error {
 public:
  using Error::Error;
};
/// A dtype the op does not accept.
class DTypeError : public Error {
 public:
  using Error::Error;
};
/// Tensors on the wrong or mixed devices, or a device that does not exist.
class DeviceError : public Error {
 public:
  using Error::Error;
};
/// An allocation over the device's memory or the configured limit.
class OutOfMemoryError : public Error {
 public:
  using Error::Error;
};
/// Generated code that failed to compile (carries the compiler log).
class CompileError : public Error {
 public:
  using Error::Error;
};
/// An index out of range (embedding ids, cross_entropy targets, one_hot ids, select).
class IndexError : public Error {
 public:
  using Error::Error;
};
/// A bad argument value or a call in the wrong state (backward twice, bad option, item() of a
/// tensor that has not exactly one element, data of a placeholder).
class ValueError : public Error {
 public:
  using Error::Error;
};

}  // namespace minidl

// MINIDL_CHECK(cond, ErrorType, "fmt", args...): throws ErrorType(formatted) when cond is false.
#define MINIDL_CHECK(cond, ErrorT, ...) \
  do {                                  \
    if (!(cond)) throw ErrorT(fmt::format(__VA_ARGS__)); \
  } while (0)
