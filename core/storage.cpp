#include "core/storage.h"

#include "base/error.h"
#include "core/allocator.h"

namespace minidl {

Storage::Storage(size_t nbytes, Device device, const char* op) : nbytes_(nbytes), device_(device) {
  Allocator* alloc = nullptr;
  try {
    alloc = &allocator_for(device);
  } catch (const DeviceError& e) {  // name the op that asked, not just the allocator
    throw DeviceError(fmt::format("[{}] cannot allocate on {}: {}", op, device.str(), e.what()));
  }
  data_ = alloc->allocate(nbytes, op);
}

Storage::~Storage() { allocator_for(device_).deallocate(data_, nbytes_); }

}  // namespace minidl
