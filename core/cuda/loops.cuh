// Elementwise kernels over one output and any number of inputs (the CUDA side of
// core/cpu/loops.h). An input is a strided array broadcast to the output's shape, a one-element
// device tensor every element reads, or a scalar passed by value (a 0-dim CPU tensor; see
// common_device in core/primitive.cpp). Two kernels: a vectorized one when every array is
// contiguous and aligned (two 16-byte accesses per operand in flight per thread), and a strided
// one that computes each operand's offset from the linear index (OffsetCalc).
#pragma once

#include <array>
#include <utility>

#include "core/cuda/common.cuh"

namespace minidl::cuda {

/// An input operand as the kernels see it.
template <class T>
struct In {
  const T* ptr;        // nullptr: read `value`
  compute_t<T> value;  // the by-value scalar
  bool single;         // ptr holds one element that every output element reads
};

template <class T>
__device__ __forceinline__ compute_t<T> read(const In<T>& in, int64_t i) {
  return in.ptr ? widen(in.ptr[in.single ? 0 : i]) : in.value;
}

/// V consecutive elements of an input, loaded with vector accesses when it is an array.
template <class T, int V>
struct VecIn {
  Vec<T, V> vec;
  compute_t<T> value;
  bool array;
  __device__ __forceinline__ VecIn(const In<T>& in, int64_t i) : array(in.ptr && !in.single) {
    if (array) {
      vec = reinterpret_cast<const Vec<T, V>*>(in.ptr)[i];
    } else {
      value = in.ptr ? widen(*in.ptr) : in.value;
    }
  }
  __device__ __forceinline__ compute_t<T> operator[](int j) const {
    return array ? widen(vec.v[j]) : value;
  }
};

// ============================================================================ kernels

template <int V, class F, class Out, class... Vs>
__device__ __forceinline__ void store_vec(const F& f, Out* out, int64_t i, const Vs&... in) {
  Vec<Out, V> o;
  MINIDL_UNROLL
  for (int j = 0; j < V; ++j) o.v[j] = narrow<Out>(f(in[j]...));
  reinterpret_cast<Vec<Out, V>*>(out)[i] = o;
}

// out, in: n contiguous elements, aligned for Vec<., V>.
template <int V, class F, class Out, class... Ins>
__global__ void __launch_bounds__(256)
    elementwise_contiguous_kernel(int64_t n, F f, Out* out, In<Ins>... in) {
  const int64_t nvec = n / V, step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (int64_t i = tid; i < nvec; i += step) store_vec<V>(f, out, i, VecIn<Ins, V>(in, i)...);
  for (int64_t i = nvec * V + tid; i < n; i += step) out[i] = narrow<Out>(f(read(in, i)...));
}

template <class F, class Out, class Off, size_t... Is, class... Ins>
__device__ __forceinline__ void apply_strided(const F& f, Out* out, const Off& off,
                                              std::index_sequence<Is...>, const In<Ins>&... in) {
  out[off[0]] = narrow<Out>(f(read(in, off[Is + 1])...));
}

// out, in: any strides over one shape of n elements (oc: operand 0 is out).
template <class Index, class F, class Out, class... Ins>
__global__ void __launch_bounds__(256)
    elementwise_strided_kernel(Index n, OffsetCalc<1 + sizeof...(Ins), Index> oc, F f, Out* out,
                               In<Ins>... in) {
  const Index step = gridDim.x * blockDim.x;
  for (Index i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step)
    apply_strided(f, out, oc.get(i), std::index_sequence_for<Ins...>{}, in...);
}

template <class T>
__device__ __forceinline__ In<T> at_offset(const In<T>& in, int64_t off, bool row_broadcast) {
  return in.ptr && !in.single ? In<T>{in.ptr + off, in.value, row_broadcast} : in;
}

template <int V, class F, class Out, class Off, size_t... Is, class... Ins>
__device__ __forceinline__ void apply_rows(const F& f, Out* out, const Off& off, unsigned row_broadcast,
                                           std::index_sequence<Is...>, const In<Ins>&... in) {
  store_vec<V>(f, out + off[0], 0, VecIn<Ins, V>(at_offset(in, off[Is + 1], (row_broadcast >> Is) & 1u), 0)...);
}

// out, in: any strides over one shape whose last dim is a multiple of V; along it, out and every
// array operand are contiguous with V-aligned rows, except the operands of bit k of
// `row_broadcast`, which have stride 0 there (one value per row). V elements per thread, as
// the contiguous kernel, with one offset computation per vector.
template <int V, class Index, class F, class Out, class... Ins>
__global__ void __launch_bounds__(256)
    elementwise_rows_kernel(Index nvec, OffsetCalc<1 + sizeof...(Ins), Index> oc, unsigned row_broadcast, F f,
                            Out* out, In<Ins>... in) {
  const Index step = gridDim.x * blockDim.x;
  for (Index i = blockIdx.x * blockDim.x + threadIdx.x; i < nvec; i += step)
    apply_rows<V>(f, out, oc.get(i * V), row_broadcast, std::index_sequence_for<Ins...>{}, in...);
}

// ============================================================================ launcher

/// The kernel-side view of an input tensor of host scalar type HostT.
template <class HostT>
In<device_t<HostT>> make_in(const Tensor& t, const Tensor& out, const char* op) {
  MINIDL_CHECK(t.dtype() == dtype_of<HostT>(), DTypeError,
               "[{}] CUDA kernel expects a {} operand, got {}", op, dtype_name(dtype_of<HostT>()),
               describe(t));
  In<device_t<HostT>> r{nullptr, compute_t<HostT>{}, false};
  if (t.device().is_cpu()) {
    MINIDL_CHECK(t.dim() == 0, DeviceError, "[{}] a CPU operand of a CUDA op must be 0-dim, got {}",
                 op, describe(t));
    r.value = static_cast<compute_t<HostT>>(*static_cast<const HostT*>(t.data_ptr()));
  } else {
    MINIDL_CHECK(t.device() == out.device(), DeviceError, "[{}] operand {} is not on {}", op,
                 describe(t), out.device().str());
    r.ptr = dptr<HostT>(t);
    r.single = t.numel() == 1 && out.numel() > 1;
  }
  return r;
}

/// out[i] = f(inputs[i]...) over out's shape. OutT and InTs are the host scalar types of out
/// and of each input (in order); f takes and returns compute types. out may have any strides
/// (it must not overlap an input); inputs are broadcast to out's shape or are 0-dim CPU scalars.
template <class OutT, class... InTs, class F, class... Tensors>
void launch_elementwise(const char* op, const Tensor& out, F f, const Tensors&... inputs) {
  static_assert(sizeof...(InTs) == sizeof...(Tensors), "one host type per input");
  constexpr int N = 1 + sizeof...(InTs);
  constexpr int kThreads = 256;
  using Out = device_t<OutT>;
  constexpr int V = vec_elems<Out, device_t<InTs>...>();
  const int64_t n = out.numel();
  MINIDL_CHECK(out.dtype() == dtype_of<OutT>(), DTypeError,
               "[{}] CUDA kernel expects a {} output, got {}", op, dtype_name(dtype_of<OutT>()),
               describe(out));
  if (n == 0) return;
  const int device = out.device().index;
  DeviceGuard guard(device);
  cudaStream_t stream = current_stream(device);

  [[maybe_unused]] auto fast = [&](const Tensor& t, size_t align) {
    return t.device().is_cpu() || t.numel() == 1 ||
           (t.shape() == out.shape() && t.is_contiguous() && is_aligned(t.data_ptr(), align));
  };
  bool contiguous = out.is_contiguous() && is_aligned(out.data_ptr(), vec_align<Out, V>());
  ((contiguous = contiguous && fast(inputs, vec_align<device_t<InTs>, V>())), ...);

  if (contiguous) {
    elementwise_contiguous_kernel<V>
        <<<grid_blocks((n + V - 1) / V, kThreads, device), kThreads, 0, stream>>>(
            n, f, dptr<OutT>(out), make_in<InTs>(inputs, out, op)...);
  } else {
    const std::array<Strides, N> st{
        out.strides(), (inputs.device().is_cpu() ? Strides(out.shape().size(), 0)
                                                 : broadcast_strides(inputs, out.shape()))...};
    // Rows of V-element vectors (e.g. a bias added along the last dim): every array operand is
    // contiguous along the last dim with V-aligned rows, or broadcast along it.
    unsigned row_broadcast = 0;
    bool rows = V > 1 && n <= INT32_MAX && !out.shape().empty() && out.shape().back() % V == 0;
    auto vec_rows = [&](const Strides& s, const void* p, size_t align) {
      bool ok = s.back() == 1 && is_aligned(p, align);
      for (size_t d = 0; d + 1 < s.size(); ++d) ok = ok && (out.shape()[d] == 1 || s[d] % V == 0);
      return ok;
    };
    rows = rows && vec_rows(st[0], out.data_ptr(), vec_align<Out, V>());
    [[maybe_unused]] int k = 0;
    [[maybe_unused]] auto operand_rows = [&](const Tensor& t, size_t align) {
      const Strides& s = st[static_cast<size_t>(k + 1)];
      if (!t.device().is_cpu() && t.numel() > 1) {
        if (s.back() == 0)
          row_broadcast |= 1u << k;
        else
          rows = rows && vec_rows(s, t.data_ptr(), align);
      }
      ++k;
    };
    (operand_rows(inputs, vec_align<device_t<InTs>, V>()), ...);
    if (rows) {
      elementwise_rows_kernel<V, uint32_t>
          <<<grid_blocks(n / V, kThreads, device), kThreads, 0, stream>>>(
              static_cast<uint32_t>(n / V), make_offset_calc<N, uint32_t>(out.shape(), st, op), row_broadcast, f,
              dptr<OutT>(out), make_in<InTs>(inputs, out, op)...);
    } else if (n <= INT32_MAX) {
      elementwise_strided_kernel<uint32_t>
          <<<grid_blocks(n, kThreads, device), kThreads, 0, stream>>>(
              static_cast<uint32_t>(n), make_offset_calc<N, uint32_t>(out.shape(), st, op), f,
              dptr<OutT>(out), make_in<InTs>(inputs, out, op)...);
    } else {
      elementwise_strided_kernel<uint64_t>
          <<<grid_blocks(n, kThreads, device), kThreads, 0, stream>>>(
              static_cast<uint64_t>(n), make_offset_calc<N, uint64_t>(out.shape(), st, op), f,
              dptr<OutT>(out), make_in<InTs>(inputs, out, op)...);
    }
  }
  MINIDL_CUDA_CHECK_LAUNCH(op);
}

}  // namespace minidl::cuda
