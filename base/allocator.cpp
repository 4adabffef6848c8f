#include "base/allocator.h"

#include <cctype>
#include <cmath>
#include <exception>
#include <iterator>
#include <mutex>

#include "base/error.h"

namespace minidl {

std::string Allocator::summary() const {
  MemoryStats s = stats();
  return fmt::format(
      "allocated: {} (peak {})\nreserved:  {}\nlimit:     {}\nallocations: {}, out-of-memory "
      "errors: {}\n",
      format_bytes(s.allocated), format_bytes(s.peak_allocated), format_bytes(s.reserved),
      s.limit ? format_bytes(s.limit) : std::string("none"), s.num_allocs, s.num_ooms);
}

MemoryStats CountingAllocator::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

void CountingAllocator::reset_peak() {
  std::lock_guard<std::mutex> lock(mu_);
  stats_.peak_allocated = stats_.allocated;
}

void CountingAllocator::set_limit(int64_t bytes) {
  MINIDL_CHECK(bytes >= 0, ValueError, "[set_memory_limit] limit must be >= 0 bytes, got {}", bytes);
  std::lock_guard<std::mutex> lock(mu_);
  stats_.limit = bytes;
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
  if (unit.empty() || unit == "b")
    mult = 1;
  else if (unit == "k" || unit == "kb" || unit == "kib")
    mult = 1024.0;
  else if (unit == "m" || unit == "mb" || unit == "mib")
    mult = 1024.0 * 1024;
  else if (unit == "g" || unit == "gb" || unit == "gib")
    mult = 1024.0 * 1024 * 1024;
  else if (unit == "t" || unit == "tb" || unit == "tib")
    mult = 1024.0 * 1024 * 1024 * 1024;
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
