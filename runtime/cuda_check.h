// CUDA-build-only helpers shared by every file that calls the CUDA runtime, cuBLAS or NVRTC:
// one checking macro that names the call and the op, and the stream all work is ordered on.
#pragma once

#include "core/config.h"
#if MINIDL_WITH_CUDA
#include <cuda_runtime.h>

namespace minidl::cuda {

/// Throws OutOfMemoryError for cudaErrorMemoryAllocation, else DeviceError, with a message
/// naming the op, the call, the CUDA error and the source location. Does nothing on success.
void check(cudaError_t err, const char* call, const char* op, const char* file, int line);

/// The stream minidl orders its work on for a device (created on first use, non-blocking).
cudaStream_t current_stream(int device = 0);

}  // namespace minidl::cuda

/// MINIDL_CUDA_CHECK(cudaMemcpyAsync(...), "to_device"): checks a CUDA runtime call.
#define MINIDL_CUDA_CHECK(call, op) ::minidl::cuda::check((call), #call, (op), __FILE__, __LINE__)
/// Checks the last kernel launch.
#define MINIDL_CUDA_CHECK_LAUNCH(op) MINIDL_CUDA_CHECK(cudaGetLastError(), (op))
#endif
