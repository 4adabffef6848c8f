// `minidl-bench attention`: eager versus compiled softmax(Q·Kᵀ/√d)·V, forward and backward,
// printed as the table of ../shared/reference/seed_attention_table.md (DESIGN.md, "Bench").
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <optional>

#include "bench/attention.h"

#include "bench/args.h"
#include "bench/bench.h"
#include "compiler/kernel_cache.h"
#include "minidl/minidl.h"

namespace minidl::bench {

namespace {

constexpr const char* kHelp = R"(usage: minidl-bench attention [options]

Times softmax(Q K^T / sqrt(d)) V forward and backward, eager (op by op through autograd) against
compiled (minidl::compile: one fused attention kernel), on random normal Q, K, V of shape
(batch, seq_len, d_model) (or (batch, heads, seq_len, d_model) with --heads) that require grad,
backward from a fixed random dO. Prints the table on stdout, progress on stderr.

options:
  --d LIST          d_model values (default GPU: 16,32,64,128; CPU: 16,64)
  --seq LIST        seq_len values (default GPU: 256,1024,4096,8192,16384; CPU: 128,256,512,1024)
  --batch N         batch size (default 8)
  --heads H         use 4-D inputs (batch, H, seq_len, d_model) (default: 3-D)
  --dtype T         f32, f16 or bf16 (default f32)
  --causal          mask the upper triangle (causal attention)
  --methods LIST    eager,compiled (default both)
  --reps N          timed repetitions per row (default GPU 10, CPU 3)
  --warmup N        untimed repetitions after the first call (default GPU 3, CPU 1)
  --device D        cpu or cuda (default: cuda when a GPU is usable, else cpu)
  --mem-limit SIZE  allocator limit, e.g. 6GiB: rows that need more report OOM
  --format F        md, csv or json (default md)
  --check           add max_err: relative error of compiled against eager (output and grads)
  --plot FILE.svg   also write forward/backward time and memory against seq_len as SVG
                    (checked before the run: its folder must exist and be writable)
  --replot TABLE    measure nothing: read the rows of the first table in TABLE (markdown as
                    this command prints it, e.g. docs/benchmarks.md) and write --plot from them
  --device-name S   with --replot: the device named in the plot's title (default: TABLE)
  --seed N          random seed (default 0)
  --help            this text

Times are the mean and population standard deviation of the --reps timed repetitions (std n/a,
or empty in CSV and null in JSON, with a single repetition).

exit status: 0 when every row is OK or OOM (running out of memory, of the card or of --mem-limit,
is a measured outcome), 1 when a row is ERROR (the measurement failed: minidl threw something
other than out-of-memory, or a timing was not finite) or an option is bad.

examples:
  minidl-bench attention                                   # the default grid
  minidl-bench attention --d 64 --seq 1024,4096 --check    # two rows per method, with errors
  minidl-bench attention --mem-limit 6GiB --plot mem.svg   # eager runs out at long sequences
  minidl-bench attention --format json --causal --dtype bf16
  minidl-bench attention --replot docs/benchmarks.md --device-name "NVIDIA H200" --plot a.svg
)";

// Throws ValueError unless path can be written: its folder exists and is writable, and the
// file, if it exists, is a writable regular file. Checked before a run that may take minutes.
void check_writable(const std::string& option, const std::string& path) {
  namespace fs = std::filesystem;
  const fs::path p(path);
  const fs::path dir = p.parent_path().empty() ? fs::path(".") : p.parent_path();
  std::error_code ec;
  MINIDL_CHECK(fs::is_directory(dir, ec), ValueError, "[attention] --{} {}: no folder {}", option, path,
               dir.string());
  MINIDL_CHECK(!p.filename().empty() && !fs::is_directory(p, ec), ValueError,
               "[attention] --{} {}: is a folder, not a file", option, path);
  const bool exists = fs::exists(p, ec);
  MINIDL_CHECK(::access(exists ? path.c_str() : dir.c_str(), W_OK) == 0, ValueError,
               "[attention] --{} {}: {} is not writable", option, path, exists ? path : dir.string());
}

}  // namespace

