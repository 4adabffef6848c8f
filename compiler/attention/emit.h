// The emitters the FFMA (ffma.cpp) and TF32 (tf32.cpp) attention generators share: the kernel's
// name and header comment, tile copies from global into shared memory (plain, cp.async, split,
// staged through registers), row reductions across a warp's lanes, and the mask. Internal to
// compiler/attention/; the NOTEs cited here are in compiler/attention/generate.cpp.
#pragma once

#include <cstddef>
#include <optional>
#include <string>

#include "compiler/attention/spec.h"
#include "compiler/codegen/kernel.h"
#include "compiler/codegen/source_builder.h"
#include "core/dtype.h"

namespace minidl::codegen::attn {

int round_up(int x, int m);
/// Smallest stride >= width with stride ≡ residue (mod 32).
int padded_stride(int width, int residue);
/// The C type generated code stores q, k, v, o in (nullptr: a dtype the kernels do not take).
const char* storage_type(DType t);
/// "f32", "f16", "bf16": the dtype in kernel names.
const char* dtype_tag(DType t);

/// The kernel's name: kind, math, dtype, head dim, flags and tiles. `split`: the Tf32 float32
/// kernels' tiles split at load, as letters q k v o (dout) s (ds).
std::string kernel_name(const char* kind, const AttentionSpec& s, int bm, int bn,
                        const std::optional<SplitTiles>& split = std::nullopt);
/// The comment every kernel starts with: what it computes, from which graph nodes, and how;
/// then the device headers.
void emit_header(SourceBuilder& b, const std::string& what, const AttentionSpec& s, const std::string& layout,
                 const std::string& tiles);

/// A kernel of this name and launch shape, its source still to come (finish_kernel).
GeneratedKernel kernel_shape(std::string name, int threads, int tile, size_t smem_bytes);
/// Closes the kernel's body in b and sets k's source to b's text.
GeneratedKernel finish_kernel(SourceBuilder& b, GeneratedKernel k);
/// The header comment and the opening of k, the forward or the backward main kernel: what it
/// computes, its operands, `tiles` (how it tiles, in words); launch bounds `bounds` (or k.threads).
void emit_main_kernel_open(SourceBuilder& b, const AttentionSpec& s, const GeneratedKernel& k, bool backward,
                           const std::string& tiles, const std::string& bounds = "");
/// Opens the kernel `name`: extern "C" __global__ with __launch_bounds__(`bounds`), taking the
/// forward's or the backward's parameter block; T is the storage type of `dtype`.
void emit_kernel_open(SourceBuilder& b, const std::string& bounds, const std::string& name, bool backward,
                      DType dtype);
/// The block's batch entry b and first resident row (forward: query row m0, the longest causal
/// rows first; backward: key n0), and the inputs q, k, v (backward: and dout) of entry b.
void emit_block_start(SourceBuilder& b, bool backward);

/// The copy of rows [row0, row0 + rows) of a (B, N, d) input (base pointer `src`, strides
/// `sn`, `sd`) into the shared tile dst[rows][stride] as float times `mul`, zero-filling rows
/// >= n and columns >= head dim up to `width`. Every thread of the block takes part.
struct TileLoad {
  std::string dst, src, sn, sd, row0, n, mul;
  int rows, width, stride;
  bool async = false;  // float32 through cp.async (no mul): lands at a later cp_async_wait
  bool split = false;  // stored as TF32 big and small parts in dst_hi, dst_lo: NOTE [Split at load]
};
/// Emits the copy of tile t: every thread of the block (`threads`) takes part.
void emit_tile_load(SourceBuilder& b, const AttentionSpec& s, int threads, const TileLoad& t);

/// Tiles of at most this many elements per thread are staged: NOTE [Staged tile loads].
constexpr int kMaxStaged = 16;
/// Elements per thread of a tile staged through registers, whose threads each keep one column
/// and walk rows (0: the tile does not split so).
int staged_count(const TileLoad& t, int threads);
/// Loads rows [row0, row0 + rows) of t into the registers <dst>_st[staged_count] (zero past row
/// n and column D): element j of a thread is row tid / width + (threads / width)·j, column
/// tid % width.
void emit_tile_fetch(SourceBuilder& b, const AttentionSpec& s, int threads, const TileLoad& t);
/// Stores the registers of emit_tile_fetch into t's shared tile.
void emit_tile_store_staged(SourceBuilder& b, int threads, const TileLoad& t);

/// Emits `var = op over the `width` threads of a row` (lanes xor 1, 2, ... of one warp).
void emit_row_allreduce(SourceBuilder& b, const std::string& var, const char* op, int width);
/// Emits `var = the sum over the `width` threads of a row`.
void emit_row_allsum(SourceBuilder& b, const std::string& var, int width);

/// How a thread's registers of an output map onto its rows and columns: the loop over its rows
/// (`rows`, a for header) with `row` its index there, the loops over its column chunks and their
/// elements, `col` the column and `at` the register's index ("[i][4 * jj + e]").
struct OutputLoops {
  const char *rows, *row, *chunks, *elems, *col, *at;
};
/// The backward's start: dk and dv (`dims`, zeroed by the loop `zero`, two lines), and m_begin,
/// the first query row a block's keys see (causal: rounded down to the step of `step_rows`).
void emit_key_accumulators(SourceBuilder& b, const AttentionSpec& s, const char* dims, const char* zero_loop,
                           const char* zero, const char* step_rows);
/// The backward's end: dk · scale and dv of the thread's keys, stored where key < n_k, c < D.
void emit_dk_dv_store(SourceBuilder& b, const OutputLoops& o);

/// The causal / sequence-end mask condition for absolute indices `row` (query) and `col` (key).
std::string masked(const AttentionSpec& s, const std::string& row, const std::string& col);

}  // namespace minidl::codegen::attn
