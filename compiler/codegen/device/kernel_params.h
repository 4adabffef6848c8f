// Parameter blocks of the generated kernels, shared by the host launchers (g++) and the
// generated device code (NVRTC, which gets this file embedded as a string). Every generated
// kernel takes exactly one of these by value, so a launch passes one pointer whatever the
// kernel, and the layout is defined once. Plain C types only: NVRTC has no <cstdint>.
#pragma once

namespace minidl {

// Strides are in elements; every tensor is (B, N, d) as seen by the caller (B = batch * heads).

/// softmax(q kᵀ · scale) v for one (B, N, d) problem: writes o (B, n_q, d, contiguous, dtype of
/// q) and lse (B, n_q) float32.
struct AttentionFwdParams {
  const void* q;
  const void* k;
  const void* v;
  void* o;
  float* lse;
  long long q_sb, q_sn, q_sd;
  long long k_sb, k_sn, k_sd;
  long long v_sb, v_sn, v_sd;
  int batch, n_q, n_k;
};

/// The backward of AttentionFwdParams' problem. delta (B, n_q) = rowsum(dout ∘ o) is written by
/// the preprocessing kernel and read by the main one; dq_acc (B, n_q, d) float32 is zeroed by the
/// launcher and accumulated with atomics; dk, dv (B, n_k, d) are contiguous, in q's dtype.
struct AttentionBwdParams {
  const void* q;
  const void* k;
  const void* v;
  const void* o;
  const void* dout;
  const float* lse;
  float* delta;
  float* dq_acc;
  void* dk;
  void* dv;
  long long q_sb, q_sn, q_sd;
  long long k_sb, k_sn, k_sd;
  long long v_sb, v_sn, v_sd;
  long long o_sb, o_sn, o_sd;
  long long do_sb, do_sn, do_sd;
  int batch, n_q, n_k;
};

/// Most inputs and outputs a generated fusion kernel takes.
constexpr int kMaxFusedInputs = 16;
constexpr int kMaxFusedOutputs = 8;

/// Operands of a generated fusion kernel (compiler/codegen/fusion.h); shapes and strides are
/// compiled into the kernel.
struct FusedArgs {
  const void* in[kMaxFusedInputs];
  void* out[kMaxFusedOutputs];
};

}  // namespace minidl
