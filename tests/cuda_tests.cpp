// The CUDA runtime and eager GPU backend: runtime facts, the caching allocator (stats, reuse,
// the limit and the OOM path, the bypass), TF32, copies, and GPU-specific op checks against a
// float64 CPU reference (16-bit types, strided inputs, sizes beyond one block, reductions over
// non-last dims, every row op and reduction at row lengths from 1 to 1048577). Without a GPU the
// GPU cases print why they are skipped; the index math of the strided kernels and the row
// kernels' launch plan are checked on the host.
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <string>

#include "core/cuda/launch_config.h"
#include "minidl/minidl.h"
#include "tests/test_utils.h"
#if MINIDL_WITH_CUDA
#include "core/cuda/offsets.h"
#include "runtime/allocator.h"
#endif

using namespace minidl;
using minidl::testing::gpu_or_skip;
using minidl::testing::rel_error;

namespace {

using Fn = std::function<Tensor(const std::vector<Tensor>&)>;

/// Relative error allowed for a result computed in dtype t (float32 accumulation for 16-bit).
double tolerance(DType t) {
  switch (t) {
    case kFloat64:
      return 1e-12;
    case kFloat32:
      return 3e-5;
    case kFloat16:
      return 5e-3;
    case kBFloat16:
      return 3e-2;
    default:
      return 0;
  }
}

/// Normal values in dtype t (on the CPU).
Tensor rnd(const Shape& s, DType t = kFloat32, double scale = 1.0) {
  return (randn(s, {.dtype = kFloat64}) * scale).to(t);
}

/// fn on the GPU (inputs moved there) against fn on float64 CPU copies of the same values.
void check_gpu(const std::string& what, const Fn& fn, const std::vector<Tensor>& inputs,
               double tol) {
  std::vector<Tensor> ref_in, gpu_in;
  for (const auto& t : inputs) {
    ref_in.push_back(is_floating(t.dtype()) ? t.to(kFloat64) : t);
    gpu_in.push_back(t.cuda());
  }
  const Tensor ref = fn(ref_in);
  const Tensor got = fn(gpu_in);
  REQUIRE_MESSAGE(got.device().is_cuda(), what);
  REQUIRE_MESSAGE(got.shape() == ref.shape(), what, ": shape ", shape_str(got.shape()), " vs ",
                  shape_str(ref.shape()));
  const double err = rel_error(got, ref);
  CHECK_MESSAGE(err <= tol, what, ": relative error ", err, " > ", tol);
}

const DType kFloatTypes[] = {kFloat32, kFloat16, kBFloat16, kFloat64};

}  // namespace

// ============================================================================ without a GPU

TEST_CASE("cuda: unavailable CUDA is reported, refused and skipped") {
  if (cuda::is_available()) {
    CHECK(cuda::unavailable_reason().empty());
    CHECK(cuda::device_count() >= 1);
    return;
  }
  CHECK_FALSE(cuda::unavailable_reason().empty());
  CHECK(cuda::device_count() == 0);
  CHECK_THROWS_AS(ones({2}).cuda(), DeviceError);
  CHECK_THROWS_AS(memory_allocated(kCUDA), DeviceError);
  CHECK_THROWS_AS(cuda::properties(0), DeviceError);
  cuda::synchronize();  // nothing to wait for
  CHECK(minidl::testing::test_devices().size() == 1);
  CHECK_FALSE(gpu_or_skip("cuda tests"));
}

TEST_CASE("cuda: row kernel layout and shared memory (host)") {
  using cuda::kDefaultSmemBytes;
  using cuda::plan_rows;
  constexpr size_t kHopper = 227 * 1024;  // opt-in limit per block of the H100 and H200
  // The case: float64 softmax backward (g and y cached: 16 bytes per element), rows of
  // 3001, one row per block: 48016 dynamic bytes plus 2048 of reduction scratch exceed 48 KB.
  const cuda::RowPlan p = plan_rows(2, 3001, 1, 16, 2048, kHopper);
  CHECK(p.rows_per_block == 1);
  CHECK(p.cached);
  CHECK(p.smem == 3001 * 16);
  CHECK(p.opt_in);
  // On a card that cannot opt in beyond 48 KB the same rows are read twice instead.
  CHECK_FALSE(plan_rows(2, 3001, 1, 16, 2048, 48 * 1024).cached);
  const int64_t big = int64_t{1} << 40;
  const int64_t lengths[] = {1,    2,    7,    31,   32,    127,   128,   1000,    1024, 2999,
                             3001, 3072, 6144, 6145, 12288, 24577, 65537, 1048577, big};
  for (int64_t n : lengths) {
    for (size_t bytes : {0, 2, 4, 8, 16, 32})
      for (int V : {1, 2, 4, 8})
        for (size_t static_smem : {0, 1024, 2048, 4096})
          for (size_t optin : {48 * 1024, 99 * 1024, 163 * 1024, 227 * 1024}) {
            if (n % V) continue;
            const int64_t rows = 1000;
            CAPTURE(n);
            CAPTURE(bytes);
            CAPTURE(V);
            CAPTURE(static_smem);
            CAPTURE(optin);
            const cuda::RowPlan r = plan_rows(rows, n, V, bytes, static_smem, optin);
            CHECK(r.threads_per_row * r.rows_per_block <= cuda::kRowThreads);
            CHECK(r.blocks * r.rows_per_block >= rows);
            const size_t want =
                static_cast<size_t>(r.rows_per_block) * static_cast<size_t>(n) * bytes;
            const bool fits =
                bytes > 0 && want <= cuda::kRowCacheBytes && static_smem + want <= optin;
            CHECK(r.cached == fits);
            CHECK(r.smem == (fits ? want : 0));
            CHECK(r.opt_in == (fits && static_smem + want > kDefaultSmemBytes));
          }
  }
}

