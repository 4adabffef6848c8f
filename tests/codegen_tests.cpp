// The code generators: the source builder, the attention kernels' source, NVRTC compilation of
// every kind of generated kernel for sm_90 (CUDA builds; no GPU needed), and the kernels' results
// on a CPU emulator of the GPU (tests/cuda_emu.h) against a float64 reference.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "base/env.h"
#include "compiler/attention/generate.h"
#include "compiler/attention/launch.h"
#include "compiler/attention/tiles.h"
#include "compiler/codegen/device/kernel_params.h"
#include "compiler/codegen/embedded_headers.h"
#include "compiler/codegen/fusion.h"
#include "compiler/codegen/source_builder.h"
#include "compiler/jit.h"
#include "core/cpu/parallel.h"
#include "emulated_kernels.h"
#include "test_utils.h"
#if MINIDL_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace fs = std::filesystem;
using namespace minidl;
using namespace minidl::codegen;

namespace {

// ============================================================================ launches

long long blocks_for(const GeneratedKernel& k, int batch, int rows) {
  return static_cast<long long>(batch) * ((rows + k.tile - 1) / k.tile);
}

// ============================================================================ attention reference

// A (B, N, d) tensor in a given dtype with arbitrary strides, held as raw 16- or 32-bit words.
struct HostTensor {
  DType dtype = kFloat32;
  int B = 0, N = 0, d = 0;
  long long sb = 0, sn = 0, sd = 1;
  std::vector<uint32_t> f32;   // float32 storage
  std::vector<uint16_t> h16;   // float16 / bfloat16 storage

  static HostTensor make(DType t, int B, int N, int d, long long sb, long long sn, long long sd, size_t words) {
    HostTensor h{t, B, N, d, sb, sn, sd, {}, {}};
    if (t == kFloat32)
      h.f32.assign(words, 0x7fc00000u);  // NaN: poison
    else
      h.h16.assign(words, 0xffffu);      // NaN in both 16-bit formats
    return h;
  }
  static HostTensor contiguous(DType t, int B, int N, int d) {
    return make(t, B, N, d, static_cast<long long>(N) * d, d, 1, static_cast<size_t>(B) * N * d);
  }
  void* data() { return dtype == kFloat32 ? static_cast<void*>(f32.data()) : static_cast<void*>(h16.data()); }
  size_t bytes() const { return dtype == kFloat32 ? f32.size() * 4 : h16.size() * 2; }
  size_t at(int b, int n, int c) const { return static_cast<size_t>(b * sb + n * sn + c * sd); }
  double get(int b, int n, int c) const {
    const size_t i = at(b, n, c);
    if (dtype == kFloat32) return bits_float(f32[i]);
    return dtype == kFloat16 ? static_cast<double>(Half::to_float(h16[i])) : bits_float(static_cast<uint32_t>(h16[i]) << 16);
  }
  void set(int b, int n, int c, double v) {
    const size_t i = at(b, n, c);
    if (dtype == kFloat32) f32[i] = float_bits(static_cast<float>(v));
    else if (dtype == kFloat16) h16[i] = Half::from_float(static_cast<float>(v));
    else h16[i] = BFloat16::from_float(static_cast<float>(v));
  }
};

// Fills every element of the logical (B, N, d) view with N(0, 1) draws.
void randomize(HostTensor& t, std::mt19937& rng) {
  std::normal_distribution<double> dist;
  for (int b = 0; b < t.B; ++b)
    for (int n = 0; n < t.N; ++n)
      for (int c = 0; c < t.d; ++c) t.set(b, n, c, dist(rng));
}

// Largest |x - ref| over largest |ref| (the suites' rel_error), and whether every x is finite.
// Where the reference is zero up to rounding (one key: p = 1, so ds = 0 exactly), the absolute
// error is reported instead.
struct Compare {
  double rel = 0;
  bool all_written = true;
};
Compare compare(const std::vector<double>& x, const std::vector<double>& ref) {
  Compare c;
  double num = 0, den = 1e-30;
  for (size_t i = 0; i < x.size(); ++i) {
    if (!std::isfinite(x[i])) c.all_written = false;
    num = std::max(num, std::abs(x[i] - ref[i]));
    den = std::max(den, std::abs(ref[i]));
  }
  c.rel = den < 1e-6 ? num : num / den;
  return c;
}

std::vector<double> values(const HostTensor& t) {
  std::vector<double> v;
  for (int b = 0; b < t.B; ++b)
    for (int n = 0; n < t.N; ++n)
      for (int c = 0; c < t.d; ++c) v.push_back(t.get(b, n, c));
  return v;
}

// float64 attention and its gradients: o, lse, and dq, dk, dv for a given dout. Two passes, each
// parallel over rows: per query row o, lse, delta and dq; per key dk and dv, recomputing p and
// ds from lse and delta (so sequences of 16384 stay affordable on the GPU machine's cores).
struct Reference {
  std::vector<double> o, lse, dq, dk, dv;
};
Reference reference(const HostTensor& q, const HostTensor& k, const HostTensor& v, const HostTensor& dout,
                    double scale, bool causal) {
  const int B = q.B, nq = q.N, nk = k.N, d = q.d;
  auto dense = [&](const HostTensor& t) {
    std::vector<double> x(static_cast<size_t>(t.B) * t.N * t.d);
    for (int b = 0; b < t.B; ++b)
      for (int n = 0; n < t.N; ++n)
        for (int c = 0; c < t.d; ++c) x[(static_cast<size_t>(b) * t.N + n) * d + c] = t.get(b, n, c);
    return x;
  };
  const std::vector<double> Q = dense(q), K = dense(k), V = dense(v), dO = dense(dout);
  auto dot = [d](const double* x, const double* y) {
    double s = 0;
    for (int c = 0; c < d; ++c) s += x[c] * y[c];
    return s;
  };
  Reference r;
  r.o.assign(static_cast<size_t>(B) * nq * d, 0);
  r.lse.assign(static_cast<size_t>(B) * nq, 0);
  r.dq.assign(r.o.size(), 0);
  r.dk.assign(static_cast<size_t>(B) * nk * d, 0);
  r.dv.assign(r.dk.size(), 0);
  std::vector<double> delta(r.lse.size());
  const int64_t cost = static_cast<int64_t>(nk) * d * 4;
  cpu::parallel_for(static_cast<int64_t>(B) * nq, cost, [&](int64_t begin, int64_t end) {
    std::vector<double> p(nk), dp(nk);
    for (int64_t bi = begin; bi < end; ++bi) {
      const int b = static_cast<int>(bi / nq), i = static_cast<int>(bi % nq);
      const double* qi = &Q[static_cast<size_t>(bi) * d];
      const double* doi = &dO[static_cast<size_t>(bi) * d];
      const double* kb = &K[static_cast<size_t>(b) * nk * d];
      const double* vb = &V[static_cast<size_t>(b) * nk * d];
      double mx = -INFINITY;
      for (int j = 0; j < nk; ++j) {
        p[j] = (causal && j > i) ? -INFINITY : dot(qi, kb + static_cast<size_t>(j) * d) * scale;
        mx = std::max(mx, p[j]);
      }
      double sum = 0;
      for (int j = 0; j < nk; ++j) sum += (p[j] = std::exp(p[j] - mx));
      for (int j = 0; j < nk; ++j) p[j] /= sum;
      r.lse[bi] = mx + std::log(sum);
      double* o = &r.o[static_cast<size_t>(bi) * d];
      double dl = 0;
      for (int j = 0; j < nk; ++j) {
        if (p[j] == 0) continue;
        const double* vj = vb + static_cast<size_t>(j) * d;
        for (int c = 0; c < d; ++c) o[c] += p[j] * vj[c];
        dl += p[j] * (dp[j] = dot(doi, vj));
      }
      delta[bi] = dl;
      double* dq = &r.dq[static_cast<size_t>(bi) * d];
      for (int j = 0; j < nk; ++j) {
        if (p[j] == 0) continue;
        const double ds = p[j] * (dp[j] - dl);
        const double* kj = kb + static_cast<size_t>(j) * d;
        for (int c = 0; c < d; ++c) dq[c] += scale * ds * kj[c];
      }
    }
  });
  cpu::parallel_for(static_cast<int64_t>(B) * nk, static_cast<int64_t>(nq) * d * 4, [&](int64_t begin, int64_t end) {
    for (int64_t bj = begin; bj < end; ++bj) {
      const int b = static_cast<int>(bj / nk), j = static_cast<int>(bj % nk);
      const double* kj = &K[static_cast<size_t>(bj) * d];
      const double* vj = &V[static_cast<size_t>(bj) * d];
      double* dk = &r.dk[static_cast<size_t>(bj) * d];
      double* dv = &r.dv[static_cast<size_t>(bj) * d];
      for (int i = causal ? j : 0; i < nq; ++i) {
        const size_t bi = static_cast<size_t>(b) * nq + i;
        const double* qi = &Q[bi * d];
        const double* doi = &dO[bi * d];
        const double pij = std::exp(dot(qi, kj) * scale - r.lse[bi]);
        const double ds = pij * (dot(doi, vj) - delta[bi]);
        for (int c = 0; c < d; ++c) {
          dk[c] += scale * ds * qi[c];
          dv[c] += pij * doi[c];
        }
      }
    }
  });
  return r;
}

struct AttnCase {
  AttentionMath math;
  DType dtype;
  int d, n_q, n_k, batch;
  bool causal, strided;
  int block_m = 0, block_n = 0;  // 0: the default tiles
  bool async_copy = true;
  std::optional<SplitTiles> split = std::nullopt;  // unset: the default split tiles (Tf32 float32)
  int groups = 1;                                  // Tf32 backward: NOTE [Query groups]
};

std::string describe(const AttnCase& c) {
  return fmt::format("{} {} d={} n_q={} n_k={} B={}{}{}{}", attention_math_name(c.math), dtype_name(c.dtype), c.d,
                     c.n_q, c.n_k, c.batch, c.causal ? " causal" : "", c.strided ? " strided" : "",
                     c.block_m ? fmt::format(" tiles {}x{}", c.block_m, c.block_n) : "") +
         (c.async_copy ? "" : " sync") + (c.split ? " split " + split_tiles_name(*c.split) : "") +
         (c.groups > 1 ? fmt::format(" groups {}", c.groups) : "");
}

double tolerance(const AttnCase& c) {
  switch (c.dtype) {
    case kFloat16: return 4e-3;
    case kBFloat16: return 3e-2;
    default: return 1e-5;
  }
}

// Where the kernels of a check run: the CPU emulator, or the GPU through the JIT.
class Backend {
 public:
  virtual ~Backend() = default;
  /// A copy of host memory the kernels can use (the emulator uses host memory as is).
  virtual void* to_device(void* host, size_t bytes) = 0;
  /// Copies kernel results back into host memory.
  virtual void to_host(void* host, const void* dev, size_t bytes) = 0;
  virtual void run(const GeneratedKernel& k, long long blocks, const void* params) = 0;
};

class EmulatorBackend : public Backend {
 public:
  /// `flags`: extra host compiler flags for every kernel (EmulatedKernel).
  explicit EmulatorBackend(std::string flags = "") : flags_(std::move(flags)) {}
  void* to_device(void* host, size_t) override { return host; }
  void to_host(void*, const void*, size_t) override {}
  void run(const GeneratedKernel& k, long long blocks, const void* params) override {
    auto it = kernels_.find(k.source);
    if (it == kernels_.end())
      it = kernels_.emplace(k.source, std::make_unique<testing::EmulatedKernels>(std::vector<GeneratedKernel>{k}, flags_))
               .first;
    it->second->run(0, blocks, params);
  }