AttentionConfig parse_attention_args(const std::vector<std::string>& argv) {
  Args a(argv, {"d", "seq", "batch", "heads", "dtype", "methods", "reps", "warmup", "device", "mem-limit",
                "format", "plot", "replot", "device-name", "seed"},
         {"causal", "check", "help"});
  AttentionConfig c;
  if (a.has("device")) {
    c.device = Device::parse(a.str("device", ""));
    MINIDL_CHECK(c.device.is_cpu() || cuda::is_available(), DeviceError,
                 "[attention] --device {} is not usable: {}", c.device.str(), cuda::unavailable_reason());
  } else {
    c.device = cuda::is_available() ? kCUDA : kCPU;
  }
  const bool gpu = c.device.is_cuda();
  c.ds = a.int_list("d", gpu ? std::vector<int64_t>{16, 32, 64, 128} : std::vector<int64_t>{16, 64});
  c.seqs = a.int_list("seq", gpu ? std::vector<int64_t>{256, 1024, 4096, 8192, 16384}
                                 : std::vector<int64_t>{128, 256, 512, 1024});
  c.batch = a.integer("batch", 8);
  c.heads = a.integer("heads", 0);
  MINIDL_CHECK(c.batch > 0 && c.heads >= 0, ValueError, "[attention] --batch must be positive and --heads >= 0");
  const std::string dt = a.str("dtype", "f32");
  c.dtype = dtype_from_string(dt);
  MINIDL_CHECK(c.dtype == kFloat32 || c.dtype == kFloat16 || c.dtype == kBFloat16, ValueError,
               "[attention] --dtype must be f32, f16 or bf16, got {}", dt);
  c.causal = a.has("causal");
  c.check = a.has("check");
  c.methods = a.str_list("methods", {"eager", "compiled"});
  for (const auto& m : c.methods)
    MINIDL_CHECK(m == "eager" || m == "compiled", ValueError,
                 "[attention] unknown method '{}' (expected eager or compiled)", m);
  c.reps = static_cast<int>(a.integer("reps", gpu ? 10 : 3));
  c.warmup = static_cast<int>(a.integer("warmup", gpu ? 3 : 1));
  MINIDL_CHECK(c.reps > 0 && c.warmup >= 0, ValueError, "[attention] --reps must be > 0 and --warmup >= 0");
  if (a.has("mem-limit")) c.mem_limit = parse_bytes(a.str("mem-limit", ""));
  c.format = a.str("format", "md");
  MINIDL_CHECK(c.format == "md" || c.format == "csv" || c.format == "json", ValueError,
               "[attention] --format must be md, csv or json, got {}", c.format);
  c.plot = a.str("plot", "");
  if (!c.plot.empty()) check_writable("plot", c.plot);
  c.replot = a.str("replot", "");
  c.device_name = a.str("device-name", c.replot);
  MINIDL_CHECK(c.replot.empty() || !c.plot.empty(), ValueError, "[attention] --replot needs --plot FILE.svg");
  MINIDL_CHECK(c.replot.empty() || std::filesystem::is_regular_file(c.replot), ValueError,
               "[attention] --replot {}: no such file", c.replot);
  c.seed = static_cast<uint64_t>(a.integer("seed", 0));
  return c;
}

namespace {

// The benchmarked function, written as a user would: the compiler must find it.
Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, bool causal) {
  const int64_t n = q.size(-2);
  Tensor s = matmul(q, k.transpose(-2, -1)) * (1.0 / std::sqrt(static_cast<double>(q.size(-1))));
  if (causal) s = masked_fill(s, ones({n, n}, {.dtype = kBool, .device = q.device()}).triu(1), -INFINITY);
  return matmul(softmax(s, -1), v);
}

double now_ms() {
  using namespace std::chrono;
  return duration<double, std::milli>(steady_clock::now().time_since_epoch()).count();
}

// Milliseconds fn takes on device (the device is synchronised before and after).
double time_ms(Device dev, const std::function<void()>& fn) {
  if (dev.is_cuda()) cuda::synchronize(dev.index);
  const double t0 = now_ms();
  fn();
  if (dev.is_cuda()) cuda::synchronize(dev.index);
  return now_ms() - t0;
}

struct Inputs {
  Tensor q, k, v, dout;
};

