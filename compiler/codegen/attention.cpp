// The FlashAttention-2 kernel generators. Two maths share the structure of each kernel:
// Ffma (register-tiled CUDA-core FMAs) and Tf32 (mma.sync tensor-core tiles). Everything the
// generated code indexes is a compile-time constant except the problem sizes and strides.
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
#include "compiler/codegen/attention.h"

#include <algorithm>
#include <cstdio>

#include "base/error.h"
#include "compiler/codegen/source_builder.h"

namespace minidl::codegen {

namespace {

int round_up(int x, int m) { return (x + m - 1) / m * m; }

// Smallest stride >= width with stride ≡ residue (mod 32).
int padded_stride(int width, int residue) {
  int s = width;
  while (s % 32 != residue % 32) ++s;
  return s;
}

// The C type generated code stores q, k, v, o in.
const char* storage_type(DType t) {
  switch (t) {
    case kFloat32: return "float";
    case kFloat16: return "minidl::dev::f16";
    case kBFloat16: return "minidl::dev::bf16";
    default: return nullptr;
  }
}

const char* dtype_tag(DType t) {
  switch (t) {
    case kFloat32: return "f32";
    case kFloat16: return "f16";
    case kBFloat16: return "bf16";
    default: return "?";
  }
}

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

// `split`: the Tf32 float32 kernels' tiles split at load, as letters q k v o (dout) s (ds).
std::string kernel_name(const char* kind, const AttentionSpec& s, int bm, int bn,
                        const std::optional<SplitTiles>& split = std::nullopt) {
  std::string tag;
  if (split) {
    tag = "_s";
    for (auto [on, c] : {std::pair{split->q, 'q'}, {split->k, 'k'}, {split->v, 'v'}, {split->dout, 'o'}, {split->ds, 's'}})
      if (on) tag += c;
  }
  return fmt::format("minidl_attn_{}_{}_{}_d{}{}{}_m{}n{}{}{}{}", kind, attention_math_name(s.math),
                     dtype_tag(s.dtype), s.head_dim, s.causal ? "_causal" : "",
                     s.unit_d_stride ? "" : "_strided", bm, bn, s.groups > 1 ? fmt::format("g{}", s.groups) : "",
                     s.async_copy ? "" : "_sync", tag);
}

// The comment every kernel starts with: what it computes, from which graph nodes, and how.
void emit_header(SourceBuilder& b, const std::string& what, const AttentionSpec& s,
                 const std::string& layout, const std::string& tiles) {
  std::string nodes;
  for (const auto& n : s.nodes) nodes += (nodes.empty() ? "" : ", ") + n;
  b.comment(fmt::format("minidl generated kernel: {} ({} math)", what, attention_math_name(s.math)));
  b.comment("implements graph nodes: " + (nodes.empty() ? std::string("(none named)") : nodes));
  b.comment(fmt::format("softmax(q kᵀ · {:.9g}{}) v, head dim {}, {} storage, float32 accumulation",
                        s.scale, s.causal ? ", causal mask" : "", s.head_dim, dtype_name(s.dtype)));
  b.comment(layout);
  b.comment(tiles);
  b.comment(fmt::format("minidl codegen version {}; the NOTEs cited below are in compiler/codegen/attention.cpp",
                        kCodegenVersion));
  b.line("#include \"compiler/codegen/device/device.cuh\"");
  b.line("#include \"compiler/codegen/device/kernel_params.h\"");
  b.blank();
}

// Emits the copy of rows [row0, row0 + rows) of a (B, N, d) input (base pointer `src`, strides
// `sn`, `sd`) into the shared tile dst[rows][stride] as float times `mul`, zero-filling rows
// >= n and columns >= head dim up to `width`. Every thread of the block takes part.
struct TileLoad {
  std::string dst, src, sn, sd, row0, n, mul;
  int rows, width, stride;
  bool async = false;  // float32 through cp.async (no mul): lands at a later cp_async_wait
  bool split = false;  // stored as TF32 big and small parts in dst_hi, dst_lo: NOTE [Split at load]
};
// Stores the loaded float `x` as element (r, c) of t's shared tile (times t.mul, split if t.split).
void emit_tile_put(SourceBuilder& b, const TileLoad& t, const std::string& x) {
  const std::string scaled = t.mul.empty() ? x : x + " * " + t.mul;
  if (t.split) {
    b.line("unsigned big, small;");
    b.line("split_tf32({}, big, small);", scaled);
    b.line("{0}_hi[r * {1} + c] = big;", t.dst, t.stride);
    b.line("{0}_lo[r * {1} + c] = small;", t.dst, t.stride);
  } else {
    b.line("{}[r * {} + c] = {};", t.dst, t.stride, scaled);
  }
}

// The global address of element (r0, c) of t (row r0 of the tile), and in `step` that of
// `rows` rows further: a thread walking rows adds `step` to a pointer, where an index
// computation per element (64-bit multiply, strides reloaded from the parameters) cost ~10
// instructions per load (docs/kernel-notes.md, "Profile").
void emit_row_pointer(SourceBuilder& b, const AttentionSpec& s, const TileLoad& t, int rows) {
  b.line("const T* at = {} + (long long)({} + r0) * {} + {};", t.src, t.row0, t.sn, s.unit_d_stride ? "c" : "c * " + t.sd);
  b.line("const long long step = (long long){} * {};", rows, t.sn);
}

// A thread keeps one column and walks rows (or, for rows wider than the block, one row at a
// time in steps of the block): the address advances by a constant, and the unroll is capped
// so the loads in flight do not crowd out the accumulators (NOTE in docs/kernel-notes.md).
void emit_tile_load(SourceBuilder& b, const AttentionSpec& s, int threads, const TileLoad& t) {
  const std::string col_off = s.unit_d_stride ? "c" : "c * " + t.sd;
  b.comment(fmt::format("{} {} rows {} + [0, {}) of {}{}, zero past row {} and column D", t.dst,
                        t.async ? "<- (async)" : t.split ? "= split(...)" : "=", t.row0, t.rows, t.src,
                        t.mul.empty() ? "" : " · " + t.mul, t.n));
  // The copy of element (r, c) from address `from`, whose row is in range when `row_in`.
  auto copy = [&](const std::string& row_in, const std::string& from) {
    if (t.async) {
      b.line("const bool ok = {} && c < D;", row_in);
      b.line("cp_async_f32({} + r * {} + c, ok ? {} : {}, ok);", t.dst, t.stride, from, t.src);
    } else {
      b.line("float x = 0.f;");
      b.line("if ({} && c < D) x = load({});", row_in, from);
      emit_tile_put(b, t, "x");
    }
  };
  b.open("");
  if (t.width <= threads) {
    const int rpp = threads / t.width, passes = (t.rows + rpp - 1) / rpp;
    b.line("const int c = tid % {}, r0 = tid / {};  // {} rows per pass", t.width, t.width, rpp);
    if (threads % t.width != 0) b.open("if (r0 < {})", rpp);
    emit_row_pointer(b, s, t, rpp);
    b.line("#pragma unroll 8");
    b.open("for (int pass = 0; pass < {}; ++pass, at += step)", passes);
    b.line("const int r = r0 + {} * pass;", rpp);
    if (t.rows % rpp != 0) b.line("if (r >= {}) break;", t.rows);
    copy(fmt::format("{} + r < {}", t.row0, t.n), "at");
    b.close();
    if (threads % t.width != 0) b.close();
  } else {
    b.open("for (int r = 0; r < {}; ++r)", t.rows);
    b.line("const bool row_in = {} + r < {};", t.row0, t.n);
    b.line("#pragma unroll");
    b.open("for (int c = tid; c < {}; c += {})", t.width, threads);
    copy("row_in", fmt::format("{} + (long long)({} + r) * {} + {}", t.src, t.row0, t.sn, col_off));
    b.close();
    b.close();
  }
  b.close();
}

// NOTE [Staged tile loads]
// The backward's q and dout tiles are loaded at the start of every step: the block's first
// barrier, then global loads whose latency (an L2 round trip) no warp can hide because
// every warp is waiting for the same tile, then the split and the stores, then a barrier. On
// the H200 that phase held a fifth of the d = 128 backward's stall samples (docs/kernel-notes.md).
// Staged, the loads of the next step's tiles are issued into registers after this step's
// last barrier and land while the warps compute dq; the next step only splits and stores them.
// It costs registers while dq runs (`staged_count` per thread and tile), so the generator
// stages only tiles of at most kMaxStaged elements per thread.
constexpr int kMaxStaged = 16;

// Elements per thread of a tile staged through registers, whose threads each keep one column
// and walk rows (0: the tile does not split so).
int staged_count(const TileLoad& t, int threads) {
  return threads % t.width == 0 && t.rows % (threads / t.width) == 0 ? t.rows / (threads / t.width) : 0;
}
// Loads rows [row0, row0 + rows) of t into the registers <dst>_st[staged_count] (zero past row
// n and column D): element j of a thread is row tid / width + (threads / width)·j, column
// tid % width.
void emit_tile_fetch(SourceBuilder& b, const AttentionSpec& s, int threads, const TileLoad& t) {
  const int rpp = threads / t.width;
  b.comment(fmt::format("{}_st = rows {} + [0, {}) of {} (NOTE [Staged tile loads])", t.dst, t.row0, t.rows, t.src));
  b.open("");
  b.line("const int c = tid % {}, r0 = tid / {};", t.width, t.width);
  emit_row_pointer(b, s, t, rpp);
  b.line("#pragma unroll");
  b.open("for (int j = 0; j < {}; ++j, at += step)", staged_count(t, threads));
  b.line("{}_st[j] = {} + r0 + {} * j < {} && c < D ? load(at) : 0.f;", t.dst, t.row0, rpp, t.n);
  b.close();
  b.close();
}
// Stores the registers of emit_tile_fetch into t's shared tile.
void emit_tile_store_staged(SourceBuilder& b, int threads, const TileLoad& t) {
  b.line("#pragma unroll");
  b.open("for (int j = 0; j < {}; ++j)", staged_count(t, threads));
  b.line("const int r = tid / {} + {} * j, c = tid % {};", t.width, threads / t.width, t.width);
  emit_tile_put(b, t, t.dst + "_st[j]");
  b.close();
}

// Emits `x = max over the TC threads of a row` (they are lanes xor 1, 2, ... of one warp).
void emit_row_allreduce(SourceBuilder& b, const std::string& var, const char* op, int width) {
  for (int m = 1; m < width; m *= 2)
    b.line("{} = {}({}, __shfl_xor_sync(0xffffffffu, {}, {}));", var, op, var, var, m);
}
void emit_row_allsum(SourceBuilder& b, const std::string& var, int width) {
  for (int m = 1; m < width; m *= 2)
    b.line("{} += __shfl_xor_sync(0xffffffffu, {}, {});", var, var, m);
}

// The causal / sequence-end mask condition for absolute indices `row` (query) and `col` (key).
std::string masked(const AttentionSpec& s, const std::string& row, const std::string& col) {
  std::string m = col + " >= p.n_k";
  if (s.causal) m += " || " + col + " > " + row;
  return m;
}

// ============================================================================ FFMA layout

// Register tiling of the Ffma kernels: TR × TC threads; a thread owns rows ty + TR·i and
// columns tx + TC·j of a score tile, and float4 chunks tx + TC·jj of the head dim.
struct FfmaLayout {
  int D, DP, DW, QS, BM, BN, NT, TC, TR, PS, JC;
};

FfmaLayout ffma_layout(const AttentionSpec& s, bool backward) {
  FfmaLayout l{};
  l.D = s.head_dim;
  l.TC = s.head_dim <= 16 ? 4 : 8;
  l.NT = backward ? 256 : 128;
  l.TR = l.NT / l.TC;
  if (!backward) {
    l.BM = s.head_dim <= 128 ? 64 : 32;
    l.BN = s.head_dim <= 64 ? 64 : 32;
  } else {
    l.BM = s.head_dim <= 64 ? 64 : 32;
    l.BN = s.head_dim <= 128 ? 64 : 32;
  }
  l.BM = std::max(s.block_m ? s.block_m : l.BM, l.TR);  // every thread row owns a query row
  l.BN = s.block_n ? s.block_n : l.BN;
  const int key_multiple = backward ? l.TR : l.TC;  // TR and TC are multiples of 4
  MINIDL_CHECK(l.BM % l.TR == 0 && l.BN > 0 && l.BN % key_multiple == 0, ValueError,
               "[attention codegen] ffma {} tiles {}x{}: query rows must be a multiple of {}, keys of {}",
               backward ? "backward" : "forward", l.BM, l.BN, l.TR, key_multiple);
  l.DP = round_up(l.D, 4);
  l.DW = round_up(l.D, 4 * l.TC);
  l.QS = l.DW + 4;  // DW/4 is even, so QS/4 is odd: NOTE [Attention tiles and shared memory]
  l.PS = padded_stride(l.BN, l.TC);
  l.JC = l.DW / (4 * l.TC);
  return l;
}

void emit_ffma_constants(SourceBuilder& b, const FfmaLayout& l) {
  b.line("constexpr int D = {}, DP = {}, DW = {};  // head dim, padded to 4, working width", l.D,
         l.DP, l.DW);
  b.line("constexpr int BM = {}, BN = {}, NT = {}, TC = {}, TR = {};", l.BM, l.BN, l.NT, l.TC, l.TR);
  b.line("constexpr int QS = {}, PS = {}, JC = {};  // row strides of d-wide and score tiles; d chunks per thread",
         l.QS, l.PS, l.JC);
}

// ============================================================================ Ffma forward

GeneratedKernel ffma_forward(const AttentionSpec& s) {
  const FfmaLayout l = ffma_layout(s, false);
  const int RM = l.BM / l.TR, RN = l.BN / l.TC;
  GeneratedKernel k;
  k.name = kernel_name("fwd", s, l.BM, l.BN);
  k.threads = l.NT;
  k.tile = l.BM;
  k.smem_bytes = sizeof(float) * static_cast<size_t>(l.BM * l.QS + l.BN * l.QS + l.BN * l.DW + l.BM * l.PS);

  SourceBuilder b;
  emit_header(b, "FlashAttention-2 forward", s,
              "q, k, v: (B, N, d) with runtime strides; o: (B, n_q, d) contiguous; lse: (B, n_q) float32",
              fmt::format("one block per {} query rows (resident in shared memory), {} keys per step, "
                          "{} threads, {} bytes of shared memory",
                          l.BM, l.BN, l.NT, k.smem_bytes));
  b.open("extern \"C\" __global__ void __launch_bounds__({}) {}(const minidl::AttentionFwdParams p)", l.NT, k.name);
  b.line("using namespace minidl::dev;");
  b.line("typedef {} T;", storage_type(s.dtype));
  emit_ffma_constants(b, l);
  b.line("constexpr int RM = {}, RN = {};  // score rows and columns per thread", RM, RN);
  b.line("constexpr float kScaleLog2e = {};  // scale · log2(e): NOTE [Online softmax in base 2]",
         float_literal(s.scale * 1.4426950408889634));
  b.line("MINIDL_DYNAMIC_SMEM(smem);");
  b.line("float* Qs = reinterpret_cast<float*>(smem);  // [BM][QS] q tile · kScaleLog2e");
  b.line("float* Ks = Qs + BM * QS;                     // [BN][QS]");
  b.line("float* Vs = Ks + BN * QS;                     // [BN][DW]");
  b.line("float* Ps = Vs + BN * DW;                     // [BM][PS] probabilities of the step");
  b.line("const int tid = threadIdx.x, tx = tid % TC, ty = tid / TC;");
  b.line("const int m_tiles = (p.n_q + BM - 1) / BM;");
  b.line("const int b = blockIdx.x / m_tiles;");
  b.line("const int m0 = (m_tiles - 1 - blockIdx.x % m_tiles) * BM;  // longest (causal) rows first");
  b.line("const T* q = static_cast<const T*>(p.q) + b * p.q_sb;");
  b.line("const T* k = static_cast<const T*>(p.k) + b * p.k_sb;");
  b.line("const T* v = static_cast<const T*>(p.v) + b * p.v_sb;");
  b.blank();
  emit_tile_load(b, s, l.NT, {"Qs", "q", "p.q_sn", "p.q_sd", "m0", "p.n_q", "kScaleLog2e", l.BM, l.DW, l.QS});
  b.blank();
  b.line("float o[RM][4 * JC], row_max[RM], row_sum[RM];");
  b.line("#pragma unroll");
  b.open("for (int i = 0; i < RM; ++i)");
  b.line("row_max[i] = -MINIDL_INF;");
  b.line("row_sum[i] = 0.f;");
  b.line("#pragma unroll");
  b.line("for (int c = 0; c < 4 * JC; ++c) o[i][c] = 0.f;");
  b.close();
  b.line("const int n_end = {};", s.causal ? "min(p.n_k, m0 + BM)" : "p.n_k");
  b.open("for (int n0 = 0; n0 < n_end; n0 += BN)");
  b.line("__syncthreads();  // q stored; the previous step's readers of Ks, Vs, Ps are done");
  emit_tile_load(b, s, l.NT, {"Ks", "k", "p.k_sn", "p.k_sd", "n0", "p.n_k", "", l.BN, l.DW, l.QS});
  emit_tile_load(b, s, l.NT, {"Vs", "v", "p.v_sn", "p.v_sd", "n0", "p.n_k", "", l.BN, l.DW, l.DW});
  b.line("__syncthreads();");
  b.blank();
  b.comment("s = q kᵀ for rows ty + TR·i, keys tx + TC·j");
  b.line("float s[RM][RN];");
  b.line("#pragma unroll");
  b.line("for (int i = 0; i < RM; ++i)");
  b.line("  for (int j = 0; j < RN; ++j) s[i][j] = 0.f;");
  b.line("{}", l.DP / 4 <= 32 ? "#pragma unroll" : "#pragma unroll 8");
  b.open("for (int k4 = 0; k4 < DP / 4; ++k4)");
  b.line("float4 qa[RM], kb[RN];");
  b.line("#pragma unroll");
  b.line("for (int i = 0; i < RM; ++i) qa[i] = *reinterpret_cast<const float4*>(Qs + (ty + TR * i) * QS + 4 * k4);");
  b.line("#pragma unroll");
  b.line("for (int j = 0; j < RN; ++j) kb[j] = *reinterpret_cast<const float4*>(Ks + (tx + TC * j) * QS + 4 * k4);");
  b.line("#pragma unroll");
  b.open("for (int i = 0; i < RM; ++i)");
  b.line("#pragma unroll");
  b.open("for (int j = 0; j < RN; ++j)");
  b.line("s[i][j] = fmaf(qa[i].x, kb[j].x, s[i][j]);");
  b.line("s[i][j] = fmaf(qa[i].y, kb[j].y, s[i][j]);");
  b.line("s[i][j] = fmaf(qa[i].z, kb[j].z, s[i][j]);");
  b.line("s[i][j] = fmaf(qa[i].w, kb[j].w, s[i][j]);");
  b.close();
  b.close();
  b.close();
  b.blank();
  b.comment("mask, then the online softmax update: NOTE [Online softmax in base 2]");
  b.line("#pragma unroll");
  b.open("for (int i = 0; i < RM; ++i)");
  b.line("const int row = m0 + ty + TR * i;");
  b.line("float mx = row_max[i];");
  b.line("#pragma unroll");
  b.open("for (int j = 0; j < RN; ++j)");
  b.line("const int col = n0 + tx + TC * j;");
  b.line("if ({}) s[i][j] = -MINIDL_INF;", masked(s, "row", "col"));
  b.line("mx = fmaxf(mx, s[i][j]);");
  b.close();
  emit_row_allreduce(b, "mx", "fmaxf", l.TC);
  b.line("const float base = mx == -MINIDL_INF ? 0.f : mx;  // a fully masked row stays 0, not NaN");
  b.line("const float alpha = exp2f(row_max[i] - base);");
  b.line("row_max[i] = mx;");
  b.line("row_sum[i] *= alpha;");
  b.line("#pragma unroll");
  b.line("for (int c = 0; c < 4 * JC; ++c) o[i][c] *= alpha;");
  b.line("#pragma unroll");
  b.open("for (int j = 0; j < RN; ++j)");
  b.line("const float pij = exp2f(s[i][j] - base);");
  b.line("row_sum[i] += pij;");
  b.line("Ps[(ty + TR * i) * PS + tx + TC * j] = pij;");
  b.close();
  b.close();
  b.line("__syncwarp();  // a row's probabilities are written and read by one warp");
  b.blank();
  b.comment("o += p v: rows ty + TR·i, head-dim chunks tx + TC·jj");
  b.line("#pragma unroll 2");
  b.open("for (int n4 = 0; n4 < BN / 4; ++n4)");
  b.line("float4 pa[RM];");
  b.line("#pragma unroll");
  b.line("for (int i = 0; i < RM; ++i) pa[i] = *reinterpret_cast<const float4*>(Ps + (ty + TR * i) * PS + 4 * n4);");
  b.line("#pragma unroll");
  b.open("for (int u = 0; u < 4; ++u)");
  b.line("float4 vb[JC];");
  b.line("#pragma unroll");
  b.line("for (int jj = 0; jj < JC; ++jj) vb[jj] = *reinterpret_cast<const float4*>(Vs + (4 * n4 + u) * DW + 4 * (tx + TC * jj));");
  b.line("#pragma unroll");
  b.open("for (int i = 0; i < RM; ++i)");
  b.line("const float pu = comp(pa[i], u);");
  b.line("#pragma unroll");
  b.open("for (int jj = 0; jj < JC; ++jj)");
  b.line("o[i][4 * jj + 0] = fmaf(pu, vb[jj].x, o[i][4 * jj + 0]);");
  b.line("o[i][4 * jj + 1] = fmaf(pu, vb[jj].y, o[i][4 * jj + 1]);");
  b.line("o[i][4 * jj + 2] = fmaf(pu, vb[jj].z, o[i][4 * jj + 2]);");
  b.line("o[i][4 * jj + 3] = fmaf(pu, vb[jj].w, o[i][4 * jj + 3]);");
  b.close();
  b.close();
  b.close();
  b.close();
  b.close();  // n0 loop
  b.blank();
  b.comment("o / l and lse = (m + log2 l) · ln 2");
  b.line("#pragma unroll");
  b.open("for (int i = 0; i < RM; ++i)");
  b.line("float l = row_sum[i];");
  emit_row_allsum(b, "l", l.TC);
  b.line("const int row = m0 + ty + TR * i;");
  b.open("if (row < p.n_q)");
  b.line("const float inv = 1.f / l;");
  b.line("T* orow = static_cast<T*>(p.o) + ((long long)b * p.n_q + row) * D;");
  b.line("#pragma unroll");
  b.open("for (int jj = 0; jj < JC; ++jj)");
  b.line("#pragma unroll");
  b.open("for (int e = 0; e < 4; ++e)");
  b.line("const int c = 4 * (tx + TC * jj) + e;");
  b.line("if (c < D) store(orow + c, o[i][4 * jj + e] * inv);");
  b.close();
  b.close();
  b.line("if (tx == 0) p.lse[(long long)b * p.n_q + row] = (row_max[i] + log2f(l)) * MINIDL_LN2;");
  b.close();
  b.close();
  b.close();  // kernel
  k.source = b.str();
  return k;
}

// ============================================================================ Ffma backward

GeneratedKernel ffma_backward(const AttentionSpec& s) {
  const FfmaLayout l = ffma_layout(s, true);
  const int RMA = l.BM / l.TR, RNA = l.BN / l.TC, RNB = l.BN / l.TR;
  GeneratedKernel k;
  k.name = kernel_name("bwd", s, l.BM, l.BN);
  k.threads = l.NT;
  k.tile = l.BN;
  k.smem_bytes = sizeof(float) * static_cast<size_t>(2 * l.BN * l.QS + 2 * l.BM * l.QS + 2 * l.BM * l.PS + 2 * l.BM);

  SourceBuilder b;
  emit_header(b, "FlashAttention-2 backward", s,
              "q, k, v, dout: (B, N, d) with runtime strides; lse, delta: (B, n_q) float32; "
              "dk, dv: (B, n_k, d) contiguous; dq_acc: (B, n_q, d) float32, accumulated",
              fmt::format("one block per {} keys (k, v, dk, dv resident), {} query rows per step, "
                          "{} threads, {} bytes of shared memory",
                          l.BN, l.BM, l.NT, k.smem_bytes));
  b.open("extern \"C\" __global__ void __launch_bounds__({}) {}(const minidl::AttentionBwdParams p)", l.NT, k.name);
  b.line("using namespace minidl::dev;");
  b.line("typedef {} T;", storage_type(s.dtype));
  emit_ffma_constants(b, l);
  b.line("constexpr int RMA = {}, RNA = {}, RNB = {};  // query rows, key columns, key rows per thread",
         RMA, RNA, RNB);
  b.line("constexpr float kScale = {}, kScaleLog2e = {};", float_literal(s.scale),
         float_literal(s.scale * 1.4426950408889634));
  b.line("MINIDL_DYNAMIC_SMEM(smem);");
  b.line("float* Ks = reinterpret_cast<float*>(smem);  // [BN][QS]");
  b.line("float* Vs = Ks + BN * QS;                     // [BN][QS]");
  b.line("float* Qs = Vs + BN * QS;                     // [BM][QS]");
  b.line("float* dOs = Qs + BM * QS;                    // [BM][QS]");
  b.line("float* Ps = dOs + BM * QS;                    // [BM][PS] p of the step");
  b.line("float* dSs = Ps + BM * PS;                    // [BM][PS] ds = p (dp - delta)");
  b.line("float* Ls = dSs + BM * PS;                    // [BM] lse · log2(e)");
  b.line("float* Ds = Ls + BM;                          // [BM] delta");
  b.line("const int tid = threadIdx.x, tx = tid % TC, ty = tid / TC;");
  b.line("const int n_tiles = (p.n_k + BN - 1) / BN;");
  b.line("const int b = blockIdx.x / n_tiles;");
  b.line("const int n0 = (blockIdx.x % n_tiles) * BN;  // first key tiles see the most (causal) rows");
  b.line("const T* q = static_cast<const T*>(p.q) + b * p.q_sb;");
  b.line("const T* k = static_cast<const T*>(p.k) + b * p.k_sb;");
  b.line("const T* v = static_cast<const T*>(p.v) + b * p.v_sb;");
  b.line("const T* dout = static_cast<const T*>(p.dout) + b * p.do_sb;");
  b.blank();
  emit_tile_load(b, s, l.NT, {"Ks", "k", "p.k_sn", "p.k_sd", "n0", "p.n_k", "", l.BN, l.DW, l.QS});
  emit_tile_load(b, s, l.NT, {"Vs", "v", "p.v_sn", "p.v_sd", "n0", "p.n_k", "", l.BN, l.DW, l.QS});
  b.line("float dk[RNB][4 * JC], dv[RNB][4 * JC];");
  b.line("#pragma unroll");
  b.line("for (int i = 0; i < RNB; ++i)");
  b.line("  for (int c = 0; c < 4 * JC; ++c) dk[i][c] = dv[i][c] = 0.f;");
  if (s.causal) b.comment("rows before n0 see none of these keys");
  b.line("const int m_begin = {};", s.causal ? "n0 / BM * BM" : "0");
  b.open("for (int m0 = m_begin; m0 < p.n_q; m0 += BM)");
  b.line("__syncthreads();  // k, v stored; the previous step's readers are done");
  emit_tile_load(b, s, l.NT, {"Qs", "q", "p.q_sn", "p.q_sd", "m0", "p.n_q", "", l.BM, l.DW, l.QS});
  emit_tile_load(b, s, l.NT, {"dOs", "dout", "p.do_sn", "p.do_sd", "m0", "p.n_q", "", l.BM, l.DW, l.QS});
  b.open("for (int r = tid; r < BM; r += NT)");
  b.line("const bool in = m0 + r < p.n_q;");
  b.line("Ls[r] = in ? p.lse[(long long)b * p.n_q + m0 + r] * MINIDL_LOG2E : 0.f;");
  b.line("Ds[r] = in ? p.delta[(long long)b * p.n_q + m0 + r] : 0.f;");
  b.close();
  b.line("__syncthreads();");
  b.blank();
  b.comment("p = exp2(q kᵀ · scale·log2(e) − lse·log2(e)), ds = p (dout vᵀ − delta): rows ty + TR·i, keys tx + TC·j");
  for (const char* pass : {"s", "dp"}) {
    const bool is_s = pass[0] == 's';
    b.line("float {}[RMA][RNA];", pass);
    b.line("#pragma unroll");
    b.line("for (int i = 0; i < RMA; ++i)");
    b.line("  for (int j = 0; j < RNA; ++j) {}[i][j] = 0.f;", pass);
    b.line("{}", l.DP / 4 <= 32 ? "#pragma unroll" : "#pragma unroll 8");
    b.open("for (int k4 = 0; k4 < DP / 4; ++k4)");
    b.line("float4 ra[RMA], cb[RNA];");
    b.line("#pragma unroll");
    b.line("for (int i = 0; i < RMA; ++i) ra[i] = *reinterpret_cast<const float4*>({} + (ty + TR * i) * QS + 4 * k4);",
           is_s ? "Qs" : "dOs");
    b.line("#pragma unroll");
    b.line("for (int j = 0; j < RNA; ++j) cb[j] = *reinterpret_cast<const float4*>({} + (tx + TC * j) * QS + 4 * k4);",
           is_s ? "Ks" : "Vs");
    b.line("#pragma unroll");
    b.open("for (int i = 0; i < RMA; ++i)");
    b.line("#pragma unroll");
    b.open("for (int j = 0; j < RNA; ++j)");
    for (const char* c : {"x", "y", "z", "w"})
      b.line("{0}[i][j] = fmaf(ra[i].{1}, cb[j].{1}, {0}[i][j]);", pass, c);
    b.close();
    b.close();
    b.close();
  }
  b.line("#pragma unroll");
  b.open("for (int i = 0; i < RMA; ++i)");
  b.line("const int rl = ty + TR * i, row = m0 + rl;");
  b.line("#pragma unroll");
  b.open("for (int j = 0; j < RNA; ++j)");
  b.line("const int cl = tx + TC * j, col = n0 + cl;");
  b.line("const bool dead = row >= p.n_q || {};", masked(s, "row", "col"));
  b.line("const float pij = dead ? 0.f : exp2f(s[i][j] * kScaleLog2e - Ls[rl]);");
  b.line("Ps[rl * PS + cl] = pij;");
  b.line("dSs[rl * PS + cl] = pij * (dp[i][j] - Ds[rl]);");
  b.close();
  b.close();
  b.line("__syncthreads();");
  b.blank();
  b.comment("dv += pᵀ dout, dk += dsᵀ q: key rows ty + TR·i, head-dim chunks tx + TC·jj");
  b.line("#pragma unroll 2");
  b.open("for (int m = 0; m < BM; ++m)");
  b.line("float pm[RNB], dsm[RNB];");
  b.line("#pragma unroll");
  b.open("for (int i = 0; i < RNB; ++i)");
  b.line("pm[i] = Ps[m * PS + ty + TR * i];");
  b.line("dsm[i] = dSs[m * PS + ty + TR * i];");
  b.close();
  b.line("#pragma unroll");
  b.open("for (int jj = 0; jj < JC; ++jj)");
  b.line("const float4 dob = *reinterpret_cast<const float4*>(dOs + m * QS + 4 * (tx + TC * jj));");
  b.line("const float4 qb = *reinterpret_cast<const float4*>(Qs + m * QS + 4 * (tx + TC * jj));");
  b.line("#pragma unroll");
  b.open("for (int i = 0; i < RNB; ++i)");
  b.line("#pragma unroll");
  b.open("for (int e = 0; e < 4; ++e)");
  b.line("dv[i][4 * jj + e] = fmaf(pm[i], comp(dob, e), dv[i][4 * jj + e]);");
  b.line("dk[i][4 * jj + e] = fmaf(dsm[i], comp(qb, e), dk[i][4 * jj + e]);");
  b.close();
  b.close();
  b.close();
  b.close();
  b.blank();
  b.comment("dq += ds k · scale (rows ty + TR·i), added into dq_acc with atomics");
  b.line("float dq[RMA][4 * JC];");
  b.line("#pragma unroll");
  b.line("for (int i = 0; i < RMA; ++i)");
  b.line("  for (int c = 0; c < 4 * JC; ++c) dq[i][c] = 0.f;");
  b.line("#pragma unroll 2");
  b.open("for (int n4 = 0; n4 < BN / 4; ++n4)");
  b.line("float4 dsa[RMA];");
  b.line("#pragma unroll");
  b.line("for (int i = 0; i < RMA; ++i) dsa[i] = *reinterpret_cast<const float4*>(dSs + (ty + TR * i) * PS + 4 * n4);");
  b.line("#pragma unroll");
  b.open("for (int u = 0; u < 4; ++u)");
  b.line("#pragma unroll");
  b.open("for (int jj = 0; jj < JC; ++jj)");
  b.line("const float4 kb = *reinterpret_cast<const float4*>(Ks + (4 * n4 + u) * QS + 4 * (tx + TC * jj));");
  b.line("#pragma unroll");
  b.open("for (int i = 0; i < RMA; ++i)");
  b.line("const float du = comp(dsa[i], u);");
  b.line("#pragma unroll");
  b.line("for (int e = 0; e < 4; ++e) dq[i][4 * jj + e] = fmaf(du, comp(kb, e), dq[i][4 * jj + e]);");
  b.close();
  b.close();
  b.close();
  b.close();
  b.line("#pragma unroll");
  b.open("for (int i = 0; i < RMA; ++i)");
  b.line("const int row = m0 + ty + TR * i;");
  b.line("if (row >= p.n_q) continue;");
  b.line("float* dqrow = p.dq_acc + ((long long)b * p.n_q + row) * D;");
  b.line("#pragma unroll");
  b.open("for (int jj = 0; jj < JC; ++jj)");
  if (l.D % 4 == 0) {  // one vector reduction per chunk: NOTE [dq by atomics] in compiler/cuda_attention.cpp
    b.line("const int c = 4 * (tx + TC * jj);");
    b.line("if (c < D) atomic_add4(dqrow + c, make_float4(dq[i][4 * jj] * kScale, dq[i][4 * jj + 1] * kScale,");
    b.line("                                              dq[i][4 * jj + 2] * kScale, dq[i][4 * jj + 3] * kScale));");
  } else {
    b.line("#pragma unroll");
    b.open("for (int e = 0; e < 4; ++e)");
    b.line("const int c = 4 * (tx + TC * jj) + e;");
    b.line("if (c < D) atomicAdd(dqrow + c, dq[i][4 * jj + e] * kScale);");
    b.close();
  }
  b.close();
  b.close();
  b.close();  // m0 loop
  b.blank();
  b.comment("dk · scale and dv for this block's keys");
  b.line("#pragma unroll");
  b.open("for (int i = 0; i < RNB; ++i)");
  b.line("const int key = n0 + ty + TR * i;");
  b.line("if (key >= p.n_k) continue;");
  b.line("T* dkrow = static_cast<T*>(p.dk) + ((long long)b * p.n_k + key) * D;");
  b.line("T* dvrow = static_cast<T*>(p.dv) + ((long long)b * p.n_k + key) * D;");
  b.line("#pragma unroll");
  b.open("for (int jj = 0; jj < JC; ++jj)");
  b.line("#pragma unroll");
  b.open("for (int e = 0; e < 4; ++e)");
  b.line("const int c = 4 * (tx + TC * jj) + e;");
  b.open("if (c < D)");
  b.line("store(dkrow + c, dk[i][4 * jj + e] * kScale);");
  b.line("store(dvrow + c, dv[i][4 * jj + e]);");
  b.close();
  b.close();
  b.close();
  b.close();
  b.close();  // kernel
  k.source = b.str();
  return k;
}

// ============================================================================ Tf32 helpers

// How the elements of a shared tile become TF32 fragment registers.
enum class TileForm {
  Float,  // float values, rounded (one product) or split (3xTF32) by the warp that reads them
  Exact,  // float values that are TF32 numbers already (16-bit storage): read as they are
  Split,  // name_hi, name_lo hold each element's big and small parts: NOTE [Split at load]
};

struct Tile {
  std::string name;
  TileForm form = TileForm::Float;
};

// The TF32 layout: a warp owns 16 rows of the resident tile (query rows forward, keys backward);
// mma m16n8k8 fragments (g = lane / 4, t = lane % 4). DK: head dim padded to 8; ST: row stride
// ≡ 4 (mod 32).
struct Tf32Layout {
  int D, DK, ST, BM, BN, NT, warps;
  int G, SB;         // backward: warp groups (NOTE [Query groups]) and the query rows of a step, G·BM
  bool split;        // 3xTF32 (float32 storage) or one TF32 product (16-bit storage)
  bool async;        // forward: float K/V tiles copied with cp.async (NOTE [Async K/V pipeline])
  SplitTiles tiles;  // float32 storage: the tiles split at load
};

Tf32Layout tf32_layout(const AttentionSpec& s, bool backward) {
  Tf32Layout l{};
  l.D = s.head_dim;
  l.DK = round_up(l.D, 8);
  l.ST = padded_stride(l.DK, 4);
  l.split = s.dtype == kFloat32;
  l.tiles = l.split ? s.split.value_or(default_split_tiles(backward, l.D)) : SplitTiles{};
  l.async = s.async_copy && l.split && !backward && !l.tiles.k && !l.tiles.v;
  const auto [bm, bn] = default_tf32_tiles(backward, l.D);
  l.BM = s.block_m ? s.block_m : bm;
  l.BN = s.block_n ? s.block_n : bn;
  l.G = backward ? s.groups : 1;
  l.SB = l.G * l.BM;
  l.warps = (backward ? l.G * l.BN : l.BM) / 16;
  l.NT = 32 * l.warps;
  const int resident = backward ? l.BN : l.BM, step = backward ? l.BM : l.BN;
  MINIDL_CHECK(resident % 16 == 0 && resident > 0 && l.warps <= 8 && step % 8 == 0 && step > 0 &&
                   (!backward || (l.BM % 16 == 0 && l.warps % (l.SB / 16) == 0)),
               ValueError,
               "[attention codegen] tf32 {} tiles {}x{}{}: the resident tile needs rows in 16s, at most 8 warps "
               "in all, the streamed one a multiple of 8{}",
               backward ? "backward" : "forward", l.BM, l.BN, l.G > 1 ? fmt::format(" in {} groups", l.G) : "",
               backward ? " (and of 16, its groups' rows dividing the warps in 16s)" : "");
  return l;
}

// The form of an input's tile (q, k, v, dout), split at load or not.
TileForm input_form(const Tf32Layout& l, bool split_at_load) {
  return !l.split ? TileForm::Exact : split_at_load ? TileForm::Split : TileForm::Float;
}

// A fragment: the registers name_hi<at> (and name_lo<at> with the split), at = "" or "[kk]".
struct Frag {
  std::string name, at;
  std::string hi() const { return name + "_hi" + at; }
  std::string lo() const { return name + "_lo" + at; }
};

// Declares fragment registers name_hi<dims> (and name_lo<dims> with the split).
void frag_decl(SourceBuilder& b, const Tf32Layout& l, const std::string& name, const std::string& dims) {
  if (l.split)
    b.line("unsigned {0}_hi{1}, {0}_lo{1};", name, dims);
  else
    b.line("unsigned {}_hi{};", name, dims);
}
// Element i of fragment f = the TF32 part(s) of the float `value`.
void frag_set(SourceBuilder& b, const Tf32Layout& l, const Frag& f, int i, const std::string& value) {
  if (l.split)
    b.line("split_tf32({}, {}[{}], {}[{}]);", value, f.hi(), i, f.lo(), i);
  else
    b.line("{}[{}] = to_tf32({});", f.hi(), i, value);
}
// Element i of fragment f = element `off` of tile t.
void frag_load(SourceBuilder& b, const Tf32Layout& l, const Frag& f, int i, const Tile& t, const std::string& off) {
  switch (t.form) {
    case TileForm::Split:
      b.line("{}[{}] = {}_hi[{}];", f.hi(), i, t.name, off);
      b.line("{}[{}] = {}_lo[{}];", f.lo(), i, t.name, off);
      break;
    case TileForm::Exact: b.line("{}[{}] = __float_as_uint({}[{}]);", f.hi(), i, t.name, off); break;
    case TileForm::Float: frag_set(b, l, f, i, fmt::format("{}[{}]", t.name, off)); break;
  }
}
// acc += a · b: NOTE [3xTF32] (small terms first). With `acc_small`, the two small terms go
// there instead, a chain apart from acc's: NOTE [Two chains per product].
void emit_mma(SourceBuilder& b, const Tf32Layout& l, const std::string& acc, const Frag& a, const Frag& bf,
              const std::string& acc_small = "") {
  if (l.split) {
    const std::string& small = acc_small.empty() ? acc : acc_small;
    b.line("mma_tf32({}, {}, {});", small, a.lo(), bf.hi());
    b.line("mma_tf32({}, {}, {});", small, a.hi(), bf.lo());
  }
  b.line("mma_tf32({}, {}, {});", acc, a.hi(), bf.hi());
}
// For each output fragment dt (head-dim columns 8·dt + 2t + {0, 1}): acc = Σ_kk a · (rows
// row0 + 8·kk + 2t and row0 + 8·kk + 2t + 1, column 8·dt + g of tile t) over `steps` k-steps, in a
// zeroed temporary (NOTE [Short mma chains]), then `fold` (a statement over element e of acc
// and of the output fragment dt) adds it into the output. `pair`: two fragments at a time,
// each with its small terms apart, four independent mma chains (NOTE [Two chains per product]);
// else one fragment, two chains.
void emit_fragment_products(SourceBuilder& b, const Tf32Layout& l, const Frag& a, const Tile& t, const char* steps,
                            const std::string& fold, bool pair, const std::string& row0 = "0") {
  const int n = pair ? 2 : 1;
  b.line("#pragma unroll");
  b.open("for (int dp = 0; dp < DK / 8; dp += {})", n);
  b.line("float accs[{}][4] = {{}};", n);
  if (l.split) b.line("float accs_small[{}][4] = {{}};", n);
  b.line("#pragma unroll");
  b.open("for (int kk = 0; kk < {}; ++kk)", steps);
  b.line("#pragma unroll");
  b.open("for (int h = 0; h < {} && dp + h < DK / 8; ++h)", n);
  b.line("const int dt = dp + h;");
  frag_decl(b, l, "bf", "[2]");
  const Frag bf{"bf", ""};
  const std::string r0 = row0 == "0" ? "" : row0 + " + ";
  frag_load(b, l, bf, 0, t, fmt::format("({}8 * kk + 2 * t) * ST + 8 * dt + g", r0));
  frag_load(b, l, bf, 1, t, fmt::format("({}8 * kk + 2 * t + 1) * ST + 8 * dt + g", r0));
  emit_mma(b, l, "accs[h]", a, bf, l.split ? "accs_small[h]" : "");
  b.close();
  b.close();
  b.line("#pragma unroll");
  b.open("for (int h = 0; h < {} && dp + h < DK / 8; ++h)", n);
  b.line("const int dt = dp + h;");
  b.line("float acc[4];");
  b.line("#pragma unroll");
  b.line("for (int e = 0; e < 4; ++e) acc[e] = accs[h][e]{};", l.split ? " + accs_small[h][e]" : "");
  b.line("#pragma unroll");
  b.line("for (int e = 0; e < 4; ++e) {}", fold);
  b.close();
  b.close();
}

// Stores the float `value` into element `off` of tile t (split there when t is Split).
void tile_store(SourceBuilder& b, const Tile& t, const std::string& off, const std::string& value) {
  if (t.form == TileForm::Split) {
    b.open("");
    b.line("unsigned big, small;");
    b.line("split_tf32({}, big, small);", value);
    b.line("{}_hi[{}] = big;", t.name, off);
    b.line("{}_lo[{}] = small;", t.name, off);
    b.close();
  } else {
    b.line("{}[{}] = {};", t.name, off, value);
  }
}

// The block's shared memory carved into arrays, in order (each a multiple of 16 bytes).
class SmemPlan {
 public:
  // `count` floats named t.name, or two unsigned arrays t.name_hi, t.name_lo for a Split tile.
  void tile(const Tile& t, int count, const std::string& what) {
    if (t.form == TileForm::Split) {
      add("unsigned", t.name + "_hi", count, what + ", big parts");
      add("unsigned", t.name + "_lo", count, what + ", small parts");
    } else {
      add("float", t.name, count, what);
    }
  }
  void floats(const std::string& name, int count, const std::string& what) { add("float", name, count, what); }
  size_t bytes() const { return 4 * words_; }
  void emit(SourceBuilder& b) const {
    b.line("MINIDL_DYNAMIC_SMEM(smem);");
    for (const auto& d : decls_) b.raw_line(d);
  }

