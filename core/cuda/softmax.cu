// softmax / log_softmax along one dim, and their backward, as one-pass row kernels: each row's
// maximum and sum of exponentials are found together (online softmax: the running sum is
// rescaled when the maximum grows), combined across the row's threads with warp shuffles and
// shared memory, then the row is written (log_softmax as (x - m) - log(sum), as on the CPU:
// forming m + log(sum) first would round away the digits of x - m); the row stays in shared
// memory between the two passes when it fits (NOTE [Row cache] in launch_config.h). The
// backward reads y and the gradient g once: dot = sum(g * y) (or sum(g) for log_softmax), then
// y * (g - dot) (or g - exp(y) * dot). Along a dim other than the last, a column kernel gives
// each thread one row (neighbouring threads, neighbouring rows).
#include "core/cuda/kernels.h"
#include "core/cuda/row.cuh"

namespace minidl::cuda {

namespace {

// ============================================================================ kernels

// x, y: (rows, n) contiguous, V | n. Dynamic shared memory (kCached): blockDim.y rows.
template <class T, int V, bool kLog, bool kCached>
__global__ void __launch_bounds__(kRowThreads)
    softmax_rows_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t rows, int64_t n) {
  using C = compute_t<T>;
  using VecT = Vec<T, V>;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  __shared__ MaxSum<C> red[32 * 8];
  const int64_t nvec = n / V;
  VecT* cache = reinterpret_cast<VecT*>(smem_raw) + static_cast<int64_t>(threadIdx.y) * nvec;
  for_row_blocks(rows, [&](int64_t row, bool valid) {
    const VecT* xr = reinterpret_cast<const VecT*>(x + (valid ? row : 0) * n);
    MaxSum<C> ms{C(-INFINITY), C(0)};
    if (valid)
      for_row_vectors(xr, nvec, [&](int64_t j, const VecT& v) {
        if constexpr (kCached) cache[j] = v;
        add_vector(ms, v);
      });
    ms = row_reduce(ms, MaxSumOp{}, red);
    if (!valid) return;
    const C m = row_max(ms), inv = C(1) / ms.s, ls = sop::Log{}(ms.s);
    VecT* yr = reinterpret_cast<VecT*>(y + row * n);
    for (int64_t j = threadIdx.x; j < nvec; j += blockDim.x) {
      const VecT v = kCached ? cache[j] : xr[j];
      VecT o;
      MINIDL_UNROLL
      for (int e = 0; e < V; ++e) {
        const C xe = widen(v.v[e]);
        o.v[e] = narrow<T>(kLog ? (xe - m) - ls : sop::Exp{}(xe - m) * inv);
      }
      yr[j] = o;
    }
  });
}

// g, y, gx: (rows, n) contiguous, V | n. Dynamic shared memory (kCached): blockDim.y rows of g
// then y.
template <class T, int V, bool kLog, bool kCached>
__global__ void __launch_bounds__(kRowThreads)
    softmax_backward_rows_kernel(const T* __restrict__ g, const T* __restrict__ y,
                                 T* __restrict__ gx, int64_t rows, int64_t n) {
  using C = compute_t<T>;
  using VecT = Vec<T, V>;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  __shared__ C red[32 * 8];
  const int64_t nvec = n / V;
  VecT* gc = reinterpret_cast<VecT*>(smem_raw) + static_cast<int64_t>(threadIdx.y) * 2 * nvec;
  VecT* yc = gc + nvec;
  for_row_blocks(rows, [&](int64_t row, bool valid) {
    const int64_t at = (valid ? row : 0) * n;
    const VecT* gr = reinterpret_cast<const VecT*>(g + at);
    const VecT* yr = reinterpret_cast<const VecT*>(y + at);
    C dot = 0;
    if (valid)
      for_row_vectors2(gr, yr, nvec, [&](int64_t j, const VecT& vg, const VecT& vy) {
        if constexpr (kCached) {
          gc[j] = vg;
          yc[j] = vy;
        }
        MINIDL_UNROLL
        for (int e = 0; e < V; ++e) dot += kLog ? widen(vg.v[e]) : widen(vg.v[e]) * widen(vy.v[e]);
      });
    dot = row_reduce(dot, AddOp{}, red);
    if (!valid) return;
    VecT* out = reinterpret_cast<VecT*>(gx + at);
    for (int64_t j = threadIdx.x; j < nvec; j += blockDim.x) {
      const VecT vg = kCached ? gc[j] : gr[j];
      const VecT vy = kCached ? yc[j] : yr[j];
      VecT o;
      MINIDL_UNROLL
      for (int e = 0; e < V; ++e) {
        const C ge = widen(vg.v[e]), ye = widen(vy.v[e]);
        o.v[e] = narrow<T>(kLog ? ge - sop::Exp{}(ye)*dot : ye * (ge - dot));
      }
      out[j] = o;
    }
  });
}

// x, y: contiguous (outer, n, inner); softmax along n, one thread per (outer, inner) row.
template <class T, bool kLog>
__global__ void softmax_cols_kernel(const T* x, T* y, int64_t outer, int64_t n, int64_t inner) {
  using C = compute_t<T>;
  const int64_t total = outer * inner, step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < total;
       t += step) {
    const int64_t o = t / inner, base = o * n * inner + (t - o * inner);
    MaxSum<C> ms{C(-INFINITY), C(0)};
    for (int64_t j = 0; j < n; ++j) add_element(ms, widen(x[base + j * inner]));
    const C m = row_max(ms), inv = C(1) / ms.s, ls = sop::Log{}(ms.s);
    for (int64_t j = 0; j < n; ++j) {
      const C xe = widen(x[base + j * inner]);
      y[base + j * inner] = narrow<T>(kLog ? (xe - m) - ls : sop::Exp{}(xe - m) * inv);
    }
  }
}

