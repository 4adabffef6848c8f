// The CUDA runtime API of a CUDA build (runtime/cuda.h, runtime/cuda_check.h). Only the CUDA
// runtime is called, never the driver library: where no driver or device exists,
// cudaGetDeviceCount fails or returns 0, is_available() is false and says why, and the process
// goes on on the CPU. Keep in sync with runtime/no_cuda.cpp.
#include "base/config.h"
#if MINIDL_WITH_CUDA
#include <atomic>
#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

#include "base/error.h"
#include "base/log.h"
#include "runtime/cuda.h"
#include "runtime/cuda_check.h"

namespace minidl::cuda {

namespace {

struct Availability {
  int count = 0;
  std::string reason;  // empty when count > 0
};

const Availability& availability() {
  static const Availability a = [] {
    Availability r;
    int n = 0;
    const cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
      (void)cudaGetLastError();  // leave no error behind for later calls
      r.reason = fmt::format("no usable CUDA driver or device (cudaGetDeviceCount: {}: {})",
                             cudaGetErrorName(e), cudaGetErrorString(e));
    } else if (n == 0) {
      r.reason = "no CUDA device found (cudaGetDeviceCount returned 0)";
    } else {
      r.count = n;
    }
    if (r.count == 0) log("runtime").info("CUDA unavailable: {}", r.reason);
    return r;
  }();
  return a;
}

void require_device(int device, const char* op) {
  const Availability& a = availability();
  MINIDL_CHECK(a.count > 0, DeviceError, "[{}] CUDA is not available: {}", op, a.reason);
  MINIDL_CHECK(device >= 0 && device < a.count, DeviceError,
               "[{}] device cuda:{} does not exist ({} CUDA devices)", op, device, a.count);
}

std::atomic<bool> g_allow_tf32{false};

}  // namespace

bool is_available() { return availability().count > 0; }
int device_count() { return availability().count; }
std::string unavailable_reason() { return availability().reason; }

void check(cudaError_t err, const char* call, const char* op, const char* file, int line) {
  if (err == cudaSuccess) return;
  (void)cudaGetLastError();  // clear a non-sticky error so the next call starts clean
  const char* base = std::strrchr(file, '/');
  const std::string msg =
      fmt::format("[{}] CUDA error {} ({}) in {} at {}:{}", op, cudaGetErrorName(err),
                  cudaGetErrorString(err), call, base ? base + 1 : file, line);
  if (err == cudaErrorMemoryAllocation) throw OutOfMemoryError(msg);
  throw DeviceError(msg);
}

cudaStream_t current_stream(int device) {
  require_device(device, "stream");
  static std::mutex mu;
  static std::vector<cudaStream_t>* streams =
      new std::vector<cudaStream_t>();  // leaked: used at exit
  std::lock_guard<std::mutex> lock(mu);
  if (streams->empty()) streams->resize(static_cast<size_t>(device_count()), nullptr);
  cudaStream_t& s = (*streams)[static_cast<size_t>(device)];
  if (!s) {
    DeviceGuard guard(device);
    MINIDL_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "stream");
  }
  return s;
}

DeviceGuard::DeviceGuard(int device) {
  int cur = 0;
  MINIDL_CUDA_CHECK(cudaGetDevice(&cur), "device");
  if (cur != device) {
    MINIDL_CUDA_CHECK(cudaSetDevice(device), "device");
    previous_ = cur;
  }
}

DeviceGuard::~DeviceGuard() {
  if (previous_ >= 0) (void)cudaSetDevice(previous_);
}

void synchronize(int device) {
  if (!is_available()) return;
  require_device(device, "synchronize");
  DeviceGuard guard(device);
  MINIDL_CUDA_CHECK(cudaStreamSynchronize(current_stream(device)), "synchronize");
}