#if MINIDL_WITH_CUDA
TEST_CASE("cuda: index math of the strided kernels (host)") {
  using cuda::IntDivider;
  for (uint32_t d : {1u, 2u, 3u, 7u, 64u, 1000u, 65537u, (1u << 31) - 1, 1u << 31}) {
    const IntDivider<uint32_t> div(d);
    for (uint32_t n : {0u, 1u, d - 1, d, d + 1, 12345u, 1u << 20, (1u << 31) - 1, (1u << 31) - 2}) {
      if (n > INT32_MAX) continue;
      const auto qr = div.divmod(n);
      CHECK(qr.div == n / d);
      CHECK(qr.mod == n % d);
    }
  }
  // Offsets of a transposed view, a broadcast operand and a contiguous output over (5, 1, 4, 3).
  const Shape shape{5, 1, 4, 3};
  const Strides out{12, 12, 3, 1}, tr{1, 99, 15, 5}, bc{0, 0, 1, 0};
  const auto oc = cuda::make_offset_calc<3, uint32_t>(shape, {out, tr, bc}, "test");
  uint32_t linear = 0;
  for (int64_t a = 0; a < 5; ++a)
    for (int64_t c = 0; c < 4; ++c)
      for (int64_t e = 0; e < 3; ++e, ++linear) {
        const auto off = oc.get(linear);
        CHECK(off[0] == a * 12 + c * 3 + e);
        CHECK(off[1] == a * 1 + c * 15 + e * 5);
        CHECK(off[2] == c);
      }
  // Contiguous operands merge into one dim; too many unmergeable dims are refused.
  CHECK(cuda::make_offset_calc<1, uint32_t>({4, 5, 6}, {Strides{30, 6, 1}}, "test").ndim == 1);
  Shape many(13, 2);
  Strides holes(13);
  for (int d = 12, s = 1; d >= 0; --d, s *= 4) holes[d] = s;
  CHECK_THROWS_AS((cuda::make_offset_calc<1, uint32_t>(many, {holes}, "test")), ShapeError);
}

TEST_CASE("cuda: allocation sizes round as the device would") {
  CHECK(cuda::allocation_size(0) == 512);
  CHECK(cuda::allocation_size(1) == 512);
  CHECK(cuda::allocation_size(513) == 1024);
  CHECK(cuda::allocation_size(1 << 20) == (1 << 20));
  CHECK(cuda::allocation_size((1 << 20) + 1) == (2 << 20));
  CHECK(cuda::allocation_size((5 << 20) + 7) == (6 << 20));
}
#endif

// ============================================================================ runtime

TEST_CASE("cuda: runtime facts, events and synchronize") {
  if (!gpu_or_skip("cuda runtime facts")) return;
  const cuda::DeviceProperties p = cuda::properties(0);
  MESSAGE("device: ", p.name, " sm_", p.major, p.minor, ", ", p.multiprocessors, " SMs, ",
          format_bytes(static_cast<int64_t>(p.total_memory)), ", driver ", p.driver_version,
          ", runtime ", p.runtime_version);
  CHECK_FALSE(p.name.empty());
  CHECK(p.major >= 7);
  CHECK(p.multiprocessors > 0);
  CHECK(p.total_memory > 0);
  CHECK(p.runtime_version > 0);
  CHECK_THROWS_AS(cuda::properties(cuda::device_count()), DeviceError);
  CHECK_THROWS_AS(ones({2}).to(Device(DeviceType::CUDA, cuda::device_count())), DeviceError);

  cuda::Event start, stop;
  Tensor x = ones({1 << 22}, {.device = kCUDA});
  start.record();
  for (int i = 0; i < 5; ++i) x = x * 1.0;
  stop.record();
  CHECK(stop.elapsed_ms(start) > 0.0f);
  cuda::synchronize();
  CHECK(x.sum().item() == doctest::Approx(1 << 22));
}

TEST_CASE("cuda: copies between CPU and GPU keep every dtype's values") {
  if (!gpu_or_skip("cuda copies")) return;
  for (DType t : {kFloat32, kFloat64, kFloat16, kBFloat16, kInt32, kInt64, kBool}) {
    const std::string dtype_t = dtype_name(t);
    CAPTURE(dtype_t);
    Tensor a = from_vector<double>({0, 1, -2, 3.5, 1e3, -7}, {2, 3}).to(t);
    Tensor g = a.cuda();
    CHECK(g.device() == kCUDA);
    CHECK(g.dtype() == t);
    CHECK(g.cpu().to_vector<double>() == a.to_vector<double>());
    CHECK(g.t().cpu().to_vector<double>() == a.t().contiguous().to_vector<double>());  // strided
    CHECK(a.t().cuda().cpu().to_vector<double>() == a.t().contiguous().to_vector<double>());
  }
  // copy_ across devices, into a strided destination, with a broadcast source.
  Tensor dst = zeros({3, 4}, {.device = kCUDA});
  dst.slice(1, 1, 3).copy_(from_vector<float>({5, 6}, {2}));
  CHECK(dst.cpu().to_vector<float>() == std::vector<float>{0, 5, 6, 0, 0, 5, 6, 0, 0, 5, 6, 0});
  Tensor host = zeros({3, 4});
  host.copy_(dst.t().t());
  CHECK(host.to_vector<float>() == dst.cpu().to_vector<float>());
  dst.fill_(2.5);
  CHECK(dst.sum().item() == 30.0);
  dst.t().fill_(0.0);  // zero fill of a strided view
  CHECK(dst.sum().item() == 0.0);
  CHECK(scalar_tensor(4.0).cuda().item() == 4.0);
}

