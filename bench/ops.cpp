// minidl-bench ops: how close the eager CUDA kernels come to the card's ceilings, measured in
// the same run: the row kernels (softmax, its backward, layer_norm, a sum) and elementwise ops
// in GB/s beside device-to-device copy bandwidth, matmul TFLOP/s beside a bare cuBLAS call, and
// eager attention (matmul -> scale -> softmax -> matmul, forward and backward through autograd)
// in the protocol of ../shared/reference/torch_attention.py. Times are CUDA events, after a
// warm-up; bytes count every byte read and written once.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "bench/args.h"
#include "bench/bench.h"
#include "minidl/minidl.h"
#if MINIDL_WITH_CUDA
#include "runtime/cublas.h"
#include "runtime/cuda_check.h"
#endif

namespace minidl::bench {

namespace {

struct OpsOptions {
  int64_t mbytes = 512;  // size of each big tensor
  int reps = 20;
  std::vector<int64_t> seqs{4096, 8192};
  std::vector<int64_t> dims{16, 32, 64, 128};
  bool attention = true;
  std::string jsonl;  // also write one JSON object per row here
};

void usage() {
  std::printf(
      "usage: minidl-bench ops [--mbytes N] [--reps N] [--seq 4096,8192] [--d 16,32,64,128]\n"
      "                        [--no-attention] [--jsonl FILE]\n"
      "  GPU kernel rates beside the card's copy bandwidth and cuBLAS, and eager attention.\n"
      "  --mbytes N   size of each big tensor in MiB (default 512; the target is >= 256)\n"
      "  --reps N     timed repetitions per measurement (default 20)\n"
      "  --seq, --d   eager attention grid (batch*heads = 8, float32)\n"
      "  --jsonl FILE also write the rows as JSON lines\n");
}

OpsOptions parse(const std::vector<std::string>& args) {
  const Args a(args, {"mbytes", "reps", "seq", "d", "jsonl"}, {"no-attention"});
  OpsOptions o;
  o.mbytes = a.integer("mbytes", o.mbytes);
  o.reps = static_cast<int>(a.integer("reps", o.reps));
  o.seqs = a.int_list("seq", o.seqs);
  o.dims = a.int_list("d", o.dims);
  o.attention = !a.has("no-attention");
  o.jsonl = a.str("jsonl", o.jsonl);
  MINIDL_CHECK(o.mbytes > 0 && o.reps > 0, ValueError,
               "[ops] --mbytes and --reps must be positive");
  return o;
}

#if MINIDL_WITH_CUDA

/// A number for a JSON line (null where it was not measured).
std::string json_number(double v) { return std::isfinite(v) ? fmt::format("{:.4f}", v) : "null"; }

/// Median milliseconds of fn over reps runs, each timed with CUDA events, after one warm-up.
double median_ms(const std::function<void()>& fn, int reps) {
  fn();
  cuda::synchronize();
  std::vector<double> t;
  cuda::Event a, b;
  for (int i = 0; i < reps; ++i) {
    a.record();
    fn();
    b.record();
    t.push_back(b.elapsed_ms(a));
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

struct Out {
  std::FILE* md = stdout;
  std::ofstream jsonl;
  void row(const std::string& json) {
    if (jsonl.is_open()) jsonl << json << "\n" << std::flush;
  }
};

/// A row of the bandwidth table.
void bandwidth_row(Out& out, const std::string& kernel, const std::string& shape, double bytes,
                   double ms, double copy_gbps) {
  const double gbps = bytes / (ms * 1e-3) / 1e9;
  std::fprintf(out.md, "| %s | %s | %.1f | %.3f | %.0f | %.0f %% |\n", kernel.c_str(),
               shape.c_str(), bytes / (1 << 20), ms, gbps, 100.0 * gbps / copy_gbps);
  out.row(fmt::format(
      R"({{"table": "bandwidth", "kernel": "{}", "shape": "{}", "mib": {:.1f}, "ms": {:.4f}, "gbps": {:.1f}, "pct_of_copy": {:.1f}}})",
      kernel, shape, bytes / (1 << 20), ms, gbps, 100.0 * gbps / copy_gbps));
}

void run_bandwidth(Out& out, const OpsOptions& o) {
  const int64_t n = o.mbytes * (1 << 20) / 4;  // float32 elements per big tensor
  const double bytes = static_cast<double>(n) * 4;
  manual_seed(0);
  Tensor x = randn({n}, {.device = kCUDA}), y = empty({n}, kFloat32, kCUDA);
  const double copy_ms = median_ms(
      [&] { cuda::memcpy(y.data_ptr(), kCUDA, x.data_ptr(), kCUDA, static_cast<size_t>(bytes)); },
      o.reps);
  const double copy_gbps = 2 * bytes / (copy_ms * 1e-3) / 1e9;

  std::fprintf(out.md,
               "\n## Bandwidth (float32 unless noted; GB/s count bytes read + written)\n\n");
  std::fprintf(out.md,
               "| kernel | shape | MiB moved | ms | GB/s | of copy |\n| --- | --- | --- | --- | "
               "--- | --- |\n");
  bandwidth_row(out, "copy (cudaMemcpy D2D)", fmt::format("({})", n), 2 * bytes, copy_ms,
                copy_gbps);
  const std::string flat = fmt::format("({})", n);
  bandwidth_row(out, "mul by scalar", flat, 2 * bytes, median_ms([&] { (void)(x * 2.0); }, o.reps),
                copy_gbps);
  bandwidth_row(out, "add", flat, 3 * bytes, median_ms([&] { (void)(x + y); }, o.reps), copy_gbps);
  bandwidth_row(out, "gelu", flat, 2 * bytes, median_ms([&] { (void)gelu(x); }, o.reps), copy_gbps);
  bandwidth_row(out, "add, broadcast row", "(n/4096, 4096)", 2 * bytes,
                median_ms(
                    [&] {
                      (void)(x.view({-1, 4096}) + y.slice(0, 0, 4096));
                    },
                    o.reps),
                copy_gbps);

  for (int64_t cols : {int64_t(4096), int64_t(1000), int64_t(16384)}) {
    const int64_t rows = n / cols;
    const Tensor xr = x.slice(0, 0, rows * cols).view({rows, cols});
    const double b = static_cast<double>(rows * cols) * 4;
    const std::string shape = fmt::format("({}, {})", rows, cols);
    const Tensor yr = softmax(xr, -1), g = y.slice(0, 0, rows * cols).view({rows, cols});
    bandwidth_row(out, "softmax", shape, 2 * b, median_ms([&] { (void)softmax(xr, -1); }, o.reps),
                  copy_gbps);
    bandwidth_row(out, "softmax_backward", shape, 3 * b,
                  median_ms([&] { (void)softmax_backward(g, yr, -1); }, o.reps), copy_gbps);
    const Tensor w = ones({cols}, {.device = kCUDA}), bias = zeros({cols}, {.device = kCUDA});
    bandwidth_row(out, "layer_norm (affine)", shape, 2 * b,
                  median_ms([&] { (void)layer_norm(xr, w, bias); }, o.reps), copy_gbps);
    bandwidth_row(out, "sum over the last dim", shape, b,
                  median_ms([&] { (void)sum(xr, {-1}); }, o.reps), copy_gbps);
  }
  const Tensor xh = x.to(kBFloat16).view({-1, 4096});
  bandwidth_row(out, "softmax bfloat16", fmt::format("({}, 4096)", xh.size(0)), 2 * bytes / 2,
                median_ms([&] { (void)softmax(xh, -1); }, o.reps), copy_gbps);
  bandwidth_row(out, "sum over dim 0", fmt::format("({}, 4096)", n / 4096), bytes,
                median_ms(
                    [&] {
                      (void)sum(x.view({-1, 4096}), {0});
                    },
                    o.reps),
                copy_gbps);
}

void run_matmul(Out& out, const OpsOptions& o) {
  std::fprintf(out.md, "\n## Matmul (TFLOP/s, 2*M*N*K per product)\n\n");
  std::fprintf(
      out.md,
      "| dtype | M=N=K | minidl ms | minidl TFLOP/s | bare cuBLAS TFLOP/s | minidl / cuBLAS |\n");
  std::fprintf(out.md, "| --- | --- | --- | --- | --- | --- |\n");
  const int64_t s = 8192;
  const double flops = 2.0 * s * s * s;
  struct Case {
    const char* name;
    DType dtype;
    bool tf32;
  };
  for (const Case c :
       {Case{"float32", kFloat32, false}, Case{"float32 (TF32 allowed)", kFloat32, true},
        Case{"bfloat16", kBFloat16, false}, Case{"float16", kFloat16, false}}) {
    manual_seed(1);
    const Tensor a = randn({s, s}, {.dtype = c.dtype, .device = kCUDA});
    const Tensor b = randn({s, s}, {.dtype = c.dtype, .device = kCUDA});
    Tensor d = empty({s, s}, c.dtype, kCUDA);
    cuda::set_allow_tf32(c.tf32);
    const double ours = median_ms([&] { (void)matmul(a, b); }, o.reps);
    // The same product as one bare cublasGemmEx on the same handle and stream.
    const cudaDataType_t t = c.dtype == kFloat32    ? CUDA_R_32F
                             : c.dtype == kBFloat16 ? CUDA_R_16BF
                                                    : CUDA_R_16F;
    const cublasComputeType_t compute = c.tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    const float one = 1, zero = 0;
    const double bare = median_ms(
        [&] {
          cuda::Cublas blas(0);
          MINIDL_CUBLAS_CHECK(
              cublasGemmEx(blas.handle(), CUBLAS_OP_N, CUBLAS_OP_N, static_cast<int>(s),
                           static_cast<int>(s), static_cast<int>(s), &one, b.data_ptr(), t,
                           static_cast<int>(s), a.data_ptr(), t, static_cast<int>(s), &zero,
                           d.data_ptr(), t, static_cast<int>(s), compute, CUBLAS_GEMM_DEFAULT),
              "bench");
        },
        o.reps);
    cuda::set_allow_tf32(false);
    const double ours_tf = flops / (ours * 1e-3) / 1e12, bare_tf = flops / (bare * 1e-3) / 1e12;
    std::fprintf(out.md, "| %s | %lld | %.3f | %.1f | %.1f | %.0f %% |\n", c.name,
                 static_cast<long long>(s), ours, ours_tf, bare_tf, 100.0 * ours_tf / bare_tf);
    out.row(fmt::format(
        R"({{"table": "matmul", "dtype": "{}", "size": {}, "ms": {:.4f}, "tflops": {:.2f}, "cublas_tflops": {:.2f}}})",
        c.name, s, ours, ours_tf, bare_tf));
  }
}

void run_attention(Out& out, const OpsOptions& o) {
  std::fprintf(
      out.md, "\n## Eager attention, float32, batch*heads = 8 (torch_attention.py's protocol)\n\n");
  std::fprintf(
      out.md,
      "| method | d_model | seq_len | status | fwd_ms | bwd_ms | saved_MB | fwd TFLOP/s |\n");
  std::fprintf(out.md, "| --- | --- | --- | --- | --- | --- | --- | --- |\n");
  for (int64_t d : o.dims)
    for (int64_t n : o.seqs) {
      std::string status = "OK";
      double fwd = NAN, bwd = NAN, saved = NAN;
      try {
        manual_seed(0);
        Options opt{.dtype = kFloat32, .device = kCUDA, .requires_grad = true};
        Tensor q = randn({1, 8, n, d}, opt), k = randn({1, 8, n, d}, opt),
               v = randn({1, 8, n, d}, opt);
        const Tensor go = randn({1, 8, n, d}, {.device = kCUDA});
        const double scale = 1.0 / std::sqrt(static_cast<double>(d));
        auto forward = [&] {
          return matmul(softmax(matmul(q, k.transpose(-2, -1)) * scale, -1), v);
        };
        auto clear = [&] {
          q.zero_grad();
          k.zero_grad();
          v.zero_grad();
        };
        for (int i = 0; i < 3; ++i) {
          forward().backward(go);
          clear();
        }
        cuda::synchronize();
        const int64_t base = memory_allocated(kCUDA);
        const int reps = n >= 8192 ? 10 : 20;
        std::vector<double> f, b;
        for (int i = 0; i < reps; ++i) {
          cuda::Event e0, e1, e2, e3;
          e0.record();
          Tensor out_t = forward();
          e1.record();
          cuda::synchronize();
          saved = static_cast<double>(memory_allocated(kCUDA) - base) / (1 << 20);
          e2.record();
          out_t.backward(go);
          e3.record();
          f.push_back(e1.elapsed_ms(e0));
          b.push_back(e3.elapsed_ms(e2));
          clear();
        }
        std::sort(f.begin(), f.end());
        std::sort(b.begin(), b.end());
        fwd = f[f.size() / 2];
        bwd = b[b.size() / 2];
      } catch (const OutOfMemoryError&) {
        status = "OOM";
      }
      const double tflops = 4.0 * 8 * static_cast<double>(n) * static_cast<double>(n) *
                            static_cast<double>(d) / (fwd * 1e-3) / 1e12;
      std::fprintf(out.md, "| eager | %lld | %lld | %s | %.3f | %.3f | %.2f | %.1f |\n",
                   static_cast<long long>(d), static_cast<long long>(n), status.c_str(), fwd, bwd,
                   saved, tflops);
      out.row(fmt::format(
          R"({{"table": "attention", "method": "eager", "dtype": "float32", "d": {}, "n": {}, "status": "{}", "fwd_ms": {}, "bwd_ms": {}, "saved_mb": {}}})",
          d, n, status, json_number(fwd), json_number(bwd), json_number(saved)));
    }
}

#endif  // MINIDL_WITH_CUDA

int ops_main(const std::vector<std::string>& args) {
  for (const auto& a : args)
    if (a == "--help" || a == "-h") {
      usage();
      return 0;
    }
  [[maybe_unused]] const OpsOptions o = parse(args);  // parsed (and checked) in every build
  if (!cuda::is_available()) {
    std::printf(
        "minidl-bench ops: no GPU to measure (%s).\n"
        "The ops benchmark compares the eager CUDA kernels with the card's copy bandwidth and "
        "cuBLAS;\n"
        "run it on a machine with a CUDA GPU.\n",
        cuda::unavailable_reason().c_str());
    return 0;
  }
#if MINIDL_WITH_CUDA
  Out out;
  if (!o.jsonl.empty()) {
    out.jsonl.open(o.jsonl);
    MINIDL_CHECK(out.jsonl.is_open(), ValueError, "[ops] cannot write {}", o.jsonl);
  }
  const cuda::DeviceProperties p = cuda::properties(0);
  std::printf(
      "# minidl-bench ops on %s (sm_%d%d, %d SMs, %s), CUDA runtime %d, driver %d, minidl %s\n",
      p.name.c_str(), p.major, p.minor, p.multiprocessors,
      format_bytes(static_cast<int64_t>(p.total_memory)).c_str(), p.runtime_version,
      p.driver_version, MINIDL_VERSION);
  out.row(fmt::format(
      R"({{"table": "device", "name": "{}", "sm": "{}{}", "runtime": {}, "driver": {}}})", p.name,
      p.major, p.minor, p.runtime_version, p.driver_version));
  run_bandwidth(out, o);
  allocator_for(kCUDA).empty_cache();
  run_matmul(out, o);
  allocator_for(kCUDA).empty_cache();
  if (o.attention) run_attention(out, o);
  std::printf("\n%s", memory_summary(kCUDA).c_str());
#endif
  return 0;
}

}  // namespace

MINIDL_BENCH_SUBCOMMAND(
    "ops", "GPU kernel GB/s and matmul TFLOP/s beside copy bandwidth and cuBLAS; eager attention",
    ops_main);

}  // namespace minidl::bench
