#include "core/shape.h"

#include <algorithm>

#include "base/error.h"

namespace minidl {

int64_t numel(const Shape& s, const char* op) {
  int64_t n = 1, extent = 1;  // extent: the product without zeros, which bounds n and the strides
  for (int64_t d : s) {
    MINIDL_CHECK(d >= 0, ShapeError, "[{}] negative dimension in shape {}", op, shape_str(s));
    MINIDL_CHECK(!__builtin_mul_overflow(extent, std::max<int64_t>(d, 1), &extent), ShapeError,
                 "[{}] shape {} is too large: its sizes multiply past 2^63 - 1", op, shape_str(s));
    n *= d;
  }
  return n;
}

Strides contiguous_strides(const Shape& s) {
  Strides st(s.size());
  int64_t acc = 1;
  for (int64_t d = static_cast<int64_t>(s.size()) - 1; d >= 0; --d) {
    st[d] = acc;
    acc *= std::max<int64_t>(s[d], 1);
  }
  return st;
}

std::string shape_str(const Shape& s) {
  if (s.size() == 1) return fmt::format("({},)", s[0]);
  std::string out = "(";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + ")";
}

int64_t normalize_dim(int64_t dim, int64_t ndim, const char* op, const Shape& shape) {
  int64_t lo = ndim == 0 ? -1 : -ndim, hi = ndim == 0 ? 0 : ndim - 1;
  MINIDL_CHECK(dim >= lo && dim <= hi, ShapeError,
               "[{}] dim {} out of range for a tensor of shape {} (expected {} to {})", op, dim,
               shape_str(shape), lo, hi);
  return dim < 0 ? dim + std::max<int64_t>(ndim, 1) : dim;
}

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    MINIDL_CHECK(da == db || da == 1 || db == 1, ShapeError,
                 "[{}] shapes {} and {} cannot be broadcast together (dim {}: {} vs {})", op,
                 shape_str(a), shape_str(b), i, da, db);
    out[i] = da == 1 ? db : da;
  }
  return out;
}

}  // namespace minidl
