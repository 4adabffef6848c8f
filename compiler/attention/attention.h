// The attention wing: softmax(q kᵀ · scale [+ causal mask]) v as one primitive, from the graph
// pattern to the GPU kernels. Start here; the rest of compiler/attention/ is, in the order a
// compiled attention passes through it:
//
//   match.h      the matcher: finds attention spelled with ops in a traced graph and replaces it
//                by a FusedAttention node (NOTE [Attention spellings] in match.cpp)
//   attention.h  (this file) the primitives FusedAttention and FusedAttentionBackward, each with
//                its composite fallback; attention.cpp holds their CPU kernels (NOTE [CPU flash
//                attention]) and the compositions
//   launch.h     the CUDA launchers the primitives call: validate, choose the kernels' spec,
//                compile through the JIT, launch (NOTE [dq by atomics] in launch.cpp)
//   spec.h       AttentionSpec: everything a generated kernel is specialised on
//   tiles.h      the tiles: defaults by head dim, MINIDL_ATTENTION_TILES parsing, the halved
//                tiles of small grids (NOTE [Tiles by grid size] in tiles.cpp)
//   generate.h   the kernel generators' entry points; generate.cpp holds the NOTEs the kernels
//                cite. The math: ffma.h (CUDA cores) and tf32.h with tf32_fragments.h (tensor
//                cores), over the shared emitters of emit.h
//
// docs/kernel-notes.md has the kernels' measurements and the tile sweep behind the defaults;
// docs/fusion-walkthrough.md follows a compiled attention through the passes.
//
// FusedAttention and FusedAttentionBackward each keep the unfused composition they stand for as
// their fallback (the pattern of MLX's fast::Custom): the composition runs where no fused
// kernel applies and is the reference the kernels are tested against.
#pragma once

#include <string>
#include <vector>

#include "core/primitive.h"
#include "core/primitives.h"
#include "core/tensor.h"

namespace minidl {

/// What the two attention primitives share: the scale of the scores and the causal mask.
class AttentionPrimitive : public Primitive {
 public:
  AttentionPrimitive(double scale, bool causal) : scale_(scale), causal_(causal) {}
  /// "scale=0.125, causal=true".
  std::string attrs() const override;
  double scale() const { return scale_; }
  bool causal() const { return causal_; }

 protected:
  double scale_;
  bool causal_;
};

/// q (..., Nq, d), k (..., Nk, d), v (..., Nk, d) with one batch shape -> O (..., Nq, d) and
/// LSE (..., Nq), the log-sum-exp of each row of the scaled, masked scores (float64 for
/// float64 inputs, else float32). Causal: query i does not see keys j > i (a triu(1) mask).
class FusedAttention : public AttentionPrimitive {
 public:
  using AttentionPrimitive::AttentionPrimitive;
  const char* name() const override { return "fused_attention"; }
  MINIDL_PRIMITIVE_BODY
};

/// The gradient of FusedAttention: (q, k, v, o, lse, dO) -> (dq, dk, dv). FlashAttention-2's
/// backward: D = rowsum(dO ∘ O), then P recomputed from q, k and lse tile by tile.
class FusedAttentionBackward : public AttentionPrimitive {
 public:
  using AttentionPrimitive::AttentionPrimitive;
  const char* name() const override { return "fused_attention_backward"; }
  /// Its gradient (second-order attention) is not provided.
  bool differentiable() const override { return false; }
  MINIDL_EVAL
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
