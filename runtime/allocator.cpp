// The CUDA caching allocator. cudaMalloc and cudaFree are slow (cudaFree also synchronizes the
// device), so freed blocks are kept in free lists binned by their exact rounded size and handed
// out again; memory goes back to the device on empty_cache(), when the limit would be crossed,
// or when a cudaMalloc fails.
#include "base/config.h"
#if MINIDL_WITH_CUDA
#include "runtime/allocator.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "base/env.h"
#include "base/error.h"
#include "base/log.h"
#include "runtime/cuda.h"
#include "runtime/cuda_check.h"

namespace minidl::cuda {

// NOTE [Stream-ordered reuse]
// Every kernel, copy and cuBLAS call minidl issues for a device goes to that device's one
// stream (current_stream). When a tensor is dropped, its last use is already enqueued on that
// stream, and any later user of the same block is enqueued after it, so the block can be handed
// out again at once, without an event: the stream runs the two uses in order. Blocks go back
// to the device (cudaFree) only after the stream is synchronized. Code that runs kernels on
// another stream must synchronize with current_stream() before dropping tensors it used.

namespace {

constexpr size_t kSmallLimit = size_t(1) << 20;  // requests up to 1 MiB ...
constexpr size_t kSmallRound = 512;              // ... round to 512 bytes
constexpr size_t kLargeRound = size_t(2) << 20;  // larger ones to whole 2 MiB pages

bool caching_from_env() {
  return env_flag("MINIDL_CUDA_CACHING", true);
}

// A function-local static: allocations made while other files' statics are initialized see the
// environment's setting too.
std::atomic<bool>& caching_flag() {
  static std::atomic<bool> flag{caching_from_env()};
  return flag;
}

struct Block {
  size_t size;  // bytes counted (allocation_size of the request)
  bool exact;   // cudaMalloc'd with the request's own size (caching off): never cached
};

class CachingAllocator final : public CountingAllocator {
 public:
  explicit CachingAllocator(int device) : device_(device) {
    if (auto limit = env_bytes("MINIDL_CUDA_MEMORY_LIMIT")) stats_.limit = *limit;
  }

  void* allocate(size_t nbytes, const char* op) override {
    const size_t size = allocation_size(nbytes);
    const bool caching = caching_enabled();
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.num_allocs;
    if (caching) {
      auto it = free_.find(size);
      if (it != free_.end() && !it->second.empty()) {
        void* p = it->second.back();
        it->second.pop_back();
        cached_bytes_ -= static_cast<int64_t>(size);
        ++cache_hits_;
        return hand_out(p, {size, false});
      }
    }
    // A new block: a card with `limit` bytes runs out once the blocks it holds (cached ones
    // included) and this one exceed it; it would first give its cached blocks back.
    if (stats_.limit > 0 && stats_.reserved + static_cast<int64_t>(size) > stats_.limit) {
      release_cached_locked(op);
      if (stats_.reserved + static_cast<int64_t>(size) > stats_.limit)
        throw oom_locked(op, nbytes, "");
    }
    DeviceGuard guard(device_);
    const size_t request = caching ? size : std::max<size_t>(nbytes, 1);
    void* p = nullptr;
    cudaError_t err = cudaMalloc(&p, request);
    if (err == cudaErrorMemoryAllocation) {
      // The device is full: give the cache back and try once more.
      (void)cudaGetLastError();
      release_cached_locked(op);
      err = cudaMalloc(&p, request);
      if (err == cudaErrorMemoryAllocation) {
        (void)cudaGetLastError();
        throw oom_locked(op, nbytes, "cudaMalloc failed");
      }
    }
    MINIDL_CUDA_CHECK(err, op);
    ++cuda_mallocs_;
    stats_.reserved += static_cast<int64_t>(size);
    return hand_out(p, {size, !caching});
  }

  void deallocate(void* p, size_t) override {
    // Runs in Storage's destructor: never throws; failures are logged.
    std::lock_guard<std::mutex> lock(mu_);
    auto it = live_.find(p);
    if (it == live_.end()) {
      log("runtime").error("[free] pointer {} was not allocated by the cuda:{} allocator", p,
                           device_);
      return;
    }
    const Block b = it->second;
    live_.erase(it);
    stats_.allocated -= static_cast<int64_t>(b.size);
    if (!b.exact && caching_enabled()) {
      free_[b.size].push_back(p);
      cached_bytes_ += static_cast<int64_t>(b.size);
      return;
    }
    try {
      DeviceGuard guard(device_);
      // Pending kernels may still read the block (NOTE [Stream-ordered reuse]).
      MINIDL_CUDA_CHECK(cudaStreamSynchronize(current_stream(device_)), "free");
      MINIDL_CUDA_CHECK(cudaFree(p), "free");
    } catch (const Error& e) {
      log("runtime").error("{}", e.what());
    }
    stats_.reserved -= static_cast<int64_t>(b.size);
  }

