#include "core/allocator.h"

#include <cctype>
#include <cmath>
#include <cstdlib>
#include <iterator>
#include <mutex>

#include "base/config.h"
#include "base/env.h"
#include "base/error.h"
#include "base/log.h"
#if MINIDL_WITH_CUDA
#include "runtime/allocator.h"
#endif

namespace minidl {

namespace {

// Host memory straight from the system, counted. No caching: malloc already caches.
class CpuAllocator final : public CountingAllocator {
 public:
  CpuAllocator() {
    if (auto limit = env_bytes("MINIDL_CPU_MEMORY_LIMIT")) stats_.limit = *limit;
  }
  void* allocate(size_t nbytes, const char* op) override {
    const size_t rounded = (std::max<size_t>(nbytes, 1) + 63) / 64 * 64;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stats_.limit > 0 && stats_.allocated + static_cast<int64_t>(rounded) > stats_.limit) {
        ++stats_.num_ooms;
        throw OutOfMemoryError(fmt::format(
            "[{}] CPU out of memory: tried to allocate {} with {} allocated and a limit of {}", op,
            format_bytes(static_cast<int64_t>(nbytes)), format_bytes(stats_.allocated),
            format_bytes(stats_.limit)));
      }
    }
    void* p = std::aligned_alloc(64, rounded);
    if (!p)
      throw OutOfMemoryError(fmt::format("[{}] CPU out of memory: the system refused {}", op,
                                         format_bytes(static_cast<int64_t>(nbytes))));
    std::lock_guard<std::mutex> lock(mu_);
    stats_.allocated += static_cast<int64_t>(rounded);
    stats_.reserved = stats_.allocated;
    stats_.peak_allocated = std::max(stats_.peak_allocated, stats_.allocated);
    ++stats_.num_allocs;
    return p;
  }
  void deallocate(void* p, size_t nbytes) override {
    std::free(p);
    const size_t rounded = (std::max<size_t>(nbytes, 1) + 63) / 64 * 64;
    std::lock_guard<std::mutex> lock(mu_);
    stats_.allocated -= static_cast<int64_t>(rounded);
    stats_.reserved = stats_.allocated;
  }
};

}  // namespace

Allocator& allocator_for(Device d) {
  if (d.is_cpu()) {
    static CpuAllocator* cpu = new CpuAllocator();  // leaked: tensors may outlive statics
    return *cpu;
  }
#if MINIDL_WITH_CUDA
  return cuda::caching_allocator(d.index);
#else
  throw DeviceError(fmt::format("[alloc] device {} is not available: this minidl was built "
                                "without CUDA (MINIDL_CUDA=OFF or no toolkit found)", d.str()));
#endif
}

int64_t memory_allocated(Device d) { return allocator_for(d).stats().allocated; }
int64_t max_memory_allocated(Device d) { return allocator_for(d).stats().peak_allocated; }
int64_t memory_reserved(Device d) { return allocator_for(d).stats().reserved; }
void reset_peak_memory_stats(Device d) { allocator_for(d).reset_peak(); }
void set_memory_limit(int64_t bytes, Device d) { allocator_for(d).set_limit(bytes); }
std::string memory_summary(Device d) {
  return fmt::format("memory on {}:\n{}", d.str(), allocator_for(d).summary());
}

}  // namespace minidl