Inputs make_inputs(const AttentionConfig& c, int64_t d, int64_t n) {
  Generator gen(c.seed);
  Shape s = c.heads ? Shape{c.batch, c.heads, n, d} : Shape{c.batch, n, d};
  Options o{.dtype = c.dtype, .device = c.device, .requires_grad = true};
  Inputs in{randn(s, o, &gen), randn(s, o, &gen), randn(s, o, &gen), Tensor()};
  in.dout = randn(s, {.dtype = c.dtype, .device = c.device}, &gen);
  return in;
}

void clear_grads(const Inputs& in) {
  in.q.zero_grad();
  in.k.zero_grad();
  in.v.zero_grad();
}

using AttentionFn = std::function<Tensor(const Tensor&, const Tensor&, const Tensor&)>;

AttentionFn make_method(const std::string& method, bool causal) {
  if (method == "eager") return [causal](const Tensor& q, const Tensor& k, const Tensor& v) { return attention(q, k, v, causal); };
  auto compiled = std::make_shared<CompiledFunction>(
      compile([causal](const std::vector<Tensor>& in) { return attention(in[0], in[1], in[2], causal); },
              {.name = "attention"}));
  return [compiled](const Tensor& q, const Tensor& k, const Tensor& v) { return compiled->call1({q, k, v}); };
}

// Relative error of the compiled output and input gradients against eager's.
double check_against_eager(const Inputs& in, const Tensor& out, bool causal) {
  Tensor dq = in.q.grad(), dk = in.k.grad(), dv = in.v.grad();
  clear_grads(in);
  Tensor ref = attention(in.q, in.k, in.v, causal);
  ref.backward(in.dout);
  double err = 0;
  auto rel = [](const Tensor& a, const Tensor& b) {
    Tensor x = a.detach().to(kFloat64), y = b.detach().to(kFloat64);
    return max(abs(x - y)).item() / std::max(max(abs(y)).item(), 1e-30);
  };
  err = std::max({rel(out, ref), rel(dq, in.q.grad()), rel(dk, in.k.grad()), rel(dv, in.v.grad())});
  clear_grads(in);
  return err;
}

}  // namespace

AttentionRow run_attention_row(const AttentionConfig& c, const std::string& method, int64_t d, int64_t n) {
  AttentionRow row{method, d, n};
  if (c.device.is_cuda()) allocator_for(c.device).empty_cache();
  try {
    Inputs in = make_inputs(c, d, n);
    AttentionFn fn = make_method(method, c.causal);
    row.first_call_ms = time_ms(c.device, [&] {
      Tensor o = fn(in.q, in.k, in.v);
      o.backward(in.dout);
    });
    clear_grads(in);
    for (int i = 0; i < c.warmup; ++i) {
      fn(in.q, in.k, in.v).backward(in.dout);
      clear_grads(in);
    }
    std::vector<double> fwd, bwd;
    for (int i = 0; i < c.reps; ++i) {
      Tensor o;
      fwd.push_back(time_ms(c.device, [&] { o = fn(in.q, in.k, in.v); }));
      row.mem_before_bwd = memory_allocated(c.device);
      bwd.push_back(time_ms(c.device, [&] { o.backward(in.dout); }));
      if (c.check && method == "compiled" && i == c.reps - 1) {
        row.max_err = check_against_eager(in, o, c.causal);
      }
      clear_grads(in);
    }
    std::tie(row.fwd_mean_ms, row.fwd_std_ms) = mean_std(fwd);
    std::tie(row.bwd_mean_ms, row.bwd_std_ms) = mean_std(bwd);
    if (!std::isfinite(row.fwd_mean_ms) || !std::isfinite(row.bwd_mean_ms))
      row.status = "ERROR: a timing is not finite";
  } catch (const OutOfMemoryError&) {
    row.status = "OOM";
  } catch (const Error& e) {
    std::string what = e.what();
    row.status = "ERROR: " + what.substr(0, std::min<size_t>(what.size(), 160));
  }
  return row;
}

int attention_exit_status(const std::vector<AttentionRow>& rows) {
  return std::any_of(rows.begin(), rows.end(), [](const AttentionRow& r) { return r.status.rfind("ERROR", 0) == 0; })
             ? 1
             : 0;
}

