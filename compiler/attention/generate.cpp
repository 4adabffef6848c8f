// The entry points of the FlashAttention-2 kernel generators (compiler/attention/generate.h),
// and the NOTEs the generated kernels cite. Two maths share the structure of each kernel: Ffma
// (register-tiled CUDA-core FMAs, ffma.cpp) and Tf32 (mma.sync tensor-core tiles, tf32.cpp),
// over shared emitters (emit.cpp). Everything the generated code indexes is a compile-time
// constant except the problem sizes and strides.
//
// NOTE [Attention tiles and shared memory]
// Tiles live in shared memory as float, whatever the storage dtype (converted on load), with
// rows padded so that the warp's access patterns hit distinct banks:
//   Ffma: rows read as float4 along d by 8 (or 4) consecutive rows at once need a row stride
//         whose float4 count is odd: stride = DW + 4 with DW a multiple of 32 (or 16).
//         P/dS tiles written by 4 (8) rows × 8 (4) columns need stride ≡ TC (mod 32).
//   Tf32: mma fragments read A[g][t] (8 rows × 4 columns) and, for the k-permuted products,
//         B[2t][g] (4 even rows × 8 columns): a row stride ≡ 4 (mod 32) serves both.
// Columns past the head dim are zero-filled, so the products need no masks along d.
//
// NOTE [Online softmax in base 2]
// The scores are kept as s·scale·log2(e) (the forward pre-scales q on load, or, with a single
// TF32 product, the scores right after it), so every exponential is one exp2f. The row max m and row sum l are updated per key tile:
// m' = max(m, max_j s_j), l' = l·2^(m−m') + Σ_j 2^(s_j−m'), O' = O·2^(m−m') + P·V; at the end
// O/l and lse = (m + log2 l)·ln 2 are written. Each thread keeps a partial l over its own
// columns; the partials are summed across the row's threads once, at the end.
//
// NOTE [3xTF32]
// A TF32 product rounds each operand to 10 mantissa bits (error ~1e-3 relative). Writing each
// float as big + small (both TF32) and summing small·big + big·small + big·big with float32
// accumulation recovers float32 accuracy (the dropped small·small term is ~2^-22 relative):
// three tensor-core products per product, as PyTorch's float32 SDPA does. 16-bit inputs are
// exact in TF32, so they take one product.
//
// NOTE [Two chains per product]
// An mma's result is ready ~30 cycles after it issues, and the H200 takes a new TF32 mma about
// every 6 cycles per scheduler: 305–316 TFLOP/s with four or more independent accumulators per
// scheduler, 65 TFLOP/s with one (bench/mma_peak.cu, docs/kernel-notes.md). The three products
// of one 3xTF32 step into one accumulator are a chain of three such latencies. Where registers
// allow (the per-fragment temporaries of NOTE [Short mma chains]), the two small terms go into a
// second zeroed accumulator, added to the first with one IEEE add per element at the end: two
// shorter chains the scheduler can overlap, and the small terms summed at their own magnitude.
//
// NOTE [Permuted k in register-sourced products]
// mma.m16n8k8 wants A[g][t] and A[g][t+4] in a thread, but the accumulator of the previous
// product holds C[g][2t] and C[g][2t+1]. A sum over k may visit k in any order as long as A and
// B agree, so P·V reads k = t as key 2t and k = t + 4 as key 2t + 1: the accumulator registers
// become the A fragment as they are ({c0, c2, c1, c3}) and B reads rows 2t and 2t + 1.
//
// NOTE [Short mma chains]
// The tensor cores' float32 accumulation truncates (tests/cuda_emu.h, NOTE [Tensor-core
// accumulation]): every mma rounds its result toward zero, so an accumulator fed by a chain of L
// mma's drifts by ~L/2 ulps, always toward zero. An accumulator that ran over the whole sequence
// (o over all keys, dk and dv over all queries) had an error growing linearly with N (3.6e-5 at
// N = 4096 on the H200). So no accumulator here outlives one tile: each output fragment's
// product with one tile goes into a zeroed temporary (a chain of 3·tile/8 mma's), which is added
// to the float32 running value with ordinary IEEE FADD/FFMA (the forward folds in the online
// softmax's rescale: o = o·alpha + tile). The temporary is one fragment (4 registers): the loops
// run over output fragments outside and the tile's k-steps inside. The remaining chains are the
// tile's (3·BN/8 or 3·BM/8) and the head dim's in s = q kᵀ (3·d/8), both independent of N.
//
// NOTE [Split at load]
// 3xTF32 splits every float32 operand into big + small TF32 parts (three instructions). A tile
// read as B fragments by every warp of the block (the forward's K and V, the backward's Q and
// dout, the backward's dsᵀ for dq) is split once when it is stored in shared memory, into two
// arrays X_hi and X_lo, instead of once per warp per read; that trades shared memory (twice the
// tile) for 3 instructions per fragment element per reader. Which tiles are split is part of the
// spec (AttentionSpec::split; docs/kernel-notes.md has the defaults and their reasons). Split
// tiles are stored with plain loads, not cp.async (the split needs the value in a register).
//
// NOTE [Async K/V pipeline]
// With float32 storage the Tf32 forward copies K and V tiles with cp.async (no registers, no
// conversion needed): the next K tile streams in while this step's softmax and P·V run, the
// next V tile while the next S runs. Ks and Vs have one buffer each, so a barrier separates the
// last read of a tile from the copy over it, and a wait plus a barrier the copy from the first
// read: four barriers per step instead of two. 16-bit inputs convert on load and keep plain loads.
//
// NOTE [Query groups]
// The Tf32 backward gives each warp 16 keys for the whole sequence: dk and dv for 16 keys × d
// stay in its registers (128 at d = 128), which allows 8 warps per SM. A grid of few key tiles
// (B·H = 8, N = 1024: 512 warps in all) then leaves each scheduler one warp, with nothing to
// hide the mma latency (NOTE [Two chains per product]). With G groups, a block runs G warps per
// 16 keys: each step loads G·BM query rows, group i takes rows i·BM..(i+1)·BM − 1 of it, and
// all warps share the dq product of the step; at the end group 0 adds the other groups' dk and
// dv, passed through the shared memory that held k and v. G times the warps per key, no extra
// global memory, and each group's dk, dv still sum only its own, shorter chains of tiles.
//
// NOTE [Staged tile loads]
// The backward's q and dout tiles are loaded at the start of every step: the block's first
// barrier, then global loads whose latency (an L2 round trip) no warp can hide because
// every warp is waiting for the same tile, then the split and the stores, then a barrier. On
// the H200 that phase held a fifth of the d = 128 backward's stall samples (docs/kernel-notes.md).
// Staged, the loads of the next step's tiles are issued into registers after this step's
// last barrier and land while the warps compute dq; the next step only splits and stores them.
// It costs registers while dq runs (`staged_count` per thread and tile), so the generator
// stages only tiles of at most kMaxStaged (emit.h) elements per thread.
#include "compiler/attention/generate.h"

