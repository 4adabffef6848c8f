// CUDA device runtime: discovery, properties, streams, events and copies. Declared in every
// build; in a build without CUDA (or on a machine without a GPU or driver) is_available() is
// false and the rest throws DeviceError. Implemented by runtime/cuda.cpp (CUDA builds) and
// runtime/no_cuda.cpp (CPU-only builds), which keep the same functions.
#pragma once

#include <cstddef>
#include <string>

#include "base/device.h"

namespace minidl::cuda {

/// True when this build has CUDA and a usable device (driver present, count > 0).
bool is_available();
/// Number of usable CUDA devices (0 where none).
int device_count();
/// Why CUDA is unavailable ("built without CUDA", "no CUDA driver found: ..."), or "" if it is.
std::string unavailable_reason();
/// Waits for all work on the device's stream (nothing to wait for where CUDA is unavailable).
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
/// The device's properties (read once, then cached).
DeviceProperties properties(int device = 0);

/// Copies nbytes between host and device memory (kind inferred from the devices), ordered on
/// the device's stream; host-bound copies synchronize.
void memcpy(void* dst, Device dst_dev, const void* src, Device src_dev, size_t nbytes);

/// Lets float32 matmuls use TF32 tensor cores (off by default: float32 matmuls are exact
/// float32, CUBLAS_COMPUTE_32F). Affects matmuls issued after the call, on every device.
void set_allow_tf32(bool allow);
/// Whether float32 matmuls may use TF32.
bool allow_tf32();

/// A timing event on a device's stream (RAII): record() two of them around work, then
/// end.elapsed_ms(start) after synchronizing, as torch.cuda.Event does.
class Event {
 public:
  explicit Event(int device = 0);
  ~Event();
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  /// Records the event at the current point of the device's stream.
  void record();
  /// Waits until the work recorded before this event is done.
  void synchronize();
  /// Milliseconds from `start` to this event (both recorded; waits for this one).
  float elapsed_ms(const Event& start);

 private:
  // Unused in a build without CUDA (runtime/no_cuda.cpp), hence maybe_unused.
  [[maybe_unused]] void* event_ = nullptr;  // cudaEvent_t
  [[maybe_unused]] int device_ = 0;
};

}  // namespace minidl::cuda
