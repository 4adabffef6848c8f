// The row layout shared by the row kernels (softmax, its backward, layer_norm): a contiguous
// (rows, n) tensor, a group of blockDim.x threads per row and blockDim.y rows per block, rows
// read with 16-byte vectors when n and the pointers allow, and kept in shared memory between
// passes when they fit, so each element is read from device memory once.
#pragma once

#include <algorithm>

#include "core/cuda/common.cuh"

namespace minidl::cuda {

/// Vectors of V elements each thread loads before using them (memory-level parallelism).
constexpr int kRowUnroll = 4;
/// Most threads per row; the row kernels declare __launch_bounds__(kRowThreads), so that the
/// compiler keeps them within the registers a block of that size may use.
constexpr int kRowThreads = 512;
/// Shared memory a row block may use to keep its rows (beyond 48 KB needs an opt-in).
constexpr size_t kRowCacheBytes = 96 * 1024;

/// Grid, block and shared memory of a row kernel.
struct RowConfig {
  dim3 grid, block;
  bool vectorized;  // n % V == 0 and every pointer aligned: V-element accesses
  bool cached;      // rows kept in dynamic shared memory
  size_t smem = 0;  // dynamic shared memory bytes
};

/// Picks the row layout for `rows` rows of n elements of `bytes_per_elem` cached bytes (the
/// row's inputs together), V elements per vector. `aligned`: all pointers allow V-element
/// accesses.
inline RowConfig row_config(int64_t rows, int64_t n, int V, size_t bytes_per_elem, bool aligned) {
  RowConfig c{};
  c.vectorized = V > 1 && n % V == 0 && aligned;
  const int64_t nvec = c.vectorized ? n / V : n;
  const int tpr = std::clamp(next_pow2((nvec + kRowUnroll - 1) / kRowUnroll), 32, kRowThreads);
  const int rpb = std::max(1, 256 / tpr);
  c.block = dim3(static_cast<unsigned>(tpr), static_cast<unsigned>(rpb));
  // The kernels loop over row blocks (for_row_blocks), so the grid may be smaller than needed.
  c.grid = dim3(static_cast<unsigned>(std::min<int64_t>((rows + rpb - 1) / rpb, INT32_MAX)));
  const size_t bytes = static_cast<size_t>(rpb) * static_cast<size_t>(n) * bytes_per_elem;
  c.cached = bytes <= kRowCacheBytes;
  c.smem = c.cached ? bytes : 0;
  return c;
}

/// Lets `kernel` use c.smem bytes of dynamic shared memory (needed above 48 KB).
template <class Kernel>
void allow_row_smem(Kernel kernel, const RowConfig& c, const char* op) {
  if (c.smem > 48 * 1024)
    MINIDL_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           static_cast<int>(c.smem)),
                      op);
}

/// The rows of this thread: calls f(row, valid) once per block of blockDim.y rows, the same
/// number of times for every thread of the block (so f may synchronize the block).
template <class F>
__device__ __forceinline__ void for_row_blocks(int64_t rows, F f) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.y;
  for (int64_t base = static_cast<int64_t>(blockIdx.x) * blockDim.y; base < rows; base += step) {
    const int64_t row = base + threadIdx.y;
    f(row, row < rows);
  }
}

/// Calls f(j, vector) for each vector j of a row that this thread owns (j = threadIdx.x +
/// k * blockDim.x), loading kRowUnroll vectors before using them. row: nvec vectors.
template <class T, int V, class F>
__device__ __forceinline__ void for_row_vectors(const Vec<T, V>* row, int64_t nvec, F f) {
  for (int64_t j0 = threadIdx.x; j0 < nvec; j0 += static_cast<int64_t>(kRowUnroll) * blockDim.x) {
    Vec<T, V> v[kRowUnroll];
    MINIDL_UNROLL
    for (int u = 0; u < kRowUnroll; ++u) {
      const int64_t j = j0 + static_cast<int64_t>(u) * blockDim.x;
      if (j < nvec) v[u] = row[j];
    }
    MINIDL_UNROLL
    for (int u = 0; u < kRowUnroll; ++u) {
      const int64_t j = j0 + static_cast<int64_t>(u) * blockDim.x;
      if (j < nvec) f(j, v[u]);
    }
  }
}