#include "base/error.h"
#include "compiler/attention/emit.h"
#include "compiler/attention/ffma.h"
#include "compiler/attention/tf32.h"
#include "compiler/codegen/source_builder.h"

namespace minidl::codegen {

using namespace attn;

namespace {

void validate(const char* what, const AttentionSpec& s) {
  MINIDL_CHECK(storage_type(s.dtype) != nullptr, DTypeError,
               "[{}] fused attention supports float32, float16 and bfloat16, got {}", what,
               dtype_name(s.dtype));
  MINIDL_CHECK(s.head_dim >= 1 && s.head_dim <= max_head_dim(s.math), ShapeError,
               "[{}] head dim {} is outside 1..{} for the {} kernels", what, s.head_dim,
               max_head_dim(s.math), attention_math_name(s.math));
  MINIDL_CHECK(s.scale > 0 && s.scale < 1e30, ValueError, "[{}] scale must be positive, got {}",
               what, s.scale);
}

// Hopper's limit of dynamic shared memory per block.
constexpr size_t kMaxSharedBytes = 227 * 1024;

GeneratedKernel checked_smem(GeneratedKernel k) {
  MINIDL_CHECK(k.smem_bytes <= kMaxSharedBytes, ValueError,
               "[attention codegen] {} needs {} bytes of shared memory per block; at most {} exist: use smaller tiles",
               k.name, k.smem_bytes, kMaxSharedBytes);
  return k;
}
}  // namespace

GeneratedKernel generate_attention_forward(const AttentionSpec& spec) {
  validate("attention_forward", spec);
  MINIDL_CHECK(spec.groups == 1, ValueError, "[attention_forward] query groups are a backward tile, got {}",
               spec.groups);
  return checked_smem(spec.math == AttentionMath::Ffma ? ffma_forward(spec) : tf32_forward(spec));
}

GeneratedKernel generate_attention_backward(const AttentionSpec& spec) {
  validate("attention_backward", spec);
  MINIDL_CHECK(spec.groups == 1 || (spec.groups > 1 && spec.math == AttentionMath::Tf32), ValueError,
               "[attention_backward] query groups must be 1, or more with the tf32 math, got {} ({} math)",
               spec.groups, attention_math_name(spec.math));
  return checked_smem(spec.math == AttentionMath::Ffma ? ffma_backward(spec) : tf32_backward(spec));
}

GeneratedKernel generate_attention_backward_delta(const AttentionSpec& spec) {
  validate("attention_backward", spec);
  constexpr int kWarps = 8;
  const GeneratedKernel k = kernel_shape(fmt::format("minidl_attn_delta_{}_d{}{}", dtype_tag(spec.dtype), spec.head_dim,
                                                   spec.unit_d_stride ? "" : "_strided"),
                                       32 * kWarps, kWarps, 0);
  SourceBuilder b;
  emit_header(b, "FlashAttention-2 backward preprocessing, delta = rowsum(dout ∘ o)", spec,
              "o, dout: (B, N, d) with runtime strides; delta: (B, n_q) float32",
              fmt::format("one warp per row, {} rows per block", kWarps));
  emit_kernel_open(b, std::to_string(k.threads), k.name, true, spec.dtype);
  b.line("constexpr int D = {};", spec.head_dim);
  b.line("const int lane = threadIdx.x % 32;");
  b.line("const int m_tiles = (p.n_q + {} - 1) / {};", kWarps, kWarps);
  b.line("const int b = blockIdx.x / m_tiles;");
  b.line("const int row = blockIdx.x % m_tiles * {} + threadIdx.x / 32;", kWarps);
  b.line("if (row >= p.n_q) return;");
  b.line("const T* o = static_cast<const T*>(p.o) + b * p.o_sb + (long long)row * p.o_sn;");
  b.line("const T* dout = static_cast<const T*>(p.dout) + b * p.do_sb + (long long)row * p.do_sn;");
  b.line("float acc = 0.f;");
  if (spec.unit_d_stride)
    b.line("for (int c = lane; c < D; c += 32) acc = fmaf(load(o + c), load(dout + c), acc);");
  else
    b.line("for (int c = lane; c < D; c += 32) acc = fmaf(load(o + c * p.o_sd), load(dout + c * p.do_sd), acc);");
  emit_row_allsum(b, "acc", 32);
  b.line("if (lane == 0) p.delta[(long long)b * p.n_q + row] = acc;");
  return finish_kernel(b, k);
}

}  // namespace minidl::codegen
