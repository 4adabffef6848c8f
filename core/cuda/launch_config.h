// Launch arithmetic of the eager kernels as pure host functions (no CUDA headers), so the tests
// check it without a GPU: powers of two, and the layout of the row kernels of row.cuh (threads
// per row, rows per block, and whether a block keeps its rows in dynamic shared memory).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

namespace minidl::cuda {

/// Smallest power of two >= n (n >= 1).
inline int next_pow2(int64_t n) {
  int p = 1;
  while (p < n && p < (1 << 30)) p <<= 1;
  return p;
}

/// Vectors of V elements each thread of a row kernel loads before using them.
constexpr int kRowUnroll = 4;
/// Most threads per row; the row kernels declare __launch_bounds__(kRowThreads), so that the
/// compiler keeps them within the registers a block of that size may use.
constexpr int kRowThreads = 512;
/// Most dynamic shared memory a row block uses to keep its rows, where the device allows it
/// (more would leave too few blocks per multiprocessor to hide the reads).
constexpr size_t kRowCacheBytes = 96 * 1024;
/// Shared memory, static and dynamic together, that a block of any CUDA device may use without
/// opting in (cudaFuncAttributeMaxDynamicSharedMemorySize).
constexpr size_t kDefaultSmemBytes = 48 * 1024;

/// How a row kernel runs over a contiguous (rows, n) tensor.
struct RowPlan {
  int threads_per_row = 0, rows_per_block = 0;  // block (threads_per_row, rows_per_block)
  int64_t blocks = 0;                           // grid (the kernels loop over row blocks)
  bool cached = false;                          // the block keeps its rows in dynamic shared memory
  size_t smem = 0;      // dynamic shared memory bytes: rows_per_block rows when cached, else 0
  bool opt_in = false;  // static + dynamic shared memory exceed kDefaultSmemBytes
};

/// Whether a row kernel may use V-element accesses: n % V == 0 and every pointer `aligned`.
inline bool row_vectorized(int64_t n, int V, bool aligned) {
  return V > 1 && n % V == 0 && aligned;
}

// NOTE [Row cache]
// A row kernel that reads its row twice (softmax, its backward, layer_norm) keeps it in dynamic
// shared memory between the passes when the block's rows fit: rows_per_block * n * (bytes the
// kernel keeps per element, e.g. 2 * sizeof(T) for the backward's g and y). The block's static
// shared memory (its reduction scratch) counts against the same limits: static + dynamic must
// stay within kDefaultSmemBytes unless the kernel opts in, and within the device's opt-in limit
// (cudaDevAttrMaxSharedMemoryPerBlockOptin, 227 KB on Hopper) in any case. Rows that do not fit
// min(kRowCacheBytes, opt-in limit - static) run the kernel's uncached variant, which reads the
// row from device memory again. (float64 softmax backward on rows of 3001 elements asked for
// 48016 + 2048 bytes without opting in, because only the dynamic part was compared with 48 KB.)

/// The layout of a row kernel over `rows` rows of n elements in V-element accesses.
/// cache_bytes_per_elem: bytes the cached variant keeps per element (0: it keeps none);
/// static_smem: the kernel's static shared memory; smem_optin: the device's opt-in limit of
/// shared memory per block (static included). NOTE [Row cache]
inline RowPlan plan_rows(int64_t rows, int64_t n, int V, size_t cache_bytes_per_elem,
                         size_t static_smem, size_t smem_optin) {
  RowPlan p;
  const int64_t nvec = n / V;
  p.threads_per_row = std::clamp(next_pow2((nvec + kRowUnroll - 1) / kRowUnroll), 32, kRowThreads);
  p.rows_per_block = std::max(1, 256 / p.threads_per_row);
  p.blocks = std::min<int64_t>((rows + p.rows_per_block - 1) / p.rows_per_block, INT32_MAX);
  const size_t limit =
      std::min(kRowCacheBytes, smem_optin > static_smem ? smem_optin - static_smem : size_t{0});
  const size_t per_row = static_cast<size_t>(p.rows_per_block) * cache_bytes_per_elem;
  // n <= limit / per_row first: the product cannot overflow.
  p.cached = per_row > 0 && static_cast<uint64_t>(n) <= limit / per_row;
  p.smem = p.cached ? per_row * static_cast<size_t>(n) : 0;
  p.opt_in = p.cached && static_smem + p.smem > kDefaultSmemBytes;
  return p;
}

}  // namespace minidl::cuda