// ============================================================================ allocator

#if MINIDL_WITH_CUDA  // runtime/allocator.h exists in CUDA builds only
TEST_CASE("cuda: caching allocator stats and reuse") {
  if (!gpu_or_skip("cuda allocator stats")) return;
  cuda::synchronize();
  const int64_t base = memory_allocated(kCUDA);
  const MemoryStats s0 = allocator_for(kCUDA).stats();
  const int64_t bytes = 10 << 20;
  const int64_t block = static_cast<int64_t>(cuda::allocation_size(bytes));
  {
    Tensor t = empty({bytes / 4}, kFloat32, kCUDA);
    CHECK(memory_allocated(kCUDA) == base + block);
    CHECK(max_memory_allocated(kCUDA) >= base + block);
    CHECK(memory_reserved(kCUDA) >= memory_allocated(kCUDA));
  }
  CHECK(memory_allocated(kCUDA) == base);
  const int64_t reserved = memory_reserved(kCUDA);
  CHECK(reserved >= base + block);  // the block stays cached
  {
    Tensor t = empty({bytes / 4}, kFloat32, kCUDA);  // the same size comes from the cache
    CHECK(memory_reserved(kCUDA) == reserved);
  }
  const MemoryStats s1 = allocator_for(kCUDA).stats();
  CHECK(s1.num_allocs == s0.num_allocs + 2);
  reset_peak_memory_stats(kCUDA);
  CHECK(max_memory_allocated(kCUDA) == base);
  const std::string summary = memory_summary(kCUDA);
  MESSAGE(summary);
  CHECK(summary.find("allocated") != std::string::npos);
  CHECK(summary.find("reserved") != std::string::npos);
  allocator_for(kCUDA).empty_cache();
  CHECK(memory_reserved(kCUDA) <= reserved - block);  // the cached block went back
}

TEST_CASE("cuda: a memory limit below the working set raises OutOfMemoryError and leaks nothing") {
  if (!gpu_or_skip("cuda OOM path")) return;
  cuda::synchronize();
  allocator_for(kCUDA).empty_cache();
  const int64_t base = memory_allocated(kCUDA);
  const int64_t ooms = allocator_for(kCUDA).stats().num_ooms;
  // Room for two 32 MiB tensors above what is held now, not for three.
  set_memory_limit(memory_reserved(kCUDA) + (80 << 20), kCUDA);
  std::vector<Tensor> held;
  std::string message;
  try {
    for (int i = 0; i < 3; ++i) held.push_back(empty({8 << 20}, kFloat32, kCUDA));
  } catch (const OutOfMemoryError& e) {
    message = e.what();
  }
  CHECK(held.size() == 2);
  MESSAGE(message);
  CHECK(message.find("out of memory") != std::string::npos);
  CHECK(message.find("tried to allocate 32.00 MiB") != std::string::npos);
  CHECK(message.find("allocated") != std::string::npos);
  CHECK(message.find("reserved") != std::string::npos);
  CHECK(message.find("limit") != std::string::npos);
  CHECK(allocator_for(kCUDA).stats().num_ooms == ooms + 1);
  held.clear();
  CHECK(memory_allocated(kCUDA) == base);
  // An op that runs out in the middle leaves nothing behind either; the process goes on.
  set_memory_limit(0, kCUDA);
  Tensor x = ones({4 << 20}, {.device = kCUDA});                   // 16 MiB
  (void)matmul(x.reshape({2048, 2048}), x.reshape({2048, 2048}));  // creates cuBLAS' workspace
  allocator_for(kCUDA).empty_cache();
  const int64_t before = memory_allocated(kCUDA);
  set_memory_limit(memory_reserved(kCUDA) + (20 << 20), kCUDA);  // one more 16 MiB result, not two
  CHECK_THROWS_AS(
      matmul(x.reshape({2048, 2048}), x.reshape({2048, 2048})) + x.reshape({2048, 2048}),
      OutOfMemoryError);
  CHECK(memory_allocated(kCUDA) == before);
  set_memory_limit(0, kCUDA);
  CHECK(matmul(x.reshape({2048, 2048}), x.reshape({2048, 2048})).sum().item() ==
        doctest::Approx(2048.0 * (4 << 20)));
}

TEST_CASE("cuda: caching can be bypassed for compute-sanitizer") {
  if (!gpu_or_skip("cuda caching bypass")) return;
  const bool was = cuda::caching_enabled();
  cuda::set_caching_enabled(false);
  const int64_t reserved = memory_reserved(kCUDA);
  {
    Tensor t = ones({1000}, {.device = kCUDA});
    CHECK(memory_reserved(kCUDA) == reserved + 4096);
    CHECK(t.sum().item() == 1000.0);
  }
  CHECK(memory_reserved(kCUDA) == reserved);  // freed at once, not cached
  CHECK(memory_summary(kCUDA).find("caching:   off") != std::string::npos);
  cuda::set_caching_enabled(was);
}
#endif

// ============================================================================ matmul

TEST_CASE("cuda: float32 matmul is exact float32 unless TF32 is allowed") {
  if (!gpu_or_skip("cuda TF32 switch")) return;
  manual_seed(3);
  Tensor a = rnd({1024, 1024}), b = rnd({1024, 1024});
  Tensor ref = matmul(a.to(kFloat64), b.to(kFloat64));
  CHECK_FALSE(cuda::allow_tf32());
  const double exact = rel_error(matmul(a.cuda(), b.cuda()), ref);
  cuda::set_allow_tf32(true);
  const double tf32 = rel_error(matmul(a.cuda(), b.cuda()), ref);
  cuda::set_allow_tf32(false);
  MESSAGE("float32 matmul relative error: exact ", exact, ", TF32 ", tf32);
  CHECK(exact < 1e-5);
  CHECK(tf32 > 1e-5);  // TF32 keeps 10 mantissa bits
  CHECK(tf32 < 1e-2);
}

