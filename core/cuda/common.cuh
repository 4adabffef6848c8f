// Building blocks shared by the kernels of core/cuda/ (nvcc only): the device storage and
// compute types of each dtype, loads and stores, vectors, warp and block reductions, and the
// host-side launch helpers (device pointers, grid sizes, workspaces).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>
#include <type_traits>

#include "core/cuda/launch_config.h"  // next_pow2
#include "core/cuda/offsets.h"
#include "core/dtype.h"
#include "core/scalar_ops.h"
#include "core/tensor.h"
#include "runtime/cuda.h"
#include "runtime/cuda_check.h"

namespace minidl {

// float16/bfloat16 compute in float on the device as on the host (NOTE [Compute type]).
template <>
struct ComputeType<__half> {
  using type = float;
};
template <>
struct ComputeType<__nv_bfloat16> {
  using type = float;
};

namespace cuda {

// ---- types

/// The device storage type of a host scalar type: Half -> __half, BFloat16 -> __nv_bfloat16.
template <class T>
struct DeviceStorage {
  using type = T;
};
template <>
struct DeviceStorage<Half> {
  using type = __half;
};
template <>
struct DeviceStorage<BFloat16> {
  using type = __nv_bfloat16;
};
template <class T>
using device_t = typename DeviceStorage<T>::type;

/// Sums accumulate in float for 16-bit types, double for double, int64 for integers and bool.
template <class T>
using sum_acc_t =
    std::conditional_t<std::is_same_v<compute_t<T>, double>, double,
                       std::conditional_t<std::is_floating_point_v<compute_t<T>>, float, int64_t>>;

/// A stored value in its compute type.
template <class T>
__device__ __forceinline__ compute_t<T> widen(T x) {
  return x;
}
__device__ __forceinline__ float widen(__half x) { return __half2float(x); }
__device__ __forceinline__ float widen(__nv_bfloat16 x) { return __bfloat162float(x); }

/// A compute value rounded to a storage type (round to nearest even, as the host's Half and
/// BFloat16 do).
template <class T, class C>
__device__ __forceinline__ T narrow(C x) {
  if constexpr (std::is_same_v<T, __half>) {
    return __float2half_rn(static_cast<float>(x));
  } else if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    return __float2bfloat16_rn(static_cast<float>(x));
  } else {
    return static_cast<T>(x);
  }
}

/// V elements loaded or stored with one access (16 bytes at most per access).
template <class T, int V>
struct alignas(sizeof(T) * V >= 16 ? 16 : sizeof(T) * V) Vec {
  T v[V];
};

/// Elements per thread of a vectorized elementwise kernel: 32 bytes of the widest operand,
/// i.e. two 16-byte accesses in flight per operand.
template <class... Ts>
constexpr int vec_elems() {
  size_t widest = 1;
  ((widest = sizeof(Ts) > widest ? sizeof(Ts) : widest), ...);
  return static_cast<int>(32 / widest);
}

/// Alignment a pointer needs for Vec<T, V> accesses.
template <class T, int V>
constexpr size_t vec_align() {
  return alignof(Vec<T, V>);
}

inline bool is_aligned(const void* p, size_t a) { return reinterpret_cast<uintptr_t>(p) % a == 0; }

// ---- reductions

/// The value of lane (this lane ^ o) of the warp. Overload it (in T's namespace) for structs.
template <class T>
__device__ __forceinline__ T shfl_xor(T v, int o) {
  return __shfl_xor_sync(0xffffffffu, v, o);
}

/// Reduces v over the 32 lanes of a warp; every lane gets the result.
template <class T, class Op>
__device__ __forceinline__ T warp_reduce(T v, Op op) {
  MINIDL_UNROLL
  for (int o = 16; o > 0; o >>= 1) v = op(v, shfl_xor(v, o));
  return v;
}

/// Reduces v over the threads of one block row (threadIdx.x; blockDim.x a power of two from 32
/// to 1024); every thread of the row gets the result. `smem` holds 32 Ts per block row
/// (blockDim.y rows). Every thread of the block must call it (it synchronizes the block).
template <class T, class Op>
__device__ __forceinline__ T row_reduce(T v, Op op, T* smem) {
  v = warp_reduce(v, op);
  if (blockDim.x == 32) return v;
  T* s = smem + threadIdx.y * 32;
  const unsigned lane = threadIdx.x % 32, warp = threadIdx.x / 32, nwarps = blockDim.x / 32;
  __syncthreads();  // an earlier call's readers are done with smem
  if (lane == 0) s[warp] = v;
  __syncthreads();
  // Each aligned group of nwarps lanes holds the nwarps partial results; a butterfly within
  // the group leaves every lane with their combination.
  T r = s[lane & (nwarps - 1)];
  for (unsigned o = nwarps / 2; o > 0; o >>= 1) r = op(r, shfl_xor(r, static_cast<int>(o)));
  return r;
}

struct AddOp {
  template <class T>
  __device__ __forceinline__ T operator()(T a, T b) const {
    return a + b;
  }
};
struct MaxOp {
  template <class T>
  __device__ __forceinline__ T operator()(T a, T b) const {
    return a > b ? a : b;
  }
};

// ---- host side

/// Multiprocessors of a device (read once per device).
inline int sm_count(int device) {
  static std::atomic<int> cache[64];
  if (device < 0 || device >= 64) return 132;  // sizing only: any positive count is correct
  int n = cache[device].load(std::memory_order_relaxed);
  if (n == 0) {
    MINIDL_CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device), "launch");
    cache[device].store(n, std::memory_order_relaxed);
  }
  return n;
}

/// Blocks for a grid-stride kernel over `items` work items of `threads` threads each: enough
/// to cover them, at most `waves` full waves of 2048 threads per multiprocessor.
inline unsigned grid_blocks(int64_t items, int threads, int device, int waves = 8) {
  const int64_t cap = static_cast<int64_t>(sm_count(device)) * (2048 / threads) * waves;
  const int64_t need = (items + threads - 1) / threads;
  return static_cast<unsigned>(need < 1 ? 1 : (need < cap ? need : cap));
}

/// The device pointer of t's first element as its device storage type (t must be on a GPU).
template <class HostT>
device_t<HostT>* dptr(const Tensor& t) {
  return static_cast<device_t<HostT>*>(t.data_ptr());
}

/// An uninitialised device buffer of at least nbytes, from the caching allocator.
inline Tensor workspace(size_t nbytes, Device device, const char* op) {
  return empty({static_cast<int64_t>((nbytes + 7) / 8)}, kInt64, device, op);
}

}  // namespace cuda
}  // namespace minidl