 private:
  void add(const char* type, const std::string& name, int count, const std::string& what) {
    MINIDL_CHECK(count % 4 == 0, ValueError, "[attention codegen] shared array {} of {} words breaks alignment",
                 name, count);
    decls_.push_back(fmt::format("{}* {} = reinterpret_cast<{}*>(smem + {});  // {}", type, name, type, 4 * words_, what));
    words_ += count;
  }
  std::vector<std::string> decls_;
  size_t words_ = 0;
};

void emit_tf32_constants(SourceBuilder& b, const Tf32Layout& l) {
  b.line("constexpr int D = {}, DK = {}, ST = {};  // head dim, padded to 8, tile row stride", l.D, l.DK, l.ST);
  b.line("constexpr int BM = {}, BN = {}, NT = {};", l.BM, l.BN, l.NT);
}

std::string tiles_comment(const Tf32Layout& l) {
  if (!l.split) return "one TF32 product per product";
  return fmt::format("3xTF32 products (NOTE [3xTF32]); split at load: {} (NOTE [Split at load])",
                     split_tiles_name(l.tiles));
}

// ============================================================================ Tf32 forward

GeneratedKernel tf32_forward(const AttentionSpec& s) {
  const Tf32Layout l = tf32_layout(s, false);
  const Tile qt{"Qs", input_form(l, l.tiles.q)}, kt{"Ks", input_form(l, l.tiles.k)}, vt{"Vs", input_form(l, l.tiles.v)};
  SmemPlan sm;
  sm.tile(qt, l.BM * l.ST, l.split ? "[BM][ST] q tile · kScaleLog2e" : "[BM][ST] q tile");
  sm.tile(kt, l.BN * l.ST, "[BN][ST] k tile");
  sm.tile(vt, l.BN * l.ST, "[BN][ST] v tile");
  GeneratedKernel k;
  k.name = kernel_name("fwd", s, l.BM, l.BN, l.split ? l.tiles : std::optional<SplitTiles>());
  k.threads = l.NT;
  k.tile = l.BM;
  k.smem_bytes = sm.bytes();

  SourceBuilder b;
  emit_header(b, "FlashAttention-2 forward", s,
              "q, k, v: (B, N, d) with runtime strides; o: (B, n_q, d) contiguous; lse: (B, n_q) float32",
              fmt::format("one block per {} query rows (16 per warp), {} keys per step, {} threads, "
                          "{} bytes of shared memory; {}",
                          l.BM, l.BN, l.NT, k.smem_bytes, tiles_comment(l)));
  b.open("extern \"C\" __global__ void __launch_bounds__({}) {}(const minidl::AttentionFwdParams p)", l.NT, k.name);
  b.line("using namespace minidl::dev;");
  b.line("typedef {} T;", storage_type(s.dtype));
  emit_tf32_constants(b, l);
  b.line("constexpr float kScaleLog2e = {};  // NOTE [Online softmax in base 2]",
         float_literal(s.scale * 1.4426950408889634));
  sm.emit(b);
  b.line("const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, t = lane % 4;");
  b.line("const int wq = warp * 16 * ST;  // this warp's 16 rows of the q tile");
  b.line("const int m_tiles = (p.n_q + BM - 1) / BM;");
  b.line("const int b = blockIdx.x / m_tiles;");
  b.line("const int m0 = (m_tiles - 1 - blockIdx.x % m_tiles) * BM;  // longest (causal) rows first");
  b.line("const T* q = static_cast<const T*>(p.q) + b * p.q_sb;");
  b.line("const T* k = static_cast<const T*>(p.k) + b * p.k_sb;");
  b.line("const T* v = static_cast<const T*>(p.v) + b * p.v_sb;");
  b.blank();
  // With the split, q · scale·log2(e) is represented to float32 accuracy; a single TF32 product
  // would round the scaled q (16-bit q itself is exact), so there the scores are scaled instead.
  TileLoad q_tile{"Qs", "q", "p.q_sn", "p.q_sd", "m0", "p.n_q", l.split ? "kScaleLog2e" : "", l.BM, l.DK, l.ST};
  q_tile.split = qt.form == TileForm::Split;
  emit_tile_load(b, s, l.NT, q_tile);
  b.blank();
  b.comment("o: rows g and g + 8 of the warp, columns 8·dt + 2t + {0, 1}; stats for rows g, g + 8");
  b.line("float o[DK / 8][4], row_max[2] = {{-MINIDL_INF, -MINIDL_INF}}, row_sum[2] = {{0.f, 0.f}};");
  b.line("#pragma unroll");
  b.line("for (int dt = 0; dt < DK / 8; ++dt) o[dt][0] = o[dt][1] = o[dt][2] = o[dt][3] = 0.f;");
  b.line("const int n_end = {};", s.causal ? "min(p.n_k, m0 + BM)" : "p.n_k");
  // NOTE [Async K/V pipeline]
  TileLoad k_tile{"Ks", "k", "p.k_sn", "p.k_sd", "n0", "p.n_k", "", l.BN, l.DK, l.ST, l.async};
  TileLoad v_tile{"Vs", "v", "p.v_sn", "p.v_sd", "n0", "p.n_k", "", l.BN, l.DK, l.ST, l.async};
  k_tile.split = kt.form == TileForm::Split;
  v_tile.split = vt.form == TileForm::Split;
  TileLoad k_next = k_tile, v_next = v_tile;
  k_next.row0 = v_next.row0 = "(n0 + BN)";
  if (l.async) {
    b.comment("the first K and V tiles start streaming in: NOTE [Async K/V pipeline]");
    b.open("");
    b.line("const int n0 = 0;");
    emit_tile_load(b, s, l.NT, k_tile);
    b.line("cp_async_commit();");
    emit_tile_load(b, s, l.NT, v_tile);
    b.line("cp_async_commit();");
    b.close();
    b.open("for (int n0 = 0; n0 < n_end; n0 += BN)");
    b.line("cp_async_wait<1>();  // this thread's copies of the K tile have landed (V may be in flight)");
    b.line("__syncthreads();     // everyone's have; q is stored");
  } else {
    b.open("for (int n0 = 0; n0 < n_end; n0 += BN)");
    b.line("__syncthreads();  // q stored; the previous step's readers of Ks, Vs are done");
    emit_tile_load(b, s, l.NT, k_tile);
    emit_tile_load(b, s, l.NT, v_tile);
    b.line("__syncthreads();");
  }
  b.blank();
  b.comment("s = q kᵀ: 16 rows × BN keys per warp");
  b.line("float s[BN / 8][4];");
  b.line("#pragma unroll");
  b.line("for (int nt = 0; nt < BN / 8; ++nt) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.f;");
  b.line("#pragma unroll");
  b.open("for (int kk = 0; kk < DK / 8; ++kk)");
  frag_decl(b, l, "a", "[4]");
  const Frag a{"a", ""};
  frag_load(b, l, a, 0, qt, "wq + g * ST + 8 * kk + t");
  frag_load(b, l, a, 1, qt, "wq + (g + 8) * ST + 8 * kk + t");
  frag_load(b, l, a, 2, qt, "wq + g * ST + 8 * kk + t + 4");
  frag_load(b, l, a, 3, qt, "wq + (g + 8) * ST + 8 * kk + t + 4");
  b.line("#pragma unroll");
  b.open("for (int nt = 0; nt < BN / 8; ++nt)");
  frag_decl(b, l, "kf", "[2]");
  const Frag kf{"kf", ""};
  frag_load(b, l, kf, 0, kt, "(8 * nt + g) * ST + 8 * kk + t");
  frag_load(b, l, kf, 1, kt, "(8 * nt + g) * ST + 8 * kk + t + 4");
  emit_mma(b, l, "s[nt]", a, kf);
  b.close();
  b.close();
  if (l.async) {
    b.line("__syncthreads();  // every warp is done with Ks: the next K tile streams in");
    b.open("if (n0 + BN < n_end)");
    emit_tile_load(b, s, l.NT, k_next);
    b.close();
    b.line("cp_async_commit();");
  }
  b.blank();
  b.comment("mask, then the online softmax update for rows g (h = 0) and g + 8 (h = 1); o is rescaled by");
  b.comment("alpha where this tile's p v is added to it");
  b.line("float alpha[2];");
  b.line("#pragma unroll");
  b.open("for (int h = 0; h < 2; ++h)");
  b.line("const int row = m0 + warp * 16 + g + 8 * h;");
  b.line("float mx = row_max[h];");
  b.line("#pragma unroll");
  b.open("for (int nt = 0; nt < BN / 8; ++nt)");
  b.line("#pragma unroll");
  b.open("for (int e = 0; e < 2; ++e)");
  b.line("const int col = n0 + 8 * nt + 2 * t + e;");
  if (!l.split) b.line("s[nt][2 * h + e] *= kScaleLog2e;");
  b.line("if ({}) s[nt][2 * h + e] = -MINIDL_INF;", masked(s, "row", "col"));
  b.line("mx = fmaxf(mx, s[nt][2 * h + e]);");
  b.close();
  b.close();
  emit_row_allreduce(b, "mx", "fmaxf", 4);
  b.line("const float base = mx == -MINIDL_INF ? 0.f : mx;");
  b.line("alpha[h] = exp2f(row_max[h] - base);");
  b.line("row_max[h] = mx;");
  b.line("row_sum[h] *= alpha[h];");
  b.line("#pragma unroll");
  b.open("for (int nt = 0; nt < BN / 8; ++nt)");
  b.line("#pragma unroll");
  b.open("for (int e = 0; e < 2; ++e)");
  b.line("s[nt][2 * h + e] = exp2f(s[nt][2 * h + e] - base);");
  b.line("row_sum[h] += s[nt][2 * h + e];");
  b.close();
  b.close();
  b.close();
  b.blank();
  b.comment("p as A fragments; mma k = t is key 2t, k = t + 4 is key 2t + 1: NOTE [Permuted k in register-sourced products]");
  frag_decl(b, l, "pf", "[BN / 8][4]");
  b.line("#pragma unroll");
  b.open("for (int kk = 0; kk < BN / 8; ++kk)");
  const Frag pf{"pf", "[kk]"};
  const int perm[4] = {0, 2, 1, 3};
  for (int i = 0; i < 4; ++i) frag_set(b, l, pf, i, fmt::format("s[kk][{}]", perm[i]));
  b.close();
  if (l.async) {
    b.line("cp_async_wait<1>();  // this thread's copies of the V tile have landed");
    b.line("__syncthreads();");
  }
  b.comment("o = o · alpha + p v, one fragment at a time: NOTE [Short mma chains]");
  emit_fragment_products(b, l, pf, vt, "BN / 8", "o[dt][e] = fmaf(o[dt][e], alpha[e >> 1], acc[e]);", true);
  if (l.async) {
    b.line("__syncthreads();  // every warp is done with Vs: the next V tile streams in");
    b.open("if (n0 + BN < n_end)");
    emit_tile_load(b, s, l.NT, v_next);
    b.close();
    b.line("cp_async_commit();");
  }
  b.close();  // n0 loop
  b.blank();
  b.comment("o / l and lse = (m + log2 l) · ln 2");
  b.line("#pragma unroll");
  b.open("for (int h = 0; h < 2; ++h)");
  b.line("float l = row_sum[h];");
  emit_row_allsum(b, "l", 4);
  b.line("const int row = m0 + warp * 16 + g + 8 * h;");
  b.line("if (row >= p.n_q) continue;");
  b.line("const float inv = 1.f / l;");
  b.line("T* orow = static_cast<T*>(p.o) + ((long long)b * p.n_q + row) * D;");
  b.line("#pragma unroll");
  b.open("for (int dt = 0; dt < DK / 8; ++dt)");
  b.line("const int c = 8 * dt + 2 * t;");
  b.line("if (c < D) store(orow + c, o[dt][2 * h] * inv);");
  b.line("if (c + 1 < D) store(orow + c + 1, o[dt][2 * h + 1] * inv);");
  b.close();
  b.line("if (t == 0) p.lse[(long long)b * p.n_q + row] = (row_max[h] + log2f(l)) * MINIDL_LN2;");
  b.close();
  b.close();  // kernel
  k.source = b.str();
  return k;
}

// ============================================================================ Tf32 backward

GeneratedKernel tf32_backward(const AttentionSpec& s) {
  const Tf32Layout l = tf32_layout(s, true);
  const int PT = padded_stride(l.SB, 4);  // dsᵀ tile row stride
  // dq = ds k: SB/16 row blocks of 16, the d tiles shared among the warps of a row block.
  const int RB = l.SB / 16, parts = l.warps / RB, HT = (l.DK / 8 + parts - 1) / parts;
  const Tile kt{"Ks", input_form(l, l.tiles.k)}, vt{"Vs", input_form(l, l.tiles.v)};
  const Tile qt{"Qs", input_form(l, l.tiles.q)}, dot{"dOs", input_form(l, l.tiles.dout)};
  const Tile dst{"dSs", l.split && l.tiles.ds ? TileForm::Split : TileForm::Float};
  SmemPlan sm;
  sm.tile(kt, l.BN * l.ST, "[BN][ST] k tile");
  sm.tile(vt, l.BN * l.ST, "[BN][ST] v tile");
  sm.tile(qt, l.SB * l.ST, "[SB][ST] q tile of the step");
  sm.tile(dot, l.SB * l.ST, "[SB][ST] dout tile of the step");
  sm.tile(dst, l.BN * PT, "[BN][PT] dsᵀ of the step");
  sm.floats("Ls", l.SB, "[SB] lse · log2(e)");
  sm.floats("Ds", l.SB, "[SB] delta");
  GeneratedKernel k;
  k.name = kernel_name("bwd", s, l.BM, l.BN, l.split ? l.tiles : std::optional<SplitTiles>());
  k.threads = l.NT;
  k.tile = l.BN;
  k.smem_bytes = sm.bytes();

  SourceBuilder b;
  emit_header(b, "FlashAttention-2 backward", s,
              "q, k, v, dout: (B, N, d) with runtime strides; lse, delta: (B, n_q) float32; "
              "dk, dv: (B, n_k, d) contiguous; dq_acc: (B, n_q, d) float32, accumulated",
              fmt::format("one block per {} keys (16 per warp; k, v, dk, dv resident), {} query rows "
                          "per step{}, {} threads, {} bytes of shared memory; {}",
                          l.BN, l.SB,
                          l.G > 1 ? fmt::format(" in {} groups of warps ({} rows each)", l.G, l.BM) : "", l.NT,
                          k.smem_bytes, tiles_comment(l)));
  // At d <= 16 the backward asks for 16 warps per SM, i.e. at most 128 registers: it needed 140
  // and ran three 4-warp blocks per SM; capped it spills 36 bytes and runs four (H200, N = 4096:
  // 0.78 -> 0.60 ms; docs/kernel-notes.md). Wider head dims hold dk and dv in more registers.
  const int min_blocks = l.D <= 16 ? std::max(1, 16 / l.warps) : 1;
  const std::string bounds = min_blocks > 1 ? fmt::format("{}, {}", l.NT, min_blocks) : std::to_string(l.NT);
  b.open("extern \"C\" __global__ void __launch_bounds__({}) {}(const minidl::AttentionBwdParams p)", bounds, k.name);
  b.line("using namespace minidl::dev;");
  b.line("typedef {} T;", storage_type(s.dtype));
  emit_tf32_constants(b, l);
  b.line("constexpr int G = {}, SB = G * BM, KW = BN / 16;  // query groups (NOTE [Query groups]), rows per step, "
         "warps per group", l.G);
  b.line("constexpr int PT = {};  // row stride of the dsᵀ tile", PT);
  b.line("constexpr int RB = {}, HT = {};  // dq: row blocks of 16; d tiles per warp", RB, HT);
  b.line("constexpr float kScale = {}, kScaleLog2e = {};", float_literal(s.scale),
         float_literal(s.scale * 1.4426950408889634));
  sm.emit(b);
  b.line("const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, t = lane % 4;");
  b.line("const int kw = warp % KW, qo = warp / KW * BM;  // the warp's 16 keys; its group's first row of a step");
  b.line("const int wk = kw * 16 * ST;  // this warp's 16 rows of the k and v tiles");
  b.line("const int n_tiles = (p.n_k + BN - 1) / BN;");
  b.line("const int b = blockIdx.x / n_tiles;");
  b.line("const int n0 = (blockIdx.x % n_tiles) * BN;  // first key tiles see the most (causal) rows");
  b.line("const T* q = static_cast<const T*>(p.q) + b * p.q_sb;");
  b.line("const T* k = static_cast<const T*>(p.k) + b * p.k_sb;");
  b.line("const T* v = static_cast<const T*>(p.v) + b * p.v_sb;");
  b.line("const T* dout = static_cast<const T*>(p.dout) + b * p.do_sb;");
  b.blank();
  TileLoad k_tile{"Ks", "k", "p.k_sn", "p.k_sd", "n0", "p.n_k", "", l.BN, l.DK, l.ST};
  TileLoad v_tile{"Vs", "v", "p.v_sn", "p.v_sd", "n0", "p.n_k", "", l.BN, l.DK, l.ST};
  TileLoad q_tile{"Qs", "q", "p.q_sn", "p.q_sd", "m0", "p.n_q", "", l.SB, l.DK, l.ST};
  TileLoad do_tile{"dOs", "dout", "p.do_sn", "p.do_sd", "m0", "p.n_q", "", l.SB, l.DK, l.ST};
  k_tile.split = kt.form == TileForm::Split;
  v_tile.split = vt.form == TileForm::Split;
  q_tile.split = qt.form == TileForm::Split;
  do_tile.split = dot.form == TileForm::Split;
  emit_tile_load(b, s, l.NT, k_tile);
  emit_tile_load(b, s, l.NT, v_tile);
  const int staged = staged_count(q_tile, l.NT);
  const bool stage = s.async_copy && staged > 0 && staged <= kMaxStaged;  // NOTE [Staged tile loads]
  const int row_values = (l.SB + l.NT - 1) / l.NT;
  // lse and delta of rows row0 + [0, SB): into Ls, Ds, or (staged) the registers ls_st, ds_st
  auto emit_row_values = [&](const std::string& row0, bool into_registers) {
    b.line("#pragma unroll");
    b.open("for (int j = 0; j < {}; ++j)", row_values);
    b.line("const int r = tid + NT * j;");
    b.line("const bool in = r < SB && {} + r < p.n_q;", row0);
    b.line("{} = in ? p.lse[(long long)b * p.n_q + {} + r] * MINIDL_LOG2E : 0.f;", into_registers ? "ls_st[j]" : "const float ls", row0);
    b.line("{} = in ? p.delta[(long long)b * p.n_q + {} + r] : 0.f;", into_registers ? "ds_st[j]" : "const float ds", row0);
    if (!into_registers) b.line("if (r < SB) Ls[r] = ls, Ds[r] = ds;");
    b.close();
  };
  b.comment("dk, dv: keys g and g + 8 of the warp, columns 8·dt + 2t + {0, 1}");
  b.line("float dk[DK / 8][4], dv[DK / 8][4];");
  b.line("#pragma unroll");
  b.line("for (int dt = 0; dt < DK / 8; ++dt)");
  b.line("  for (int e = 0; e < 4; ++e) dk[dt][e] = dv[dt][e] = 0.f;");
  if (s.causal) b.comment("rows before n0 see none of these keys");
  b.line("const int m_begin = {};", s.causal ? "n0 / SB * SB" : "0");
  // q, dout, lse and delta of the step at row0 into the staging registers
  auto fetch_step = [&](const std::string& row0) {
    TileLoad q_at = q_tile, do_at = do_tile;
    q_at.row0 = do_at.row0 = row0;
    emit_tile_fetch(b, s, l.NT, q_at);
    emit_tile_fetch(b, s, l.NT, do_at);
    emit_row_values(row0, true);
  };
  if (stage) {
    b.line("float Qs_st[{0}], dOs_st[{0}], ls_st[{1}], ds_st[{1}];  // the step's tiles, staged", staged, row_values);
    b.open("");
    fetch_step("m_begin");
    b.close();
  }
  b.open("for (int m0 = m_begin; m0 < p.n_q; m0 += SB)");
  b.line("__syncthreads();  // k, v stored; the previous step's readers are done");
  if (stage) {
    emit_tile_store_staged(b, l.NT, q_tile);
    emit_tile_store_staged(b, l.NT, do_tile);
    b.line("#pragma unroll");
    b.line("for (int j = 0; j < {}; ++j)", row_values);
    b.line("  if (tid + NT * j < SB) Ls[tid + NT * j] = ls_st[j], Ds[tid + NT * j] = ds_st[j];");
  } else {
    emit_tile_load(b, s, l.NT, q_tile);
    emit_tile_load(b, s, l.NT, do_tile);
    emit_row_values("m0", false);
  }
  b.line("__syncthreads();");
  b.blank();
  b.comment("sᵀ = k qᵀ and dpᵀ = v doutᵀ: the warp's 16 keys × its group's BM queries");
  b.line("float st[BM / 8][4], dpt[BM / 8][4];");
  b.line("#pragma unroll");
  b.line("for (int mt = 0; mt < BM / 8; ++mt)");
  b.line("  for (int e = 0; e < 4; ++e) st[mt][e] = dpt[mt][e] = 0.f;");
  b.line("#pragma unroll");
  b.open("for (int kk = 0; kk < DK / 8; ++kk)");
  frag_decl(b, l, "ka", "[4]");
  frag_decl(b, l, "va", "[4]");
  const Frag ka{"ka", ""}, va{"va", ""};
  const char* a_off[4] = {"wk + g * ST + 8 * kk + t", "wk + (g + 8) * ST + 8 * kk + t",
                          "wk + g * ST + 8 * kk + t + 4", "wk + (g + 8) * ST + 8 * kk + t + 4"};
  for (int i = 0; i < 4; ++i) frag_load(b, l, ka, i, kt, a_off[i]);
  for (int i = 0; i < 4; ++i) frag_load(b, l, va, i, vt, a_off[i]);
  b.line("#pragma unroll");
  b.open("for (int mt = 0; mt < BM / 8; ++mt)");
  frag_decl(b, l, "qf", "[2]");
  const Frag qf{"qf", ""}, df{"df", ""};
  frag_load(b, l, qf, 0, qt, "(qo + 8 * mt + g) * ST + 8 * kk + t");
  frag_load(b, l, qf, 1, qt, "(qo + 8 * mt + g) * ST + 8 * kk + t + 4");
  emit_mma(b, l, "st[mt]", ka, qf);
  frag_decl(b, l, "df", "[2]");
  frag_load(b, l, df, 0, dot, "(qo + 8 * mt + g) * ST + 8 * kk + t");
  frag_load(b, l, df, 1, dot, "(qo + 8 * mt + g) * ST + 8 * kk + t + 4");
  emit_mma(b, l, "dpt[mt]", va, df);
  b.close();
  b.close();
  b.blank();
  b.comment("pᵀ = exp2(sᵀ · scale·log2(e) − lse·log2(e)) into st, dsᵀ = pᵀ (dpᵀ − delta) into dpt and dSs");
  b.line("#pragma unroll");
  b.open("for (int mt = 0; mt < BM / 8; ++mt)");
  b.line("#pragma unroll");
  b.open("for (int e = 0; e < 4; ++e)");
  b.line("const int ql = qo + 8 * mt + 2 * t + (e & 1), row = m0 + ql;");
  b.line("const int kl = kw * 16 + g + 8 * (e >> 1), col = n0 + kl;");
  b.line("const bool dead = row >= p.n_q || {};", masked(s, "row", "col"));
  b.line("const float pij = dead ? 0.f : exp2f(st[mt][e] * kScaleLog2e - Ls[ql]);");
  b.line("st[mt][e] = pij;");
  b.line("dpt[mt][e] = pij * (dpt[mt][e] - Ds[ql]);");
  tile_store(b, dst, "kl * PT + ql", "dpt[mt][e]");
  b.close();
  b.close();
  b.blank();
  b.comment("dv += pᵀ dout and dk += dsᵀ q, one fragment at a time (NOTE [Short mma chains]); mma k = t is");
  b.comment("query 2t, k = t + 4 is query 2t + 1: NOTE [Permuted k in register-sourced products]");
  const int perm[4] = {0, 2, 1, 3};
  for (const bool is_v : {true, false}) {
    const std::string a = is_v ? "pf" : "sf", src = is_v ? "st" : "dpt", acc = is_v ? "dv" : "dk";
    const Tile& bt = is_v ? dot : qt;
    b.open("");
    frag_decl(b, l, a, "[BM / 8][4]");
    const Frag af{a, "[kk]"};
    b.line("#pragma unroll");
    b.open("for (int kk = 0; kk < BM / 8; ++kk)");
    for (int i = 0; i < 4; ++i) frag_set(b, l, af, i, fmt::format("{}[kk][{}]", src, perm[i]));
    b.close();
    // Pairs of fragments pay in the backward at d > 64 only (H200, N = 16384, pairs against one
    // fragment: d = 128 2.5 % faster, d = 64 6 % slower).
    emit_fragment_products(b, l, af, bt, "BM / 8", fmt::format("{}[dt][e] += acc[e];", acc), l.D > 64, "qo");
    b.close();
  }
  b.line("__syncthreads();  // dSs complete");
  if (stage) {
    b.comment("the next step's tiles, landing while dq runs (zero past the sequence)");
    fetch_step("(m0 + SB)");
  }
  b.blank();
  b.comment("dq += ds k · scale: row block warp % RB, d tiles (warp / RB)·HT + j; mma k = t is key 2t");
  b.line("const int rb = warp % RB, dt0 = warp / RB * HT;");
  b.line("float dq[HT][4];");
  b.line("#pragma unroll");
  b.line("for (int j = 0; j < HT; ++j) dq[j][0] = dq[j][1] = dq[j][2] = dq[j][3] = 0.f;");
  b.line("#pragma unroll");
  b.open("for (int kk = 0; kk < BN / 8; ++kk)");
  frag_decl(b, l, "sa", "[4]");
  const Frag sa{"sa", ""};
  frag_load(b, l, sa, 0, dst, "(8 * kk + 2 * t) * PT + 16 * rb + g");
  frag_load(b, l, sa, 1, dst, "(8 * kk + 2 * t) * PT + 16 * rb + g + 8");
  frag_load(b, l, sa, 2, dst, "(8 * kk + 2 * t + 1) * PT + 16 * rb + g");
  frag_load(b, l, sa, 3, dst, "(8 * kk + 2 * t + 1) * PT + 16 * rb + g + 8");
  b.line("#pragma unroll");
  b.open("for (int j = 0; j < HT; ++j)");
  b.line("const int dt = dt0 + j;");
  b.line("if (dt >= DK / 8) break;");
  frag_decl(b, l, "kf", "[2]");
  const Frag kf{"kf", ""};
  frag_load(b, l, kf, 0, kt, "(8 * kk + 2 * t) * ST + 8 * dt + g");
  frag_load(b, l, kf, 1, kt, "(8 * kk + 2 * t + 1) * ST + 8 * dt + g");
  emit_mma(b, l, "dq[j]", sa, kf);
  b.close();
  b.close();
  b.line("#pragma unroll");
  b.open("for (int j = 0; j < HT; ++j)");
  b.line("const int dt = dt0 + j;");
  b.line("if (dt >= DK / 8) break;");
  b.line("#pragma unroll");
  b.open("for (int h = 0; h < 2; ++h)");
  b.line("const int row = m0 + 16 * rb + g + 8 * h, c = 8 * dt + 2 * t;");
  b.line("float* dst = p.dq_acc + ((long long)b * p.n_q + row) * D + c;");
  if (l.D % 2 == 0) {  // NOTE [dq by atomics] in compiler/cuda_attention.cpp: one reduction per pair
    b.line("if (row < p.n_q && c < D) atomic_add2(dst, dq[j][2 * h] * kScale, dq[j][2 * h + 1] * kScale);");
  } else {
    b.line("if (row < p.n_q && c < D) atomicAdd(dst, dq[j][2 * h] * kScale);");
    b.line("if (row < p.n_q && c + 1 < D) atomicAdd(dst + 1, dq[j][2 * h + 1] * kScale);");
  }
  b.close();
  b.close();
  b.close();  // m0 loop
  b.blank();
  if (l.G > 1) {
    // The k and v tiles are the plan's first two arrays, at least BN·ST words each in every form.
    b.comment("NOTE [Query groups]: group 0 adds the other groups' dk and dv, through the shared memory of k and v");
    b.line("float* sums = reinterpret_cast<float*>(smem);  // [2][BN][ST]: dk, dv of one group");
    b.open("for (int from = 1; from < G; ++from)");
    b.line("__syncthreads();  // k and v (or the previous group's sums) read");
    b.line("const bool give = warp / KW == from, take = warp < KW;");
    b.line("#pragma unroll");
    b.open("for (int dt = 0; dt < DK / 8; ++dt)");
    b.line("#pragma unroll");
    b.open("for (int e = 0; e < 4; ++e)");
    b.line("const int at = (kw * 16 + g + 8 * (e >> 1)) * ST + 8 * dt + 2 * t + (e & 1);");
    b.line("if (give) sums[at] = dk[dt][e], sums[BN * ST + at] = dv[dt][e];");
    b.close();
    b.close();
    b.line("__syncthreads();");
    b.line("#pragma unroll");
    b.open("for (int dt = 0; dt < DK / 8; ++dt)");
    b.line("#pragma unroll");
    b.open("for (int e = 0; e < 4; ++e)");
    b.line("const int at = (kw * 16 + g + 8 * (e >> 1)) * ST + 8 * dt + 2 * t + (e & 1);");
    b.line("if (take) dk[dt][e] += sums[at], dv[dt][e] += sums[BN * ST + at];");
    b.close();
    b.close();
    b.close();
    b.line("if (warp >= KW) return;");
  }
  b.comment("dk · scale and dv for the warp's keys");
  b.line("#pragma unroll");
  b.open("for (int h = 0; h < 2; ++h)");
  b.line("const int key = n0 + kw * 16 + g + 8 * h;");
  b.line("if (key >= p.n_k) continue;");
  b.line("T* dkrow = static_cast<T*>(p.dk) + ((long long)b * p.n_k + key) * D;");
  b.line("T* dvrow = static_cast<T*>(p.dv) + ((long long)b * p.n_k + key) * D;");
  b.line("#pragma unroll");
  b.open("for (int dt = 0; dt < DK / 8; ++dt)");
  b.line("#pragma unroll");
  b.open("for (int e = 0; e < 2; ++e)");
  b.line("const int c = 8 * dt + 2 * t + e;");
  b.open("if (c < D)");
  b.line("store(dkrow + c, dk[dt][2 * h + e] * kScale);");
  b.line("store(dvrow + c, dv[dt][2 * h + e]);");
  b.close();
  b.close();
  b.close();
  b.close();
  b.close();  // kernel
  k.source = b.str();
  return k;
}

}  // namespace

const char* attention_math_name(AttentionMath m) { return m == AttentionMath::Ffma ? "ffma" : "tf32"; }

int max_head_dim(AttentionMath m) { return m == AttentionMath::Ffma ? 256 : 128; }

namespace {
constexpr std::pair<bool SplitTiles::*, const char*> kSplitNames[] = {
    {&SplitTiles::q, "q"}, {&SplitTiles::k, "k"}, {&SplitTiles::v, "v"}, {&SplitTiles::dout, "do"}, {&SplitTiles::ds, "ds"}};
}  // namespace

std::string split_tiles_name(const SplitTiles& t) {
  std::string s;
  for (const auto& [member, name] : kSplitNames)
    if (t.*member) {
      if (!s.empty()) s += '+';
      s += name;
    }
  return s.empty() ? "none" : s;
}

SplitTiles parse_split_tiles(const std::string& text) {
  SplitTiles t;
  if (text == "none") return t;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t end = std::min(text.find('+', start), text.size());
    const std::string name = text.substr(start, end - start);
    const auto it = std::find_if(std::begin(kSplitNames), std::end(kSplitNames),
                                 [&](const auto& e) { return name == e.second; });
    MINIDL_CHECK(it != std::end(kSplitNames), ValueError,
                 "[attention tiles] MINIDL_ATTENTION_TILES split tiles must be 'none' or names from q, k, "
                 "v, do, ds joined by '+', got '{}'",
                 text);
    t.*(it->first) = true;
    start = end + 1;
  }
  return t;
}

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

namespace {
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
  GeneratedKernel k;
  k.name = fmt::format("minidl_attn_delta_{}_d{}{}", dtype_tag(spec.dtype), spec.head_dim,
                       spec.unit_d_stride ? "" : "_strided");
  k.threads = 32 * kWarps;
  k.tile = kWarps;
  SourceBuilder b;
  emit_header(b, "FlashAttention-2 backward preprocessing, delta = rowsum(dout ∘ o)", spec,
              "o, dout: (B, N, d) with runtime strides; delta: (B, n_q) float32",
              fmt::format("one warp per row, {} rows per block", kWarps));
  b.open("extern \"C\" __global__ void __launch_bounds__({}) {}(const minidl::AttentionBwdParams p)", k.threads, k.name);
  b.line("using namespace minidl::dev;");
  b.line("typedef {} T;", storage_type(spec.dtype));
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
  b.close();
  k.source = b.str();
  return k;
}

}  // namespace minidl::codegen