// ---- online softmax: the row's maximum and sum of exponentials in one pass

/// Running maximum m and sum s of exp(x - m) over part of a row.
template <class C>
struct MaxSum {
  C m, s;
};

template <class C>
__device__ __forceinline__ MaxSum<C> shfl_xor(MaxSum<C> v, int o) {
  return {__shfl_xor_sync(0xffffffffu, v.m, o), __shfl_xor_sync(0xffffffffu, v.s, o)};
}

struct MaxSumOp {
  template <class C>
  __device__ __forceinline__ MaxSum<C> operator()(MaxSum<C> a, MaxSum<C> b) const {
    const C m = a.m > b.m ? a.m : b.m;
    if (m == C(-INFINITY)) return {m, a.s + b.s};  // no finite element on either side
    return {m, (a.m == m ? a.s : a.s * sop::Exp{}(a.m - m)) +
                   (b.m == m ? b.s : b.s * sop::Exp{}(b.m - m))};
  }
};

template <class C>
__device__ __forceinline__ void add_element(MaxSum<C>& ms, C e) {
  if (e > ms.m) {
    ms.s = ms.s * sop::Exp{}(ms.m - e) + C(1);
    ms.m = e;
  } else {
    ms.s += e == C(-INFINITY) ? C(0) : sop::Exp{}(e - ms.m);  // a NaN makes s NaN, as on the CPU
  }
}

/// add_element for each element of v, rescaling the sum once per vector: the vector's maximum
/// first (NaNs skipped; they still make the sum NaN), then one exponential per element.
template <class C, class T, int V>
__device__ __forceinline__ void add_vector(MaxSum<C>& ms, const Vec<T, V>& v) {
  C x[V], vm = ms.m;
  MINIDL_UNROLL
  for (int e = 0; e < V; ++e) {
    x[e] = widen(v.v[e]);
    vm = x[e] > vm ? x[e] : vm;
  }
  if (vm > ms.m) {
    ms.s *= sop::Exp{}(ms.m - vm);  // exp(-inf) = 0 while the row had no finite element
    ms.m = vm;
  }
  MINIDL_UNROLL
  for (int e = 0; e < V; ++e) ms.s += x[e] == C(-INFINITY) ? C(0) : sop::Exp{}(x[e] - ms.m);
}

/// The row's maximum as the CPU kernel uses it: a row with no finite maximum uses 0, so fully
/// masked rows give NaN (0 / 0) exactly as there.
template <class C>
__device__ __forceinline__ C row_max(const MaxSum<C>& ms) {
  return ms.m == C(-INFINITY) ? C(0) : ms.m;
}

/// for_row_vectors over two rows of one layout: f(j, vector of a, vector of b).
template <class T, int V, class F>
__device__ __forceinline__ void for_row_vectors2(const Vec<T, V>* a, const Vec<T, V>* b,
                                                 int64_t nvec, F f) {
  for (int64_t j0 = threadIdx.x; j0 < nvec; j0 += static_cast<int64_t>(kRowUnroll) * blockDim.x) {
    Vec<T, V> va[kRowUnroll], vb[kRowUnroll];
    MINIDL_UNROLL
    for (int u = 0; u < kRowUnroll; ++u) {
      const int64_t j = j0 + static_cast<int64_t>(u) * blockDim.x;
      if (j < nvec) {
        va[u] = a[j];
        vb[u] = b[j];
      }
    }
    MINIDL_UNROLL
    for (int u = 0; u < kRowUnroll; ++u) {
      const int64_t j = j0 + static_cast<int64_t>(u) * blockDim.x;
      if (j < nvec) f(j, va[u], vb[u]);
    }
  }
}

}  // namespace minidl::cuda
