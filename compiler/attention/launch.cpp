// The fused attention launchers (compiler/attention/launch.h): validate, pick the kernels'
// specialisation, compile them once through the JIT and its cache, fill the parameter blocks
// and launch on the current stream.
//
// NOTE [dq by atomics]
// The backward runs one block per key tile; every block contributes to dq of every query row it
// visits. Those contributions are added in float32 with atomic reductions (red.global.add.v2/v4
// on sm_90) into a zeroed (B, N, d) buffer, FlashAttention-2's choice, instead of a second pass
// that recomputes P and dP per query tile: that pass would redo two of the five products (1.4×
// the FLOPs) to save the atomic traffic, which for B·H = 8, N = 16384, d = 128 and 64-key tiles
// is ~4·10⁹ float additions into L2 (docs/kernel-notes.md says how to measure which costs more).
// The order of the additions varies from run to run, so dq is not bitwise reproducible (as in
// PyTorch's fused kernels); 16-bit dq is the float32 buffer cast once at the end.
#include "compiler/attention/launch.h"

#if MINIDL_WITH_CUDA
#include <cstdlib>
#include <map>
#include <mutex>
#include <optional>
#include <tuple>

#include "base/env.h"
#include "compiler/attention/generate.h"
#include "compiler/attention/tiles.h"
#include "compiler/codegen/device/kernel_params.h"
#include "compiler/jit.h"
#include "core/ops.h"
#include "runtime/cuda.h"
#include "runtime/cuda_check.h"

