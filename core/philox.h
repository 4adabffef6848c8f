// Philox4x32-10, a counter-based random generator (Salmon et al., SC'11): value i of a stream
// depends only on (seed, i), so CPU and CUDA kernels draw identical numbers for a given seed.
// Shared by host and device code like core/scalar_ops.h.
#pragma once

#include "core/scalar_ops.h"

#if !defined(__CUDACC_RTC__)
#include <cmath>
#include <cstdint>
#endif

namespace minidl {
namespace philox {

struct U4 {
  uint32_t x, y, z, w;
};

MINIDL_HD uint32_t mulhilo(uint32_t a, uint32_t b, uint32_t* hi) {
  uint64_t p = static_cast<uint64_t>(a) * b;
  *hi = static_cast<uint32_t>(p >> 32);
  return static_cast<uint32_t>(p);
}

/// Four 32-bit random words for counter (seed, index).
MINIDL_HD U4 draw(uint64_t seed, uint64_t index) {
  U4 c{static_cast<uint32_t>(index), static_cast<uint32_t>(index >> 32), 0u, 0u};
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  for (int r = 0; r < 10; ++r) {
    uint32_t hi0, hi1;
    uint32_t lo0 = mulhilo(0xD2511F53u, c.x, &hi0);
    uint32_t lo1 = mulhilo(0xCD9E8D57u, c.z, &hi1);
    c = U4{hi1 ^ c.y ^ k0, lo1, hi0 ^ c.w ^ k1, lo0};
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return c;
}

/// Uniform float in [0, 1) from 24 random bits.
MINIDL_HD float uniform(uint32_t bits) { return static_cast<float>(bits >> 8) * (1.0f / 16777216.0f); }

/// Element i of a uniform [0,1) stream.
MINIDL_HD float uniform_at(uint64_t seed, uint64_t offset, uint64_t i) {
  return uniform(draw(seed, offset + i).x);
}

/// Element i of a standard normal stream (Box-Muller on two words of draw i). Computed in double
/// and rounded once to float, so the host's and the device's math libraries (which may differ
/// by an ulp in float) give bit-identical values.
MINIDL_HD float normal_at(uint64_t seed, uint64_t offset, uint64_t i) {
  U4 r = draw(seed, offset + i);
  const double u1 = (static_cast<double>(r.x >> 8) + 1.0) * (1.0 / 16777216.0);  // (0, 1]
  const double u2 = static_cast<double>(r.y >> 8) * (1.0 / 16777216.0);
  return static_cast<float>(::sqrt(-2.0 * ::log(u1)) * ::cos(6.283185307179586 * u2));
}

}  // namespace philox
}  // namespace minidl