  void empty_cache() override {
    std::lock_guard<std::mutex> lock(mu_);
    release_cached_locked("empty_cache");
  }

  std::string summary() const override {
    std::lock_guard<std::mutex> lock(mu_);
    size_t cached_blocks = 0;
    for (const auto& [size, v] : free_) cached_blocks += v.size();
    const MemoryStats& s = stats_;
    return fmt::format(
        "allocated: {} (peak {}) in {} blocks\n"
        "reserved:  {} (cached for reuse: {} in {} blocks)\n"
        "limit:     {}\n"
        "allocations: {} ({} from the cache, {} cudaMalloc), out-of-memory errors: {}\n"
        "caching:   {}\n",
        format_bytes(s.allocated), format_bytes(s.peak_allocated), live_.size(),
        format_bytes(s.reserved), format_bytes(cached_bytes_), cached_blocks,
        s.limit ? format_bytes(s.limit) : std::string("none"), s.num_allocs, cache_hits_,
        cuda_mallocs_, s.num_ooms,
        caching_enabled() ? "on" : "off (MINIDL_CUDA_CACHING=0 or set_caching_enabled(false))");
  }

 private:
  void* hand_out(void* p, Block b) {
    live_.emplace(p, b);
    stats_.allocated += static_cast<int64_t>(b.size);
    stats_.peak_allocated = std::max(stats_.peak_allocated, stats_.allocated);
    return p;
  }

  // Gives every cached block back to the device, after the stream is done with them.
  void release_cached_locked(const char* op) {
    if (free_.empty()) return;
    DeviceGuard guard(device_);
    MINIDL_CUDA_CHECK(cudaStreamSynchronize(current_stream(device_)), op);
    for (auto& [size, blocks] : free_) {
      for (void* p : blocks) {
        MINIDL_CUDA_CHECK(cudaFree(p), op);
        stats_.reserved -= static_cast<int64_t>(size);
        cached_bytes_ -= static_cast<int64_t>(size);
      }
    }
    free_.clear();
  }

  OutOfMemoryError oom_locked(const char* op, size_t nbytes, const char* why) {
    ++stats_.num_ooms;
    std::string limit =
        stats_.limit ? format_bytes(stats_.limit) + " (set_memory_limit / MINIDL_CUDA_MEMORY_LIMIT)"
                     : std::string("none");
    if (*why) {
      size_t free_b = 0, total_b = 0;
      if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess)
        limit += fmt::format("; the device has {} free of {}",
                             format_bytes(static_cast<int64_t>(free_b)),
                             format_bytes(static_cast<int64_t>(total_b)));
      else
        (void)cudaGetLastError();
    }
    return OutOfMemoryError(fmt::format(
        "[{}] CUDA out of memory on cuda:{}{}{}: tried to allocate {} ({} bytes, {} with rounding) "
        "with {} allocated and {} reserved; limit: {}",
        op, device_, *why ? ": " : "", why, format_bytes(static_cast<int64_t>(nbytes)), nbytes,
        format_bytes(static_cast<int64_t>(allocation_size(nbytes))), format_bytes(stats_.allocated),
        format_bytes(stats_.reserved), limit));
  }

  const int device_;
  std::unordered_map<void*, Block> live_;
  std::map<size_t, std::vector<void*>> free_;  // rounded size -> cached blocks of that size
  int64_t cached_bytes_ = 0;
  int64_t cache_hits_ = 0, cuda_mallocs_ = 0;
};

std::mutex g_registry_mu;
// Leaked on purpose: tensors may be freed after static destructors have run.
std::vector<CachingAllocator*>* g_registry = nullptr;

}  // namespace

size_t allocation_size(size_t nbytes) {
  const size_t n = std::max<size_t>(nbytes, 1);
  const size_t round = n <= kSmallLimit ? kSmallRound : kLargeRound;
  return (n + round - 1) / round * round;
}

Allocator& caching_allocator(int device) {
  MINIDL_CHECK(is_available(), DeviceError, "[alloc] cuda:{} is not available: {}", device,
               unavailable_reason());
  MINIDL_CHECK(device >= 0 && device < device_count(), DeviceError,
               "[alloc] device cuda:{} does not exist ({} CUDA devices)", device, device_count());
  std::lock_guard<std::mutex> lock(g_registry_mu);
  if (!g_registry)
    g_registry = new std::vector<CachingAllocator*>(static_cast<size_t>(device_count()), nullptr);
  CachingAllocator*& a = (*g_registry)[static_cast<size_t>(device)];
  if (!a) a = new CachingAllocator(device);
  return *a;
}

void set_caching_enabled(bool on) {
  caching_flag() = on;
  if (on) return;
  std::vector<CachingAllocator*> all;
  {
    std::lock_guard<std::mutex> lock(g_registry_mu);
    if (g_registry) all = *g_registry;
  }
  for (CachingAllocator* a : all)
    if (a) a->empty_cache();
}

bool caching_enabled() { return caching_flag(); }

}  // namespace minidl::cuda
#endif
