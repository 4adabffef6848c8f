// Seedable random number generation. A Generator is a (seed, offset) pair over the Philox
// stream in core/philox.h: each draw of n numbers takes elements [offset, offset + n) and
// advances offset, so results are reproducible and identical on CPU and CUDA.
#pragma once

#include <cstdint>
#include <mutex>
#include <utility>

namespace minidl {

class Generator {
 public:
  explicit Generator(uint64_t seed = 0x5eed) : seed_(seed) {}
  void manual_seed(uint64_t seed);
  uint64_t seed() const { return seed_; }
  /// Reserves n stream elements and returns (seed, first offset).
  std::pair<uint64_t, uint64_t> reserve(uint64_t n);

 private:
  std::mutex mu_;
  uint64_t seed_;
  uint64_t offset_ = 0;
};

/// The generator factories and dropout use when none is given.
Generator& default_generator();
/// Seeds the default generator.
void manual_seed(uint64_t seed);

}  // namespace minidl