DeviceProperties properties(int device) {
  require_device(device, "properties");
  static std::mutex mu;
  static std::vector<std::unique_ptr<DeviceProperties>> cache;
  std::lock_guard<std::mutex> lock(mu);
  if (cache.empty()) cache.resize(static_cast<size_t>(device_count()));
  auto& slot = cache[static_cast<size_t>(device)];
  if (!slot) {
    cudaDeviceProp p{};
    MINIDL_CUDA_CHECK(cudaGetDeviceProperties(&p, device), "properties");
    auto d = std::make_unique<DeviceProperties>();
    d->name = p.name;
    d->major = p.major;
    d->minor = p.minor;
    d->multiprocessors = p.multiProcessorCount;
    d->total_memory = p.totalGlobalMem;
    d->l2_bytes = static_cast<size_t>(p.l2CacheSize);
    d->shared_per_block_optin = p.sharedMemPerBlockOptin;
    MINIDL_CUDA_CHECK(cudaDriverGetVersion(&d->driver_version), "properties");
    MINIDL_CUDA_CHECK(cudaRuntimeGetVersion(&d->runtime_version), "properties");
    slot = std::move(d);
  }
  return *slot;
}

void memcpy(void* dst, Device dst_dev, const void* src, Device src_dev, size_t nbytes) {
  if (nbytes == 0) return;
  if (dst_dev.is_cpu() && src_dev.is_cpu()) {
    std::memcpy(dst, src, nbytes);
    return;
  }
  if (src_dev.is_cpu()) {
    // Host to device. The host memory is pageable: the call returns once it is staged, so the
    // caller may free it at once; the copy itself is ordered on the stream.
    require_device(dst_dev.index, "to_device");
    DeviceGuard guard(dst_dev.index);
    MINIDL_CUDA_CHECK(
        cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyHostToDevice, current_stream(dst_dev.index)),
        "to_device");
  } else if (dst_dev.is_cpu()) {
    // Device to host: the host reads the bytes next, so wait for them.
    require_device(src_dev.index, "to_device");
    DeviceGuard guard(src_dev.index);
    cudaStream_t s = current_stream(src_dev.index);
    MINIDL_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToHost, s), "to_device");
    MINIDL_CUDA_CHECK(cudaStreamSynchronize(s), "to_device");
  } else if (dst_dev.index == src_dev.index) {
    require_device(dst_dev.index, "copy");
    DeviceGuard guard(dst_dev.index);
    MINIDL_CUDA_CHECK(
        cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToDevice, current_stream(dst_dev.index)),
        "copy");
  } else {
    // Between two devices: finish the source's pending writes, copy on the destination's
    // stream, and wait so that neither side sees the other's stream out of order.
    require_device(src_dev.index, "to_device");
    require_device(dst_dev.index, "to_device");
    synchronize(src_dev.index);
    DeviceGuard guard(dst_dev.index);
    cudaStream_t s = current_stream(dst_dev.index);
    MINIDL_CUDA_CHECK(cudaMemcpyPeerAsync(dst, dst_dev.index, src, src_dev.index, nbytes, s),
                      "to_device");
    MINIDL_CUDA_CHECK(cudaStreamSynchronize(s), "to_device");
  }
}

void set_allow_tf32(bool allow) { g_allow_tf32 = allow; }
bool allow_tf32() { return g_allow_tf32; }

Event::Event(int device) : device_(device) {
  require_device(device, "event");
  DeviceGuard guard(device);
  cudaEvent_t e = nullptr;
  MINIDL_CUDA_CHECK(cudaEventCreate(&e), "event");
  event_ = e;
}

Event::~Event() {
  if (event_) (void)cudaEventDestroy(static_cast<cudaEvent_t>(event_));
}

void Event::record() {
  DeviceGuard guard(device_);
  MINIDL_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(event_), current_stream(device_)),
                    "event");
}

void Event::synchronize() {
  MINIDL_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(event_)), "event");
}

float Event::elapsed_ms(const Event& start) {
  synchronize();
  float ms = 0;
  MINIDL_CUDA_CHECK(cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(start.event_),
                                         static_cast<cudaEvent_t>(event_)),
                    "event");
  return ms;
}

}  // namespace minidl::cuda
#endif
