// Shapes and strides: element counts, contiguous strides, dim normalisation, broadcasting.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace minidl {

using Shape = std::vector<int64_t>;
using Strides = std::vector<int64_t>;

/// The element count. Throws ShapeError naming op and shape when a size is negative or the
/// sizes (zeros counted as 1, so every stride fits too) multiply past int64.
int64_t numel(const Shape& s, const char* op = "numel");
/// Row-major strides, in elements.
Strides contiguous_strides(const Shape& s);
/// "(2, 3, 4)"; "()" for a scalar.
std::string shape_str(const Shape& s);
/// Maps dim in [-ndim, ndim) to [0, ndim); throws ShapeError naming op and shape otherwise.
int64_t normalize_dim(int64_t dim, int64_t ndim, const char* op, const Shape& shape);
/// numpy broadcasting of two shapes; throws ShapeError naming op and both shapes.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);

}  // namespace minidl
