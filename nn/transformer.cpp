#include "nn/transformer.h"

#include <cmath>

#include "core/grad_mode.h"
#include "core/ops.h"
#include "nn/init.h"

namespace minidl::nn {

// ---- MultiHeadAttention

MultiHeadAttention::MultiHeadAttention(int64_t d, int64_t h, bool is_causal)
    : Module("MultiHeadAttention"), d_model(d), n_heads(h), head_dim(h > 0 ? d / h : 0), causal(is_causal) {
  MINIDL_CHECK(d > 0 && h > 0 && d % h == 0, ValueError,
               "[MultiHeadAttention] d_model={} must be a positive multiple of n_heads={}", d, h);
  q_proj = register_module("q_proj", std::make_shared<Linear>(d, d));
  k_proj = register_module("k_proj", std::make_shared<Linear>(d, d));
  v_proj = register_module("v_proj", std::make_shared<Linear>(d, d));
  out_proj = register_module("out_proj", std::make_shared<Linear>(d, d));
}

Tensor MultiHeadAttention::forward(const Tensor& x) {
  MINIDL_CHECK(x.dim() == 3 && x.size(2) == d_model, ShapeError,
               "[MultiHeadAttention] expects (B, N, {}), got {}", d_model, shape_str(x.shape()));
  const int64_t B = x.size(0), N = x.size(1);
  const auto heads = [&](const Tensor& t) {  // (B, N, C) -> (B, H, N, d)
    return t.view({B, N, n_heads, head_dim}).transpose(1, 2);
  };
  const Tensor q = heads(q_proj->forward(x)), k = heads(k_proj->forward(x)), v = heads(v_proj->forward(x));
  // See NOTE [Attention as plain ops] before changing this spelling.
  Tensor s = matmul(q, k.transpose(-2, -1)) * (1.0 / std::sqrt(static_cast<double>(head_dim)));
  if (causal) s = masked_fill(s, ones({N, N}, {.dtype = kBool, .device = x.device()}).triu(1), -INFINITY);
  const Tensor y = matmul(softmax(s, -1), v);  // (B, H, N, d)
  return out_proj->forward(y.transpose(1, 2).reshape({B, N, d_model}));
}

// ---- TransformerBlock

TransformerBlock::TransformerBlock(int64_t d, int64_t h, bool causal, double dropout)
    : Module("TransformerBlock") {
  ln1 = register_module("ln1", std::make_shared<LayerNorm>(d));
  attn = register_module("attn", std::make_shared<MultiHeadAttention>(d, h, causal));
  ln2 = register_module("ln2", std::make_shared<LayerNorm>(d));
  mlp = register_module("mlp", std::make_shared<MLP>(std::vector<int64_t>{d, 4 * d, d}, "gelu"));
  drop = register_module("drop", std::make_shared<Dropout>(dropout));
}

Tensor TransformerBlock::forward(const Tensor& x) {
  const Tensor h = x + drop->forward(attn->forward(ln1->forward(x)));
  return h + drop->forward(mlp->forward(ln2->forward(h)));
}

// ---- GPT

GPT::GPT(const GPTConfig& c) : Module("GPT"), config(c) {
  MINIDL_CHECK(c.vocab_size > 0 && c.block_size > 0 && c.n_layer > 0, ValueError,
               "[GPT] vocab_size, block_size and n_layer must be positive, got {}, {}, {}",
               c.vocab_size, c.block_size, c.n_layer);
  tok_emb = register_module("tok_emb", std::make_shared<Embedding>(c.vocab_size, c.n_embd));
  pos_emb = register_module("pos_emb", std::make_shared<Embedding>(c.block_size, c.n_embd));
  drop = register_module("drop", std::make_shared<Dropout>(c.dropout));
  blocks = register_module("blocks", std::make_shared<Sequential>());
  for (int64_t i = 0; i < c.n_layer; ++i)
    blocks->push_back(std::make_shared<TransformerBlock>(c.n_embd, c.n_head, true, c.dropout));
  ln_f = register_module("ln_f", std::make_shared<LayerNorm>(c.n_embd));
  head = register_module("head", std::make_shared<Linear>(c.n_embd, c.vocab_size, false));

  // GPT-2 initialisation; the projections that write into the residual stream get a smaller
  // std so its variance does not grow with depth.
  const double std = 0.02, residual_std = 0.02 / std::sqrt(2.0 * static_cast<double>(c.n_layer));
  init_normal_(tok_emb->weight, std);
  init_normal_(pos_emb->weight, std);
  init_normal_(head->weight, std);
  for (size_t i = 0; i < blocks->size(); ++i) {
    auto& b = static_cast<TransformerBlock&>(*(*blocks)[i]);
    for (auto* lin : {b.attn->q_proj.get(), b.attn->k_proj.get(), b.attn->v_proj.get(), b.mlp->linears[0].get()})
      init_normal_(lin->weight, std);
    for (auto* lin : {b.attn->out_proj.get(), b.mlp->linears[1].get()}) init_normal_(lin->weight, residual_std);
    for (auto* lin : {b.attn->q_proj.get(), b.attn->k_proj.get(), b.attn->v_proj.get(),
                      b.attn->out_proj.get(), b.mlp->linears[0].get(), b.mlp->linears[1].get()})
      init_constant_(lin->bias, 0.0);
  }
}

Tensor GPT::forward(const Tensor& ids) {
  MINIDL_CHECK(ids.dim() == 2, ShapeError, "[GPT] expects token ids (B, T), got {}", shape_str(ids.shape()));
  const int64_t T = ids.size(1);
  MINIDL_CHECK(T >= 1 && T <= config.block_size, ShapeError,
               "[GPT] sequence length {} is outside [1, block_size={}]", T, config.block_size);
  const Tensor pos = arange(T, {.dtype = kInt64, .device = ids.device()});
  Tensor x = drop->forward(tok_emb->forward(ids) + pos_emb->forward(pos));  // (B, T, C)
  x = blocks->forward(x);
  return head->forward(ln_f->forward(x));  // (B, T, vocab)
}

Tensor GPT::generate(const Tensor& prompt, int64_t n_new) {
  MINIDL_CHECK(prompt.dim() == 2 && prompt.size(1) >= 1, ShapeError,
               "[GPT::generate] expects a prompt (B, T) with T >= 1, got {}", shape_str(prompt.shape()));
  NoGradGuard no_grad;
  Tensor ids = prompt.to(kInt64);
  for (int64_t i = 0; i < n_new; ++i) {
    const int64_t T = ids.size(1), start = std::max<int64_t>(0, T - config.block_size);
    const Tensor logits = forward(ids.slice(1, start, T)).select(1, -1);  // (B, vocab)
    ids = cat({ids, argmax(logits, -1, true)}, 1);
  }
  return ids;
}

}  // namespace minidl::nn
