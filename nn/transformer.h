// Transformer layers: multi-head self-attention, a pre-LN block, and a small GPT.
//
// NOTE [Attention as plain ops]
// MultiHeadAttention spells attention out in (B, H, N, d) layout as
//   s = matmul(q, k.transpose(-2, -1)) * (1/sqrt(d)); s = masked_fill(s, triu(ones(N, N), 1), -inf)
//   (causal only); y = matmul(softmax(s, -1), v)
// with no other consumer of s or of the probabilities: the spelling compile()'s attention
// matcher recognises and replaces with one fused attention node. Eager mode runs the same ops.
#pragma once

#include <cstdint>
#include <memory>

#include "core/tensor.h"
#include "nn/layers.h"
#include "nn/module.h"

namespace minidl::nn {

/// Self-attention over (B, N, C) with H heads of size C/H; q, k, v and output projections.
class MultiHeadAttention : public Module {
 public:
  /// d_model must be a multiple of n_heads; causal masks attention to later positions.
  MultiHeadAttention(int64_t d_model, int64_t n_heads, bool causal = false);
  /// x: (B, N, C) -> (B, N, C).
  Tensor forward(const Tensor& x) override;

  std::shared_ptr<Linear> q_proj, k_proj, v_proj, out_proj;
  const int64_t d_model, n_heads, head_dim;
  const bool causal;
};

/// Pre-LN transformer block: x + attn(ln1(x)), then x + mlp(ln2(x)), with dropout on each branch.
class TransformerBlock : public Module {
 public:
  /// A block of width d_model with n_heads attention heads.
  TransformerBlock(int64_t d_model, int64_t n_heads, bool causal = true, double dropout = 0.0);
  /// x: (B, N, C) -> (B, N, C).
  Tensor forward(const Tensor& x) override;

  std::shared_ptr<LayerNorm> ln1, ln2;
  std::shared_ptr<MultiHeadAttention> attn;
  std::shared_ptr<MLP> mlp;  // C -> 4C -> C with GELU
  std::shared_ptr<Dropout> drop;
};

/// Sizes of a GPT.
struct GPTConfig {
  int64_t vocab_size = 16;
  int64_t block_size = 32;  // longest sequence
  int64_t n_layer = 2;
  int64_t n_head = 4;
  int64_t n_embd = 64;
  double dropout = 0.0;
};

/// A GPT-2-style decoder: token + position embeddings, causal blocks, final LayerNorm and a
/// linear head. GPT-2 initialisation: N(0, 0.02) weights, residual projections scaled by
/// 1/sqrt(2 * n_layer), zero biases.
class GPT : public Module {
 public:
  /// A freshly initialised GPT of the given sizes.
  explicit GPT(const GPTConfig& config);
  /// ids: (B, T) Int64/Int32 with T <= block_size -> logits (B, T, vocab_size).
  Tensor forward(const Tensor& ids) override;
  /// Greedy decoding: appends n_new argmax tokens to prompt (B, T), feeding at most the last
  /// block_size tokens each step. Runs without recording gradients.
  Tensor generate(const Tensor& prompt, int64_t n_new);

  const GPTConfig config;
  std::shared_ptr<Embedding> tok_emb, pos_emb;
  std::shared_ptr<Dropout> drop;
  std::shared_ptr<Sequential> blocks;  // n_layer TransformerBlocks
  std::shared_ptr<LayerNorm> ln_f;
  std::shared_ptr<Linear> head;  // no bias
};

}  // namespace minidl::nn
