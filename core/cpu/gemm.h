// Blocked CPU matrix product for matmul: C = A B over strided operands of any float dtype.
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace minidl::cpu {

/// One (M x K) @ (K x N) product. Element (i, k) of A is at a + i*sa0 + k*sa1 (in elements),
/// likewise for B and C. T is the storage type; products accumulate in compute_t<T>.
template <class T>
void gemm(int64_t m, int64_t n, int64_t k, const T* a, int64_t sa0, int64_t sa1, const T* b,
          int64_t sb0, int64_t sb1, T* c, int64_t sc0, int64_t sc1);

}  // namespace minidl::cpu