 private:
  std::string flags_;
  std::map<std::string, std::unique_ptr<testing::EmulatedKernels>> kernels_;
};

// Runs the generated forward and backward of case c on a backend and checks every output against
// the float64 reference. Every output buffer starts as NaN, so an element left unwritten fails.
void check_attention(const AttnCase& c, Backend& be) {
  INFO(describe(c));
  std::mt19937 rng(1234 + c.d * 7 + c.n_q);
  const int B = c.batch, d = c.d;
  // Strided case: q is (N, B, d) memory seen as (B, N, d); k, v have d-stride 2 (every other word).
  HostTensor q = c.strided ? HostTensor::make(c.dtype, B, c.n_q, d, d, static_cast<long long>(B) * d, 1,
                                              static_cast<size_t>(B) * c.n_q * d)
                           : HostTensor::contiguous(c.dtype, B, c.n_q, d);
  auto kv = [&] {
    return c.strided ? HostTensor::make(c.dtype, B, c.n_k, d, 2ll * c.n_k * d, 2ll * d, 2, 2ull * B * c.n_k * d)
                     : HostTensor::contiguous(c.dtype, B, c.n_k, d);
  };
  HostTensor k = kv(), v = kv();
  HostTensor dout = HostTensor::contiguous(c.dtype, B, c.n_q, d);
  for (HostTensor* t : {&q, &k, &v, &dout}) randomize(*t, rng);
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  const Reference ref = reference(q, k, v, dout, scale, c.causal);

  AttentionSpec spec;
  spec.head_dim = d;
  spec.dtype = c.dtype;
  spec.causal = c.causal;
  spec.scale = scale;
  spec.math = c.math;
  spec.unit_d_stride = !c.strided;
  spec.block_m = c.block_m;
  spec.block_n = c.block_n;
  spec.async_copy = c.async_copy;
  spec.split = c.split;
  auto dev = [&](HostTensor& t) { return be.to_device(t.data(), t.bytes()); };
  auto dev_f = [&](std::vector<float>& x) { return static_cast<float*>(be.to_device(x.data(), x.size() * 4)); };

  // forward
  HostTensor o = HostTensor::contiguous(c.dtype, B, c.n_q, d);
  std::vector<float> lse(static_cast<size_t>(B) * c.n_q, NAN);
  void *qd = dev(q), *kd = dev(k), *vd = dev(v), *od = dev(o), *dod = dev(dout);
  float* lsed = dev_f(lse);
  AttentionFwdParams fp{qd, kd, vd, od, lsed, q.sb, q.sn, q.sd, k.sb, k.sn, k.sd, v.sb, v.sn, v.sd, B, c.n_q, c.n_k};
  const GeneratedKernel fwd = generate_attention_forward(spec);
  be.run(fwd, blocks_for(fwd, B, c.n_q), &fp);
  be.to_host(o.data(), od, o.bytes());
  be.to_host(lse.data(), lsed, lse.size() * 4);
  const double tol = tolerance(c);
  const Compare co = compare(values(o), ref.o);
  CHECK_MESSAGE(co.all_written, "o has unwritten or non-finite elements");
  CHECK_MESSAGE(co.rel <= tol, "o relative error " << co.rel);
  const Compare cl = compare(std::vector<double>(lse.begin(), lse.end()), ref.lse);
  CHECK_MESSAGE(cl.all_written, "lse has unwritten elements");
  CHECK_MESSAGE(cl.rel <= 1e-5, "lse relative error " << cl.rel);

  // backward: delta, then the main kernel accumulating dq in float32 (zeroed, as the launcher does)
  std::vector<float> delta(static_cast<size_t>(B) * c.n_q, NAN), dq(static_cast<size_t>(B) * c.n_q * d, 0.f);
  HostTensor dk = HostTensor::contiguous(c.dtype, B, c.n_k, d), dv = HostTensor::contiguous(c.dtype, B, c.n_k, d);
  float *deltad = dev_f(delta), *dqd = dev_f(dq);
  void *dkd = dev(dk), *dvd = dev(dv);
  AttentionBwdParams bp{qd, kd, vd, od, dod, lsed, deltad, dqd, dkd, dvd, q.sb, q.sn, q.sd, k.sb, k.sn, k.sd,
                        v.sb, v.sn, v.sd, o.sb, o.sn, o.sd, dout.sb, dout.sn, dout.sd, B, c.n_q, c.n_k};
  spec.groups = c.groups;
  const GeneratedKernel delta_k = generate_attention_backward_delta(spec), bwd = generate_attention_backward(spec);
  be.run(delta_k, blocks_for(delta_k, B, c.n_q), &bp);
  be.run(bwd, blocks_for(bwd, B, c.n_k), &bp);
  be.to_host(dq.data(), dqd, dq.size() * 4);
  be.to_host(dk.data(), dkd, dk.bytes());
  be.to_host(dv.data(), dvd, dv.bytes());
  const Compare cq = compare(std::vector<double>(dq.begin(), dq.end()), ref.dq);
  const Compare ck = compare(values(dk), ref.dk), cv = compare(values(dv), ref.dv);
  CHECK_MESSAGE(ck.all_written, "dk has unwritten elements");
  CHECK_MESSAGE(cv.all_written, "dv has unwritten elements");
  // dq and dk sum products of ds, whose (dp − delta) cancels: a little more rounding than dv.
  CHECK_MESSAGE(cq.rel <= tol * 2, "dq relative error " << cq.rel);
  CHECK_MESSAGE(ck.rel <= tol * 2, "dk relative error " << ck.rel);
  CHECK_MESSAGE(cv.rel <= tol, "dv relative error " << cv.rel);
  MESSAGE(describe(c) << ": rel errors o " << co.rel << " lse " << cl.rel << " dq " << cq.rel << " dk " << ck.rel
                      << " dv " << cv.rel);
}

#if MINIDL_WITH_CUDA
// The GPU: buffers from cudaMalloc (outside the caching allocator, so the NaN poison of every
// output is exactly what the kernel starts from), kernels through the JIT and its cache.
class GpuBackend : public Backend {
 public:
  ~GpuBackend() override {
    for (void* p : buffers_) cudaFree(p);
  }
  void* to_device(void* host, size_t bytes) override {
    void* p = nullptr;
    REQUIRE(cudaMalloc(&p, std::max<size_t>(bytes, 1)) == cudaSuccess);
    buffers_.push_back(p);
    REQUIRE(cudaMemcpy(p, host, bytes, cudaMemcpyHostToDevice) == cudaSuccess);
    return p;
  }
  void to_host(void* host, const void* dev, size_t bytes) override {
    REQUIRE(cudaMemcpy(host, dev, bytes, cudaMemcpyDeviceToHost) == cudaSuccess);
  }
  void run(const GeneratedKernel& k, long long blocks, const void* params) override {
    jit::launch(jit::load(k), blocks, params);
    const cudaError_t err = cudaDeviceSynchronize();
    REQUIRE_MESSAGE(err == cudaSuccess, k.name << ": " << cudaGetErrorString(err));
  }

