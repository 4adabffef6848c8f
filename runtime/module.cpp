#include "runtime/module.h"

#if MINIDL_WITH_CUDA
#include "base/error.h"
#include "runtime/cuda_check.h"

namespace minidl::cuda {

Module::Module(const std::string& image, std::string what) : what_(std::move(what)) {
  MINIDL_CUDA_CHECK(cudaLibraryLoadData(&library_, image.data(), nullptr, nullptr, 0, nullptr, nullptr, 0),
                    what_.c_str());
}

Module::~Module() {
  // At process exit the runtime may already be gone; there is nothing useful to do on failure.
  if (library_) (void)cudaLibraryUnload(library_);
}

cudaKernel_t Module::kernel(const std::string& name) const {
  cudaKernel_t k = nullptr;
  MINIDL_CUDA_CHECK(cudaLibraryGetKernel(&k, library_, name.c_str()), what_.c_str());
  return k;
}

void set_dynamic_smem(cudaKernel_t kernel, size_t bytes, const char* op) {
  MINIDL_CUDA_CHECK(cudaFuncSetAttribute(reinterpret_cast<const void*>(kernel),
                                         cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)),
                    op);
}

void launch(cudaKernel_t kernel, unsigned grid, unsigned block, size_t smem_bytes, const void* params,
            const char* op) {
  void* args[] = {const_cast<void*>(params)};
  int device = 0;
  MINIDL_CUDA_CHECK(cudaGetDevice(&device), op);
  MINIDL_CUDA_CHECK(cudaLaunchKernel(reinterpret_cast<const void*>(kernel), dim3(grid), dim3(block), args,
                                     smem_bytes, current_stream(device)),
                    op);
}

}  // namespace minidl::cuda
#endif
