// The allocator interface and its statistics: every tensor's bytes come from an Allocator (the
// CPU one in core/allocator.cpp, the CUDA caching one in runtime/allocator.cpp), so live and
// peak byte counts are exact on the CPU as on CUDA. Also the byte-size parsing and printing
// every layer uses.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>

namespace minidl {

/// Counters shared by all allocators (bytes).
struct MemoryStats {
  int64_t allocated = 0;       // bytes held by live tensors (the CPU rounds blocks up to 64)
  int64_t peak_allocated = 0;  // max of `allocated` since the last reset_peak
  int64_t reserved = 0;        // bytes obtained from the system (>= allocated when caching)
  int64_t num_allocs = 0;      // allocate() calls
  int64_t num_ooms = 0;        // OutOfMemoryErrors raised
  int64_t limit = 0;           // 0: no limit
};

class Allocator {
 public:
  virtual ~Allocator() = default;
  /// Returns at least nbytes of memory aligned to 64 bytes, or throws OutOfMemoryError.
  /// `op` names the caller for the error message.
  virtual void* allocate(size_t nbytes, const char* op) = 0;
  /// Returns a block from allocate(), with the nbytes it was asked for.
  virtual void deallocate(void* p, size_t nbytes) = 0;
  /// A snapshot of the counters.
  virtual MemoryStats stats() const = 0;
  /// Sets peak_allocated to the current allocated.
  virtual void reset_peak() = 0;
  /// Bytes above which allocate() throws OutOfMemoryError (0: no limit).
  virtual void set_limit(int64_t bytes) = 0;
  /// Gives cached blocks back to the system (no-op for the CPU allocator).
  virtual void empty_cache() {}
  /// A few readable lines: allocated, peak, reserved, limit, allocation count.
  virtual std::string summary() const;
};

/// An Allocator whose counters sit under one mutex: stats(), reset_peak() and set_limit() for
/// every allocator. Subclasses update stats_ while holding mu_.
class CountingAllocator : public Allocator {
 public:
  MemoryStats stats() const override;
  void reset_peak() override;
  /// Throws ValueError for a negative limit.
  void set_limit(int64_t bytes) override;

 protected:
  mutable std::mutex mu_;
  MemoryStats stats_;
};

/// Parses "6GiB", "512MB", "1.5G", "1000000" into bytes; throws ValueError otherwise.
int64_t parse_bytes(const std::string& s);
/// "512 B", "390.62 KiB", "18.75 MiB", "2.03 GiB": exact bytes below 1 KiB, else two decimals of
/// the largest binary unit below the value. Every size minidl prints goes through this.
std::string format_bytes(int64_t bytes);

}  // namespace minidl
