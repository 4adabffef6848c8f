// minidl-bench attention-kernels: times the generated fused attention kernels alone (forward,
// backward) for each math, head dim and sequence length, with CUDA events, and prints achieved
// TFLOP/s (forward 4·BH·N²·d, backward 2.5× that, halved when causal). The kernel lab of
// docs/kernel-notes.md; the eager-versus-compiled table is `minidl-bench attention`. CUDA
// builds only.
#include "base/config.h"
#if MINIDL_WITH_CUDA
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "bench/args.h"
#include "bench/bench.h"
#include "compiler/attention/launch.h"
#include "compiler/jit.h"
#include "compiler/kernel_cache.h"
#include "minidl/minidl.h"
#include "runtime/cuda.h"

namespace minidl::bench {

namespace {

// Median milliseconds of `reps` runs of f, timed with events on the device's stream.
template <class F>
double median_ms(int reps, F f) {
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    cuda::Event start, end;
    start.record();
    f();
    end.record();
    t.push_back(end.elapsed_ms(start));
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// Sets MINIDL_ATTENTION_TILES to one configuration of --tiles ("" or "default": unset).
void use_tiles(const std::string& tiles) {
  if (tiles.empty() || tiles == "default")
    ::unsetenv("MINIDL_ATTENTION_TILES");
  else
    ::setenv("MINIDL_ATTENTION_TILES", tiles.c_str(), 1);
}

// ';'-separated configurations; without --tiles, the environment's one.
std::vector<std::string> tile_configs(const std::string& arg) {
  if (arg.empty()) {
    const char* env = std::getenv("MINIDL_ATTENTION_TILES");
    return {env ? env : "default"};
  }
  std::vector<std::string> v;
  for (const std::string& c : split_list(arg, ';'))
    if (!c.empty()) v.push_back(c);
  return v;
}

// Times one (d, seq_len) row of forward and backward kernels under the current environment's
// tiles and math, and prints it.
void time_row(const std::string& config, const std::string& math, DType dt, int64_t bh, int64_t d, int64_t n,
              bool causal, int reps) {
  const Options o{.dtype = dt, .device = kCUDA};
  const Tensor q = randn({bh, n, d}, o), k = randn({bh, n, d}, o), v = randn({bh, n, d}, o);
  const Tensor dout = randn({bh, n, d}, o);
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  const auto t0 = std::chrono::steady_clock::now();
  cuda::AttentionOutputs out = cuda::fused_attention_forward(q, k, v, scale, causal);  // JIT compile (or cache load)
  cuda::fused_attention_backward(q, k, v, out.o, out.lse, dout, scale, causal);
  cuda::synchronize();
  const double first = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  const double fwd = median_ms(reps, [&] { out = cuda::fused_attention_forward(q, k, v, scale, causal); });
  const double bwd =
      median_ms(reps, [&] { cuda::fused_attention_backward(q, k, v, out.o, out.lse, dout, scale, causal); });
  const double flops = 4.0 * bh * n * n * d * (causal ? 0.5 : 1.0);
  std::printf("| %s | %s | %s | %lld | %lld | %s | %.3f | %.1f | %.3f | %.1f | %.0f |\n", config.c_str(), math.c_str(),
              dtype_name(dt), static_cast<long long>(d), static_cast<long long>(n), causal ? "yes" : "no", fwd,
              flops / fwd / 1e9, bwd, 2.5 * flops / bwd / 1e9, first);
  std::fflush(stdout);
}

constexpr const char* kUsage =
    "usage: minidl-bench attention-kernels [--d 16,32,64,128] [--n 1024,4096,16384] [--bh 8]\n"
    "         [--math ffma,tf32] [--dtype float32|float16|bfloat16] [--causal] [--reps 10]\n"
    "         [--tiles 'CONFIG;CONFIG...']  (each a MINIDL_ATTENTION_TILES value, or default)\n"
    "         [--compile-only]   (no GPU needed: fill MINIDL_CACHE_DIR for a later GPU run)\n"
    "Times are medians of --reps runs.\n";

int run(const std::vector<std::string>& args) {
  for (const auto& a : args)
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
  const Args a(args, {"d", "n", "math", "dtype", "bh", "reps", "tiles"}, {"causal", "compile-only"});
  const std::vector<int64_t> dims = a.int_list("d", {16, 32, 64, 128}), lens = a.int_list("n", {1024, 4096, 16384});
  const std::vector<std::string> maths = a.str_list("math", {"ffma", "tf32"});
  const std::string dtype = a.str("dtype", "float32"), tiles = a.str("tiles", "");
  const int64_t bh = a.integer("bh", 8);
  const int reps = static_cast<int>(a.integer("reps", 10));
  const bool causal = a.has("causal"), compile_only = a.has("compile-only");
  MINIDL_CHECK(bh > 0 && reps > 0, ValueError, "[attention-kernels] --bh and --reps must be positive");
  const DType dt = dtype_from_string(dtype);
  const std::vector<std::string> configs = tile_configs(tiles);
  const char* env_tiles = std::getenv("MINIDL_ATTENTION_TILES");
  const std::string saved_tiles = env_tiles ? env_tiles : "";
  // Runs row(config, math, d) for every combination; an Error (e.g. tiles too large for a head
  // dim) is reported and counted, and the other combinations still run.
  int failed = 0;
  auto for_each = [&](const auto& row) {
    for (const std::string& config : configs) {
      use_tiles(config);
      for (const std::string& math : maths) {
        ::setenv("MINIDL_ATTENTION_MATH", math.c_str(), 1);  // read by every launch
        for (int64_t d : dims) {
          try {
            row(config, math, d);
          } catch (const Error& e) {
            std::fprintf(stderr, "attention-kernels: tiles %s, %s, d %lld: %s\n", config.c_str(), math.c_str(),
                         static_cast<long long>(d), e.what());
            ++failed;
          }
        }
      }
    }
    ::unsetenv("MINIDL_ATTENTION_MATH");
    use_tiles(saved_tiles);
    std::fprintf(stderr, "%s\n", format_stats(KernelCache::global().stats()).c_str());
    return failed ? 1 : 0;
  };
  if (compile_only) {
    return for_each([&](const std::string&, const std::string&, int64_t d) {
      for (bool backward : {false, true})
        for (const auto& k :
             cuda::fused_attention_kernels(d, dt, 1.0 / std::sqrt(static_cast<double>(d)), causal, true, backward))
          std::printf("%s: %zu bytes of cubin\n", k.name.c_str(), jit::compile_cached(k)->size());
    });
  }
  if (!cuda::is_available()) {
    std::fprintf(stderr, "attention-kernels: no GPU (%s)\n", cuda::unavailable_reason().c_str());
    return 1;
  }
  std::printf("| tiles | math | dtype | d | seq_len | causal | fwd_ms | fwd_TFLOP/s | bwd_ms | bwd_TFLOP/s | first_call_ms |\n");
  std::printf("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
  return for_each([&](const std::string& config, const std::string& math, int64_t d) {
    for (int64_t n : lens) time_row(config, math, dt, bh, d, n, causal, reps);
  });
}

}  // namespace

MINIDL_BENCH_SUBCOMMAND("attention-kernels", "time the generated attention kernels alone (docs/kernel-notes.md)",
                        run);

}  // namespace minidl::bench
#endif
