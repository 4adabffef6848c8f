// The cuBLAS handle of a device (CUDA builds only): one per device, bound to the device's stream
// (current_stream), with a workspace of its own from cudaMalloc (no tensor, so outside the
// allocator's stats). cuBLAS handles are not thread-safe: a Cublas holds the handle's lock.
#pragma once

#include "base/config.h"
#if MINIDL_WITH_CUDA
#include <cstddef>
#include <cublas_v2.h>

#include <mutex>

namespace minidl::cuda {

/// The handle of a device, locked for the lifetime of this object.
class Cublas {
 public:
  explicit Cublas(int device);
  cublasHandle_t handle() const { return handle_; }

 private:
  std::unique_lock<std::mutex> lock_;
  cublasHandle_t handle_ = nullptr;
};

/// Bytes of cuBLAS workspace each handle holds (cuBLAS's recommendation for Hopper).
constexpr size_t kCublasWorkspaceBytes = size_t(32) << 20;

/// Throws OutOfMemoryError for CUBLAS_STATUS_ALLOC_FAILED, else DeviceError, naming the op, the
/// call, the status and the source location. Does nothing on success.
void check_cublas(cublasStatus_t status, const char* call, const char* op, const char* file,
                  int line);

}  // namespace minidl::cuda

/// MINIDL_CUBLAS_CHECK(cublasGemmEx(...), "matmul"): checks a cuBLAS call.
#define MINIDL_CUBLAS_CHECK(call, op) \
  ::minidl::cuda::check_cublas((call), #call, (op), __FILE__, __LINE__)
#endif
