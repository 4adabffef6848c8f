// The CUDA runtime API of a build without CUDA: nothing is available, and says why. Keep in
// sync with runtime/cuda.cpp (every function of runtime/cuda.h, same behaviour where no device).
#include "base/config.h"
#if !MINIDL_WITH_CUDA
#include <atomic>

#include "base/error.h"
#include "runtime/cuda.h"

namespace minidl::cuda {

namespace {
[[noreturn]] void unavailable() { throw DeviceError("[cuda] " + unavailable_reason()); }
std::atomic<bool> g_allow_tf32{false};
}  // namespace

bool is_available() { return false; }
int device_count() { return 0; }
std::string unavailable_reason() {
  return "this minidl was built without CUDA (MINIDL_CUDA=OFF, or no CUDA toolkit at configure "
         "time)";
}
void synchronize(int) {}
DeviceProperties properties(int) { unavailable(); }
void memcpy(void*, Device, const void*, Device, size_t) { unavailable(); }

void set_allow_tf32(bool allow) { g_allow_tf32 = allow; }
bool allow_tf32() { return g_allow_tf32; }

Event::Event(int device) : device_(device) { unavailable(); }
Event::~Event() = default;
void Event::record() { unavailable(); }
void Event::synchronize() { unavailable(); }
float Event::elapsed_ms(const Event&) { unavailable(); }

}  // namespace minidl::cuda
#endif
