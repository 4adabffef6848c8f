// Generators of the fused attention kernels (FlashAttention-2): the forward keeps a tile of
// query rows resident, streams K/V tiles through shared memory with an online softmax, and
// writes O and the log-sum-exp, never the N×N matrix; the backward recomputes P tile by tile.
// Each kernel is specialised at compile time on head dim, tiles, dtype, causal and scale; the
// sizes and strides of q, k, v are runtime arguments (AttentionFwdParams / AttentionBwdParams in
// compiler/codegen/device/kernel_params.h), so one kernel serves every sequence length.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "compiler/codegen/kernel.h"
#include "core/dtype.h"

namespace minidl::codegen {

/// How the two products of a tile are computed.
enum class AttentionMath {
  Ffma,  // CUDA-core FMAs, register-tiled: the float32 reference path and the fallback
  Tf32,  // tensor cores, mma.sync m16n8k8 TF32; float32 inputs use the 3xTF32 split
};

/// "ffma" / "tf32".
const char* attention_math_name(AttentionMath m);

/// float32 tiles of the Tf32 kernels that are stored in shared memory already split into their
/// big and small TF32 parts (NOTE [Split at load] in attention.cpp), instead of being split by
/// every warp at every read. Forward: q (resident), k, v (streamed; no cp.async then); backward:
/// k, v (resident), q, dout (streamed), ds (written by a warp, read by all for dq).
struct SplitTiles {
  bool q = false, k = false, v = false, dout = false, ds = false;
  bool operator==(const SplitTiles&) const = default;
};

/// "q+k+v+do+ds" for the split tiles, "none" when there are none.
std::string split_tiles_name(const SplitTiles& t);
/// Parses split_tiles_name's format ("none", or names joined by '+'); throws ValueError.
SplitTiles parse_split_tiles(const std::string& text);

struct AttentionSpec {
  int head_dim = 64;                         // d, 1..256
  DType dtype = kFloat32;                    // of q, k, v, o, dout, dq, dk, dv: float32/16, bfloat16
  bool causal = false;                       // query i sees keys j <= i (top-left aligned)
  double scale = 0.125;                      // multiplies q kᵀ
  AttentionMath math = AttentionMath::Ffma;
  bool unit_d_stride = true;                 // q, k, v (and dout) have stride 1 along d
  std::vector<std::string> nodes;            // graph nodes the kernels implement, for the header
  // Tiles; 0 picks the default for the head dim and math (docs/kernel-notes.md). Forward:
  // block_m query rows per block, block_n keys per step. Backward: block_n keys per block,
  // block_m query rows per step. Tf32 runs one warp per 16 of the block's rows.
  int block_m = 0, block_n = 0;
  // Tf32 backward: warp groups per block, each taking block_m of a step's groups · block_m query
  // rows against the same block_n keys (dk and dv summed over the groups at the end): more warps
  // for a grid of few key tiles. NOTE [Query groups] in attention.cpp.
  int groups = 1;
  // Tf32: tile loads overlap compute. Forward: float32 K/V tiles stream in with cp.async (NOTE
  // [Async K/V pipeline]); backward: the next step's q and dout tiles are loaded into registers
  // during dq where registers allow (NOTE [Staged tile loads]). false: plain loads, for A/B timing.
  bool async_copy = true;
  std::optional<SplitTiles> split;           // Tf32 float32 only; unset: the defaults for the kernel and d
};

/// Largest head dim each math supports (Tf32's backward keeps dK and dV for 16 keys × d per
/// warp in registers, which caps it at 128).
int max_head_dim(AttentionMath m);

/// Tiles chosen by text (MINIDL_ATTENTION_TILES, docs/env_vars.md), for tuning without a rebuild.
struct TileChoice {
  int block_m = 0, block_n = 0, groups = 1;  // 0×0: the defaults
  std::optional<SplitTiles> split;           // unset: the defaults
};
/// The choice for one kernel kind and head dim in `text`: comma-separated entries
/// <fwd|bwd>[@<head dim>]=<M>x<N>[g<groups>][:<split tiles>], e.g.
/// "fwd=64x64,bwd=32x64:q+do+ds,bwd@128=32x64g2". An entry for the head dim wins over one
/// without (the last of each counts); split tiles as parse_split_tiles reads them. Every entry
/// is checked, whatever kernel it names: a malformed one throws ValueError.
TileChoice parse_tile_choice(const std::string& text, bool backward, int head_dim);

/// The Tf32 tiles (block_m, block_n) a spec with 0×0 gets (docs/kernel-notes.md).
std::pair<int, int> default_tf32_tiles(bool backward, int head_dim);

/// The tiles a Tf32 float32 kernel pre-splits when the spec leaves it open (docs/kernel-notes.md).
SplitTiles default_split_tiles(bool backward, int head_dim);

/// Forward kernel: o, lse from q, k, v. One AttentionFwdParams; grid batch * ceil(n_q / tile).
GeneratedKernel generate_attention_forward(const AttentionSpec& spec);

/// Backward preprocessing: delta (B, n_q) float32 = rowsum(dout ∘ o), one warp per row. One
/// AttentionBwdParams (reads o, dout; writes delta); grid batch * ceil(n_q / tile).
GeneratedKernel generate_attention_backward_delta(const AttentionSpec& spec);

/// Backward main kernel: one block per key tile writes dk, dv and adds its share of dq into the
/// zeroed float32 dq_acc with atomics. One AttentionBwdParams; grid batch * ceil(n_k / tile).
GeneratedKernel generate_attention_backward(const AttentionSpec& spec);

}  // namespace minidl::codegen
