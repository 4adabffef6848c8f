// The launchers of the fused attention kernels the FusedAttention primitive runs on a GPU
// (compiler/attention/attention.h): validate, pick each kernel's specialisation (spec.h, with
// the tiles of tiles.h), generate and JIT-compile it once (generate.h, compiler/jit.h), fill its
// parameter block and launch on the current stream. Shapes: q, k, v, o, do: (B, N, d) with any
// strides (B = batch * heads flattened by the caller); lse: (B, N) float32. CUDA builds only.
#pragma once

#include <cstdint>
#include <vector>

#include "base/config.h"
#include "compiler/codegen/kernel.h"
#include "core/dtype.h"
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

/// What those launchers would compile, without launching: for filling the kernel cache ahead of
/// a GPU run (minidl-bench attention-kernels --compile-only) and for reading the generated source.
/// The kernels fused_attention_forward (or, with `backward`, fused_attention_backward: delta and
/// the main kernel) generates for inputs of this head dim and dtype (math and tiles from the
/// environment, as they read it), with the halved-tile variant small grids get (NOTE [Tiles by
/// grid size] in compiler/attention/tiles.cpp).
std::vector<codegen::GeneratedKernel> fused_attention_kernels(int64_t head_dim, DType dtype, double scale, bool causal,
                                                              bool unit_d_stride, bool backward);
#endif

}  // namespace minidl::cuda
