// The TF32 attention kernels (compiler/attention/tf32.h): mma.sync m16n8k8 tensor-core tiles,
// 3xTF32 for float32 storage. The NOTEs cited here are in compiler/attention/generate.cpp.
#include "compiler/attention/tf32.h"

#include <algorithm>

#include "base/error.h"
#include "compiler/attention/emit.h"
#include "compiler/attention/tf32_fragments.h"

namespace minidl::codegen::attn {

// ============================================================================ Tf32 forward

GeneratedKernel tf32_forward(const AttentionSpec& s) {
  const Tf32Layout l = tf32_layout(s, false);
  const Tile qt{"Qs", input_form(l, l.tiles.q)}, kt{"Ks", input_form(l, l.tiles.k)}, vt{"Vs", input_form(l, l.tiles.v)};
  SmemPlan sm;
  sm.tile(qt, l.BM * l.ST, l.split ? "[BM][ST] q tile · kScaleLog2e" : "[BM][ST] q tile");
  sm.tile(kt, l.BN * l.ST, "[BN][ST] k tile");
  sm.tile(vt, l.BN * l.ST, "[BN][ST] v tile");
  const GeneratedKernel k =
      kernel_shape(kernel_name("fwd", s, l.BM, l.BN, l.split ? l.tiles : std::optional<SplitTiles>()), l.NT, l.BM,
                   sm.bytes());

  SourceBuilder b;
  emit_main_kernel_open(b, s, k, false,
                        fmt::format("one block per {} query rows (16 per warp), {} keys per step, {} threads, "
                                    "{} bytes of shared memory; {}",
                                    l.BM, l.BN, l.NT, k.smem_bytes, tiles_comment(l)));
  emit_tf32_constants(b, l);
  b.line("constexpr float kScaleLog2e = {};  // NOTE [Online softmax in base 2]",
         float_literal(s.scale * 1.4426950408889634));
  sm.emit(b);
  b.line("const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, t = lane % 4;");
  b.line("const int wq = warp * 16 * ST;  // this warp's 16 rows of the q tile");
  emit_block_start(b, false);
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
  // Once every warp is done with a tile, the next one streams in over it.
  auto stream_next = [&](const TileLoad& next) {
    b.line("__syncthreads();  // every warp is done with {}: the next {} tile streams in", next.dst,
           next.dst == "Ks" ? "K" : "V");
    b.open("if (n0 + BN < n_end)");
    emit_tile_load(b, s, l.NT, next);
    b.close();
    b.line("cp_async_commit();");
  };
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
  emit_tile_product(b, l, {"s", "nt", "BN / 8", "DK / 8", "a", &qt, a_offsets("wq"), {}, &kt, b_offsets("8 * nt + g")});
  if (l.async) stream_next(k_next);
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
  if (l.async) stream_next(v_next);
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
  return finish_kernel(b, k);
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
  const GeneratedKernel k =
      kernel_shape(kernel_name("bwd", s, l.BM, l.BN, l.split ? l.tiles : std::optional<SplitTiles>()), l.NT, l.BN,
                   sm.bytes());

  // At d <= 16 the backward asks for 16 warps per SM, i.e. at most 128 registers: it needed 140
  // and ran three 4-warp blocks per SM; capped it spills 36 bytes and runs four (H200, N = 4096:
  // 0.78 -> 0.60 ms; docs/kernel-notes.md). Wider head dims hold dk and dv in more registers.
  const int min_blocks = l.D <= 16 ? std::max(1, 16 / l.warps) : 1;
  const std::string bounds = min_blocks > 1 ? fmt::format("{}, {}", l.NT, min_blocks) : std::to_string(l.NT);

  SourceBuilder b;
  emit_main_kernel_open(b, s, k, true,
                        fmt::format("one block per {} keys (16 per warp; k, v, dk, dv resident), {} query rows "
                                    "per step{}, {} threads, {} bytes of shared memory; {}",
                                    l.BN, l.SB,
                                    l.G > 1 ? fmt::format(" in {} groups of warps ({} rows each)", l.G, l.BM) : "",
                                    l.NT, k.smem_bytes, tiles_comment(l)),
                        bounds);
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
  emit_block_start(b, true);
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
  emit_key_accumulators(b, s, "[DK / 8][4]", "for (int dt = 0; dt < DK / 8; ++dt)",
                        "for (int e = 0; e < 4; ++e) dk[dt][e] = dv[dt][e] = 0.f;", "SB");
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
  frag_load_all(b, l, ka, kt, a_offsets("wk"));
  frag_load_all(b, l, va, vt, a_offsets("wk"));
  b.line("#pragma unroll");
  b.open("for (int mt = 0; mt < BM / 8; ++mt)");
  frag_decl(b, l, "qf", "[2]");
  const Frag qf{"qf", ""}, df{"df", ""};
  frag_load_all(b, l, qf, qt, b_offsets("qo + 8 * mt + g"));
  emit_mma(b, l, "st[mt]", ka, qf);
  frag_decl(b, l, "df", "[2]");
  frag_load_all(b, l, df, dot, b_offsets("qo + 8 * mt + g"));
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
  emit_tile_product(b, l,
                    {"dq", "j", "HT", "BN / 8", "sa", &dst,
                     {"(8 * kk + 2 * t) * PT + 16 * rb + g", "(8 * kk + 2 * t) * PT + 16 * rb + g + 8",
                      "(8 * kk + 2 * t + 1) * PT + 16 * rb + g", "(8 * kk + 2 * t + 1) * PT + 16 * rb + g + 8"},
                     {"const int dt = dt0 + j;", "if (dt >= DK / 8) break;"}, &kt, k_row_offsets("")});
  b.line("#pragma unroll");
  b.open("for (int j = 0; j < HT; ++j)");
  b.line("const int dt = dt0 + j;");
  b.line("if (dt >= DK / 8) break;");
  b.line("#pragma unroll");
  b.open("for (int h = 0; h < 2; ++h)");
  b.line("const int row = m0 + 16 * rb + g + 8 * h, c = 8 * dt + 2 * t;");
  b.line("float* dst = p.dq_acc + ((long long)b * p.n_q + row) * D + c;");
  if (l.D % 2 == 0) {  // NOTE [dq by atomics] in launch.cpp: one reduction per pair
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
  emit_dk_dv_store(b, {"for (int h = 0; h < 2; ++h)", "n0 + kw * 16 + g + 8 * h", "for (int dt = 0; dt < DK / 8; ++dt)",
                       "for (int e = 0; e < 2; ++e)", "8 * dt + 2 * t + e", "[dt][2 * h + e]"});
  return finish_kernel(b, k);
}

}  // namespace minidl::codegen::attn