 private:
  std::vector<void*> buffers_;
};
#endif

// ============================================================================ fused groups

// The fused groups the compiler's fusion pass produces most, over odd sizes.
FusedGroup softmax_group(int64_t rows, int64_t c) {
  FusedGroup g("softmax", {rows, c});
  g.nodes = {"%3 softmax"};
  const int x = g.input(kFloat32, {c, 1});
  const int e = g.unary("Exp", g.binary("Sub", x, g.row_max(x)));
  g.output(g.binary("Div", e, g.row_sum(e)), kFloat32);
  return g;
}

// layer_norm with weight and bias (broadcast along rows); also writes each row's mean.
FusedGroup layer_norm_group(int64_t rows, int64_t c) {
  FusedGroup g("layer_norm", {rows, c});
  const int x = g.input(kFloat32, {c, 1}), w = g.input(kFloat32, {0, 1}), b = g.input(kFloat32, {0, 1});
  const int inv_c = g.constant(1.0 / static_cast<double>(c));
  const int mean = g.binary("Mul", g.row_sum(x), inv_c);
  const int xc = g.binary("Sub", x, mean);
  const int var = g.binary("Mul", g.row_sum(g.binary("Mul", xc, xc)), inv_c);
  const int rstd = g.unary("Rsqrt", g.binary("Add", var, g.constant(1e-5)));
  g.output(g.binary("Add", g.binary("Mul", g.binary("Mul", xc, rstd), w), b), kFloat32);
  g.output(mean, kFloat32);
  return g;
}

// gelu(x + bias) stored as bfloat16, and x + y with y read through transposed strides.
FusedGroup bias_gelu_residual_group(int64_t rows, int64_t c) {
  FusedGroup g("bias_gelu_residual", {rows, c});
  const int x = g.input(kFloat32, {c, 1}), bias = g.input(kFloat32, {0, 1}), y = g.input(kFloat32, {1, rows});
  g.output(g.unary("Gelu", g.binary("Add", x, bias)), kBFloat16);
  g.output(g.binary("Add", x, y), kFloat32);
  return g;
}

// Runs a group's kernel on a backend over CPU tensors: inputs as they are, outputs poisoned with NaN.
void run_fused(Backend& be, const FusedGroup& g, const std::vector<Tensor>& in, const std::vector<Tensor>& out) {
  const GeneratedKernel k = generate_fused(g);
  FusedArgs args{};
  for (size_t i = 0; i < in.size(); ++i) args.in[i] = be.to_device(in[i].data_ptr(), in[i].nbytes());
  for (size_t i = 0; i < out.size(); ++i) {
    Tensor(out[i]).fill_(NAN);
    args.out[i] = be.to_device(out[i].data_ptr(), out[i].nbytes());
  }
  be.run(k, (fused_rows(g) + k.tile - 1) / k.tile, &args);
  for (size_t i = 0; i < out.size(); ++i) be.to_host(out[i].data_ptr(), args.out[i], out[i].nbytes());
}

// The three groups against the eager CPU ops.
void check_fused_groups(Backend& be) {
  const int64_t rows = 37, c = 77;
  Tensor x = randn({rows, c}), w = randn({c}), b = randn({c}), yt = randn({c, rows});
  {
    Tensor out = empty({rows, c});
    run_fused(be, softmax_group(rows, c), {x}, {out});
    CHECK(testing::rel_error(out, softmax(x, -1)) < 1e-6);
  }
  {
    Tensor out = empty({rows, c}), mean_out = empty({rows});
    run_fused(be, layer_norm_group(rows, c), {x, w, b}, {out, mean_out});
    CHECK(testing::rel_error(out, layer_norm(x, w, b, 1e-5)) < 1e-5);
    CHECK(testing::rel_error(mean_out, mean(x, {-1})) < 1e-6);
  }
  {
    Tensor g_out = empty({rows, c}, kBFloat16), sum_out = empty({rows, c});
    run_fused(be, bias_gelu_residual_group(rows, c), {x, b, yt}, {g_out, sum_out});
    CHECK(testing::rel_error(g_out, gelu(x + b).to(kBFloat16)) < 1e-2);
    CHECK(testing::rel_error(sum_out, x + yt.t()) == 0);
  }
}

}  // namespace

