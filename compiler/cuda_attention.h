// What the fused attention launchers (compiler/attention_kernels.h) would compile, without
// launching: for filling the kernel cache ahead of a GPU run (minidl-bench attention-kernels
// --compile-only) and for reading the generated source. CUDA builds only.
#pragma once

#include <cstdint>
#include <vector>

#include "base/config.h"
#include "compiler/codegen/kernel.h"
#include "core/dtype.h"

namespace minidl::cuda {

#if MINIDL_WITH_CUDA
/// The kernels fused_attention_forward (or, with `backward`, fused_attention_backward: delta and
/// the main kernel) generates for inputs of this head dim and dtype (math and tiles from the
/// environment, as they read it), with the halved-tile variant small grids get (NOTE [Tiles by
/// grid size] in compiler/cuda_attention.cpp).
std::vector<codegen::GeneratedKernel> fused_attention_kernels(int64_t head_dim, DType dtype, double scale, bool causal,
                                                              bool unit_d_stride, bool backward);
#endif

}  // namespace minidl::cuda
