// CUDA-build-only helpers shared by every file that calls the CUDA runtime, cuBLAS or NVRTC:
// one checking macro that names the call and the op, the stream all work is ordered on, and a
// guard that makes a device current.
#pragma once

#include "base/config.h"
#if MINIDL_WITH_CUDA
#include <cuda_runtime.h>

namespace minidl::cuda {

/// Throws OutOfMemoryError for cudaErrorMemoryAllocation, else DeviceError, with a message
/// naming the op, the call, the CUDA error and the source location. Does nothing on success.
void check(cudaError_t err, const char* call, const char* op, const char* file, int line);

/// The stream minidl orders its work on for a device (created on first use, non-blocking).
/// Every kernel, copy and cuBLAS call of minidl goes to it, so work on one device runs in
/// program order (see NOTE [Stream-ordered reuse] in runtime/allocator.cpp).
cudaStream_t current_stream(int device = 0);

/// Makes `device` current for the scope (a no-op when it already is), restoring the previous
/// one at exit.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = -1;  // -1: nothing to restore
};

}  // namespace minidl::cuda

/// MINIDL_CUDA_CHECK(cudaMemcpyAsync(...), "to_device"): checks a CUDA runtime call.
#define MINIDL_CUDA_CHECK(call, op) ::minidl::cuda::check((call), #call, (op), __FILE__, __LINE__)
/// Checks the last kernel launch.
#define MINIDL_CUDA_CHECK_LAUNCH(op) MINIDL_CUDA_CHECK(cudaGetLastError(), (op))
#endif