// ============================================================================ source builder

TEST_CASE("codegen: the source builder indents blocks and rejects unbalanced closes") {
  SourceBuilder b;
  b.comment("two\nlines");
  b.open("for (int i = 0; i < {}; ++i)", 4);
  b.line("x += {};", "i");
  b.close();
  b.open("");
  b.close(";");
  CHECK(b.str() == "// two\n// lines\nfor (int i = 0; i < 4; ++i) {\n  x += i;\n}\n{\n};\n");
  CHECK_THROWS_AS(b.close(), ValueError);
}

// ============================================================================ embedded headers

TEST_CASE("codegen: the device headers are embedded as they are in the source tree") {
  const fs::path root = MINIDL_SOURCE_DIR;
  std::vector<std::string> names;
  for (const auto& h : embedded_headers()) {
    names.push_back(h.name);
    std::ifstream f(root / h.name, std::ios::binary);
    CHECK_MESSAGE(std::string(std::istreambuf_iterator<char>(f), {}) == h.text, h.name << " differs from its file");
  }
  for (const char* want : {"core/scalar_ops.h", "core/philox.h", "compiler/codegen/device/device.cuh",
                           "compiler/codegen/device/kernel_params.h"})
    CHECK(std::find(names.begin(), names.end(), want) != names.end());
}

#if MINIDL_WITH_CUDA
TEST_CASE("codegen: generated code can use every embedded header under NVRTC") {
  const std::string src =
      "#include \"compiler/codegen/device/device.cuh\"\n#include \"core/philox.h\"\n"
      "#include \"compiler/codegen/device/kernel_params.h\"\n"
      "extern \"C\" __global__ void draw(const minidl::FusedArgs a) {\n"
      "  minidl::dev::store(static_cast<minidl::dev::bf16*>(a.out[0]) + threadIdx.x,\n"
      "                     minidl::sop::Exp{}(minidl::philox::normal_at(1, 0, threadIdx.x)));\n}\n";
  CHECK(jit::compile_cubin("minidl_test_headers", src, jit::compile_options("sm_90")).size() > 0);
}
#endif

// ============================================================================ attention source

TEST_CASE("codegen: attention kernels are specialised and name their graph nodes") {
  AttentionSpec s;
  s.head_dim = 72;
  s.causal = true;
  s.scale = 0.25;
  s.nodes = {"%4 matmul", "%5 mul", "%6 softmax", "%7 matmul"};
  for (AttentionMath m : {AttentionMath::Ffma, AttentionMath::Tf32}) {
    s.math = m;
    const GeneratedKernel f = generate_attention_forward(s);
    CHECK(f.source.find("implements graph nodes: %4 matmul, %5 mul, %6 softmax, %7 matmul") != std::string::npos);
    CHECK(f.source.find("constexpr int D = 72") != std::string::npos);
    CHECK(f.source.find("col > row") != std::string::npos);  // the causal mask is compiled in
    CHECK(f.source.find("extern \"C\" __global__") != std::string::npos);
    CHECK(f.source.find(f.name) != std::string::npos);
    CHECK(f.source.find("#include <") == std::string::npos);  // no toolkit headers: NVRTC 13 has none
    s.scale = 0.5;
    CHECK(generate_attention_forward(s).source != f.source);  // scale is compiled in
    s.scale = 0.25;
    s.causal = false;
    CHECK(generate_attention_forward(s).source.find("col > row") == std::string::npos);
    s.causal = true;
  }
  s.math = AttentionMath::Tf32;
  CHECK(generate_attention_forward(s).source.find("mma_tf32") != std::string::npos);
  CHECK(generate_attention_forward(s).source.find("split_tf32") != std::string::npos);  // float32: 3xTF32
  s.dtype = kBFloat16;
  CHECK(generate_attention_forward(s).source.find("split_tf32") == std::string::npos);
}

TEST_CASE("codegen: tile choices are read from MINIDL_ATTENTION_TILES text") {
  const std::string text = "fwd=64x64,bwd=32x128:q+do,bwd@128=32x64g2:none,fwd@40=0x0";
  TileChoice c = parse_tile_choice(text, true, 128);  // the entry for d = 128 wins
  CHECK(c.block_m == 32);
  CHECK(c.block_n == 64);
  CHECK(c.groups == 2);
  REQUIRE(c.split.has_value());
  CHECK(*c.split == SplitTiles{});
  c = parse_tile_choice(text, true, 64);  // the generic backward entry
  CHECK((c.block_m == 32 && c.block_n == 128 && c.groups == 1));
  REQUIRE(c.split.has_value());
  CHECK(split_tiles_name(*c.split) == "q+do");
  c = parse_tile_choice(text, false, 64);
  CHECK((c.block_m == 64 && c.block_n == 64 && c.groups == 1 && !c.split));
  c = parse_tile_choice(text, false, 40);  // 0x0 for d = 40: the defaults
  CHECK((c.block_m == 0 && c.block_n == 0));
  c = parse_tile_choice("", true, 64);
  CHECK((c.block_m == 0 && c.block_n == 0 && c.groups == 1 && !c.split));
  // every entry is checked, also those for other kernels and head dims
  for (const std::string bad : {"bwd=32x64g", "bwd=32x64g0", "bwd=32", "xyz=32x64", "bwd=32x64h2", "fwd=64x64,,",
                                 "bwd=-32x64"}) {
    INFO(bad);
    CHECK_THROWS_WITH_AS(parse_tile_choice(bad, false, 128), doctest::Contains("MINIDL_ATTENTION_TILES"), ValueError);
  }
  CHECK_THROWS_WITH_AS(parse_tile_choice("fwd@16=64x64:zz", false, 128), doctest::Contains("split tiles"), ValueError);
}

TEST_CASE("codegen: small grids get the default tiles halved (NOTE [Tiles by grid size])") {
  AttentionSpec s;
  s.math = AttentionMath::Tf32;
  s.head_dim = 128;
  const auto [fm, fn] = default_tf32_tiles(false, 128);
  const auto [bm, bn] = default_tf32_tiles(true, 128);
  // B·H = 8, N = 1024 on 132 SMs: the default grids give at most half the SMs a block
  AttentionSpec f = fit_tiles_to_grid(s, false, 8, 1024, 132);
  CHECK((f.block_m == fm / 2 && f.block_n == fn && f.groups == 1));
  AttentionSpec g = fit_tiles_to_grid(s, true, 8, 1024, 132);
  CHECK((g.block_m == bm && g.block_n == bn / 2 && g.groups == 2));
  CHECK_NOTHROW(generate_attention_backward(g));
  // a larger grid, tiles set by hand, or FFMA math keep the spec as it is
  CHECK(fit_tiles_to_grid(s, false, 8, 16384, 132).block_m == 0);
  s.block_m = 64, s.block_n = 64;
  CHECK(fit_tiles_to_grid(s, false, 8, 1024, 132).block_m == 64);
  s.block_m = s.block_n = 0;
  s.math = AttentionMath::Ffma;
  CHECK(!halved_tiles(s, false).has_value());
}

