// Index math of the strided CUDA kernels, usable on the host too (so the tests check it without
// a GPU): division by a run-time constant as a multiply and a shift, and the element offsets of
// N operands at a linear index of a row-major shape.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <tuple>

#include "base/error.h"
#include "core/cpu/loops.h"
#include "core/scalar_ops.h"  // MINIDL_HD
#include "core/shape.h"
#include "core/tensor.h"

namespace minidl::cuda {

// `#pragma unroll` for device code only (host compilers would warn about an unknown pragma).
#if defined(__CUDA_ARCH__)
#define MINIDL_UNROLL _Pragma("unroll")
#else
#define MINIDL_UNROLL
#endif

/// Dims a strided kernel handles after merging (coalescing) contiguous ones.
constexpr int kMaxDims = 12;

template <class T, int N>
struct Array {
  T v[N];
  MINIDL_HD T& operator[](int i) { return v[i]; }
  MINIDL_HD const T& operator[](int i) const { return v[i]; }
};

template <class I>
struct DivMod {
  I div, mod;
};

/// n / d and n % d for a fixed d. The 32-bit version (Granlund and Montgomery; PyTorch's
/// IntDivider) needs n <= INT32_MAX, so that t + n below does not overflow.
template <class I>
struct IntDivider;

template <>
struct IntDivider<uint32_t> {
  uint32_t divisor = 1, m1 = 1, shift = 0;
  IntDivider() = default;
  explicit IntDivider(uint32_t d) : divisor(d ? d : 1) {
    for (shift = 0; shift < 32; ++shift)
      if ((uint64_t(1) << shift) >= divisor) break;
    const uint64_t magic = ((uint64_t(1) << 32) * ((uint64_t(1) << shift) - divisor)) / divisor + 1;
    m1 = static_cast<uint32_t>(magic);  // < 2^32 because 2^(shift-1) < divisor <= 2^shift
  }
  MINIDL_HD uint32_t div(uint32_t n) const {
#if defined(__CUDA_ARCH__)
    const uint32_t t = __umulhi(n, m1);
#else
    const uint32_t t = static_cast<uint32_t>((static_cast<uint64_t>(n) * m1) >> 32);
#endif
    return (t + n) >> shift;
  }
  MINIDL_HD DivMod<uint32_t> divmod(uint32_t n) const {
    const uint32_t q = div(n);
    return {q, n - q * divisor};
  }
};

template <>
struct IntDivider<uint64_t> {
  uint64_t divisor = 1;
  IntDivider() = default;
  explicit IntDivider(uint64_t d) : divisor(d ? d : 1) {}
  MINIDL_HD DivMod<uint64_t> divmod(uint64_t n) const { return {n / divisor, n % divisor}; }
};

/// Element offsets of N operands viewed with one row-major shape (stride 0 along broadcast
/// dims). Dims are stored innermost first; the outermost needs no division.
template <int N, class Index>
struct OffsetCalc {
  int ndim = 0;
  IntDivider<Index> sizes[kMaxDims];
  int64_t strides[kMaxDims][N];

  MINIDL_HD Array<int64_t, N> get(Index linear) const {
    Array<int64_t, N> off;
    MINIDL_UNROLL
    for (int k = 0; k < N; ++k) off[k] = 0;
    MINIDL_UNROLL
    for (int d = 0; d < kMaxDims; ++d) {
      if (d == ndim) break;
      Index r = linear;
      if (d + 1 < ndim) {
        const DivMod<Index> qr = sizes[d].divmod(linear);
        r = qr.mod;
        linear = qr.div;
      }
      MINIDL_UNROLL
      for (int k = 0; k < N; ++k) off[k] += static_cast<int64_t>(r) * strides[d][k];
    }
    return off;
  }
};

/// The OffsetCalc of N operands over `shape` (strides in elements, one array per operand, each
/// of shape.size() entries), with dims contiguous for every operand merged and size-1 dims
/// dropped. Throws ShapeError naming op when more than kMaxDims dims remain.
template <int N, class Index>
OffsetCalc<N, Index> make_offset_calc(Shape shape, const std::array<Strides, N>& strides,
                                      const char* op) {
  cpu::LoopOperands<N> ops{};
  for (int k = 0; k < N; ++k) ops.strides[k] = strides[k];
  const Shape original = shape;
  cpu::coalesce<N>(shape, ops);
  OffsetCalc<N, Index> oc;
  // A single remaining dim of size 1 (a one-element tensor) needs no dims at all.
  if (numel(shape) <= 1) return oc;
  MINIDL_CHECK(static_cast<int>(shape.size()) <= kMaxDims, ShapeError,
               "[{}] CUDA kernels take at most {} non-mergeable dims, got a tensor of shape {}", op,
               kMaxDims, shape_str(original));
  oc.ndim = static_cast<int>(shape.size());
  for (int d = 0; d < oc.ndim; ++d) {
    const size_t src = shape.size() - 1 - static_cast<size_t>(d);  // innermost first
    oc.sizes[d] = IntDivider<Index>(static_cast<Index>(shape[src]));
    for (int k = 0; k < N; ++k) oc.strides[d][k] = ops.strides[k][src];
  }
  return oc;
}

/// Element strides of t seen through `shape` (t broadcast to it: 0 along size-1 and missing
/// leading dims).
inline Strides broadcast_strides(const Tensor& t, const Shape& shape) {
  const size_t n = shape.size(), m = t.shape().size();
  MINIDL_CHECK(m <= n, ShapeError, "[broadcast] {} has more dims than {}", shape_str(t.shape()),
               shape_str(shape));
  Strides out(n, 0);
  for (size_t i = 0; i < m; ++i) out[n - m + i] = t.shape()[i] == 1 ? 0 : t.strides()[i];
  return out;
}

}  // namespace minidl::cuda
