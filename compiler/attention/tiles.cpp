// The tiles of the fused attention kernels (compiler/attention/tiles.h): MINIDL_ATTENTION_TILES
// text, the defaults, and the halved tiles of small grids.
#include "compiler/attention/tiles.h"

#include <algorithm>
#include <cstdio>

#include "base/error.h"

namespace minidl::codegen {

TileChoice parse_tile_choice(const std::string& text, bool backward, int head_dim) {
  TileChoice generic, specific;
  bool have_specific = false;
  const std::string want = backward ? "bwd" : "fwd";
  size_t start = 0;
  while (start < text.size()) {
    const size_t end = std::min(text.find(',', start), text.size());
    const std::string entry = text.substr(start, end - start);
    start = end + 1;
    char kernel[4] = {};
    int d = 0, m = 0, n = 0, groups = 1, used = 0, more = 0;
    bool ok = std::sscanf(entry.c_str(), "%3[a-z]@%d=%dx%d%n", kernel, &d, &m, &n, &used) == 4 ||
              (d = 0, std::sscanf(entry.c_str(), "%3[a-z]=%dx%d%n", kernel, &m, &n, &used) == 3);
    if (ok && entry[used] == 'g') {
      ok = std::sscanf(entry.c_str() + used, "g%d%n", &groups, &more) == 1 && groups >= 1;
      used += more;
    }
    MINIDL_CHECK(ok && (std::string(kernel) == "fwd" || std::string(kernel) == "bwd") && m >= 0 && n >= 0 &&
                     (static_cast<size_t>(used) == entry.size() || entry[used] == ':'),
                 ValueError,
                 "[attention tiles] MINIDL_ATTENTION_TILES entries look like fwd=64x64, bwd@128=32x128, "
                 "bwd=32x64g2 or bwd=32x64:q+do+ds, got '{}' in '{}'",
                 entry, text);
    std::optional<SplitTiles> split;
    if (static_cast<size_t>(used) < entry.size()) split = parse_split_tiles(entry.substr(used + 1));
    if (kernel != want || (d != 0 && d != head_dim)) continue;
    TileChoice& c = d != 0 ? specific : generic;
    have_specific |= d != 0;
    c = TileChoice{m, n, groups, split};
  }
  return have_specific ? specific : generic;
}

std::pair<int, int> default_tf32_tiles(bool backward, int head_dim) {
  // From the H200 tile sweep (docs/kernel-notes.md, "Tile sweep"), as default_split_tiles.
  if (!backward) return head_dim <= 16 ? std::pair{128, 64} : head_dim <= 32 ? std::pair{64, 64}
                      : head_dim <= 64 ? std::pair{128, 64} : std::pair{128, 32};
  return head_dim <= 16 ? std::pair{32, 64} : head_dim <= 32 ? std::pair{64, 64} : std::pair{32, 128};
}

SplitTiles default_split_tiles(bool backward, int head_dim) {
  // From the H200 tile sweep (docs/kernel-notes.md, "Tile sweep"): the forward gains from split
  // K and V tiles only at 16 < d <= 32; the backward always from split Q and dout tiles, and
  // from a split dsᵀ tile only at 16 < d <= 32.
  const bool narrow = head_dim > 16 && head_dim <= 32;
  SplitTiles t;
  if (!backward) {
    t.k = t.v = narrow;
  } else {
    t.q = t.dout = true;
    t.ds = narrow;
  }
  return t;
}

// NOTE [Tiles by grid size]
// The kernels run one block per resident tile (forward: query rows; backward: keys) per batch
// entry, so a small B·N leaves SMs idle: B·H = 8 and N = 1024 with 128-row tiles is 64 blocks
// for the H200's 132 SMs. Where the default tiles' grid would give at most half the SMs a
// block, the resident tile is halved once: twice the blocks. The forward's blocks then have
// half the warps; the backward keeps its warps where it can, in two query groups per key
// (NOTE [Query groups] in generate.cpp). On the H200 at N = 1024
// (docs/kernel-notes.md): forward d = 128 0.210 → 0.161 ms, d = 64 0.111 → 0.089; backward
// d = 128 0.502 → 0.419 with half the warps (commit 64e01e5), and in the kernels of 0430f77
// 0.400 with half the warps against 0.304 with two groups (d = 64: 0.266 against 0.171). At
// N = 2048 (128 blocks) the bigger tiles still win. Tiles set with MINIDL_ATTENTION_TILES are
// taken as they are.

std::optional<AttentionSpec> halved_tiles(AttentionSpec s, bool backward) {
  if (s.math != AttentionMath::Tf32 || s.block_m != 0 || s.block_n != 0 || s.groups != 1) return std::nullopt;
  auto [bm, bn] = default_tf32_tiles(backward, s.head_dim);
  int& resident = backward ? bn : bm;
  const int smaller = resident / 2;
  if (smaller < 16 || smaller % 16 != 0) return std::nullopt;
  resident = smaller;
  s.block_m = bm;
  s.block_n = bn;
  if (backward) {
    // two groups keep the warps where dq's row blocks (2·bm / 16) still divide them; else one
    // group of half the warps, whose key tile must stay a multiple of bm for the same reason
    const int warps = 2 * bn / 16, row_blocks = 2 * bm / 16;
    if (warps % row_blocks == 0) s.groups = 2;
    else if (bn % bm != 0) return std::nullopt;
  }
  return s;
}

AttentionSpec fit_tiles_to_grid(const AttentionSpec& s, bool backward, int64_t batch, int64_t rows,
                                int multiprocessors) {
  const std::optional<AttentionSpec> half = halved_tiles(s, backward);
  if (!half) return s;
  const int resident = backward ? 2 * half->block_n : 2 * half->block_m;
  return 2 * batch * ((rows + resident - 1) / resident) > multiprocessors ? s : *half;
}

}  // namespace minidl::codegen