TEST_CASE("codegen: attention specs outside the kernels' range are rejected") {
  AttentionSpec s;
  s.head_dim = 0;
  CHECK_THROWS_AS(generate_attention_forward(s), ShapeError);
  s.head_dim = 257;
  CHECK_THROWS_AS(generate_attention_forward(s), ShapeError);
  s.head_dim = 200;
  s.math = AttentionMath::Tf32;
  CHECK_THROWS_AS(generate_attention_backward(s), ShapeError);
  s.math = AttentionMath::Ffma;
  CHECK_NOTHROW(generate_attention_backward(s));
  s.dtype = kFloat64;
  CHECK_THROWS_WITH_AS(generate_attention_forward(s), doctest::Contains("float64"), DTypeError);
  s.dtype = kFloat32;
  s.head_dim = 64;
  s.math = AttentionMath::Tf32;
  s.block_m = 24;  // not a multiple of a warp's 16 rows
  CHECK_THROWS_AS(generate_attention_forward(s), ValueError);
  s.block_m = 32;
  s.block_n = 48;  // 3 warps backward cannot split 2 row blocks of dq
  CHECK_THROWS_AS(generate_attention_backward(s), ValueError);
  s.block_n = 128;
  s.groups = 2;  // 16 warps
  CHECK_THROWS_WITH_AS(generate_attention_backward(s), doctest::Contains("8 warps"), ValueError);
  s.block_n = 64;
  CHECK_NOTHROW(generate_attention_backward(s));
  CHECK_THROWS_WITH_AS(generate_attention_forward(s), doctest::Contains("backward"), ValueError);
  s.math = AttentionMath::Ffma;
  CHECK_THROWS_WITH_AS(generate_attention_backward(s), doctest::Contains("tf32"), ValueError);
  s.groups = 1;
  s.head_dim = 256;
  s.block_m = s.block_n = 256;  // far past the shared memory of a block
  CHECK_THROWS_WITH_AS(generate_attention_forward(s), doctest::Contains("shared memory"), ValueError);
}

// ============================================================================ attention golden

namespace {

// NOTE [Attention golden sources]
// Every attention kernel the generators make over a broad grid of specs (math × dtype × head dim
// × causal × unit d stride × kind, and explicit tiles), one line each in
// tests/golden/attention_kernels.txt: the spec, then the kernel's name, threads, shared memory,
// tile and the FNV-1a 64 hash of its source (or "throws" for a spec the generators reject). A
// change to the generators that is meant to change no kernel (a refactor) must leave the file
// as it is; one that changes kernels rewrites it with MINIDL_UPDATE_GOLDEN=1
// (docs/env_vars.md), and the diff shows which kernels changed.

uint64_t fnv1a64(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

std::string golden_line(const std::string& label, const std::function<GeneratedKernel()>& generate) {
  try {
    const GeneratedKernel k = generate();
    return fmt::format("{} {} threads={} smem={} tile={} {:016x}", label, k.name, k.threads, k.smem_bytes, k.tile,
                       fnv1a64(k.source));
  } catch (const std::exception&) {
    return label + " throws";
  }
}

// One line per kind (forward, delta, backward) of the kernels of `s`.
void add_golden_lines(std::vector<std::string>& out, const AttentionSpec& s) {
  const std::string label = fmt::format(
      "{} {} d={} causal={} unit={} scale={} tiles={}x{}g{} async={} split={}", attention_math_name(s.math),
      dtype_name(s.dtype), s.head_dim, s.causal, s.unit_d_stride, s.scale, s.block_m, s.block_n, s.groups,
      s.async_copy, s.split ? split_tiles_name(*s.split) : "default");
  out.push_back(golden_line(label + " fwd", [&] { return generate_attention_forward(s); }));
  out.push_back(golden_line(label + " delta", [&] { return generate_attention_backward_delta(s); }));
  out.push_back(golden_line(label + " bwd", [&] { return generate_attention_backward(s); }));
}

std::vector<std::string> attention_golden_lines() {
  std::vector<std::string> out;
  AttentionSpec s;
  s.nodes = {"FusedAttention"};
  for (AttentionMath m : {AttentionMath::Ffma, AttentionMath::Tf32})
    for (DType t : {kFloat32, kFloat16, kBFloat16})
      for (int d : {8, 16, 24, 37, 40, 64, 72, 128, 200, 256})
        for (bool causal : {false, true})
          for (bool unit : {true, false}) {
            if (d > max_head_dim(m)) continue;
            s.math = m, s.dtype = t, s.head_dim = d, s.causal = causal, s.unit_d_stride = unit;
            add_golden_lines(out, s);
          }
  s.scale = 0.3;
  for (AttentionMath m : {AttentionMath::Ffma, AttentionMath::Tf32}) {
    s.math = m, s.dtype = kFloat32, s.head_dim = 64, s.causal = true, s.unit_d_stride = true;
    add_golden_lines(out, s);
  }
  s.scale = 0.125;
  // explicit tiles: those the tests and MINIDL_ATTENTION_TILES use, the halved defaults of
  // NOTE [Tiles by grid size], and some the generators reject
  struct Tiles {
    int m, n, groups;
  };
  const std::vector<Tiles> ffma_tiles = {{16, 16, 1}, {32, 32, 1}, {16, 64, 1}, {64, 32, 1}, {64, 64, 1}, {256, 256, 1}};
  const std::vector<Tiles> tf32_tiles = {{16, 16, 1}, {16, 128, 1}, {32, 32, 1}, {32, 64, 1}, {64, 64, 1},
                                         {32, 64, 2}, {32, 32, 2},  {16, 16, 4}, {32, 128, 1}, {64, 128, 1},
                                         {128, 64, 1}, {32, 48, 1}, {24, 64, 1}, {32, 128, 2}, {64, 32, 2}};
  for (AttentionMath m : {AttentionMath::Ffma, AttentionMath::Tf32})
    for (DType t : {kFloat32, kBFloat16})
      for (int d : {24, 40, 64, 128})
        for (bool causal : {false, true}) {
          s.math = m, s.dtype = t, s.head_dim = d, s.causal = causal, s.unit_d_stride = d != 40;
          std::vector<Tiles> tiles = m == AttentionMath::Ffma ? ffma_tiles : tf32_tiles;
          if (m == AttentionMath::Tf32)
            for (bool backward : {false, true}) {
              const auto [bm, bn] = default_tf32_tiles(backward, d);
              tiles.push_back(backward ? Tiles{bm, bn / 2, 2} : Tiles{bm / 2, bn, 1});
              if (backward) tiles.push_back({bm, bn / 2, 1});
            }
          for (const Tiles& x : tiles) {
            s.block_m = x.m, s.block_n = x.n, s.groups = x.groups;
            add_golden_lines(out, s);
          }
          s.block_m = s.block_n = 0, s.groups = 1;
          if (m != AttentionMath::Tf32) continue;
          s.async_copy = false;
          add_golden_lines(out, s);
          s.async_copy = true;
          for (const char* split : {"none", "q+k+v+do+ds", "q+do+ds", "k+v", "q", "ds"}) {
            s.split = parse_split_tiles(split);
            add_golden_lines(out, s);
            s.async_copy = false;
            add_golden_lines(out, s);
            s.async_copy = true;
          }
          s.split.reset();
        }
  return out;
}

}  // namespace

TEST_CASE("codegen: attention kernel sources match tests/golden/attention_kernels.txt") {
  // NOTE [Attention golden sources]; MINIDL_UPDATE_GOLDEN=1 rewrites the file.
  const fs::path path = fs::path(MINIDL_SOURCE_DIR) / "tests" / "golden" / "attention_kernels.txt";
  const std::vector<std::string> lines = attention_golden_lines();
  if (env_flag("MINIDL_UPDATE_GOLDEN", false)) {
    fs::create_directories(path.parent_path());
    std::ofstream f(path);
    for (const std::string& l : lines) f << l << '\n';
    REQUIRE(f.good());
    MESSAGE("wrote " << lines.size() << " lines to " << path.string());
    return;
  }
  std::ifstream f(path);
  REQUIRE_MESSAGE(f.good(), "no " << path.string() << " (MINIDL_UPDATE_GOLDEN=1 writes it)");
  std::vector<std::string> golden;
  for (std::string l; std::getline(f, l);) golden.push_back(l);
  int differ = 0;
  for (size_t i = 0; i < std::max(lines.size(), golden.size()); ++i) {
    const std::string got = i < lines.size() ? lines[i] : "(none)", want = i < golden.size() ? golden[i] : "(none)";
    if (got != want && ++differ <= 10) CHECK_MESSAGE(got == want, "line " << i + 1 << ":\n  now:    " << got << "\n  golden: " << want);
  }
  CHECK_MESSAGE(differ == 0, differ << " of " << lines.size() << " lines differ from " << path.string());
}

// ============================================================================ NVRTC

#if MINIDL_WITH_CUDA
TEST_CASE("codegen: every kind of attention kernel compiles under NVRTC for sm_90") {
  const auto opts = jit::compile_options("sm_90");
  struct Variant {
    AttentionMath math;
    DType dtype;
    int d;
    bool causal;
  };
  const std::vector<Variant> variants = {
      {AttentionMath::Ffma, kFloat32, 16, false},  {AttentionMath::Ffma, kFloat32, 40, true},
      {AttentionMath::Ffma, kFloat32, 128, false}, {AttentionMath::Ffma, kFloat32, 256, true},
      {AttentionMath::Ffma, kFloat16, 72, true},   {AttentionMath::Ffma, kBFloat16, 24, false},
      {AttentionMath::Tf32, kFloat32, 24, true},   {AttentionMath::Tf32, kFloat32, 64, false},
      {AttentionMath::Tf32, kFloat32, 128, true},  {AttentionMath::Tf32, kFloat16, 72, false},
      {AttentionMath::Tf32, kBFloat16, 128, true}, {AttentionMath::Tf32, kBFloat16, 40, false},
      {AttentionMath::Ffma, kFloat16, 37, false},  {AttentionMath::Tf32, kFloat32, 37, true},
  };
  for (const Variant& v : variants) {
    AttentionSpec s;
    s.math = v.math;
    s.dtype = v.dtype;
    s.head_dim = v.d;
    s.causal = v.causal;
    s.unit_d_stride = v.d != 40;
    for (const GeneratedKernel& k :
         {generate_attention_forward(s), generate_attention_backward(s), generate_attention_backward_delta(s)}) {
      INFO(k.name);
      const std::string cubin = jit::compile_cubin(k.name, k.source, opts);
      CHECK(cubin.size() > 1000);
      CHECK(cubin.compare(0, 4, "\x7f" "ELF") == 0);
    }
  }
}

TEST_CASE("codegen: an NVRTC failure raises CompileError with the log and the dumped source") {
  const std::string bad = "extern \"C\" __global__ void broken() { undefined_thing(); }\n";
  try {
    jit::compile_cubin("minidl_test_broken", bad, jit::compile_options("sm_90"));
    FAIL("no exception");
  } catch (const jit::JitCompileError& e) {
    CHECK(std::string(e.what()).find("[jit]") == 0);
    CHECK(e.log().find("undefined_thing") != std::string::npos);
    REQUIRE(fs::exists(e.source_path()));
    std::ifstream f(e.source_path());
    CHECK(std::string(std::istreambuf_iterator<char>(f), {}) == bad);
    fs::remove(e.source_path());
  }
}
#endif

// ============================================================================ emulated results

// Runs one warp of the kernel `name` whose body is `body` (it reads args.in[i] as float arrays,
// the `inputs`, and writes args.out[0], `out_size` floats that start as NaN); returns out[0].
std::vector<float> run_one_warp(Backend& be, const std::string& name, const std::string& body,
                                std::vector<std::vector<float>> inputs, size_t out_size) {
  GeneratedKernel k;
  k.name = name;
  k.threads = 32;
  k.source = "#include \"compiler/codegen/device/device.cuh\"\n#include \"compiler/codegen/device/kernel_params.h\"\n"
             "extern \"C\" __global__ void " + name + "(const minidl::FusedArgs args) {\n"
             "  using namespace minidl::dev;\n" + body + "}\n";
  std::vector<float> out(out_size, NAN);
  FusedArgs args{};
  for (size_t i = 0; i < inputs.size(); ++i) args.in[i] = be.to_device(inputs[i].data(), inputs[i].size() * 4);
  args.out[0] = be.to_device(out.data(), out.size() * 4);
  be.run(k, 1, &args);
  be.to_host(out.data(), args.out[0], out.size() * 4);
  return out;
}

// A warp runs `steps` mma's into one accumulator starting at c0; each step adds the single
// product x·y to every element (A[r][0] = x, B[0][c] = y, every other operand 0).
std::vector<float> emulated_mma_chain(Backend& be, float c0, float x, float y, int steps) {
  return run_one_warp(be, "minidl_test_mma_chain", R"(
  const float* in = static_cast<const float*>(args.in[0]);  // c0, x, y, steps
  const int t = threadIdx.x % 4;
  float c[4] = {in[0], in[0], in[0], in[0]};
  const unsigned x = t == 0 ? __float_as_uint(in[1]) : 0u, y = t == 0 ? __float_as_uint(in[2]) : 0u;
  unsigned a[4] = {x, x, 0u, 0u}, b[2] = {y, 0u};  // A[r][0] = x (rows g, g + 8), B[0][c] = y
  for (int i = 0; i < static_cast<int>(in[3]); ++i) mma_tf32(c, a, b);
  for (int e = 0; e < 4; ++e) static_cast<float*>(args.out[0])[4 * threadIdx.x + e] = c[e];
)",
                      {{c0, x, y, static_cast<float>(steps)}}, 128);
}

