// FusedAttention: softmax(q kᵀ · scale [+ causal mask]) v as one primitive, and its gradient
// FusedAttentionBackward. The attention matcher (compiler/passes/attention.cpp) puts them into
// compiled graphs. Each keeps the unfused composition it stands for as its fallback (the
// pattern of MLX's fast::Custom): the composition runs where no fused kernel applies and is
// the reference the kernels are tested against. CPU kernels: NOTE [CPU flash attention] in
// fused_attention.cpp; CUDA kernels: compiler/attention_kernels.h.
#pragma once

#include <string>
#include <vector>

#include "core/primitive.h"
#include "core/primitives.h"
#include "core/tensor.h"

namespace minidl {

/// q (..., Nq, d), k (..., Nk, d), v (..., Nk, d) with one batch shape -> O (..., Nq, d) and
/// LSE (..., Nq), the log-sum-exp of each row of the scaled, masked scores (float64 for
/// float64 inputs, else float32). Causal: query i does not see keys j > i (a triu(1) mask).
class FusedAttention : public Primitive {
 public:
  FusedAttention(double scale, bool causal) : scale_(scale), causal_(causal) {}
  const char* name() const override { return "fused_attention"; }
  std::string attrs() const override;
  double scale() const { return scale_; }
  bool causal() const { return causal_; }
  MINIDL_PRIMITIVE_BODY

 private:
  double scale_;
  bool causal_;
};

/// The gradient of FusedAttention: (q, k, v, o, lse, dO) -> (dq, dk, dv). FlashAttention-2's
/// backward: D = rowsum(dO ∘ O), then P recomputed from q, k and lse tile by tile.
class FusedAttentionBackward : public Primitive {
 public:
  FusedAttentionBackward(double scale, bool causal) : scale_(scale), causal_(causal) {}
  const char* name() const override { return "fused_attention_backward"; }
  std::string attrs() const override;
  /// Its gradient (second-order attention) is not provided.
  bool differentiable() const override { return false; }
  double scale() const { return scale_; }
  bool causal() const { return causal_; }
  MINIDL_EVAL

 private:
  double scale_;
  bool causal_;
};

/// softmax(q kᵀ · scale [+ causal mask]) v through FusedAttention (differentiable).
Tensor fused_attention(const Tensor& q, const Tensor& k, const Tensor& v, double scale,
                       bool causal = false);

/// What FusedAttention computes, written with ops (an N×N intermediate): {O, LSE}.
std::vector<Tensor> attention_composite(const Tensor& q, const Tensor& k, const Tensor& v,
                                        double scale, bool causal);
/// What FusedAttentionBackward computes, written with ops: {dq, dk, dv}.
std::vector<Tensor> attention_backward_composite(const Tensor& q, const Tensor& k, const Tensor& v,
                                                 const Tensor& o, const Tensor& lse,
                                                 const Tensor& dout, double scale, bool causal);

}  // namespace minidl
