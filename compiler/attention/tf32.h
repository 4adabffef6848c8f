// The TF32 attention kernels, generated for compiler/attention/generate.cpp, which
// validates the spec first. TF32: mma.sync m16n8k8 tensor-core tiles, 3xTF32 for float32 storage (head dims up to
// 128). Internal to compiler/attention/.
#pragma once

#include "compiler/attention/spec.h"
#include "compiler/codegen/kernel.h"

namespace minidl::codegen::attn {

/// Forward kernel: o, lse from q, k, v (generate_attention_forward).
GeneratedKernel tf32_forward(const AttentionSpec& s);
/// Backward main kernel: dk, dv, and dq added into dq_acc (generate_attention_backward).
GeneratedKernel tf32_backward(const AttentionSpec& s);

}  // namespace minidl::codegen::attn
