// The CPU allocator's statistics and limit (the CUDA caching allocator shares the interface and
// has its own tests), and the byte-size helpers.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>

#include "test_utils.h"

using namespace minidl;

namespace {

int64_t rounded(int64_t bytes) { return (std::max<int64_t>(bytes, 1) + 63) / 64 * 64; }

/// Restores the CPU memory limit at scope exit, so a failed check does not leak a limit.
struct LimitGuard {
  int64_t saved = allocator_for(kCPU).stats().limit;
  ~LimitGuard() { set_memory_limit(saved); }
};

}  // namespace

TEST_CASE("CPU allocator counts live and peak bytes exactly") {
  const int64_t base = memory_allocated();
  {
    Tensor t = empty({1024}, kFloat32);  // 4096 bytes, a multiple of 64
    CHECK(memory_allocated() == base + 4096);
    CHECK(memory_reserved() == memory_allocated());
    Tensor v = t.slice(0, 0, 10).view({2, 5}).t();  // views allocate nothing
    CHECK(memory_allocated() == base + 4096);
    Tensor u = empty({3}, kFloat16);  // 6 bytes, counted as the 64 held
    CHECK(memory_allocated() == base + 4096 + rounded(6));
    CHECK(rounded(6) == 64);
    Tensor e = empty({0}, kFloat32);  // an empty block still holds 64 bytes
    CHECK(memory_allocated() == base + 4096 + rounded(6) + rounded(0));
    t = Tensor();  // the view keeps the storage
    CHECK(memory_allocated() == base + 4096 + 128);
  }
  CHECK(memory_allocated() == base);

  reset_peak_memory_stats();
  CHECK(max_memory_allocated() == base);
  {
    Tensor a = empty({256, 1024}, kFloat32);  // 1 MiB
    { Tensor b = empty({512, 1024}, kFloat32); }
    CHECK(memory_allocated() == base + (1 << 20));
    CHECK(max_memory_allocated() == base + 3 * (1 << 20));
    reset_peak_memory_stats();
    CHECK(max_memory_allocated() == base + (1 << 20));
  }
  CHECK(max_memory_allocated() == base + (1 << 20));
  CHECK(memory_allocated() == base);
  const int64_t allocs = allocator_for(kCPU).stats().num_allocs;
  { Tensor c = zeros({5}); }
  CHECK(allocator_for(kCPU).stats().num_allocs == allocs + 1);
}

TEST_CASE("an op's temporaries and outputs are counted and freed") {
  const int64_t base = memory_allocated();
  Tensor x = ones({64, 64});  // 16 KiB
  reset_peak_memory_stats();
  {
    Tensor y = exp(x) * 2.0 + 1.0;  // the temporaries (exp's result, the numbers) are gone
    CHECK(memory_allocated() == base + 2 * 16384);
    CHECK(max_memory_allocated() >= base + 3 * 16384);  // x, exp(x) and exp(x) * 2 at once
  }
  CHECK(memory_allocated() == base + 16384);
}

TEST_CASE("backward frees the saved tensors unless retain_graph") {
  const int64_t base = memory_allocated();
  Tensor x = ones({1024}, {.dtype = kFloat32, .requires_grad = true});  // 4 KiB
  for (bool retain : {false, true}) {
    INFO("retain_graph=", retain);
    x.zero_grad();
    Tensor loss = exp(x).sum();  // exp saves its 4 KiB output; loss is one float
    CHECK(memory_allocated() == base + 4096 + 4096 + 64);
    loss.backward({}, retain);
    // x, loss and x.grad remain; exp's output only if the graph was retained.
    CHECK(memory_allocated() == base + 4096 + 64 + 4096 + (retain ? 4096 : 0));
  }
}

TEST_CASE("a limit raises OutOfMemoryError naming the sizes, and leaks nothing") {
  LimitGuard guard;
  Tensor x = ones({1000});
  const int64_t before = memory_allocated();
  const int64_t ooms = allocator_for(kCPU).stats().num_ooms;
  set_memory_limit(before + 8192);
  CHECK(allocator_for(kCPU).stats().limit == before + 8192);
  CHECK_NOTHROW((void)empty({2048}, kFloat32));  // exactly the limit
  try {
    Tensor big = zeros({100000});
    FAIL("no OutOfMemoryError");
  } catch (const OutOfMemoryError& e) {
    const std::string m = e.what();
    CHECK(m.rfind("[full]", 0) == 0);
    CHECK(m.find(format_bytes(400000)) != std::string::npos);         // requested
    CHECK(m.find(format_bytes(before)) != std::string::npos);         // allocated
    CHECK(m.find(format_bytes(before + 8192)) != std::string::npos);  // limit
  }
  CHECK(memory_allocated() == before);
  CHECK(allocator_for(kCPU).stats().num_ooms == ooms + 1);
  // An op that runs out midway releases what it had allocated.
  set_memory_limit(before + 6000);
  CHECK_THROWS_AS(exp(x) + exp(x), OutOfMemoryError);
  CHECK(memory_allocated() == before);
  CHECK_THROWS_AS(matmul(x.reshape({10, 100}).t(), x.reshape({10, 100})), OutOfMemoryError);
  CHECK(memory_allocated() == before);
  set_memory_limit(0);  // no limit
  CHECK_THROWS_WITH_AS(set_memory_limit(-1), doctest::Contains("limit must be >= 0 bytes, got -1"), ValueError);
  CHECK(allocator_for(kCPU).stats().limit == 0);
  CHECK_NOTHROW((void)zeros({100000}));
  const std::string summary = memory_summary();
  CHECK(summary.find("memory on cpu") == 0);
  CHECK(summary.find("allocated:") != std::string::npos);
  CHECK(summary.find("limit:     none") != std::string::npos);
  CHECK(summary.find("out-of-memory errors: " + std::to_string(ooms + 3)) != std::string::npos);
}

