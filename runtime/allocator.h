// The CUDA caching allocator (CUDA builds only): the Allocator of core/allocator.h for a CUDA
// device. Size-binned free lists with stream-ordered reuse, stats, a memory limit that fails as
// a smaller card would, and a bypass for compute-sanitizer. See docs/architecture.md, "CUDA
// runtime", for the policy and the environment variables.
#pragma once

#include <cstddef>

#include "base/allocator.h"

namespace minidl::cuda {

/// The caching allocator of a CUDA device (created on first use). Throws DeviceError where
/// CUDA is unavailable or the device does not exist.
Allocator& caching_allocator(int device);

/// Bytes a request of nbytes takes from the device: at least 1 byte, rounded up to 512 bytes
/// up to 1 MiB and to 2 MiB above. Stats and the memory limit count these bytes.
size_t allocation_size(size_t nbytes);

/// Turns caching off (every tensor gets its own exact-size cudaMalloc and is cudaFree'd when
/// dropped, so compute-sanitizer sees each allocation's bounds) or back on. Turning it off
/// empties every cache. Default: on, unless the environment sets MINIDL_CUDA_CACHING=0.
void set_caching_enabled(bool on);
/// Whether freed blocks are cached for reuse.
bool caching_enabled();

}  // namespace minidl::cuda
