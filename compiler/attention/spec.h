// What one fused attention kernel is specialised on: the math of its products, dtype, head dim,
// causal mask, scale, d stride, tiles and which tiles are split at load. The generators
// (compiler/attention/generate.h) take it; the launcher (launch.h) fills it from the inputs and
// the environment; the tiles it leaves at 0 are the defaults of compiler/attention/tiles.h.
#pragma once

#include <optional>
#include <string>
#include <vector>

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
/// big and small TF32 parts (NOTE [Split at load] in generate.cpp), instead of being split by
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
  // for a grid of few key tiles. NOTE [Query groups] in generate.cpp.
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

}  // namespace minidl::codegen