// Run by its own CTest entry with MINIDL_CPU_MEMORY_LIMIT=1MiB (see tests/CMakeLists.txt).
TEST_CASE("the CPU limit comes from MINIDL_CPU_MEMORY_LIMIT" * doctest::skip()) {
  const char* env = std::getenv("MINIDL_CPU_MEMORY_LIMIT");
  REQUIRE_MESSAGE(env != nullptr, "set MINIDL_CPU_MEMORY_LIMIT to run this test");
  CHECK(allocator_for(kCPU).stats().limit == parse_bytes(env));
  CHECK_THROWS_AS(zeros({parse_bytes(env)}), OutOfMemoryError);
}

// Run by its own CTest entries with MINIDL_CPU_MEMORY_LIMIT=1e30 and 0.5 (tests/CMakeLists.txt).
TEST_CASE("the CPU allocator rejects a bad memory limit from the environment" * doctest::skip()) {
  const char* env = std::getenv("MINIDL_CPU_MEMORY_LIMIT");
  REQUIRE_MESSAGE(env != nullptr, "set MINIDL_CPU_MEMORY_LIMIT to run this test");
  try {
    (void)zeros({1});
    FAIL("no error for MINIDL_CPU_MEMORY_LIMIT=" << env);
  } catch (const ValueError& e) {
    const std::string m = e.what();
    CHECK_MESSAGE(m.rfind(fmt::format("[env] MINIDL_CPU_MEMORY_LIMIT='{}': ", env), 0) == 0, m);
  }
}

TEST_CASE("no CUDA allocator without CUDA") {
  if (cuda::is_available()) return;
  CHECK_THROWS_AS(allocator_for(kCUDA), DeviceError);
  CHECK_THROWS_AS(memory_allocated(kCUDA), DeviceError);
}

TEST_CASE("parse_bytes and format_bytes") {
  CHECK(parse_bytes("6GiB") == 6LL << 30);
  CHECK(parse_bytes("6gb") == 6LL << 30);
  CHECK(parse_bytes("512MB") == 512LL << 20);
  CHECK(parse_bytes("1.5G") == 3LL << 29);
  CHECK(parse_bytes("64 KiB") == 64 << 10);
  CHECK(parse_bytes("2T") == 2LL << 40);
  CHECK(parse_bytes("1000000") == 1000000);
  CHECK(parse_bytes("100b") == 100);
  CHECK(parse_bytes("0") == 0);
  for (const char* bad : {"", "lots", "5XB", "-5MB", "MB", "inf", "nan"}) {
    INFO("'", bad, "'");
    CHECK_THROWS_AS(parse_bytes(bad), ValueError);
  }
  CHECK(format_bytes(0) == "0 B");
  CHECK(format_bytes(512) == "512 B");
  CHECK(format_bytes(1023) == "1023 B");
  CHECK(format_bytes(1024) == "1.00 KiB");
  CHECK(format_bytes(1536) == "1.50 KiB");
  CHECK(format_bytes(400000) == "390.62 KiB");
  CHECK(format_bytes(18.75 * (1 << 20)) == "18.75 MiB");
  CHECK(format_bytes((1LL << 20) - 1) == "1.00 MiB");  // never "1024.00 KiB"
  CHECK(format_bytes((1LL << 30) - 1) == "1.00 GiB");
  CHECK(format_bytes(1LL << 30) == "1.00 GiB");
  CHECK(format_bytes(2.03 * (1LL << 30)) == "2.03 GiB");
  CHECK(format_bytes(3LL << 40) == "3.00 TiB");
  CHECK(format_bytes(-2048) == "-2.00 KiB");
  CHECK(format_bytes(-100) == "-100 B");
  // What format_bytes prints, parse_bytes reads back (to the printed precision).
  for (int64_t b : {int64_t(0), int64_t(512), int64_t(400000), int64_t(5) << 30})
    CHECK(std::abs(static_cast<double>(parse_bytes(format_bytes(b)) - b)) <= 0.005 * static_cast<double>(b) + 1);
}
