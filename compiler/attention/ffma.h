// The FFMA attention kernels, generated for compiler/attention/generate.cpp, which
// validates the spec first. FFMA: register-tiled CUDA-core FMAs, the float32 reference path and the fallback beyond the
// TF32 kernels' head dims (any head dim up to 256). Internal to compiler/attention/.
#pragma once

#include "compiler/attention/spec.h"
#include "compiler/codegen/kernel.h"

namespace minidl::codegen::attn {

/// Forward kernel: o, lse from q, k, v (generate_attention_forward).
GeneratedKernel ffma_forward(const AttentionSpec& s);
/// Backward main kernel: dk, dv, and dq added into dq_acc (generate_attention_backward).
GeneratedKernel ffma_backward(const AttentionSpec& s);

}  // namespace minidl::codegen::attn
