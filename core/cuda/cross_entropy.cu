// cross_entropy forward: a row kernel computes each row's loss logsumexp(x) - x[target] (online
// softmax sums, as in softmax.cu) and flags targets out of range; a one-block kernel then takes
// the mean over the rows whose target is not ignore_index, in double as the CPU does. The
// backward is a composition of ops (CrossEntropy::vjp).
#include "core/cuda/kernels.h"
#include "core/cuda/row.cuh"

namespace minidl::cuda {

namespace {

// ============================================================================ kernels

// x: (rows, c) contiguous, V | c; target: (rows); loss: (rows) out. A target outside [0, c)
// that is not `ignore` puts its row into *bad (the smallest such row wins).
template <class T, int V, class Tgt>
__global__ void __launch_bounds__(kRowThreads)
    cross_entropy_rows_kernel(const T* __restrict__ x, const Tgt* __restrict__ target, int64_t rows,
                              int64_t c, int64_t ignore, double* __restrict__ loss,
                              unsigned long long* bad) {
  using C = compute_t<T>;
  using VecT = Vec<T, V>;
  __shared__ MaxSum<C> red[32 * 8];
  const int64_t nvec = c / V;
  for_row_blocks(rows, [&](int64_t row, bool valid) {
    const int64_t t = valid ? static_cast<int64_t>(target[row]) : ignore;
    bool use = valid && t != ignore;
    if (use && (t < 0 || t >= c)) {
      if (threadIdx.x == 0) atomicMin(bad, static_cast<unsigned long long>(row));
      use = false;
    }
    MaxSum<C> ms{C(-INFINITY), C(0)};
    if (use)
      for_row_vectors(reinterpret_cast<const VecT*>(x + row * c), nvec,
                      [&](int64_t, const VecT& v) {
                        MINIDL_UNROLL
                        for (int e = 0; e < V; ++e) add_element(ms, widen(v.v[e]));
                      });
    ms = row_reduce(ms, MaxSumOp{}, red);
    if (valid && threadIdx.x == 0)
      loss[row] = use ? static_cast<double>(ms.m + sop::Log{}(ms.s) - widen(x[row * c + t])) : 0.0;
  });
}

// loss, target: (rows). out[0] = mean of loss over rows with target != ignore (NaN if none).
// One block of blockDim.x threads.
template <class T, class Tgt>
__global__ void __launch_bounds__(1024)
    cross_entropy_mean_kernel(const double* __restrict__ loss, const Tgt* __restrict__ target,
                              int64_t rows, int64_t ignore, T* out) {
  __shared__ double red[32];
  double sum = 0, count = 0;
  for (int64_t i = threadIdx.x; i < rows; i += blockDim.x)
    if (static_cast<int64_t>(target[i]) != ignore) sum += loss[i], count += 1;
  sum = row_reduce(sum, AddOp{}, red);
  count = row_reduce(count, AddOp{}, red);
  if (threadIdx.x == 0) out[0] = narrow<T>(count > 0 ? sum / count : static_cast<double>(NAN));
}

// ============================================================================ launchers

template <class HostT, class Tgt>
void launch_cross_entropy(const Tensor& x, const Tensor& target, int64_t ignore, const Tensor& out,
                          const Tensor& loss, unsigned long long* bad) {
  using T = device_t<HostT>;
  constexpr int V = 16 / sizeof(T);
  const int device = x.device().index;
  cudaStream_t stream = current_stream(device);
  const int64_t rows = x.size(0), c = x.size(1);
  const T* px = dptr<HostT>(x);
  const Tgt* pt = static_cast<const Tgt*>(target.data_ptr());
  double* pl = static_cast<double*>(loss.data_ptr());
  if (rows > 0) {
    // One pass over each row (nothing to cache).
    if (row_vectorized(c, V, is_aligned(px, 16)))
      launch_rows(cross_entropy_rows_kernel<T, V, Tgt>, cross_entropy_rows_kernel<T, V, Tgt>, rows,
                  c, V, 0, device, stream, "cross_entropy", px, pt, rows, c, ignore, pl, bad);
    else
      launch_rows(cross_entropy_rows_kernel<T, 1, Tgt>, cross_entropy_rows_kernel<T, 1, Tgt>, rows,
                  c, 1, 0, device, stream, "cross_entropy", px, pt, rows, c, ignore, pl, bad);
  }
  cross_entropy_mean_kernel<T, Tgt><<<1, 1024, 0, stream>>>(pl, pt, rows, ignore, dptr<HostT>(out));
  MINIDL_CUDA_CHECK_LAUNCH("cross_entropy");
}

}  // namespace

Tensor cross_entropy(const Tensor& logits, const Tensor& target_in, int64_t ignore_index) {
  MINIDL_CHECK(logits.device().is_cuda() && logits.dim() == 2 && target_in.dim() == 1 &&
                   target_in.size(0) == logits.size(0) && is_integral(target_in.dtype()),
               ShapeError,
               "[cross_entropy] expects CUDA logits (N, C) and int targets (N,), got {} and {}",
               describe(logits), describe(target_in));
  const Tensor x = logits.contiguous();
  const Tensor target = target_in.to(x.device()).contiguous();
  const int64_t rows = x.size(0), c = x.size(1);
  const Device dev = x.device();
  DeviceGuard guard(dev.index);
  cudaStream_t stream = current_stream(dev.index);
  Tensor out = empty({}, x.dtype(), dev, "cross_entropy");
  Tensor loss = workspace(sizeof(double) * static_cast<size_t>(std::max<int64_t>(rows, 1)), dev,
                          "cross_entropy");
  Tensor flag = workspace(sizeof(unsigned long long), dev, "cross_entropy");
  auto* bad = static_cast<unsigned long long*>(flag.data_ptr());
  MINIDL_CUDA_CHECK(cudaMemsetAsync(bad, 0xff, sizeof(unsigned long long), stream),
                    "cross_entropy");
  MINIDL_DISPATCH_FLOAT(x.dtype(), "cross_entropy", [&] {
    if (target.dtype() == kInt64)
      launch_cross_entropy<scalar_t, int64_t>(x, target, ignore_index, out, loss, bad);
    else
      launch_cross_entropy<scalar_t, int32_t>(x, target, ignore_index, out, loss, bad);
  });
  unsigned long long first_bad = 0;
  memcpy(&first_bad, kCPU, bad, dev, sizeof(first_bad));  // synchronizes
  if (first_bad != ~0ull) {
    const int64_t row = static_cast<int64_t>(first_bad);
    throw IndexError(fmt::format(
        "[cross_entropy] target {} at row {} is out of range for {} classes (logits {})",
        target.slice(0, row, row + 1).item<int64_t>(), row, c, shape_str(x.shape())));
  }
  return out;
}

}  // namespace minidl::cuda
