// The row layout shared by the row kernels (softmax, its backward, layer_norm): a contiguous
// (rows, n) tensor, a group of blockDim.x threads per row and blockDim.y rows per block, rows
// read with 16-byte vectors when n and the pointers allow, and kept in shared memory between
// passes when they fit (NOTE [Row cache] in launch_config.h), so each element is read from
// device memory once.
#pragma once

#include <map>
#include <mutex>
#include <utility>

#include "core/cuda/common.cuh"
#include "core/cuda/launch_config.h"

namespace minidl::cuda {

/// A row kernel's static shared memory and its device's opt-in limit of shared memory per block.
struct RowKernelSmem {
  size_t static_bytes, optin;
};

/// The RowKernelSmem of `kernel` on `device`, read once per kernel and device. The first call
/// with `opt_in` lets the kernel use all of the opt-in limit (cudaFuncSetAttribute).
inline RowKernelSmem row_kernel_smem(const void* kernel, int device, bool opt_in, const char* op) {
  struct Entry {
    RowKernelSmem smem;
    bool opted_in;
  };
  static std::mutex mu;
  static std::map<std::pair<const void*, int>, Entry> entries;
  std::lock_guard<std::mutex> lock(mu);
  auto it = entries.find({kernel, device});
  if (it == entries.end()) {
    cudaFuncAttributes a{};
    MINIDL_CUDA_CHECK(cudaFuncGetAttributes(&a, kernel), op);
    int optin = 0;
    MINIDL_CUDA_CHECK(
        cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device), op);
    it =
        entries.insert({{kernel, device}, {{a.sharedSizeBytes, static_cast<size_t>(optin)}, false}})
            .first;
  }
  Entry& e = it->second;
  if (opt_in && !e.opted_in) {
    MINIDL_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           static_cast<int>(e.smem.optin - e.smem.static_bytes)),
                      op);
    e.opted_in = true;
  }
  return e.smem;
}

/// Runs a row kernel over `rows` rows of n elements in V-element accesses on the current
/// device: `cached` (keeps its block's rows in dynamic shared memory, cache_bytes_per_elem
/// bytes per element) where they fit, else `plain` (reads them again; may be `cached` itself
/// when cache_bytes_per_elem is 0). Both take args. NOTE [Row cache]
template <class... P, class... A>
void launch_rows(void (*cached)(P...), void (*plain)(P...), int64_t rows, int64_t n, int V,
                 size_t cache_bytes_per_elem, int device, cudaStream_t stream, const char* op,
                 A... args) {
  const void* key = reinterpret_cast<const void*>(cached);
  const RowKernelSmem k = row_kernel_smem(key, device, false, op);
  const RowPlan p = plan_rows(rows, n, V, cache_bytes_per_elem, k.static_bytes, k.optin);
  const dim3 grid(static_cast<unsigned>(p.blocks));
  const dim3 block(static_cast<unsigned>(p.threads_per_row),
                   static_cast<unsigned>(p.rows_per_block));
  if (p.cached) {
    if (p.opt_in) row_kernel_smem(key, device, true, op);
    cached<<<grid, block, p.smem, stream>>>(args...);
  } else {
    plain<<<grid, block, 0, stream>>>(args...);
  }
  MINIDL_CUDA_CHECK_LAUNCH(op);
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
