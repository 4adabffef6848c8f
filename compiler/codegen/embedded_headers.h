// The device headers generated code includes, embedded as strings at build time
// (cmake/embed_headers.cmake), so NVRTC compiles without any toolkit or source header on disk.
#pragma once

#include <string>
#include <vector>

namespace minidl::codegen {

struct EmbeddedHeader {
  const char* name;  // the include name generated code uses: "core/scalar_ops.h"
  const char* text;  // the file's contents at build time
};

/// Every embedded header: core/scalar_ops.h, core/philox.h and compiler/codegen/device/*.
const std::vector<EmbeddedHeader>& embedded_headers();

}  // namespace minidl::codegen
