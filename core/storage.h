// A reference-counted block of device memory that tensors view.
#pragma once

#include <cstddef>
#include <memory>

#include "base/device.h"

namespace minidl {

class Storage {
 public:
  /// Allocates nbytes on device from its allocator (op names the caller in an OOM message).
  Storage(size_t nbytes, Device device, const char* op = "alloc");
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }

 private:
  void* data_ = nullptr;
  size_t nbytes_ = 0;
  Device device_;
};

}  // namespace minidl
