#include "core/storage.h"

#include "core/allocator.h"

namespace minidl {

Storage::Storage(size_t nbytes, Device device, const char* op) : nbytes_(nbytes), device_(device) {
  data_ = allocator_for(device).allocate(nbytes, op);
}

Storage::~Storage() { allocator_for(device_).deallocate(data_, nbytes_); }

}  // namespace minidl
