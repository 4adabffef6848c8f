// triu / tril: keeps element (i, j) of each matrix of the last two dims where j - i >= k
// (upper) or j - i <= k (lower), zero elsewhere. Elements are moved as raw bits of their size.
#include "core/cuda/common.cuh"
#include "core/cuda/kernels.h"

namespace minidl::cuda {

namespace {

// ============================================================================ kernels

// x, out: n contiguous elements, matrices of rows x cols.
template <class Bits, class Index>
__global__ void triangle_kernel(const Bits* x, Bits* out, Index n, IntDivider<Index> cols,
                                IntDivider<Index> rows, int64_t k, bool upper) {
  const Index step = gridDim.x * blockDim.x;
  for (Index idx = blockIdx.x * blockDim.x + threadIdx.x; idx < n; idx += step) {
    const DivMod<Index> rc = cols.divmod(idx);
    const int64_t j = static_cast<int64_t>(rc.mod);
    const int64_t i = static_cast<int64_t>(rows.divmod(rc.div).mod);
    const bool keep = upper ? (j - i >= k) : (j - i <= k);
    out[idx] = keep ? x[idx] : Bits(0);
  }
}

template <class Bits, class Index>
void launch_triangle_indexed(const Tensor& x, const Tensor& out, bool upper, int64_t k,
                             int device) {
  const int64_t n = x.numel();
  triangle_kernel<Bits, Index><<<grid_blocks(n, 256, device), 256, 0, current_stream(device)>>>(
      static_cast<const Bits*>(x.data_ptr()), static_cast<Bits*>(out.data_ptr()),
      static_cast<Index>(n), IntDivider<Index>(static_cast<Index>(x.size(-1))),
      IntDivider<Index>(static_cast<Index>(x.size(-2))), k, upper);
}

template <class Bits>
void launch_triangle(const Tensor& x, const Tensor& out, bool upper, int64_t k, int device) {
  if (x.numel() <= INT32_MAX)
    launch_triangle_indexed<Bits, uint32_t>(x, out, upper, k, device);
  else
    launch_triangle_indexed<Bits, uint64_t>(x, out, upper, k, device);
}

}  // namespace

// ============================================================================ launchers

Tensor triangle(const Tensor& x_in, bool upper, int64_t k) {
  const char* name = upper ? "triu" : "tril";
  MINIDL_CHECK(x_in.dim() >= 2, ShapeError, "[{}] expects a tensor of at least 2 dims, got {}",
               name, shape_str(x_in.shape()));
  const Tensor x = x_in.contiguous();
  Tensor out = empty(x.shape(), x.dtype(), x.device(), name);
  if (x.numel() == 0) return out;
  const int device = x.device().index;
  DeviceGuard guard(device);
  switch (itemsize(x.dtype())) {
    case 1:
      launch_triangle<uint8_t>(x, out, upper, k, device);
      break;
    case 2:
      launch_triangle<uint16_t>(x, out, upper, k, device);
      break;
    case 4:
      launch_triangle<uint32_t>(x, out, upper, k, device);
      break;
    case 8:
      launch_triangle<uint64_t>(x, out, upper, k, device);
      break;
    default:
      throw_unsupported_dtype(name, x.dtype());
  }
  MINIDL_CUDA_CHECK_LAUNCH(name);
  return out;
}

}  // namespace minidl::cuda
