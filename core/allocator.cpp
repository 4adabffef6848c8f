#include "core/allocator.h"

#include <cctype>
#include <cmath>
#include <cstdlib>
#include <iterator>
#include <mutex>

#include "core/config.h"
#include "core/env.h"
#include "core/error.h"
#include "core/log.h"
#if MINIDL_WITH_CUDA
#include "runtime/allocator.h"
#endif

namespace minidl {

std::string Allocator::summary() const {
  MemoryStats s = stats();
  return fmt::format(
      "allocated: {} (peak {})\nreserved:  {}\nlimit:     {}\nallocations: {}, out-of-memory errors: {}\n",
      format_bytes(s.allocated), format_bytes(s.peak_allocated), format_bytes(s.reserved),
      s.limit ? format_bytes(s.limit) : std::string("none"), s.num_allocs, s.num_ooms);
}

namespace {

// Host memory straight from the system, counted. No caching: malloc already caches.
class CpuAllocator final : public Allocator {
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
  MemoryStats stats() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return stats_;
  }
  void reset_peak() override {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.peak_allocated = stats_.allocated;
  }
  void set_limit(int64_t bytes) override {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.limit = bytes;
  }

 private:
  mutable std::mutex mu_;
  MemoryStats stats_;
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

int64_t parse_bytes(const std::string& s) {
  size_t i = 0;
  double v = 0;
  try {
    v = std::stod(s, &i);
  } catch (const std::exception&) {
    throw ValueError(fmt::format("[memory] cannot parse '{}' as a size (e.g. 6GiB, 512MB)", s));
  }
  std::string unit = s.substr(i);
  for (auto& c : unit) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  while (!unit.empty() && unit.front() == ' ') unit.erase(unit.begin());
  double mult = 0;
  if (unit.empty() || unit == "b") mult = 1;
  else if (unit == "k" || unit == "kb" || unit == "kib") mult = 1024.0;
  else if (unit == "m" || unit == "mb" || unit == "mib") mult = 1024.0 * 1024;
  else if (unit == "g" || unit == "gb" || unit == "gib") mult = 1024.0 * 1024 * 1024;
  else if (unit == "t" || unit == "tb" || unit == "tib") mult = 1024.0 * 1024 * 1024 * 1024;
  if (mult == 0 || v < 0 || !std::isfinite(v))
    throw ValueError(fmt::format("[memory] cannot parse '{}' as a size (e.g. 6GiB, 512MB)", s));
  const double bytes = v * mult;
  // 2^63 is a double exactly; the cast below is defined only under it.
  if (!(bytes < 0x1p63))
    throw ValueError(fmt::format("[memory] size '{}' is {:g} bytes, more than 2^63 - 1", s, bytes));
  if (bytes > 0 && bytes < 1)
    throw ValueError(fmt::format("[memory] size '{}' is less than one byte (0 means no limit)", s));
  return static_cast<int64_t>(bytes);
}

std::string format_bytes(int64_t b) {
  if (b > -1024 && b < 1024) return fmt::format("{} B", b);
  static constexpr const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double v = static_cast<double>(b) / 1024.0;
  size_t u = 0;
  // Up a unit while the value would print as 1024.00 or more (1 GiB - 1 byte is "1.00 GiB").
  while (std::abs(v) >= 1024.0 - 0.005 && u + 1 < std::size(kUnits)) v /= 1024.0, ++u;
  return fmt::format("{:.2f} {}", v, kUnits[u]);
}

}  // namespace minidl
