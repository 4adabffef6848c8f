// The fused attention kernels the FusedAttention primitive runs on a GPU, generated and
// JIT-compiled by the codegen (compiler/codegen/). Shapes: q, k, v, o, do: (B, N, d) with any
// strides (B = batch * heads flattened by the caller); lse: (B, N) float32.
#pragma once

#include "base/config.h"
#include "core/tensor.h"

namespace minidl::cuda {

struct AttentionOutputs {
  Tensor o;    // (B, N, d), dtype of q
  Tensor lse;  // (B, N) float32: log-sum-exp of each row of the scaled scores
};

struct AttentionGrads {
  Tensor dq, dk, dv;  // shapes and dtype of q, k, v
};

#if MINIDL_WITH_CUDA
/// softmax(q kᵀ · scale [+ causal mask]) v, FlashAttention-2 forward: O and LSE, never N×N.
AttentionOutputs fused_attention_forward(const Tensor& q, const Tensor& k, const Tensor& v,
                                         double scale, bool causal);
/// The matching backward: D = rowsum(dO ∘ O), then P recomputed per tile for dQ, dK, dV.
AttentionGrads fused_attention_backward(const Tensor& q, const Tensor& k, const Tensor& v,
                                        const Tensor& o, const Tensor& lse, const Tensor& dout,
                                        double scale, bool causal);
#endif

}  // namespace minidl::cuda