// g, y, gx: contiguous (outer, n, inner); one thread per (outer, inner) row.
template <class T, bool kLog>
__global__ void softmax_backward_cols_kernel(const T* g, const T* y, T* gx, int64_t outer,
                                             int64_t n, int64_t inner) {
  using C = compute_t<T>;
  const int64_t total = outer * inner, step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < total;
       t += step) {
    const int64_t o = t / inner, base = o * n * inner + (t - o * inner);
    C dot = 0;
    for (int64_t j = 0; j < n; ++j) {
      const int64_t i = base + j * inner;
      dot += kLog ? widen(g[i]) : widen(g[i]) * widen(y[i]);
    }
    for (int64_t j = 0; j < n; ++j) {
      const int64_t i = base + j * inner;
      const C ge = widen(g[i]), ye = widen(y[i]);
      gx[i] = narrow<T>(kLog ? ge - sop::Exp{}(ye)*dot : ye * (ge - dot));
    }
  }
}

// ============================================================================ launchers

/// x viewed as contiguous (outer, n, inner) around dim.
struct RowShape {
  int64_t outer, n, inner;
};

RowShape row_shape(const Tensor& x, int64_t dim) {
  RowShape s{1, x.dim() == 0 ? 1 : x.shape()[dim], 1};
  for (int64_t d = dim + 1; d < x.dim(); ++d) s.inner *= x.shape()[d];
  s.outer = x.numel() / (s.n * s.inner);
  return s;
}

template <class HostT, bool kLog>
void launch_softmax(const Tensor& x, const Tensor& y, const RowShape& s, const char* op) {
  using T = device_t<HostT>;
  constexpr int V = 16 / sizeof(T);
  const int device = x.device().index;
  cudaStream_t stream = current_stream(device);
  const T* px = dptr<HostT>(x);
  T* py = dptr<HostT>(y);
  if (s.inner != 1) {
    softmax_cols_kernel<T, kLog><<<grid_blocks(s.outer * s.inner, 256, device), 256, 0, stream>>>(
        px, py, s.outer, s.n, s.inner);
    return;
  }
  const bool vec = row_vectorized(s.n, V, is_aligned(px, 16) && is_aligned(py, 16));
  auto launch = [&](auto cached, auto plain, int v) {
    launch_rows(cached, plain, s.outer, s.n, v, sizeof(T), device, stream, op, px, py, s.outer,
                s.n);
  };
  if (vec)
    launch(softmax_rows_kernel<T, V, kLog, true>, softmax_rows_kernel<T, V, kLog, false>, V);
  else
    launch(softmax_rows_kernel<T, 1, kLog, true>, softmax_rows_kernel<T, 1, kLog, false>, 1);
}

