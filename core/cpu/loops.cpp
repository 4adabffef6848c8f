#include "core/cpu/loops.h"

namespace minidl::cpu {

Strides broadcast_byte_strides(const Tensor& t, const Shape& shape) {
  const int64_t n = static_cast<int64_t>(shape.size()), m = t.dim();
  const int64_t isz = static_cast<int64_t>(itemsize(t.dtype()));
  Strides out(n, 0);
  for (int64_t i = 0; i < m; ++i) {
    int64_t d = n - m + i;
    out[d] = t.shape()[i] == 1 ? 0 : t.strides()[i] * isz;
  }
  return out;
}

}  // namespace minidl::cpu
