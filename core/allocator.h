// The allocator of each device, and PyTorch's shorthands over it. The CPU allocator lives here;
// the CUDA caching allocator lives in runtime/ and implements the same interface
// (base/allocator.h).
#pragma once

#include <cstdint>
#include <string>

#include "base/allocator.h"
#include "base/device.h"

namespace minidl {

/// The allocator of a device (throws DeviceError if the device is unavailable).
Allocator& allocator_for(Device d);

// Shorthands over allocator_for(d) (PyTorch's names).
int64_t memory_allocated(Device d = kCPU);
int64_t max_memory_allocated(Device d = kCPU);
int64_t memory_reserved(Device d = kCPU);
void reset_peak_memory_stats(Device d = kCPU);
void set_memory_limit(int64_t bytes, Device d = kCPU);
std::string memory_summary(Device d = kCPU);

}  // namespace minidl
