// CUDA device runtime: discovery, properties, streams, events and copies. Declared in every
// build; in a build without CUDA (or on a machine without a GPU or driver) is_available() is
// false and the rest throws DeviceError.
#pragma once

#include <cstddef>
#include <string>

#include "core/device.h"

namespace minidl::cuda {

/// True when this build has CUDA and a usable device (driver present, count > 0).
bool is_available();
/// Number of usable CUDA devices (0 where none).
int device_count();
/// Why CUDA is unavailable ("built without CUDA", "no CUDA driver found: ..."), or "" if it is.
std::string unavailable_reason();
/// Waits for all work on the device's stream.
void synchronize(int device = 0);

struct DeviceProperties {
  std::string name;
  int major = 0, minor = 0;
  int multiprocessors = 0;
  size_t total_memory = 0;
  size_t l2_bytes = 0;
  size_t shared_per_block_optin = 0;
  int driver_version = 0, runtime_version = 0;
};
DeviceProperties properties(int device = 0);

/// Copies nbytes between host and device memory (kind inferred from the devices), ordered on
/// the device's stream; host-bound copies synchronize.
void memcpy(void* dst, Device dst_dev, const void* src, Device src_dev, size_t nbytes);

}  // namespace minidl::cuda
