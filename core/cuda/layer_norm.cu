// layer_norm over the last dim as a one-pass row kernel: the row is read once (kept in shared
// memory when it fits: NOTE [Row cache] in launch_config.h), its mean and then the mean of
// squared deviations (two-pass variance, as the CPU computes it) are block reductions, and
// y = (x - mean) * rstd [* weight + bias].
// The backward is a composition of ops (LayerNorm::vjp).
#include "core/cuda/kernels.h"
#include "core/cuda/row.cuh"

namespace minidl::cuda {

namespace {

// ============================================================================ kernels

// x, y: (rows, n) contiguous, V | n; w, b: (n) or null (kAffine false). Dynamic shared memory
// (kCached): blockDim.y rows.
template <class T, int V, bool kCached, bool kAffine>
__global__ void __launch_bounds__(kRowThreads)
    layer_norm_kernel(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ b,
                      T* __restrict__ y, int64_t rows, int64_t n, compute_t<T> eps) {
  using C = compute_t<T>;
  using VecT = Vec<T, V>;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  __shared__ C red[32 * 8];
  const int64_t nvec = n / V;
  VecT* cache = reinterpret_cast<VecT*>(smem_raw) + static_cast<int64_t>(threadIdx.y) * nvec;
  const VecT* wv = reinterpret_cast<const VecT*>(w);
  const VecT* bv = reinterpret_cast<const VecT*>(b);
  for_row_blocks(rows, [&](int64_t row, bool valid) {
    const VecT* xr = reinterpret_cast<const VecT*>(x + (valid ? row : 0) * n);
    C sum = 0;
    if (valid)
      for_row_vectors(xr, nvec, [&](int64_t j, const VecT& v) {
        if constexpr (kCached) cache[j] = v;
        MINIDL_UNROLL
        for (int e = 0; e < V; ++e) sum += widen(v.v[e]);
      });
    const C mean = row_reduce(sum, AddOp{}, red) / static_cast<C>(n);
    C sq = 0;
    if (valid)
      for (int64_t j = threadIdx.x; j < nvec; j += blockDim.x) {
        const VecT v = kCached ? cache[j] : xr[j];
        MINIDL_UNROLL
        for (int e = 0; e < V; ++e) {
          const C d = widen(v.v[e]) - mean;
          sq += d * d;
        }
      }
    const C rstd = sop::Rsqrt{}(row_reduce(sq, AddOp{}, red) / static_cast<C>(n) + eps);
    if (!valid) return;
    VecT* yr = reinterpret_cast<VecT*>(y + row * n);
    for (int64_t j = threadIdx.x; j < nvec; j += blockDim.x) {
      const VecT v = kCached ? cache[j] : xr[j];
      VecT o;
      if constexpr (kAffine) {
        const VecT vw = wv[j], vb = bv[j];
        MINIDL_UNROLL
        for (int e = 0; e < V; ++e)
          o.v[e] = narrow<T>((widen(v.v[e]) - mean) * rstd * widen(vw.v[e]) + widen(vb.v[e]));
      } else {
        MINIDL_UNROLL
        for (int e = 0; e < V; ++e) o.v[e] = narrow<T>((widen(v.v[e]) - mean) * rstd);
      }
      yr[j] = o;
    }
  });
}

// ============================================================================ launchers

template <class HostT>
void launch_layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& y,
                       double eps) {
  using T = device_t<HostT>;
  using C = compute_t<T>;
  constexpr int V = 16 / sizeof(T);
  const int device = x.device().index;
  cudaStream_t stream = current_stream(device);
  const int64_t n = x.shape().back(), rows = x.numel() / n;
  const T* px = dptr<HostT>(x);
  const T* pw = w.defined() ? dptr<HostT>(w) : nullptr;
  const T* pb = b.defined() ? dptr<HostT>(b) : nullptr;
  T* py = dptr<HostT>(y);
  const bool aligned = is_aligned(px, 16) && is_aligned(py, 16) &&
                       (!pw || (is_aligned(pw, 16) && is_aligned(pb, 16)));
  const bool vec = row_vectorized(n, V, aligned);
  auto pick = [&](auto vec_elems, auto affine) {
    constexpr int kV = decltype(vec_elems)::value;
    constexpr bool kAffine = decltype(affine)::value;
    launch_rows(layer_norm_kernel<T, kV, true, kAffine>, layer_norm_kernel<T, kV, false, kAffine>,
                rows, n, kV, sizeof(T), device, stream, "layer_norm", px, pw, pb, py, rows, n,
                static_cast<C>(eps));
  };
  using Affine = std::true_type;
  using Plain = std::false_type;
  if (vec)
    pw ? pick(std::integral_constant<int, V>{}, Affine{})
       : pick(std::integral_constant<int, V>{}, Plain{});
  else
    pw ? pick(std::integral_constant<int, 1>{}, Affine{})
       : pick(std::integral_constant<int, 1>{}, Plain{});
}

}  // namespace

Tensor layer_norm(const Tensor& x_in, const Tensor& w_in, const Tensor& b_in, double eps) {
  MINIDL_CHECK(x_in.device().is_cuda() && x_in.dim() >= 1, DeviceError,
               "[layer_norm] expects a CUDA tensor of at least 1 dim, got {}", describe(x_in));
  MINIDL_CHECK(w_in.defined() == b_in.defined(), ValueError,
               "[layer_norm] weight and bias must both be given or both be undefined");
  const Tensor x = x_in.contiguous();
  const Tensor w = w_in.defined() ? w_in.contiguous() : Tensor();
  const Tensor b = b_in.defined() ? b_in.contiguous() : Tensor();
  Tensor y = empty(x.shape(), x.dtype(), x.device(), "layer_norm");
  if (x.numel() == 0) return y;
  DeviceGuard guard(x.device().index);
  MINIDL_DISPATCH_FLOAT(x.dtype(), "layer_norm",
                        [&] { launch_layer_norm<scalar_t>(x, w, b, y, eps); });
  MINIDL_CUDA_CHECK_LAUNCH("layer_norm");
  return y;
}

}  // namespace minidl::cuda