TEST_CASE("cuda: matmul layouts, batches and dtypes") {
  if (!gpu_or_skip("cuda matmul")) return;
  manual_seed(4);
  for (DType t : kFloatTypes) {
    const std::string dtype_t = dtype_name(t);
    CAPTURE(dtype_t);
    const double tol = tolerance(t) * 4;
    check_gpu(
        "2-D", [](auto& in) { return matmul(in[0], in[1]); }, {rnd({129, 77}, t), rnd({77, 65}, t)},
        tol);
    check_gpu(
        "transposed views", [](auto& in) { return matmul(in[0].t(), in[1].t()); },
        {rnd({77, 129}, t), rnd({65, 77}, t)}, tol);
    check_gpu(
        "batched", [](auto& in) { return matmul(in[0], in[1].transpose(-2, -1)); },
        {rnd({4, 3, 32, 48}, t), rnd({4, 3, 16, 48}, t)}, tol);
    check_gpu(
        "broadcast weight (folded)", [](auto& in) { return matmul(in[0], in[1]); },
        {rnd({2, 5, 64}, t), rnd({64, 32}, t)}, tol);
    check_gpu(
        "broadcast left operand", [](auto& in) { return matmul(in[0], in[1]); },
        {rnd({64, 32}, t), rnd({3, 32, 8}, t)}, tol);
    check_gpu(
        "partly broadcast batch (looped)", [](auto& in) { return matmul(in[0], in[1]); },
        {rnd({2, 3, 8, 16}, t), rnd({1, 3, 16, 4}, t)}, tol);
    check_gpu(
        "partly broadcast batch (copied)", [](auto& in) { return matmul(in[0], in[1]); },
        {rnd({70, 3, 8, 16}, t), rnd({1, 3, 16, 4}, t)}, tol);
    check_gpu(
        "vector operands", [](auto& in) { return matmul(in[0], matmul(in[1], in[0])); },
        {rnd({40}, t), rnd({40, 40}, t)}, tol);
    check_gpu(
        "strided rows",
        [](auto& in) { return matmul(in[0].slice(1, 0, 40, 2), in[1].slice(0, 1, 21)); },
        {rnd({30, 80}, t), rnd({21, 20}, t)}, tol);
  }
  Tensor e = matmul(ones({3, 0}, {.device = kCUDA}), ones({0, 4}, {.device = kCUDA}));
  CHECK(e.shape() == Shape{3, 4});
  CHECK(abs(e).sum().item() == 0.0);
}

// ============================================================================ pointwise

TEST_CASE("cuda: pointwise ops on strided, broadcast and scalar operands") {
  if (!gpu_or_skip("cuda pointwise")) return;
  manual_seed(5);
  for (DType t : kFloatTypes) {
    const std::string dtype_t = dtype_name(t);
    CAPTURE(dtype_t);
    const double tol = tolerance(t);
    const Tensor x = rnd({64, 33}, t), y = rnd({33}, t), col = rnd({64, 1}, t);
    const std::vector<std::pair<const char*, Tensor (*)(const Tensor&)>> unary = {
        {"neg", neg},         {"exp", exp},   {"abs", abs},   {"sign", sign}, {"tanh", tanh},
        {"sigmoid", sigmoid}, {"relu", relu}, {"gelu", gelu}, {"silu", silu}};
    for (const auto& [name, f] : unary)
      check_gpu(
          name, [f](auto& in) { return f(in[0].t()); }, {x}, tol);
    for (const auto& [name, f] : std::vector<std::pair<const char*, Tensor (*)(const Tensor&)>>{
             {"log", log}, {"sqrt", sqrt}, {"rsqrt", rsqrt}})
      check_gpu(
          name, [f](auto& in) { return f(abs(in[0].t()) + 0.5); }, {x}, tol);
    check_gpu(
        "add broadcast", [](auto& in) { return in[0] + in[1]; }, {x, y}, tol);
    check_gpu(
        "mul column broadcast, transposed", [](auto& in) { return in[0].t() * in[1].t(); },
        {x, col}, tol);
    check_gpu(
        "sub/div scalars", [](auto& in) { return (2.5 - in[0]) / 3.0; }, {x}, tol);
    check_gpu(
        "0-dim GPU operand", [](auto& in) { return in[0] * in[1]; }, {x, rnd({}, t)}, tol);
    check_gpu(
        "pow", [](auto& in) { return pow(abs(in[0]) + 0.5, in[1]); }, {x, y}, tol * 4);
    check_gpu(
        "maximum/minimum", [](auto& in) { return maximum(in[0], in[1]) - minimum(in[0], in[1]); },
        {x, y}, tol);
    check_gpu(
        "comparison",
        [](auto& in) { return (in[0] > in[1]).to(kFloat64) + (in[0] <= 0.0).to(kFloat64); }, {x, y},
        0);
    check_gpu(
        "large (vector path and tail)", [](auto& in) { return in[0] * 0.5 + 1.0; },
        {rnd({(1 << 22) + 3}, t)}, tol);
    // rows of whole vectors (elementwise_rows_kernel): broadcast along rows or within them
    const Tensor x32 = rnd({64, 32}, t), y32 = rnd({32}, t), col32 = rnd({64, 1}, t);
    check_gpu(
        "add a row to every row (vector rows)", [](auto& in) { return in[0] + in[1]; }, {x32, y32}, tol);
    check_gpu(
        "mul by one value per row (vector rows)", [](auto& in) { return in[1] * in[0]; }, {x32, col32}, tol);
    check_gpu(
        "3-D, both broadcasts (vector rows)",
        [](auto& in) { return in[0].view({4, 16, 32}) * in[1] - in[2].view({4, 16, 1}); }, {x32, y32, col32}, tol);
    check_gpu(
        "rows a vector off alignment fall back", [](auto& in) { return in[0].slice(1, 1, 33) + in[1]; },
        {rnd({64, 40}, t), y32}, tol);
    check_gpu(
        "row stride not a whole vector falls back", [](auto& in) { return in[0].slice(1, 0, 32) + in[1]; },
        {rnd({64, 36}, t), y32}, tol);
  }
  check_gpu(
      "int64 arithmetic", [](auto& in) { return neg(in[0]) * in[0] + abs(in[0]) - relu(in[0]); },
      {from_vector<int64_t>({-3, 0, 5, 7}, {}, {.dtype = kInt64})}, 0);
  check_gpu(
      "int32 sign", [](auto& in) { return sign(in[0]); },
      {from_vector<int32_t>({-3, 0, 5}, {}, {.dtype = kInt32})}, 0);
}

