// The CUDA runtime API of a build without CUDA: nothing is available, and says why.
#include "core/config.h"
#if !MINIDL_WITH_CUDA
#include "core/error.h"
#include "runtime/cuda.h"

namespace minidl::cuda {

namespace {
[[noreturn]] void unavailable() { throw DeviceError("[cuda] " + unavailable_reason()); }
}  // namespace

bool is_available() { return false; }
int device_count() { return 0; }
std::string unavailable_reason() {
  return "this minidl was built without CUDA (MINIDL_CUDA=OFF, or no CUDA toolkit at configure time)";
}
void synchronize(int) {}
DeviceProperties properties(int) { unavailable(); }
void memcpy(void*, Device, const void*, Device, size_t) { unavailable(); }

}  // namespace minidl::cuda
#endif
