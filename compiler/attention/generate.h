// The generators of the fused attention kernels (FlashAttention-2): the forward keeps a tile of
// query rows resident, streams K/V tiles through shared memory with an online softmax, and
// writes O and the log-sum-exp, never the N×N matrix; the backward recomputes P tile by tile.
// Each kernel is specialised at compile time on an AttentionSpec (compiler/attention/spec.h);
// the sizes and strides of q, k, v are runtime arguments (AttentionFwdParams / AttentionBwdParams
// in compiler/codegen/device/kernel_params.h), so one kernel serves every sequence length.
// The math: ffma.cpp (CUDA cores) and tf32.cpp (tensor cores), over emit.cpp's shared emitters;
// the NOTEs on how the kernels work are in generate.cpp.
#pragma once

#include "compiler/attention/spec.h"
#include "compiler/codegen/kernel.h"

namespace minidl::codegen {

/// Forward kernel: o, lse from q, k, v. One AttentionFwdParams; grid batch * ceil(n_q / tile).
GeneratedKernel generate_attention_forward(const AttentionSpec& spec);

/// Backward preprocessing: delta (B, n_q) float32 = rowsum(dout ∘ o), one warp per row. One
/// AttentionBwdParams (reads o, dout; writes delta); grid batch * ceil(n_q / tile).
GeneratedKernel generate_attention_backward_delta(const AttentionSpec& spec);

/// Backward main kernel: one block per key tile writes dk, dv and adds its share of dq into the
/// zeroed float32 dq_acc with atomics. One AttentionBwdParams; grid batch * ceil(n_k / tile).
GeneratedKernel generate_attention_backward(const AttentionSpec& spec);

}  // namespace minidl::codegen