TEST_CASE("cuda: where, masked_fill, triu/tril and casts") {
  if (!gpu_or_skip("cuda select and cast")) return;
  manual_seed(6);
  for (DType t : kFloatTypes) {
    const std::string dtype_t = dtype_name(t);
    CAPTURE(dtype_t);
    const Tensor x = rnd({5, 16, 33}, t), y = rnd({33}, t);
    check_gpu(
        "where", [](auto& in) { return where(in[0] > 0.0, in[0], in[1]); }, {x, y}, 0);
    check_gpu(
        "where with scalar",
        [](auto& in) { return where(in[0] > 0.0, in[0], scalar_like(in[0], -1.0)); }, {x}, 0);
    check_gpu(
        "masked_fill broadcast mask",
        [](auto& in) { return masked_fill(in[0], in[1] > 0.0, -INFINITY); }, {x, y}, 0);
    check_gpu(
        "triu", [](auto& in) { return triu(in[0], 1); }, {x}, 0);
    check_gpu(
        "tril of a transposed view", [](auto& in) { return tril(in[0].transpose(-2, -1), -2); },
        {x}, 0);
  }
  const Tensor x = rnd({7, 9}) * 100.0;
  for (DType from : {kFloat32, kFloat16, kBFloat16, kFloat64, kInt32, kInt64, kBool})
    for (DType to : {kFloat32, kFloat16, kBFloat16, kFloat64, kInt32, kInt64, kBool}) {
      const std::string dtype_from = dtype_name(from), dtype_to = dtype_name(to);
      CAPTURE(dtype_from);
      CAPTURE(dtype_to);
      const Tensor src = x.to(from);
      CHECK(src.cuda().t().to(to).cpu().to_vector<double>() == src.t().to(to).to_vector<double>());
    }
}

// ============================================================================ reductions

TEST_CASE("cuda: reductions over any dims, long rows and columns") {
  if (!gpu_or_skip("cuda reductions")) return;
  manual_seed(7);
  const std::vector<std::vector<int64_t>> dim_sets = {{2}, {1}, {0}, {0, 2}, {}, {1, 2}};
  for (DType t : kFloatTypes) {
    const std::string dtype_t = dtype_name(t);
    CAPTURE(dtype_t);
    const double tol = tolerance(t) * 2;
    const Tensor x = rnd({7, 300, 129}, t);
    for (const auto& dims : dim_sets) {
      CAPTURE(shape_str(dims));
      check_gpu(
          "sum", [&](auto& in) { return sum(in[0], dims); }, {x}, tol);
      check_gpu(
          "mean keepdim", [&](auto& in) { return mean(in[0], dims, true); }, {x}, tol);
      check_gpu(
          "max", [&](auto& in) { return max(in[0], dims); }, {x}, 0);
      check_gpu(
          "min of a transposed view", [&](auto& in) { return min(in[0].transpose(0, 2), dims); },
          {x}, 0);
    }
    check_gpu(
        "argmax last", [](auto& in) { return argmax(in[0], -1); }, {x}, 0);
    check_gpu(
        "argmax middle", [](auto& in) { return argmax(in[0], 1, true); }, {x}, 0);
    check_gpu(
        "argmax ties pick the first", [](auto& in) { return argmax(in[0], 1); },
        {from_vector<double>({1, 3, 3, 0, 2, 2, 2, 1}, {2, 4}).to(t)}, 0);
  }
  check_gpu(
      "full sum of 2^24 + 5 elements (split over blocks)", [](auto& in) { return sum(in[0]); },
      {rnd({(1 << 24) + 5}) + 1.0}, 1e-5);
  check_gpu(
      "column sum of a tall matrix", [](auto& in) { return sum(in[0], {0}); },
      {rnd({200000, 3}) + 1.0}, 1e-5);
  check_gpu(
      "int32 sum", [](auto& in) { return sum(in[0], {1}); }, {(rnd({40, 50}) * 100.0).to(kInt32)},
      0);
  check_gpu(
      "bool sum", [](auto& in) { return sum(in[0] > 0.0); }, {rnd({1000})}, 0);
  Tensor nan_row = from_vector<float>({1, NAN, 3, 2}, {1, 4}).cuda();
  CHECK(std::isnan(max(nan_row).item()));
  CHECK(argmax(nan_row, 1).item() == 1.0);
  CHECK(std::isnan(mean(zeros({0}, {.device = kCUDA})).item()));
  CHECK(sum(zeros({3, 0}, {.device = kCUDA}), {1}).cpu().to_vector<float>() ==
        std::vector<float>{0, 0, 0});
}