template <class HostT, bool kLog>
void launch_softmax_backward(const Tensor& g, const Tensor& y, const Tensor& gx, const RowShape& s,
                             const char* op) {
  using T = device_t<HostT>;
  constexpr int V = 16 / sizeof(T);
  const int device = g.device().index;
  cudaStream_t stream = current_stream(device);
  const T* pg = dptr<HostT>(g);
  const T* py = dptr<HostT>(y);
  T* pgx = dptr<HostT>(gx);
  if (s.inner != 1) {
    softmax_backward_cols_kernel<T, kLog>
        <<<grid_blocks(s.outer * s.inner, 256, device), 256, 0, stream>>>(pg, py, pgx, s.outer, s.n,
                                                                          s.inner);
    return;
  }
  const bool vec =
      row_vectorized(s.n, V, is_aligned(pg, 16) && is_aligned(py, 16) && is_aligned(pgx, 16));
  auto launch = [&](auto cached, auto plain, int v) {
    launch_rows(cached, plain, s.outer, s.n, v, 2 * sizeof(T), device, stream, op, pg, py, pgx,
                s.outer, s.n);
  };
  if (vec)
    launch(softmax_backward_rows_kernel<T, V, kLog, true>,
           softmax_backward_rows_kernel<T, V, kLog, false>, V);
  else
    launch(softmax_backward_rows_kernel<T, 1, kLog, true>,
           softmax_backward_rows_kernel<T, 1, kLog, false>, 1);
}

}  // namespace

Tensor softmax(const Tensor& x_in, int64_t dim, bool log) {
  const char* op = log ? "log_softmax" : "softmax";
  MINIDL_CHECK(x_in.device().is_cuda(), DeviceError, "[{}] expects a CUDA tensor, got {}", op,
               describe(x_in));
  const Tensor x = x_in.contiguous();
  Tensor y = empty(x.shape(), x.dtype(), x.device(), op);
  if (x.numel() == 0) return y;
  const RowShape s = row_shape(x, dim);
  DeviceGuard guard(x.device().index);
  MINIDL_DISPATCH_FLOAT(x.dtype(), op, [&] {
    if (log)
      launch_softmax<scalar_t, true>(x, y, s, op);
    else
      launch_softmax<scalar_t, false>(x, y, s, op);
  });
  MINIDL_CUDA_CHECK_LAUNCH(op);
  return y;
}

Tensor softmax_backward(const Tensor& g_in, const Tensor& y_in, int64_t dim, bool log) {
  const char* op = log ? "log_softmax_backward" : "softmax_backward";
  MINIDL_CHECK(
      g_in.shape() == y_in.shape() && g_in.dtype() == y_in.dtype() &&
          g_in.device() == y_in.device() && g_in.device().is_cuda(),
      ShapeError,
      "[{}] expects a gradient and an output of one shape, dtype and CUDA device, got {} and {}",
      op, describe(g_in), describe(y_in));
  const Tensor g = g_in.contiguous(), y = y_in.contiguous();
  Tensor gx = empty(g.shape(), g.dtype(), g.device(), op);
  if (g.numel() == 0) return gx;
  const RowShape s = row_shape(g, dim);
  DeviceGuard guard(g.device().index);
  MINIDL_DISPATCH_FLOAT(g.dtype(), op, [&] {
    if (log)
      launch_softmax_backward<scalar_t, true>(g, y, gx, s, op);
    else
      launch_softmax_backward<scalar_t, false>(g, y, gx, s, op);
  });
  MINIDL_CUDA_CHECK_LAUNCH(op);
  return gx;
}

}  // namespace minidl::cuda