namespace minidl::cuda {

namespace {

constexpr const char* kOp = "fused_attention";

// The math the kernels use: MINIDL_ATTENTION_MATH=ffma|tf32 forces one; by default the tensor
// cores (3xTF32 for float32) where they support the head dim, FFMA beyond.
codegen::AttentionMath math_for(int64_t d) {
  const std::string want = env_choice("MINIDL_ATTENTION_MATH", {"ffma", "tf32"}).value_or("");
  if (want == "ffma" || d > codegen::max_head_dim(codegen::AttentionMath::Tf32)) return codegen::AttentionMath::Ffma;
  return codegen::AttentionMath::Tf32;
}

void check_qkv(const char* op, const Tensor& q, const Tensor& k, const Tensor& v) {
  MINIDL_CHECK(q.dim() == 3 && k.dim() == 3 && v.dim() == 3, ShapeError,
               "[{}] q, k, v must be (B, N, d), got {}, {}, {}", op, shape_str(q.shape()), shape_str(k.shape()),
               shape_str(v.shape()));
  MINIDL_CHECK(k.shape() == v.shape() && q.size(0) == k.size(0) && q.size(2) == k.size(2), ShapeError,
               "[{}] shapes do not fit: q {}, k {}, v {}", op, shape_str(q.shape()), shape_str(k.shape()),
               shape_str(v.shape()));
  MINIDL_CHECK(q.dtype() == k.dtype() && q.dtype() == v.dtype(), DTypeError, "[{}] q, k, v dtypes differ: {}, {}, {}",
               op, dtype_name(q.dtype()), dtype_name(k.dtype()), dtype_name(v.dtype()));
  MINIDL_CHECK(q.device().is_cuda() && q.device() == k.device() && q.device() == v.device(), DeviceError,
               "[{}] q, k, v must be on one CUDA device, got {}, {}, {}", op, q.device().str(), k.device().str(),
               v.device().str());
  MINIDL_CHECK(q.size(0) <= (1 << 30) && q.size(1) <= (1 << 30) && k.size(1) <= (1 << 30), ShapeError,
               "[{}] sizes too large for the kernels: q {}, k {}", op, shape_str(q.shape()), shape_str(k.shape()));
}

bool unit_d_stride(std::initializer_list<const Tensor*> ts) {
  for (const Tensor* t : ts)
    if (t->size(2) > 1 && t->strides()[2] != 1) return false;
  return true;
}

enum class Kind { Forward, Delta, Backward };

// MINIDL_ATTENTION_TILES overrides the generators' default tiles, for tuning without a rebuild
// (codegen::parse_tile_choice has the format).
codegen::TileChoice tiles_from_env(Kind kind, int64_t head_dim) {
  const char* env = std::getenv("MINIDL_ATTENTION_TILES");
  if (!env || kind == Kind::Delta) return {};
  return codegen::parse_tile_choice(env, kind == Kind::Backward, static_cast<int>(head_dim));
}

codegen::AttentionSpec spec_for(Kind kind, int64_t head_dim, DType dtype, double scale, bool causal, bool unit) {
  codegen::AttentionSpec s;
  const codegen::TileChoice tiles = tiles_from_env(kind, head_dim);
  s.block_m = tiles.block_m;
  s.block_n = tiles.block_n;
  s.groups = tiles.groups;
  s.split = tiles.split;
  s.async_copy = env_flag("MINIDL_ATTENTION_ASYNC", true);  // off: plain loads, for A/B timing
  s.head_dim = static_cast<int>(head_dim);
  s.dtype = dtype;
  s.causal = causal;
  s.scale = scale;
  s.math = math_for(head_dim);
  s.unit_d_stride = unit;
  s.nodes = {"FusedAttention"};
  return s;
}

// The spec a launch over `batch` × `rows` resident rows on `device` uses: NOTE [Tiles by grid
// size] in compiler/attention/tiles.cpp (the delta kernel has no tiles).
codegen::AttentionSpec fit_tiles_to_grid(const codegen::AttentionSpec& s, Kind kind, int64_t batch, int64_t rows,
                                         int device) {
  if (kind == Kind::Delta) return s;
  return codegen::fit_tiles_to_grid(s, kind == Kind::Backward, batch, rows, properties(device).multiprocessors);
}

codegen::GeneratedKernel generate(Kind kind, const codegen::AttentionSpec& s) {
  return kind == Kind::Forward ? codegen::generate_attention_forward(s)
         : kind == Kind::Delta ? codegen::generate_attention_backward_delta(s)
                               : codegen::generate_attention_backward(s);
}

// The loaded kernel of one specialisation, generated and compiled on first use. The memo keeps
// launches from regenerating source and hashing it every call.
const jit::LoadedKernel& kernel_for(Kind kind, const codegen::AttentionSpec& s) {
  static std::mutex mu;
  static std::map<std::string, const jit::LoadedKernel*> memo;
  int device = 0;
  MINIDL_CUDA_CHECK(cudaGetDevice(&device), kOp);
  const std::string key =
      fmt::format("{}|{}|{}|{}|{}|{:a}|{}|{}x{}g{}|{}|{}|{}", static_cast<int>(kind),
                  codegen::attention_math_name(s.math), static_cast<int>(s.dtype), s.head_dim, s.causal, s.scale,
                  s.unit_d_stride, s.block_m, s.block_n, s.groups, s.async_copy,
                  s.split ? codegen::split_tiles_name(*s.split) : "default", device);
  std::lock_guard<std::mutex> lock(mu);
  if (auto it = memo.find(key); it != memo.end()) return *it->second;
  // Named, not a temporary argument: g++ 13's -Wdangling-reference takes a reference returned
  // by a call with a temporary argument for one into it (load returns the process's copy).
  const codegen::GeneratedKernel source = generate(kind, s);
  const jit::LoadedKernel& k = jit::load(source);
  memo.emplace(key, &k);
  return k;
}

long long blocks(const jit::LoadedKernel& k, int64_t batch, int64_t rows) {
  return static_cast<long long>(batch) * ((rows + k.tile - 1) / k.tile);
}

}  // namespace

std::vector<codegen::GeneratedKernel> fused_attention_kernels(int64_t head_dim, DType dtype, double scale, bool causal,
                                                              bool unit_d_stride, bool backward) {
  std::vector<codegen::GeneratedKernel> ks;
  for (Kind kind : backward ? std::vector<Kind>{Kind::Delta, Kind::Backward} : std::vector<Kind>{Kind::Forward}) {
    const codegen::AttentionSpec s = spec_for(kind, head_dim, dtype, scale, causal, unit_d_stride);
    ks.push_back(generate(kind, s));
    if (kind == Kind::Delta) continue;
    if (const auto half = codegen::halved_tiles(s, kind == Kind::Backward)) ks.push_back(generate(kind, *half));
  }
  return ks;
}

AttentionOutputs fused_attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, double scale,
                                         bool causal) {
  check_qkv(kOp, q, k, v);
  const int64_t B = q.size(0), nq = q.size(1), nk = k.size(1), d = q.size(2);
  AttentionOutputs out{empty({B, nq, d}, q.dtype(), q.device(), kOp), empty({B, nq}, kFloat32, q.device(), kOp)};
  if (B == 0 || nq == 0 || d == 0) return out;
  MINIDL_CHECK(nk > 0, ShapeError, "[{}] no keys: q {}, k {}", kOp, shape_str(q.shape()), shape_str(k.shape()));
  DeviceGuard guard(q.device().index);
  const codegen::AttentionSpec spec =
      fit_tiles_to_grid(spec_for(Kind::Forward, d, q.dtype(), scale, causal, unit_d_stride({&q, &k, &v})),
                        Kind::Forward, B, nq, q.device().index);
  const jit::LoadedKernel& kern = kernel_for(Kind::Forward, spec);
  const auto& qs = q.strides();
  const auto& ks = k.strides();
  const auto& vs = v.strides();
  AttentionFwdParams p{q.data_ptr(), k.data_ptr(), v.data_ptr(), out.o.data_ptr(),
                       static_cast<float*>(out.lse.data_ptr()), qs[0], qs[1], qs[2], ks[0], ks[1], ks[2],
                       vs[0], vs[1], vs[2], static_cast<int>(B), static_cast<int>(nq), static_cast<int>(nk)};
  jit::launch(kern, blocks(kern, B, nq), &p);
  return out;
}