TEST_CASE("codegen: the emulated mma accumulates like the tensor cores (aligned, truncated, toward zero)") {
  if (!testing::emulator_or_skip("emulated mma accumulation")) return;
  const float ulp = std::ldexp(1.f, -23);  // of 1.0
  EmulatorBackend hw, ieee("-DMINIDL_EMU_IEEE_MMA");
  // 1 + 1.75 ulp: IEEE rounds to nearest (+2 ulps per step), the tensor cores toward zero (+1)
  const float x = std::ldexp(1.75f, -12), y = std::ldexp(1.f, -11);
  for (float sign : {1.f, -1.f}) {
    for (float r : emulated_mma_chain(hw, sign, sign * x, y, 100)) CHECK(r == sign * (1 + 100 * ulp));
    for (float r : emulated_mma_chain(ieee, sign, sign * x, y, 100)) CHECK(r == sign * (1 + 200 * ulp));
  }
  // 0.75 ulp: below the accumulator's last bit at 1.0, so dropped when aligned (IEEE rounds it up)
  for (float r : emulated_mma_chain(hw, 1.f, std::ldexp(1.5f, -12), std::ldexp(1.f, -12), 10)) CHECK(r == 1.f);
  // a product that dominates: c is aligned to its exponent, so c's bits below 2^-3 are dropped
  // (IEEE rounds 2^20 + 1.109375 to 2^20 + 1.125)
  for (float r : emulated_mma_chain(hw, 1.109375f, std::ldexp(1.f, 10), std::ldexp(1.f, 10), 1))
    CHECK(r == std::ldexp(1.f, 20) + 1.f);
  for (float r : emulated_mma_chain(ieee, 1.109375f, std::ldexp(1.f, 10), std::ldexp(1.f, 10), 1))
    CHECK(r == std::ldexp(1.f, 20) + 1.125f);
}