namespace {

void write_plot(const std::string& path, const AttentionSetup& setup, const std::vector<AttentionRow>& rows) {
  std::ofstream f(path);
  f << to_svg(setup, rows);
  f.close();
  MINIDL_CHECK(f.good(), ValueError, "[attention] cannot write the plot to {}", path);
  std::fprintf(stderr, "plot written to %s\n", path.c_str());
}

int attention_main(const std::vector<std::string>& argv) {
  for (const auto& a : argv)
    if (a == "--help" || a == "-h") {
      std::fputs(kHelp, stdout);
      return 0;
    }
  const AttentionConfig c = parse_attention_args(argv);
  AttentionSetup setup{c.device.is_cuda() ? cuda::properties(c.device.index).name : "cpu",
                       dtype_name(c.dtype), c.batch, c.heads, c.causal, c.reps, c.warmup};
  if (!c.replot.empty()) {
    std::ifstream in(c.replot);
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const std::vector<AttentionRow> rows = from_markdown(text);
    MINIDL_CHECK(!rows.empty(), ValueError, "[attention] --replot {}: no attention table in it", c.replot);
    setup.device = c.device_name;
    write_plot(c.plot, setup, rows);
    return 0;
  }
  if (!c.device.is_cuda()) {
    std::string grid;
    for (int64_t d : c.ds) grid += (grid.empty() ? "d_model " : ",") + std::to_string(d);
    grid += " x seq_len ";
    for (size_t i = 0; i < c.seqs.size(); ++i) grid += (i ? "," : "") + std::to_string(c.seqs[i]);
    std::fprintf(stderr, "minidl-bench attention: running on the CPU (%s), grid %s\n",
                 cuda::is_available() ? "--device cpu" : cuda::unavailable_reason().c_str(), grid.c_str());
  }
  if (c.mem_limit) set_memory_limit(c.mem_limit, c.device);

  std::vector<AttentionRow> rows;
  const size_t total = c.ds.size() * c.seqs.size() * c.methods.size();
  const double start = now_ms();
  for (int64_t d : c.ds)
    for (int64_t n : c.seqs)
      for (const auto& m : c.methods) {
        std::fprintf(stderr, "[%zu/%zu] %s d_model=%lld seq_len=%lld ... ", rows.size() + 1, total, m.c_str(),
                     static_cast<long long>(d), static_cast<long long>(n));
        std::fflush(stderr);
        rows.push_back(run_attention_row(c, m, d, n));
        const auto& r = rows.back();
        std::fprintf(stderr, "%s (first call %.1f ms; %.1f s elapsed)\n",
                     r.ok() ? fmt::format("fwd {:.3f} ms, bwd {:.3f} ms", r.fwd_mean_ms, r.bwd_mean_ms).c_str()
                            : r.status.c_str(),
                     r.first_call_ms, (now_ms() - start) / 1e3);
      }
  if (c.mem_limit) set_memory_limit(0, c.device);

  // First-call costs (tracing, NVRTC) stay out of the timed figures; report them here.
  const KernelCacheStats ks = KernelCache::global().stats();
  std::fprintf(stderr, "%s\n", format_stats(ks).c_str());
  double first_call_ms = 0;
  for (const auto& r : rows)
    if (r.method == "compiled") first_call_ms += r.first_call_ms;
  const std::string stats = fmt::format(
      "{{\"kernel_cache\": {{\"memory_hits\": {}, \"disk_hits\": {}, \"misses\": {}, \"bad_entries\": {}, "
      "\"compile_ms\": {:.1f}}}, \"compiled_first_calls_ms\": {:.1f}}}",
      ks.memory_hits, ks.disk_hits, ks.misses, ks.bad_entries, ks.compile_ms, first_call_ms);
  if (c.format == "md") std::fputs(to_markdown(rows).c_str(), stdout);
  if (c.format == "csv") std::fputs(to_csv(rows).c_str(), stdout);
  if (c.format == "json") std::fputs(to_json(setup, rows, stats).c_str(), stdout);
  if (!c.plot.empty()) write_plot(c.plot, setup, rows);
  return attention_exit_status(rows);
}

}  // namespace

}  // namespace minidl::bench

MINIDL_BENCH_SUBCOMMAND("attention", "eager vs compiled softmax(Q K^T / sqrt(d)) V, forward and backward",
                        minidl::bench::attention_main);
