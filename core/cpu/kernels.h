// CPU kernels shared by several ops.
#pragma once

#include "core/shape.h"
#include "core/tensor.h"

namespace minidl::cpu {

/// dst[i] = convert(src[i]) elementwise over dst's shape (src broadcast to it), any dtypes,
/// any strides. dst and src must not overlap.
void convert(const Tensor& dst, const Tensor& src);
/// Sets every element of dst to v (converted to dst's dtype).
void fill(const Tensor& dst, double v);
/// Byte strides of t.
Strides byte_strides(const Tensor& t);

}  // namespace minidl::cpu
