// The FFMA attention kernels (compiler/attention/ffma.h): register-tiled CUDA-core FMAs, the
// float32 reference path and the fallback beyond the TF32 kernels' head dims. The NOTEs cited
// here are in compiler/attention/generate.cpp.
#include "compiler/attention/ffma.h"

#include <algorithm>

#include "base/error.h"
#include "compiler/attention/emit.h"

namespace minidl::codegen::attn {

namespace {

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

// The kernel's header and opening, then the layout's constants.
void open_ffma_kernel(SourceBuilder& b, const AttentionSpec& s, const GeneratedKernel& k, const FfmaLayout& l,
                      bool backward) {
  const std::string tiles =
      backward ? fmt::format("one block per {} keys (k, v, dk, dv resident), {} query rows per step, ", l.BN, l.BM)
               : fmt::format("one block per {} query rows (resident in shared memory), {} keys per step, ", l.BM, l.BN);
  emit_main_kernel_open(b, s, k, backward,
                        tiles + fmt::format("{} threads, {} bytes of shared memory", l.NT, k.smem_bytes));
  b.line("constexpr int D = {}, DP = {}, DW = {};  // head dim, padded to 4, working width", l.D,
         l.DP, l.DW);
  b.line("constexpr int BM = {}, BN = {}, NT = {}, TC = {}, TR = {};", l.BM, l.BN, l.NT, l.TC, l.TR);
  b.line("constexpr int QS = {}, PS = {}, JC = {};  // row strides of d-wide and score tiles; d chunks per thread",
         l.QS, l.PS, l.JC);
}

// A product of two d-wide shared tiles, out[rows][cols] = a bᵀ over the head dim: thread (ty,
// tx) takes rows ty + TR·i of a and tx + TC·j of b, four head-dim columns a step.
struct ScoreProduct {
  const char *out, *rows, *cols, *a, *b, *a_tile, *b_tile;
};

void emit_scores(SourceBuilder& b, const FfmaLayout& l, const ScoreProduct& p) {
  b.line("float {}[{}][{}];", p.out, p.rows, p.cols);
  b.line("#pragma unroll");
  b.line("for (int i = 0; i < {}; ++i)", p.rows);
  b.line("  for (int j = 0; j < {}; ++j) {}[i][j] = 0.f;", p.cols, p.out);
  b.line("{}", l.DP / 4 <= 32 ? "#pragma unroll" : "#pragma unroll 8");
  b.open("for (int k4 = 0; k4 < DP / 4; ++k4)");
  b.line("float4 {}[{}], {}[{}];", p.a, p.rows, p.b, p.cols);
  b.line("#pragma unroll");
  b.line("for (int i = 0; i < {}; ++i) {}[i] = *reinterpret_cast<const float4*>({} + (ty + TR * i) * QS + 4 * k4);",
         p.rows, p.a, p.a_tile);
  b.line("#pragma unroll");
  b.line("for (int j = 0; j < {}; ++j) {}[j] = *reinterpret_cast<const float4*>({} + (tx + TC * j) * QS + 4 * k4);",
         p.cols, p.b, p.b_tile);
  b.line("#pragma unroll");
  b.open("for (int i = 0; i < {}; ++i)", p.rows);
  b.line("#pragma unroll");
  b.open("for (int j = 0; j < {}; ++j)", p.cols);
  for (const char* c : {"x", "y", "z", "w"})
    b.line("{0}[i][j] = fmaf({1}[i].{3}, {2}[j].{3}, {0}[i][j]);", p.out, p.a, p.b, c);
  b.close();
  b.close();
  b.close();
}

}  // namespace

// ============================================================================ Ffma forward

GeneratedKernel ffma_forward(const AttentionSpec& s) {
  const FfmaLayout l = ffma_layout(s, false);
  const int RM = l.BM / l.TR, RN = l.BN / l.TC;
  const size_t smem = sizeof(float) * static_cast<size_t>(l.BM * l.QS + l.BN * l.QS + l.BN * l.DW + l.BM * l.PS);
  const GeneratedKernel k = kernel_shape(kernel_name("fwd", s, l.BM, l.BN), l.NT, l.BM, smem);

  SourceBuilder b;
  open_ffma_kernel(b, s, k, l, false);
  b.line("constexpr int RM = {}, RN = {};  // score rows and columns per thread", RM, RN);
  b.line("constexpr float kScaleLog2e = {};  // scale · log2(e): NOTE [Online softmax in base 2]",
         float_literal(s.scale * 1.4426950408889634));
  b.line("MINIDL_DYNAMIC_SMEM(smem);");
  b.line("float* Qs = reinterpret_cast<float*>(smem);  // [BM][QS] q tile · kScaleLog2e");
  b.line("float* Ks = Qs + BM * QS;                     // [BN][QS]");
  b.line("float* Vs = Ks + BN * QS;                     // [BN][DW]");
  b.line("float* Ps = Vs + BN * DW;                     // [BM][PS] probabilities of the step");
  b.line("const int tid = threadIdx.x, tx = tid % TC, ty = tid / TC;");
  emit_block_start(b, false);
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
  emit_scores(b, l, {"s", "RM", "RN", "qa", "kb", "Qs", "Ks"});
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
  return finish_kernel(b, k);
}

// ============================================================================ Ffma backward

GeneratedKernel ffma_backward(const AttentionSpec& s) {
  const FfmaLayout l = ffma_layout(s, true);
  const int RMA = l.BM / l.TR, RNA = l.BN / l.TC, RNB = l.BN / l.TR;
  const size_t smem =
      sizeof(float) * static_cast<size_t>(2 * l.BN * l.QS + 2 * l.BM * l.QS + 2 * l.BM * l.PS + 2 * l.BM);
  const GeneratedKernel k = kernel_shape(kernel_name("bwd", s, l.BM, l.BN), l.NT, l.BN, smem);

  SourceBuilder b;
  open_ffma_kernel(b, s, k, l, true);
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
  emit_block_start(b, true);
  b.blank();
  emit_tile_load(b, s, l.NT, {"Ks", "k", "p.k_sn", "p.k_sd", "n0", "p.n_k", "", l.BN, l.DW, l.QS});
  emit_tile_load(b, s, l.NT, {"Vs", "v", "p.v_sn", "p.v_sd", "n0", "p.n_k", "", l.BN, l.DW, l.QS});
  emit_key_accumulators(b, s, "[RNB][4 * JC]", "for (int i = 0; i < RNB; ++i)",
                        "for (int c = 0; c < 4 * JC; ++c) dk[i][c] = dv[i][c] = 0.f;", "BM");
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
  emit_scores(b, l, {"s", "RMA", "RNA", "ra", "cb", "Qs", "Ks"});
  emit_scores(b, l, {"dp", "RMA", "RNA", "ra", "cb", "dOs", "Vs"});
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
  if (l.D % 4 == 0) {  // one vector reduction per chunk: NOTE [dq by atomics] in launch.cpp
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
  emit_dk_dv_store(b, {"for (int i = 0; i < RNB; ++i)", "n0 + ty + TR * i", "for (int jj = 0; jj < JC; ++jj)",
                       "for (int e = 0; e < 4; ++e)", "4 * (tx + TC * jj) + e", "[i][4 * jj + e]"});
  return finish_kernel(b, k);
}

}  // namespace minidl::codegen::attn
