// GeneratedKernel: what every code generator returns: the CUDA source of one kernel and how to
// launch it. The JIT (compiler/jit.h) compiles and caches it; the launcher fills its parameter
// block (compiler/codegen/device/kernel_params.h) and computes the grid.
#pragma once

#include <cstddef>
#include <string>

namespace minidl::codegen {

/// Version of the generators' output conventions (parameter blocks, launch rules). Part of every
/// kernel cache key: bump it when a change alters how a cached binary must be launched without
/// changing its source.
inline constexpr int kCodegenVersion = 1;

struct GeneratedKernel {
  std::string name;        // the extern "C" entry point; also names the dumped and cached files
  std::string source;      // one self-contained CUDA C++ translation unit
  int threads = 128;       // threads per block (1-D)
  size_t smem_bytes = 0;   // dynamic shared memory per block
  int tile = 1;            // rows of the problem one block covers: grid = batch * ceil(rows / tile)
};

}  // namespace minidl::codegen
