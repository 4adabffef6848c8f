#include "base/device.h"

#include "base/error.h"

namespace minidl {

Device Device::parse(const std::string& s) {
  if (s == "cpu") return kCPU;
  if (s == "cuda") return kCUDA;
  if (s.rfind("cuda:", 0) == 0) {
    try {
      size_t used = 0;
      int i = std::stoi(s.substr(5), &used);
      if (used == s.size() - 5 && i >= 0) return Device(DeviceType::CUDA, i);
    } catch (const std::exception&) {
    }
  }
  throw DeviceError(fmt::format("[device] cannot parse '{}' (expected cpu, cuda or cuda:N)", s));
}

std::string Device::str() const {
  return is_cpu() ? std::string("cpu") : fmt::format("cuda:{}", index);
}

}  // namespace minidl