// One warp multiplies 16 x's by 8 y's with the 3xTF32 split (NOTE [3xTF32]): C[r][c] = x[r]·y[c]
// through A[r][0] = x[r], B[0][c] = y[c], every other operand 0. Returns C row-major.
std::vector<float> split_products(Backend& be, std::vector<float> x, std::vector<float> y) {
  return run_one_warp(be, "minidl_test_split_products", R"(
  const float* x = static_cast<const float*>(args.in[0]);
  const float* y = static_cast<const float*>(args.in[1]);
  const int g = threadIdx.x / 4, t = threadIdx.x % 4;
  unsigned a_hi[4] = {}, a_lo[4] = {}, b_hi[2] = {}, b_lo[2] = {};
  if (t == 0) {
    split_tf32(x[g], a_hi[0], a_lo[0]);
    split_tf32(x[g + 8], a_hi[1], a_lo[1]);
    split_tf32(y[g], b_hi[0], b_lo[0]);
  }
  float c[4] = {0.f, 0.f, 0.f, 0.f};
  mma_tf32(c, a_lo, b_hi);
  mma_tf32(c, a_hi, b_lo);
  mma_tf32(c, a_hi, b_hi);
  float* out = static_cast<float*>(args.out[0]);
  for (int e = 0; e < 4; ++e) out[(g + 8 * (e / 2)) * 8 + 2 * t + e % 2] = c[e];
)",
                      {std::move(x), std::move(y)}, 128);
}

// The split's products against float64: within a few 2^-22 (one TF32 product is off by up to
// 2^-11), and a NaN or infinite x gives NaN, including the NaNs whose rounding carries into the
// sign bit (0x7fffffff is CUDA's own NaN).
void check_split_products(Backend& be) {
  std::vector<float> x(16), y(8);
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-4.f, 4.f);
  for (float& v : x) v = u(rng);
  for (float& v : y) v = u(rng);
  x[1] = 1.f + std::ldexp(1.f, -11);          // a tie: big rounds up, small is negative
  x[2] = std::nextafter(2.f, 0.f);            // rounds up into the next binade
  x[3] = -std::ldexp(1.f + std::ldexp(1.f, -12) * 3, -100);  // tiny
  const uint32_t nans[] = {0x7fffffffu, 0xffffffffu, 0x7fc00000u};
  for (int i = 0; i < 3; ++i) std::memcpy(&x[12 + i], &nans[i], 4);
  x[15] = INFINITY;
  const std::vector<float> c = split_products(be, x, y);
  double worst = 0;
  for (int r = 0; r < 16; ++r)
    for (int col = 0; col < 8; ++col) {
      const float got = c[r * 8 + col];
      if (r >= 12) {
        CHECK_MESSAGE(std::isnan(got), "x[" << r << "]·y[" << col << "] = " << got << ", want NaN");
        continue;
      }
      const double want = static_cast<double>(x[r]) * y[col];
      worst = std::max(worst, std::abs(got - want) / std::abs(want));
    }
  CHECK_MESSAGE(worst <= std::ldexp(1.0, -20), "worst relative error " << worst);
}

TEST_CASE("codegen: the 3xTF32 split keeps products at float32 accuracy and propagates NaN (emulated)") {
  if (!testing::emulator_or_skip("emulated 3xTF32 split")) return;
  EmulatorBackend be;
  check_split_products(be);
}

TEST_CASE("codegen: emulated FFMA attention matches float64 (float32, odd sizes, causal, strided)") {
  if (!testing::emulator_or_skip("emulated FFMA attention")) return;
  EmulatorBackend be;
  check_attention({AttentionMath::Ffma, kFloat32, 40, 17, 17, 2, true, false}, be);
  check_attention({AttentionMath::Ffma, kFloat32, 24, 1, 1, 1, false, false}, be);
  check_attention({AttentionMath::Ffma, kFloat32, 72, 70, 70, 1, true, true}, be);
  check_attention({AttentionMath::Ffma, kFloat32, 16, 100, 37, 1, false, false}, be);
  check_attention({AttentionMath::Ffma, kFloat32, 40, 50, 50, 1, true, false, 32, 32}, be);
  check_attention({AttentionMath::Ffma, kFloat32, 37, 45, 45, 1, true, false}, be);  // d not a multiple of 4
}

TEST_CASE("codegen: emulated TF32 attention matches float64 (3xTF32 keeps float32 accuracy)") {
  if (!testing::emulator_or_skip("emulated TF32 attention")) return;
  EmulatorBackend be;
  check_attention({AttentionMath::Tf32, kFloat32, 40, 17, 17, 2, true, false}, be);
  check_attention({AttentionMath::Tf32, kFloat32, 72, 70, 70, 1, true, true}, be);
  check_attention({AttentionMath::Tf32, kFloat32, 64, 1, 1, 1, false, false}, be);
  check_attention({AttentionMath::Tf32, kFloat32, 24, 100, 37, 1, false, false}, be);
  // other tiles: 1 or 2 warps forward, 8 or 2 warps backward
  check_attention({AttentionMath::Tf32, kFloat32, 40, 50, 50, 1, true, false, 16, 128}, be);
  check_attention({AttentionMath::Tf32, kFloat32, 24, 70, 45, 1, false, true, 32, 32}, be);
  check_attention({AttentionMath::Tf32, kFloat32, 40, 70, 70, 1, true, false, 0, 0, false}, be);  // plain loads
  check_attention({AttentionMath::Tf32, kFloat32, 37, 45, 45, 1, true, false}, be);  // odd d
  // every tile split at load (NOTE [Split at load]), and none
  check_attention({AttentionMath::Tf32, kFloat32, 40, 70, 45, 1, false, true, 0, 0, true, parse_split_tiles("q+k+v+do+ds")}, be);
  check_attention({AttentionMath::Tf32, kFloat32, 24, 50, 50, 1, true, false, 0, 0, true, parse_split_tiles("none")}, be);
  // query groups (NOTE [Query groups]): 2 groups of 2 warps, 4 groups of 1, partial tiles, causal, strided
  check_attention({AttentionMath::Tf32, kFloat32, 40, 70, 45, 1, true, false, 32, 32, true, std::nullopt, 2}, be);
  check_attention({AttentionMath::Tf32, kFloat32, 24, 100, 37, 2, false, true, 16, 16, true, std::nullopt, 4}, be);
}

// The tensor cores truncate every mma's float32 sum (NOTE [Tensor-core accumulation]): before
// NOTE [Short mma chains], o, dk and dv drifted by ~1 ulp per key or query tile, 1.0–1.3e-5 at
// 1000 keys on the H200. Keys and queries of 1000 here, under the truncating model.
TEST_CASE("codegen: emulated TF32 attention stays within 1e-5 over 1000 keys (truncating accumulation)") {
  if (!testing::emulator_or_skip("emulated TF32 attention, long rows")) return;
  EmulatorBackend be;
  check_attention({AttentionMath::Tf32, kFloat32, 24, 1000, 1000, 1, false, false}, be);
  check_attention({AttentionMath::Tf32, kFloat32, 16, 333, 1000, 1, false, true}, be);
}

TEST_CASE("codegen: emulated attention in float16 and bfloat16 (float32 accumulation)") {
  if (!testing::emulator_or_skip("emulated 16-bit attention")) return;
  EmulatorBackend be;
  check_attention({AttentionMath::Ffma, kFloat16, 24, 33, 33, 1, true, false}, be);
  check_attention({AttentionMath::Tf32, kBFloat16, 64, 33, 33, 1, true, false}, be);
  check_attention({AttentionMath::Tf32, kBFloat16, 64, 33, 33, 1, true, false, 32, 64, true, std::nullopt, 2}, be);
  check_attention({AttentionMath::Tf32, kFloat16, 40, 20, 20, 1, false, true}, be);
  check_attention({AttentionMath::Ffma, kBFloat16, 128, 9, 9, 1, false, false}, be);
}

