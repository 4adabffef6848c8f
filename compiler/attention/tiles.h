// The tiles of the fused attention kernels: the defaults by head dim (from the H200 tile sweep
// in docs/kernel-notes.md), the MINIDL_ATTENTION_TILES text that overrides them, and the choice
// by grid size a launch makes (NOTE [Tiles by grid size] in tiles.cpp).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include "compiler/attention/spec.h"

namespace minidl::codegen {

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

/// `s` with its resident tile halved (forward: query rows; backward: keys, into two query
/// groups where the warps allow), where s is a Tf32 spec with the default tiles and they can be
/// halved; else nothing. NOTE [Tiles by grid size].
std::optional<AttentionSpec> halved_tiles(AttentionSpec s, bool backward);

/// The spec a launch over `batch` × `rows` resident rows on a GPU of `multiprocessors` SMs
/// uses: halved_tiles(s) where the default tiles' grid would give at most half the SMs a block,
/// else s. NOTE [Tiles by grid size].
AttentionSpec fit_tiles_to_grid(const AttentionSpec& s, bool backward, int64_t batch, int64_t rows,
                                int multiprocessors);

}  // namespace minidl::codegen
