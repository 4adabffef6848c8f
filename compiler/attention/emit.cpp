// The emitters the FFMA and TF32 attention generators share (compiler/attention/emit.h).
#include "compiler/attention/emit.h"

#include <utility>

#include "base/error.h"

namespace minidl::codegen::attn {

int round_up(int x, int m) { return (x + m - 1) / m * m; }

int padded_stride(int width, int residue) {
  int s = width;
  while (s % 32 != residue % 32) ++s;
  return s;
}

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

std::string kernel_name(const char* kind, const AttentionSpec& s, int bm, int bn,
                        const std::optional<SplitTiles>& split) {
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

GeneratedKernel kernel_shape(std::string name, int threads, int tile, size_t smem_bytes) {
  GeneratedKernel k;
  k.name = std::move(name);
  k.threads = threads;
  k.tile = tile;
  k.smem_bytes = smem_bytes;
  return k;
}

GeneratedKernel finish_kernel(SourceBuilder& b, GeneratedKernel k) {
  b.close();  // kernel
  k.source = b.str();
  return k;
}

void emit_main_kernel_open(SourceBuilder& b, const AttentionSpec& s, const GeneratedKernel& k, bool backward,
                           const std::string& tiles, const std::string& bounds) {
  if (!backward)
    emit_header(b, "FlashAttention-2 forward", s,
                "q, k, v: (B, N, d) with runtime strides; o: (B, n_q, d) contiguous; lse: (B, n_q) float32", tiles);
  else
    emit_header(b, "FlashAttention-2 backward", s,
                "q, k, v, dout: (B, N, d) with runtime strides; lse, delta: (B, n_q) float32; "
                "dk, dv: (B, n_k, d) contiguous; dq_acc: (B, n_q, d) float32, accumulated",
                tiles);
  emit_kernel_open(b, bounds.empty() ? std::to_string(k.threads) : bounds, k.name, backward, s.dtype);
}

void emit_kernel_open(SourceBuilder& b, const std::string& bounds, const std::string& name, bool backward,
                      DType dtype) {
  b.open("extern \"C\" __global__ void __launch_bounds__({}) {}(const minidl::{} p)", bounds, name,
         backward ? "AttentionBwdParams" : "AttentionFwdParams");
  b.line("using namespace minidl::dev;");
  b.line("typedef {} T;", storage_type(dtype));
}

void emit_block_start(SourceBuilder& b, bool backward) {
  if (!backward) {
    b.line("const int m_tiles = (p.n_q + BM - 1) / BM;");
    b.line("const int b = blockIdx.x / m_tiles;");
    b.line("const int m0 = (m_tiles - 1 - blockIdx.x % m_tiles) * BM;  // longest (causal) rows first");
  } else {
    b.line("const int n_tiles = (p.n_k + BN - 1) / BN;");
    b.line("const int b = blockIdx.x / n_tiles;");
    b.line("const int n0 = (blockIdx.x % n_tiles) * BN;  // first key tiles see the most (causal) rows");
  }
  for (const char* x : {"q", "k", "v"}) b.line("const T* {0} = static_cast<const T*>(p.{0}) + b * p.{0}_sb;", x);
  if (backward) b.line("const T* dout = static_cast<const T*>(p.dout) + b * p.do_sb;");
}

namespace {

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

}  // namespace

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

int staged_count(const TileLoad& t, int threads) {
  return threads % t.width == 0 && t.rows % (threads / t.width) == 0 ? t.rows / (threads / t.width) : 0;
}
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
void emit_tile_store_staged(SourceBuilder& b, int threads, const TileLoad& t) {
  b.line("#pragma unroll");
  b.open("for (int j = 0; j < {}; ++j)", staged_count(t, threads));
  b.line("const int r = tid / {} + {} * j, c = tid % {};", t.width, threads / t.width, t.width);
  emit_tile_put(b, t, t.dst + "_st[j]");
  b.close();
}

void emit_row_allreduce(SourceBuilder& b, const std::string& var, const char* op, int width) {
  for (int m = 1; m < width; m *= 2)
    b.line("{} = {}({}, __shfl_xor_sync(0xffffffffu, {}, {}));", var, op, var, var, m);
}
void emit_row_allsum(SourceBuilder& b, const std::string& var, int width) {
  for (int m = 1; m < width; m *= 2)
    b.line("{} += __shfl_xor_sync(0xffffffffu, {}, {});", var, var, m);
}

void emit_key_accumulators(SourceBuilder& b, const AttentionSpec& s, const char* dims, const char* zero_loop,
                           const char* zero, const char* step_rows) {
  b.line("float dk{0}, dv{0};", dims);
  b.line("#pragma unroll");
  b.line("{}", zero_loop);
  b.line("  {}", zero);
  if (s.causal) b.comment("rows before n0 see none of these keys");
  b.line("const int m_begin = {};", s.causal ? fmt::format("n0 / {0} * {0}", step_rows) : "0");
}

void emit_dk_dv_store(SourceBuilder& b, const OutputLoops& o) {
  b.line("#pragma unroll");
  b.open("{}", o.rows);
  b.line("const int key = {};", o.row);
  b.line("if (key >= p.n_k) continue;");
  b.line("T* dkrow = static_cast<T*>(p.dk) + ((long long)b * p.n_k + key) * D;");
  b.line("T* dvrow = static_cast<T*>(p.dv) + ((long long)b * p.n_k + key) * D;");
  b.line("#pragma unroll");
  b.open("{}", o.chunks);
  b.line("#pragma unroll");
  b.open("{}", o.elems);
  b.line("const int c = {};", o.col);
  b.open("if (c < D)");
  b.line("store(dkrow + c, dk{} * kScale);", o.at);
  b.line("store(dvrow + c, dv{});", o.at);
  b.close();
  b.close();
  b.close();
  b.close();
}

std::string masked(const AttentionSpec& s, const std::string& row, const std::string& col) {
  std::string m = col + " >= p.n_k";
  if (s.causal) m += " || " + col + " > " + row;
  return m;
}

}  // namespace minidl::codegen::attn