// ============================================================================ row ops

TEST_CASE("cuda: softmax and log_softmax rows, columns and masked rows") {
  if (!gpu_or_skip("cuda softmax")) return;
  manual_seed(8);
  for (DType t : kFloatTypes) {
    const std::string dtype_t = dtype_name(t);
    CAPTURE(dtype_t);
    const double tol = tolerance(t) * 2;
    for (const Shape& s : {Shape{64, 4096}, Shape{33, 1000}, Shape{3, 50001}, Shape{300, 7}}) {
      CAPTURE(shape_str(s));
      const Tensor x = rnd(s, t, 3.0);
      check_gpu(
          "softmax", [](auto& in) { return softmax(in[0], -1); }, {x}, tol);
      check_gpu(
          "log_softmax", [](auto& in) { return log_softmax(in[0], -1); }, {x}, tol);
    }
    const Tensor x3 = rnd({5, 7, 9}, t);
    check_gpu(
        "softmax over a middle dim", [](auto& in) { return softmax(in[0], 1); }, {x3}, tol);
    check_gpu(
        "log_softmax over dim 0 of a view",
        [](auto& in) { return log_softmax(in[0].transpose(0, 2), 0); }, {x3}, tol);
    check_gpu(
        "causally masked rows",
        [](auto& in) {
          return softmax(masked_fill(in[0], ones_like(in[0]).triu(1) > 0.5, -INFINITY), -1);
        },
        {rnd({4, 6}, t)}, tol);
    check_gpu(
        "fully masked row gives NaN as on the CPU",
        [](auto& in) { return softmax(full_like(in[0], -INFINITY), -1); }, {rnd({2, 5}, t)}, 0);
  }
}

TEST_CASE("cuda: softmax backward as one row kernel") {
  if (!gpu_or_skip("cuda softmax backward")) return;
  manual_seed(9);
  for (DType t : kFloatTypes) {
    const std::string dtype_t = dtype_name(t);
    CAPTURE(dtype_t);
    const double tol = tolerance(t) * 4;
    for (bool log : {false, true})
      for (const Shape& s : {Shape{16, 4096}, Shape{9, 1001}, Shape{2, 40000}}) {
        CAPTURE(log);
        CAPTURE(shape_str(s));
        check_gpu(
            "softmax_backward", [log](auto& in) { return softmax_backward(in[0], in[1], -1, log); },
            {rnd(s, t), log ? log_softmax(rnd(s, t), -1) : softmax(rnd(s, t), -1)}, tol);
      }
    check_gpu(
        "softmax_backward over a middle dim",
        [](auto& in) { return softmax_backward(in[0], in[1], 1); },
        {rnd({5, 7, 9}, t), softmax(rnd({5, 7, 9}, t), 1)}, tol);
    check_gpu(
        "through autograd",
        [](auto& in) {
          Tensor x = in[0].detach().requires_grad_();
          (softmax(x, -1) * in[1]).sum().backward();
          return x.grad();
        },
        {rnd({8, 300}, t), rnd({8, 300}, t)}, tol);
  }
}

TEST_CASE("cuda: layer_norm forward and backward") {
  if (!gpu_or_skip("cuda layer_norm")) return;
  manual_seed(10);
  for (DType t : kFloatTypes) {
    const std::string dtype_t = dtype_name(t);
    CAPTURE(dtype_t);
    const double tol = tolerance(t) * 4;
    for (const Shape& s : {Shape{64, 768}, Shape{10, 1001}, Shape{4, 5}, Shape{2, 40000}}) {
      CAPTURE(shape_str(s));
      const int64_t c = s.back();
      check_gpu(
          "affine", [](auto& in) { return layer_norm(in[0], in[1], in[2]); },
          {rnd(s, t, 2.0) + 1.0, rnd({c}, t), rnd({c}, t)}, tol);
      check_gpu(
          "plain", [](auto& in) { return layer_norm(in[0], Tensor(), Tensor(), 1e-5); },
          {rnd(s, t)}, tol);
    }
    check_gpu(
        "backward",
        [](auto& in) {
          Tensor x = in[0].detach().requires_grad_(), w = in[1].detach().requires_grad_();
          (layer_norm(x, w, in[2]) * in[3]).sum().backward();
          return cat({x.grad().flatten(), w.grad()});
        },
        {rnd({6, 96}, t), rnd({96}, t), rnd({96}, t), rnd({6, 96}, t)}, tol * 4);
  }
}

TEST_CASE("cuda: cross_entropy with ignored rows and bad targets") {
  if (!gpu_or_skip("cuda cross_entropy")) return;
  manual_seed(11);
  Tensor target = randint(0, 37, {100});
  target = where(rand({100}, {.dtype = kFloat64}) < 0.2, full_like(target, -100), target);
  for (DType t : kFloatTypes) {
    const std::string dtype_t = dtype_name(t);
    CAPTURE(dtype_t);
    const double tol = tolerance(t) * 2;
    check_gpu(
        "forward", [](auto& in) { return cross_entropy(in[0], in[1]); },
        {rnd({100, 37}, t, 3.0), target}, tol);
    check_gpu(
        "int32 targets, odd width", [](auto& in) { return cross_entropy(in[0], in[1]); },
        {rnd({100, 1003}, t), abs(target.to(kInt32))}, tol);
    check_gpu(
        "backward",
        [](auto& in) {
          Tensor x = in[0].detach().requires_grad_();
          cross_entropy(x, in[1]).backward();
          return x.grad();
        },
        {rnd({100, 37}, t), target}, tol * 2);
  }
  CHECK(std::isnan(cross_entropy(ones({2, 3}, {.device = kCUDA}),
                                 full({2}, -100, {.dtype = kInt64, .device = kCUDA}))
                       .item()));
  const Tensor bad = from_vector<int64_t>({0, 2, 3, 1}, {}, {.dtype = kInt64});
  std::string cpu_msg, gpu_msg;
  try {
    cross_entropy(ones({4, 3}), bad);
  } catch (const IndexError& e) {
    cpu_msg = e.what();
  }
  try {
    cross_entropy(ones({4, 3}).cuda(), bad.cuda());
  } catch (const IndexError& e) {
    gpu_msg = e.what();
  }
  CHECK_FALSE(cpu_msg.empty());
  CHECK(gpu_msg == cpu_msg);
}

