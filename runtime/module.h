// Loading and launching run-time compiled code through the CUDA runtime's library API
// (cudaLibraryLoadData, cudaLibraryGetKernel, cudaLaunchKernel): the driver library is never
// linked (DESIGN.md, "Runtime"). CUDA builds only.
#pragma once

#include "base/config.h"
#if MINIDL_WITH_CUDA
#include <cuda_runtime.h>

#include <cstddef>
#include <string>

namespace minidl::cuda {

/// A cubin loaded into every device's context (RAII over cudaLibrary_t).
class Module {
 public:
  /// Loads a cubin image; `what` names it in errors. Throws DeviceError.
  Module(const std::string& image, std::string what);
  ~Module();
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  /// The __global__ function `name` (extern "C") of this module. Throws DeviceError if absent.
  cudaKernel_t kernel(const std::string& name) const;

 private:
  cudaLibrary_t library_ = nullptr;
  std::string what_;
};

/// Lets `kernel` use `bytes` of dynamic shared memory on the current device (needed past 48 KB).
void set_dynamic_smem(cudaKernel_t kernel, size_t bytes, const char* op);

/// Launches a kernel whose only argument is a parameter block passed by value (the generated
/// kernels' convention, compiler/codegen/device/kernel_params.h), on the current stream.
void launch(cudaKernel_t kernel, unsigned grid, unsigned block, size_t smem_bytes, const void* params,
            const char* op);

}  // namespace minidl::cuda
#endif
