// The kernel cache: canonical keys, memory and disk hits, recovery from truncated, corrupted
// and foreign entries, read-only and unwritable directories, MINIDL_CACHE=0, and real second
// processes (this test binary re-executed) that find kernels on disk or compile one at once.
// In CUDA builds the compile function is NVRTC itself, so "no compile" means no NVRTC call.
#include <spdlog/sinks/ringbuffer_sink.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "base/log.h"
#include "compiler/attention/generate.h"
#include "compiler/jit.h"
#include "compiler/kernel_cache.h"
#include "test_utils.h"

namespace fs = std::filesystem;
using namespace minidl;

namespace {

// Sets or clears a directory's immutable flag (what `chattr +i` does): read-only even for root.
bool set_immutable(const fs::path& p, bool on) {
  const int fd = ::open(p.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return false;
  int flags = 0;
  bool ok = ::ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0;
  if (ok) {
    flags = on ? (flags | FS_IMMUTABLE_FL) : (flags & ~FS_IMMUTABLE_FL);
    ok = ::ioctl(fd, FS_IOC_SETFLAGS, &flags) == 0;
  }
  ::close(fd);
  return ok;
}

// A fresh directory under the temp dir, removed (made writable first) at scope exit.
struct TempDir {
  fs::path path;
  TempDir() {
    static std::atomic<int> n{0};
    path = fs::temp_directory_path() / fmt::format("minidl-cache-test-{}-{}", ::getpid(), n++);
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    set_immutable(path, false);
    std::error_code ec;
    fs::permissions(path, fs::perms::owner_all, fs::perm_options::add, ec);
    fs::remove_all(path, ec);
  }
};

// Collects what the compiler logger warns while alive.
struct WarningCapture {
  std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> sink = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(64);
  WarningCapture() { log("compiler").sinks().push_back(sink); }
  ~WarningCapture() {
    auto& sinks = log("compiler").sinks();
    sinks.erase(std::remove(sinks.begin(), sinks.end(), sink), sinks.end());
  }
  int count(const std::string& needle) const {
    int n = 0;
    for (const auto& m : sink->last_formatted()) n += m.find(needle) != std::string::npos;
    return n;
  }
};

// The request every test compiles: a real attention kernel. With NVRTC (CUDA builds) it is
// compiled for sm_90; otherwise a stand-in compiler turns the source into a "binary".
KernelRequest request(int variant = 0) {
  codegen::AttentionSpec s;
  s.head_dim = 40 + 8 * variant;
  const codegen::GeneratedKernel k = codegen::generate_attention_forward(s);
#if MINIDL_WITH_CUDA
  return {k.name, k.source, jit::compile_options("sm_90"), "sm_90", jit::compiler_version(), "headers"};
#else
  return {k.name, k.source, {"--gpu-architecture=sm_90"}, "sm_90", "stand-in", "headers"};
#endif
}

// Counts its calls; the binary is NVRTC's cubin (CUDA builds) or derived from the source.
struct CountingCompiler {
  std::shared_ptr<int> calls = std::make_shared<int>(0);
  int delay_ms = 0;
  KernelCache::CompileFn fn() const {
    return [calls = calls, delay = delay_ms](const KernelRequest& r) {
      ++*calls;
      std::this_thread::sleep_for(std::chrono::milliseconds(delay));
#if MINIDL_WITH_CUDA
      return jit::compile_cubin(r.name, r.source, r.options);
#else
      return "binary of " + std::to_string(std::hash<std::string>{}(r.source));
#endif
    };
  }
};

std::string read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}
void write_file(const fs::path& p, const std::string& s) { std::ofstream(p, std::ios::binary | std::ios::trunc) << s; }

// Runs this test binary's child case ("kernel cache: child process") in a new process on `dir`;
// returns its pid. It writes "<compiles> <disk hits> <binary bytes>" to `result`.
pid_t spawn_child(const fs::path& dir, int delay_ms, const fs::path& result) {
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    // The child's doctest report goes to a log beside its result, not into the parent's output.
    const int log = ::open((result.string() + ".log").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (log >= 0) {
      ::dup2(log, 1);
      ::dup2(log, 2);
    }
    ::setenv("MINIDL_TEST_CACHE_CHILD", fmt::format("{}|{}|{}", dir.string(), delay_ms, result.string()).c_str(), 1);
    const char* argv[] = {"minidl_tests", "--no-skip=true", "--test-case=kernel cache: child process",
                          "--no-intro=true", "--no-version=true", nullptr};
    ::execv("/proc/self/exe", const_cast<char* const*>(argv));
    ::_exit(127);
  }
  return pid;
}

int wait_child(pid_t pid) {
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

struct ChildResult {
  int compiles = -1, disk_hits = -1;
  size_t bytes = 0;
};
ChildResult read_result(const fs::path& p) {
  ChildResult r;
  std::ifstream(p) >> r.compiles >> r.disk_hits >> r.bytes;
  return r;
}

}  // namespace

TEST_CASE("kernel cache: child process" * doctest::skip()) {
  // Run by spawn_child() only: MINIDL_TEST_CACHE_CHILD = "<dir>|<compile delay ms>|<result file>".
  const char* env = std::getenv("MINIDL_TEST_CACHE_CHILD");
  REQUIRE(env != nullptr);
  const std::string arg = env;
  const size_t a = arg.find('|'), b = arg.find('|', a + 1);
  KernelCache cache({arg.substr(0, a), true});
  CountingCompiler cc;
  cc.delay_ms = std::stoi(arg.substr(a + 1, b - a - 1));
  const auto binary = cache.get(request(), cc.fn());
  std::ofstream(arg.substr(b + 1)) << *cc.calls << ' ' << cache.stats().disk_hits << ' ' << binary->size();
}

TEST_CASE("kernel cache: the key covers source, included headers, options, arch, compiler and name") {
  const KernelRequest r = request();
  CHECK(kernel_cache_key(r) == kernel_cache_key(request()));
  CHECK(kernel_cache_key(r).size() == 32);
  KernelRequest x = r;
  x.source += " ";
  CHECK(kernel_cache_key(x) != kernel_cache_key(r));
  x = r;
  x.options.push_back("--generate-line-info");
  CHECK(kernel_cache_key(x) != kernel_cache_key(r));
  x = r;
  x.arch = "sm_100";
  CHECK(kernel_cache_key(x) != kernel_cache_key(r));
  x = r;
  x.compiler = "nvrtc-99.0";
  CHECK(kernel_cache_key(x) != kernel_cache_key(r));
  x = r;
  x.name += "2";
  CHECK(kernel_cache_key(x) != kernel_cache_key(r));
  x = r;
  x.headers += " ";  // a device header changed under an unchanged generated source
  CHECK(kernel_cache_key(x) != kernel_cache_key(r));
  // Fields are length-prefixed: moving text from one field to the next changes the key.
  KernelRequest a = r, b = r;
  a.arch = "sm_9";
  a.compiler = "0" + r.compiler;
  b.arch = "sm_90";
  b.compiler = r.compiler;
  CHECK(kernel_cache_key(a) != kernel_cache_key(b));
}

TEST_CASE("kernel cache: memory hits, then a fresh cache on the same directory hits the disk") {
  TempDir dir;
  CountingCompiler cc;
  const KernelRequest r = request();
  KernelCache first({dir.path.string(), true});
  const auto bin = first.get(r, cc.fn());
  CHECK(*cc.calls == 1);
  CHECK(first.get(r, cc.fn()) == bin);
  CHECK(*cc.calls == 1);
  CHECK(first.stats().memory_hits == 1);
  CHECK(first.stats().misses == 1);
  CHECK(first.stats().disk_writes == 1);
  CHECK(first.stats().compile_ms > 0);
  // The generated source sits beside its binary, and no temp file is left behind.
  const fs::path entry = first.entry_path(r);
  CHECK(fs::exists(entry));
  CHECK(read_file(fs::path(entry).replace_extension(".cu")) == r.source);
  for (const auto& f : fs::directory_iterator(dir.path)) CHECK(f.path().string().find(".tmp.") == std::string::npos);

  KernelCache second({dir.path.string(), true});
  const auto again = second.get(r, cc.fn());
  CHECK(*again == *bin);
  CHECK(*cc.calls == 1);  // no compile: found on disk
  CHECK(second.stats().disk_hits == 1);
  CHECK(second.stats().misses == 0);
  CHECK(format_stats(second.stats()).find("1 disk hits") != std::string::npos);
}

TEST_CASE("kernel cache: a second process finds the kernel on disk without compiling") {
  TempDir dir;
  CountingCompiler cc;
  KernelCache cache({dir.path.string(), true});
  const auto bin = cache.get(request(), cc.fn());
  const fs::path result = dir.path / "child.txt";
  REQUIRE(wait_child(spawn_child(dir.path, 0, result)) == 0);
  const ChildResult c = read_result(result);
  CHECK(c.compiles == 0);
  CHECK(c.disk_hits == 1);
  CHECK(c.bytes == bin->size());
}

TEST_CASE("kernel cache: two processes compiling the same kernel at once both succeed") {
  TempDir dir;
  const fs::path r1 = dir.path / "child1.txt", r2 = dir.path / "child2.txt";
  // Both compile slowly, so each is still compiling when the other starts.
  const pid_t p1 = spawn_child(dir.path, 300, r1), p2 = spawn_child(dir.path, 300, r2);
  CHECK(wait_child(p1) == 0);
  CHECK(wait_child(p2) == 0);
  const ChildResult c1 = read_result(r1), c2 = read_result(r2);
  CHECK(c1.compiles + c1.disk_hits == 1);
  CHECK(c2.compiles + c2.disk_hits == 1);
  CHECK(c1.bytes == c2.bytes);
  // What they left is one valid entry and no temp files.
  WarningCapture w;
  CountingCompiler cc;
  KernelCache after({dir.path.string(), true});
  after.get(request(), cc.fn());
  CHECK(*cc.calls == 0);
  CHECK(w.count("[kernel cache]") == 0);
  for (const auto& f : fs::directory_iterator(dir.path)) CHECK(f.path().string().find(".tmp.") == std::string::npos);
}

TEST_CASE("kernel cache: truncated, corrupted and foreign entries are recompiled and replaced with a warning") {
  TempDir dir;
  const KernelRequest r = request(), other = request(1);
  CountingCompiler cc;
  {
    KernelCache fill({dir.path.string(), true});
    fill.get(r, cc.fn());
    fill.get(other, cc.fn());
  }
  KernelCache probe({dir.path.string(), true});
  const fs::path entry = probe.entry_path(r);
  const std::string good = read_file(entry);

  struct Damage {
    const char* what;
    std::string bytes;
    const char* reason;
  };
  std::string flipped = good;
  flipped[flipped.size() - 7] ^= 0x20;
  const std::vector<Damage> damages = {
      {"truncated", good.substr(0, good.size() - 10), "header says"},
      {"truncated header", good.substr(0, 10), "truncated header"},
      {"corrupted", flipped, "checksum mismatch"},
      {"foreign", read_file(probe.entry_path(other)), "another key"},
      {"not an entry", "hello", "bad magic"},
  };
  for (const Damage& d : damages) {
    INFO(std::string(d.what));
    write_file(entry, d.bytes);
    WarningCapture w;
    const int before = *cc.calls;
    KernelCache fresh({dir.path.string(), true});
    const auto bin = fresh.get(r, cc.fn());
    CHECK(*cc.calls == before + 1);  // never trusted: recompiled
    CHECK(fresh.stats().bad_entries == 1);
    CHECK(w.count(d.reason) == 1);
    CHECK(read_file(entry) == good);  // replaced by a valid entry
  }
}

TEST_CASE("kernel cache: a read-only directory warns once and the cache works in memory") {
  TempDir dir;
  const KernelRequest r0 = request(), r1 = request(1), r2 = request(2);
  CountingCompiler cc;
  KernelCache({dir.path.string(), true}).get(r0, cc.fn());
  fs::permissions(dir.path, fs::perms::owner_read | fs::perms::owner_exec, fs::perm_options::replace);
  // Permission bits do not bind root; the immutable flag does, where the filesystem has it.
  if (::geteuid() == 0 && !set_immutable(dir.path, true)) {
    std::printf("[minidl tests] skipped 'read-only directory': running as root on a filesystem without immutable flags\n");
    return;
  }
  WarningCapture w;
  KernelCache cache({dir.path.string(), true});
  cache.get(r0, cc.fn());  // existing entries are still read
  CHECK(cache.stats().disk_hits == 1);
  cache.get(r1, cc.fn());
  cache.get(r2, cc.fn());
  cache.get(r1, cc.fn());
  CHECK(*cc.calls == 3);
  CHECK(cache.stats().memory_hits == 1);
  CHECK(cache.stats().disk_writes == 0);
  CHECK(w.count("cannot write") == 1);
}

TEST_CASE("kernel cache: a directory that cannot be created warns once; MINIDL_CACHE=0 keeps off the disk") {
  TempDir dir;
  write_file(dir.path / "file", "not a directory");
  CountingCompiler cc;
  {
    WarningCapture w;
    KernelCache cache({(dir.path / "file" / "cache").string(), true});
    cache.get(request(), cc.fn());
    cache.get(request(1), cc.fn());
    CHECK(*cc.calls == 2);
    CHECK(w.count("cannot write") == 1);
  }
  ::setenv("MINIDL_CACHE", "0", 1);
  ::setenv("MINIDL_CACHE_DIR", dir.path.c_str(), 1);
  const KernelCache::Config off = KernelCache::config_from_env();
  ::unsetenv("MINIDL_CACHE");
  const KernelCache::Config on = KernelCache::config_from_env();
  ::unsetenv("MINIDL_CACHE_DIR");
  CHECK_FALSE(off.disk);
  CHECK(on.disk);
  CHECK(on.dir == dir.path.string());
  KernelCache memory_only(off);
  memory_only.get(request(), cc.fn());
  memory_only.get(request(), cc.fn());
  CHECK(memory_only.stats().memory_hits == 1);
  CHECK(memory_only.stats().disk_writes == 0);
  CHECK(fs::directory_iterator(dir.path) != fs::directory_iterator() );
  int entries = 0;
  for (const auto& f : fs::directory_iterator(dir.path)) entries += f.path().extension() == ".cubin";
  CHECK(entries == 0);
}

TEST_CASE("kernel cache: a failed compile caches nothing") {
  TempDir dir;
  KernelCache cache({dir.path.string(), true});
  int calls = 0;
  auto failing = [&calls](const KernelRequest&) -> std::string {
    ++calls;
    throw CompileError("[jit] stand-in failure");
  };
  CHECK_THROWS_AS(cache.get(request(), failing), CompileError);
  CHECK_THROWS_AS(cache.get(request(), failing), CompileError);
  CHECK(calls == 2);
  CHECK(fs::is_empty(dir.path));
}