// ============================================================================ every row length

namespace {

/// Row lengths of issue #12: one element, less than a warp, the length whose float64 softmax
/// backward asked for 48016 + 2048 bytes of shared memory without opting in (NOTE [Row cache]),
/// beyond 64 Ki and beyond 1 Mi elements (rows read twice from device memory, not cached).
const int64_t kRowLengths[] = {1, 31, 3001, 65537, 1048577};

/// Rows per case: few, so that rows of a million elements stay fast.
int64_t rows_for(int64_t n) { return n > 4096 ? 2 : 5; }

/// Names a case in failure messages: "softmax backward, n=3001, float64".
std::string row_case(const std::string& op, int64_t n, DType t) {
  return op + ", n=" + std::to_string(n) + ", " + dtype_name(t);
}

/// The gradient of f(in[0 .. k-1]) with respect to in[which], for the cotangent in[k] (last).
Fn grad_of(Fn f, size_t which = 0) {
  return [f = std::move(f), which](const std::vector<Tensor>& in) {
    std::vector<Tensor> args(in.begin(), in.end() - 1);
    args[which] = args[which].detach().requires_grad_();
    f(args).backward(in.back());
    return args[which].grad();
  };
}

/// A cotangent of shape s: 1, 2, 4, 1, ... Powers of two keep a mean's gradient g / n exact in
/// float16 even where it is subnormal (n = 1048577), while still telling the outputs apart.
Tensor powers_of_two(const Shape& s, DType t) {
  std::vector<double> v(static_cast<size_t>(numel(s)));
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<double>(1 << (i % 3));
  return from_vector<double>(v, s).to(t);
}

}  // namespace

TEST_CASE("cuda: row ops at every row length and dtype") {
  if (!gpu_or_skip("cuda row ops at every row length")) return;
  manual_seed(14);
  const Fn sm = [](auto& in) { return softmax(in[0], -1); };
  const Fn lsm = [](auto& in) { return log_softmax(in[0], -1); };
  const Fn ln = [](auto& in) { return layer_norm(in[0], in[1], in[2]); };
  const Fn ln_plain = [](auto& in) { return layer_norm(in[0], Tensor(), Tensor(), 1e-5); };
  const Fn ce = [](auto& in) { return cross_entropy(in[0], in[1]); };
  for (int64_t n : kRowLengths)
    for (DType t : kFloatTypes) {
      auto name = [&](const char* op) { return row_case(op, n, t); };
      const int64_t rows = rows_for(n);
      const double tol = tolerance(t) * 4;
      const Tensor x = rnd({rows, n}, t, 3.0), g = rnd({rows, n}, t);
      const Tensor w = rnd({n}, t), b = rnd({n}, t);
      const Tensor target = randint(0, n, {rows});
      check_gpu(name("softmax"), sm, {x}, tol);
      check_gpu(name("softmax backward"), grad_of(sm), {x, g}, tol);
      check_gpu(name("log_softmax"), lsm, {x}, tol);
      check_gpu(name("log_softmax backward"), grad_of(lsm), {x, g}, tol);
      if (t == kFloat32 || t == kFloat64)  // x - max keeps its digits; m + log(sum) would not
        check_gpu(name("log_softmax of rows near 1e8"), lsm,
                  {(rnd({rows, n}, kFloat64, 3.0) + 1e8).to(t)}, tol);
      check_gpu(name("layer_norm"), ln, {x, w, b}, tol);
      check_gpu(name("layer_norm without affine"), ln_plain, {x}, tol);
      // The backward is a composition of ops, each rounding to 16 bits.
      check_gpu(name("layer_norm backward (x)"), grad_of(ln, 0), {x, w, b, g}, tol * 4);
      check_gpu(name("layer_norm backward (weight)"), grad_of(ln, 1), {x, w, b, g}, tol * 4);
      check_gpu(name("layer_norm backward (bias)"), grad_of(ln, 2), {x, w, b, g}, tol * 4);
      check_gpu(name("layer_norm without affine backward"), grad_of(ln_plain), {x, g}, tol * 4);
      check_gpu(name("cross_entropy"), ce, {x, target}, tol);
      check_gpu(name("cross_entropy backward"), grad_of(ce),
                {x, target, full({}, 1.5, {.dtype = t})}, tol * 2);
    }
}

