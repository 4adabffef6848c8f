// The per-device cuBLAS handles. Math mode: exact float32 unless the compute type asks for TF32
// (matmul picks CUBLAS_COMPUTE_32F_FAST_TF32 only under set_allow_tf32(true)), and no
// reduced-precision reductions for float16/bfloat16 (they accumulate in float32).
#include "base/config.h"
#if MINIDL_WITH_CUDA
#include "runtime/cublas.h"

#include <cstring>
#include <vector>

#include "base/error.h"
#include "runtime/allocator.h"
#include "runtime/cuda.h"
#include "runtime/cuda_check.h"

namespace minidl::cuda {

namespace {

struct HandleSlot {
  std::mutex mu;
  cublasHandle_t handle = nullptr;
};

std::mutex g_slots_mu;
std::vector<HandleSlot*>* g_slots = nullptr;  // leaked: handles live as long as the process

HandleSlot& slot(int device) {
  std::lock_guard<std::mutex> lock(g_slots_mu);
  if (!g_slots)
    g_slots = new std::vector<HandleSlot*>(static_cast<size_t>(device_count()), nullptr);
  MINIDL_CHECK(device >= 0 && device < static_cast<int>(g_slots->size()), DeviceError,
               "[cublas] device cuda:{} does not exist ({} CUDA devices)", device, g_slots->size());
  HandleSlot*& s = (*g_slots)[static_cast<size_t>(device)];
  if (!s) s = new HandleSlot();
  return *s;
}

}  // namespace

void check_cublas(cublasStatus_t status, const char* call, const char* op, const char* file,
                  int line) {
  if (status == CUBLAS_STATUS_SUCCESS) return;
  const char* base = std::strrchr(file, '/');
  const std::string msg =
      fmt::format("[{}] cuBLAS error {} ({}) in {} at {}:{}", op, cublasGetStatusName(status),
                  cublasGetStatusString(status), call, base ? base + 1 : file, line);
  if (status == CUBLAS_STATUS_ALLOC_FAILED) throw OutOfMemoryError(msg);
  throw DeviceError(msg);
}

Cublas::Cublas(int device) {
  HandleSlot& s = slot(device);
  lock_ = std::unique_lock<std::mutex>(s.mu);
  if (!s.handle) {
    DeviceGuard guard(device);
    cublasHandle_t h = nullptr;
    MINIDL_CUBLAS_CHECK(cublasCreate(&h), "cublas");
    void* ws = nullptr;
    try {
      // The stream first: cublasSetStream resets the workspace to cuBLAS's own pool.
      MINIDL_CUBLAS_CHECK(cublasSetStream(h, current_stream(device)), "cublas");
      MINIDL_CUBLAS_CHECK(
          cublasSetMathMode(
              h, static_cast<cublasMath_t>(CUBLAS_DEFAULT_MATH |
                                           CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION)),
          "cublas");
      // The workspace lives as long as the handle and is no tensor: it comes straight from
      // cudaMalloc, so memory_allocated() counts tensor bytes only (the bench's mem_before_bwd).
      MINIDL_CUDA_CHECK(cudaMalloc(&ws, kCublasWorkspaceBytes), "cublas workspace");
      MINIDL_CUBLAS_CHECK(cublasSetWorkspace(h, ws, kCublasWorkspaceBytes), "cublas");
    } catch (...) {
      if (ws) (void)cudaFree(ws);
      (void)cublasDestroy(h);
      throw;
    }
    s.handle = h;
  }
  handle_ = s.handle;
}

}  // namespace minidl::cuda
#endif