AttentionGrads fused_attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& o,
                                        const Tensor& lse, const Tensor& dout, double scale, bool causal) {
  const char* op = "fused_attention_backward";
  check_qkv(op, q, k, v);
  const int64_t B = q.size(0), nq = q.size(1), nk = k.size(1), d = q.size(2);
  MINIDL_CHECK(o.shape() == q.shape() && dout.shape() == q.shape() && lse.shape() == Shape({B, nq}), ShapeError,
               "[{}] o {} and dout {} must be q's shape {}, lse {} must be ({}, {})", op, shape_str(o.shape()),
               shape_str(dout.shape()), shape_str(q.shape()), shape_str(lse.shape()), B, nq);
  MINIDL_CHECK(o.dtype() == q.dtype() && dout.dtype() == q.dtype() && lse.dtype() == kFloat32, DTypeError,
               "[{}] o ({}) and dout ({}) must be q's dtype {}, lse ({}) float32", op, dtype_name(o.dtype()),
               dtype_name(dout.dtype()), dtype_name(q.dtype()), dtype_name(lse.dtype()));
  MINIDL_CHECK(o.device() == q.device() && dout.device() == q.device() && lse.device() == q.device(), DeviceError,
               "[{}] o, lse, dout must be on {}", op, q.device().str());
  const Tensor lse_c = lse.contiguous();
  Tensor dq32 = empty({B, nq, d}, kFloat32, q.device(), op);
  AttentionGrads g{Tensor(), empty({B, nk, d}, q.dtype(), q.device(), op), empty({B, nk, d}, q.dtype(), q.device(), op)};
  DeviceGuard guard(q.device().index);
  int device = 0;
  MINIDL_CUDA_CHECK(cudaGetDevice(&device), op);
  if (dq32.numel() > 0)
    MINIDL_CUDA_CHECK(cudaMemsetAsync(dq32.data_ptr(), 0, dq32.nbytes(), current_stream(device)), op);
  if (B > 0 && nq > 0 && nk > 0 && d > 0) {
    const bool unit = unit_d_stride({&q, &k, &v, &o, &dout});
    const codegen::AttentionSpec delta_spec = spec_for(Kind::Delta, d, q.dtype(), scale, causal, unit);
    const jit::LoadedKernel& delta_k = kernel_for(Kind::Delta, delta_spec);
    const codegen::AttentionSpec spec =
        fit_tiles_to_grid(spec_for(Kind::Backward, d, q.dtype(), scale, causal, unit), Kind::Backward, B, nk, device);
    const jit::LoadedKernel& main_k = kernel_for(Kind::Backward, spec);
    Tensor delta = empty({B, nq}, kFloat32, q.device(), op);
    const auto &qs = q.strides(), &ks = k.strides(), &vs = v.strides(), &os = o.strides(), &ds = dout.strides();
    AttentionBwdParams p{q.data_ptr(), k.data_ptr(), v.data_ptr(), o.data_ptr(), dout.data_ptr(),
                         static_cast<const float*>(lse_c.data_ptr()), static_cast<float*>(delta.data_ptr()),
                         static_cast<float*>(dq32.data_ptr()), g.dk.data_ptr(), g.dv.data_ptr(),
                         qs[0], qs[1], qs[2], ks[0], ks[1], ks[2], vs[0], vs[1], vs[2], os[0], os[1], os[2],
                         ds[0], ds[1], ds[2], static_cast<int>(B), static_cast<int>(nq), static_cast<int>(nk)};
    jit::launch(delta_k, blocks(delta_k, B, nq), &p);
    jit::launch(main_k, blocks(main_k, B, nk), &p);
  } else if (g.dk.numel() > 0) {  // no queries: dk and dv are zero
    MINIDL_CUDA_CHECK(cudaMemsetAsync(g.dk.data_ptr(), 0, g.dk.nbytes(), current_stream(device)), op);
    MINIDL_CUDA_CHECK(cudaMemsetAsync(g.dv.data_ptr(), 0, g.dv.nbytes(), current_stream(device)), op);
  }
  g.dq = q.dtype() == kFloat32 ? dq32 : dq32.to(q.dtype());
  return g;
}

}  // namespace minidl::cuda
#endif