TEST_CASE("cuda: reductions at every row length and dtype") {
  if (!gpu_or_skip("cuda reductions at every row length")) return;
  manual_seed(15);
  for (int64_t n : kRowLengths)
    for (DType t : kFloatTypes)
      for (int64_t dim : {int64_t{-1}, int64_t{0}}) {
        // Over the last dim of (rows, n) (row layout) and over dim 0 of (n, 3) (column layout).
        const Shape s = dim == -1 ? Shape{rows_for(n), n} : Shape{n, 3};
        const Tensor x = rnd(s, t), g = powers_of_two({dim == -1 ? s[0] : s[1]}, t);
        const int64_t correction = n > 1 ? 1 : 0;
        const double tol = tolerance(t) * 4;
        const struct {
          const char* op;
          Fn f;
          double tol;
        } cases[] = {
            {"sum", [dim](auto& in) { return sum(in[0], {dim}); }, tol},
            {"mean", [dim](auto& in) { return mean(in[0], {dim}); }, tol},
            {"max", [dim](auto& in) { return max(in[0], {dim}); }, 0},
            {"var", [dim, correction](auto& in) { return var(in[0], {dim}, correction); }, tol},
        };
        for (const auto& c : cases) {
          const std::string op = std::string(c.op) + " over dim " + std::to_string(dim);
          check_gpu(row_case(op, n, t), c.f, {x}, c.tol);
          check_gpu(row_case(op + " backward", n, t), grad_of(c.f), {x, g}, tol);
        }
      }
}

// ============================================================================ indexing

TEST_CASE("cuda: embedding and its scatter-add gradient, one_hot, cat, slice backward") {
  if (!gpu_or_skip("cuda indexing")) return;
  manual_seed(12);
  const Tensor ids = from_vector<int64_t>({3, 1, 3, 0, 49, 3, 1, 2}, {2, 4}, {.dtype = kInt64});
  for (DType t : kFloatTypes) {
    const std::string dtype_t = dtype_name(t);
    CAPTURE(dtype_t);
    const double tol = tolerance(t) * 4;
    check_gpu(
        "embedding", [](auto& in) { return embedding(in[0], in[1]); }, {rnd({50, 16}, t), ids}, 0);
    check_gpu(
        "embedding backward (repeated ids)",
        [](auto& in) {
          Tensor w = in[0].detach().requires_grad_();
          (embedding(w, in[1]) * in[2]).sum().backward();
          return w.grad();
        },
        {rnd({50, 16}, t), ids.to(kInt32), rnd({2, 4, 16}, t)}, tol);
    check_gpu(
        "one_hot", [t](auto& in) { return one_hot(in[0], 50, t); }, {ids}, 0);
    check_gpu(
        "cat",
        [](auto& in) {
          return cat({in[0], in[1].t(), in[0]}, 1);
        },
        {rnd({4, 3}, t), rnd({5, 4}, t)}, 0);
    check_gpu(
        "slice backward",
        [](auto& in) {
          Tensor x = in[0].detach().requires_grad_();
          (x.slice(1, 1, 8, 3) * in[1]).sum().backward();
          return x.grad();
        },
        {rnd({4, 9}, t), rnd({4, 3}, t)}, 0);
  }
  std::string cpu_msg, gpu_msg;
  const Tensor bad = from_vector<int64_t>({0, 7, 50, 2}, {}, {.dtype = kInt64});
  try {
    embedding(ones({50, 2}), bad);
  } catch (const IndexError& e) {
    cpu_msg = e.what();
  }
  try {
    embedding(ones({50, 2}).cuda(), bad.cuda());
  } catch (const IndexError& e) {
    gpu_msg = e.what();
  }
  CHECK_FALSE(cpu_msg.empty());
  CHECK(gpu_msg == cpu_msg);
  CHECK_THROWS_AS(one_hot(bad.cuda(), 10), IndexError);
}

// ============================================================================ random

TEST_CASE("cuda: random numbers follow the CPU's Philox stream") {
  if (!gpu_or_skip("cuda random")) return;
  for (DType t : kFloatTypes) {
    const std::string dtype_t = dtype_name(t);
    CAPTURE(dtype_t);
    manual_seed(42);
    const Tensor cpu_u = rand({1000, 3}, {.dtype = t});
    const Tensor cpu_n = randn({999}, {.dtype = t});
    manual_seed(42);
    const Tensor gpu_u = rand({1000, 3}, {.dtype = t, .device = kCUDA});
    const Tensor gpu_n = randn({999}, {.dtype = t, .device = kCUDA});
    CHECK(gpu_u.cpu().to_vector<double>() == cpu_u.to_vector<double>());
    CHECK(rel_error(gpu_n, cpu_n) < std::max(1e-6, tolerance(t)));
  }
  manual_seed(43);
  const Tensor cpu_d = dropout(ones({4096}), 0.25);
  manual_seed(43);
  const Tensor gpu_d = dropout(ones({4096}, {.device = kCUDA}), 0.25);
  CHECK(gpu_d.cpu().to_vector<float>() == cpu_d.to_vector<float>());
}

// ============================================================================ a model step

TEST_CASE("cuda: eager attention forward and backward match the CPU") {
  if (!gpu_or_skip("cuda eager attention")) return;
  manual_seed(13);
  for (DType t : {kFloat32, kBFloat16}) {
    const std::string dtype_t = dtype_name(t);
    CAPTURE(dtype_t);
    check_gpu(
        "attention",
        [](auto& in) {
          Tensor q = in[0].detach().requires_grad_(), k = in[1].detach().requires_grad_(),
                 v = in[2].detach().requires_grad_();
          Tensor s = matmul(q, k.transpose(-2, -1)) * (1.0 / std::sqrt(16.0));
          Tensor o = matmul(softmax(s, -1), v);
          o.backward(in[3]);
          return cat({o.flatten(), q.grad().flatten(), k.grad().flatten(), v.grad().flatten()});
        },
        {rnd({2, 128, 16}, t), rnd({2, 128, 16}, t), rnd({2, 128, 16}, t), rnd({2, 128, 16}, t)},
        tolerance(t) * 8);
  }
}
