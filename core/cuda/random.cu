// Random fills from the Philox stream of core/philox.h, element i of the tensor drawing counter
// offset + i, as the CPU does: uniform numbers are bit-identical to the CPU's; normal ones agree
// to a few ulps (the device's logf/cosf are not the host's).
#include "core/cuda/common.cuh"
#include "core/cuda/kernels.h"
#include "core/philox.h"

namespace minidl::cuda {

namespace {

// ============================================================================ kernels

// out: n contiguous elements.
template <class T>
__global__ void fill_random_kernel(T* out, int64_t n, uint64_t seed, uint64_t offset, bool normal) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step) {
    const uint64_t k = static_cast<uint64_t>(i);
    out[i] = narrow<T>(normal ? philox::normal_at(seed, offset, k)
                              : philox::uniform_at(seed, offset, k));
  }
}

}  // namespace

// ============================================================================ launchers

void fill_random(const Tensor& t, bool normal, uint64_t seed, uint64_t offset) {
  MINIDL_CHECK(t.device().is_cuda() && t.is_contiguous(), ValueError,
               "[rand] expects a contiguous CUDA tensor, got {}", describe(t));
  const int64_t n = t.numel();
  if (n == 0) return;
  const int device = t.device().index;
  DeviceGuard guard(device);
  MINIDL_DISPATCH_FLOAT(t.dtype(), "rand", [&] {
    fill_random_kernel<<<grid_blocks(n, 256, device), 256, 0, current_stream(device)>>>(
        dptr<scalar_t>(t), n, seed, offset, normal);
  });
  MINIDL_CUDA_CHECK_LAUNCH("rand");
}

}  // namespace minidl::cuda