// ============================================================================ GPU

#if MINIDL_WITH_CUDA
TEST_CASE("codegen gpu: the 3xTF32 split keeps products at float32 accuracy and propagates NaN") {
  if (!testing::gpu_or_skip("3xTF32 split on the tensor cores")) return;
  GpuBackend be;
  check_split_products(be);
}

TEST_CASE("codegen gpu: attention kernels match float64 (seq 1, 17, 1000; odd head dims; causal; strided)") {
  if (!testing::gpu_or_skip("codegen gpu: attention kernels")) return;
  GpuBackend be;
  for (AttentionMath m : {AttentionMath::Ffma, AttentionMath::Tf32}) {
    check_attention({m, kFloat32, 40, 17, 17, 2, true, false}, be);
    check_attention({m, kFloat32, 64, 1, 1, 3, false, false}, be);
    check_attention({m, kFloat32, 72, 1000, 1000, 2, true, true}, be);
    check_attention({m, kFloat32, 128, 1000, 1000, 1, false, false}, be);
    check_attention({m, kFloat32, 24, 1000, 333, 2, false, true}, be);
    check_attention({m, kFloat32, 16, 257, 257, 2, true, false}, be);
    check_attention({m, kFloat32, 37, 200, 200, 2, true, false}, be);
    check_attention({m, kFloat16, 72, 1000, 1000, 1, true, false}, be);
    check_attention({m, kBFloat16, 128, 333, 333, 2, false, true}, be);
  }
  check_attention({AttentionMath::Ffma, kFloat32, 256, 300, 300, 1, true, false}, be);
  check_attention({AttentionMath::Ffma, kFloat32, 200, 77, 77, 1, false, true}, be);
  // the small-grid backward tiles: two query groups (NOTE [Query groups]); and loads not staged
  check_attention({AttentionMath::Tf32, kFloat32, 128, 1000, 1000, 1, true, false, 32, 64, true, std::nullopt, 2}, be);
  check_attention({AttentionMath::Tf32, kFloat32, 64, 1000, 333, 2, false, true, 32, 64, true, std::nullopt, 2}, be);
  check_attention({AttentionMath::Tf32, kBFloat16, 128, 333, 333, 1, true, false, 32, 64, true, std::nullopt, 2}, be);
  check_attention({AttentionMath::Tf32, kFloat32, 128, 1000, 1000, 1, true, false, 0, 0, false}, be);
}

TEST_CASE("codegen gpu: fused_attention_forward/backward match float64 autograd on strided device views") {
  if (!testing::gpu_or_skip("codegen gpu: fused_attention API")) return;
  const int64_t B = 3, d = 40;
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  // N = 77 launches halved tiles, N = 2900 the defaults (3 · 23 blocks of 128 rows fill more
  // than half of 132 SMs): NOTE [Tiles by grid size]
  for (const auto& [N, dt, causal] : {std::tuple{int64_t{77}, kFloat32, false}, {int64_t{77}, kFloat32, true},
                                      {int64_t{77}, kBFloat16, false}, {int64_t{77}, kBFloat16, true},
                                      {int64_t{2900}, kFloat32, false}}) {
    {
      INFO(dtype_name(dt) << (causal ? " causal" : "") << " N=" << N);
      // q is a transposed view of (N, B, d) memory on the device; k, v, dout are contiguous.
      const Tensor q = randn({N, B, d}).to(dt).cuda().transpose(0, 1);
      const Tensor k = randn({B, N, d}).to(dt).cuda(), v = randn({B, N, d}).to(dt).cuda();
      const Tensor dout = randn({B, N, d}).to(dt).cuda();
      // float64 autograd on the same (rounded) values
      Tensor q64 = q.cpu().to(kFloat64).requires_grad_(), k64 = k.cpu().to(kFloat64).requires_grad_();
      Tensor v64 = v.cpu().to(kFloat64).requires_grad_();
      Tensor s = matmul(q64, k64.transpose(1, 2)) * scale;
      if (causal) s = masked_fill(s, triu(ones({N, N}), 1) > 0.0, -INFINITY);
      const Tensor o64 = matmul(softmax(s, -1), v64);
      const Tensor lse64 = log(sum(exp(s), {-1}));
      sum(o64 * dout.cpu().to(kFloat64)).backward();

      const cuda::AttentionOutputs out = cuda::fused_attention_forward(q, k, v, scale, causal);
      const cuda::AttentionGrads g = cuda::fused_attention_backward(q, k, v, out.o, out.lse, dout, scale, causal);
      const double tol = dt == kFloat32 ? 1e-5 : 3e-2;
      CHECK(out.o.dtype() == dt);
      CHECK(g.dq.dtype() == dt);
      CHECK(testing::rel_error(out.o.cpu(), o64.detach()) < tol);
      CHECK(testing::rel_error(out.lse.cpu(), lse64.detach()) < 1e-5);
      CHECK(testing::rel_error(g.dq.cpu(), q64.grad()) < 2 * tol);
      CHECK(testing::rel_error(g.dk.cpu(), k64.grad()) < 2 * tol);
      CHECK(testing::rel_error(g.dv.cpu(), v64.grad()) < tol);
    }
  }
}
#endif

// ============================================================================ fused groups

TEST_CASE("codegen: fused groups are validated and specialised") {
  FusedGroup g("bad", {4, 8});
  const int x = g.input(kFloat32, {8, 1});
  CHECK_THROWS_AS(g.unary("NoSuchOp", x), ValueError);
  CHECK_THROWS_AS(g.binary("Add", x, 7), ValueError);
  CHECK_THROWS_AS(g.binary("Add", x, g.cast(x, kFloat64)), DTypeError);
  CHECK_THROWS_AS(generate_fused(g), ValueError);  // no outputs
  const GeneratedKernel k = generate_fused(softmax_group(37, 77));
  CHECK(k.source.find("implements graph nodes: %3 softmax") != std::string::npos);
  CHECK(k.source.find("minidl::sop::Exp{}") != std::string::npos);  // the functor of core/scalar_ops.h
  CHECK(k.source.find("constexpr int C = 77") != std::string::npos);
  CHECK(fused_rows(softmax_group(37, 77)) == 37);
  CHECK(fused_rows(bias_gelu_residual_group(37, 77)) == 37 * 77);
}

TEST_CASE("codegen: emulated fused groups match the eager CPU ops (softmax, layer_norm, bias+GELU, residual)") {
  if (!testing::emulator_or_skip("emulated fused groups")) return;
  EmulatorBackend be;
  check_fused_groups(be);
}

#if MINIDL_WITH_CUDA
TEST_CASE("codegen: fused groups compile under NVRTC for sm_90") {
  const auto opts = jit::compile_options("sm_90");
  for (const FusedGroup& g : {softmax_group(37, 77), layer_norm_group(3, 1000), bias_gelu_residual_group(37, 77)}) {
    const GeneratedKernel k = generate_fused(g);
    INFO(k.name);
    CHECK(jit::compile_cubin(k.name, k.source, opts).compare(0, 4, "\x7f" "ELF") == 0);
  }
}

TEST_CASE("codegen gpu: fused groups match the eager CPU ops") {
  if (!testing::gpu_or_skip("codegen gpu: fused groups")) return;
  GpuBackend be;
  check_fused_groups(be);
}
#endif
