// Helpers shared by the test suites.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "base/device.h"
#include "core/tensor.h"
#include "minidl/minidl.h"
#include "runtime/cuda.h"

namespace minidl::testing {

/// The devices op tests run on: the CPU, plus CUDA where a GPU is usable. Where none is, says
/// why once per process ("GPU cases skipped: ...") so a CPU-only run shows what it did not test.
inline std::vector<Device> test_devices() {
  static const std::vector<Device> devices = [] {
    std::vector<Device> d{kCPU};
    if (cuda::is_available()) {
      d.push_back(kCUDA);
    } else {
      std::printf("[minidl tests] GPU cases skipped: %s\n", cuda::unavailable_reason().c_str());
    }
    return d;
  }();
  return devices;
}

/// True where a usable GPU exists; else prints why the calling GPU-only test is skipped.
inline bool gpu_or_skip(const char* test) {
  if (cuda::is_available()) return true;
  std::printf("[minidl tests] skipped '%s': %s\n", test, cuda::unavailable_reason().c_str());
  return false;
}

/// max |a - b| / max(max |b|, tiny): the relative error used across the suites.
inline double rel_error(const Tensor& a, const Tensor& b) {
  std::vector<double> x = a.to_vector<double>(), y = b.to_vector<double>();
  REQUIRE(x.size() == y.size());
  double num = 0, den = 1e-30;
  for (size_t i = 0; i < x.size(); ++i) {
    num = std::max(num, std::abs(x[i] - y[i]));
    den = std::max(den, std::abs(y[i]));
    if (std::isnan(x[i]) != std::isnan(y[i])) return INFINITY;
  }
  return num / den;
}

}  // namespace minidl::testing
