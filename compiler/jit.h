// The NVRTC JIT: generated CUDA source -> cubin for the device's architecture -> a loaded
// kernel, through the kernel cache (compiler/kernel_cache.h). NVRTC runs without a GPU, so CI
// compiles every generated kernel for sm_90 on machines that cannot run them.
//
// Environment: MINIDL_DUMP_DIR (write every generated .cu there), MINIDL_JIT_VERBOSE=1 (ptxas
// resource usage of each compile in the log, at info level).
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "base/config.h"
#include "base/error.h"
#include "compiler/codegen/kernel.h"
#if MINIDL_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace minidl::jit {

/// NVRTC rejected generated source: the message, the compiler log and where the source was
/// dumped (MINIDL_DUMP_DIR, else a temp file).
class JitCompileError : public CompileError {
 public:
  JitCompileError(const std::string& message, std::string log, std::string source_path)
      : CompileError(message), log_(std::move(log)), source_path_(std::move(source_path)) {}
  const std::string& log() const { return log_; }
  const std::string& source_path() const { return source_path_; }

 private:
  std::string log_, source_path_;
};

/// Writes a generated kernel's source to MINIDL_DUMP_DIR (once per source per process) and
/// returns the path; "" when MINIDL_DUMP_DIR is unset.
std::string dump_source(const std::string& name, const std::string& source);

#if MINIDL_WITH_CUDA
/// "sm_XY" of the current device, or "sm_90" (the H200's) where no GPU is usable.
std::string target_arch();
/// The NVRTC in use, "nvrtc-13.0" (part of every cache key).
std::string compiler_version();
/// NVRTC options for arch, in their one canonical order (part of every cache key).
std::vector<std::string> compile_options(const std::string& arch);
/// Compiles one translation unit to a cubin with NVRTC (the embedded device headers are
/// available to #include). Throws JitCompileError with the log on failure.
std::string compile_cubin(const std::string& name, const std::string& source,
                          const std::vector<std::string>& options);

/// A generated kernel compiled, loaded and ready to launch.
struct LoadedKernel {
  cudaKernel_t fn = nullptr;
  int threads = 0;
  size_t smem_bytes = 0;
  int tile = 1;
  std::string name;
};

/// The cubin of `k` for target_arch(), through the kernel cache (memory, disk, else NVRTC).
/// Needs no GPU: run where the GPU is not, it fills a cache directory a GPU run can reuse.
std::shared_ptr<const std::string> compile_cached(const codegen::GeneratedKernel& k);

/// The kernel of `k` for the current device: compiled through the kernel cache on first use,
/// then loaded once per process. The reference stays valid until exit.
const LoadedKernel& load(const codegen::GeneratedKernel& k);

/// Launches `k` over `blocks` blocks with its parameter block on the current stream.
void launch(const LoadedKernel& k, long long blocks, const void* params);
#endif

}  // namespace minidl::jit
