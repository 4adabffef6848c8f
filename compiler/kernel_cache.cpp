#include "compiler/kernel_cache.h"

#include <cctype>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "base/env.h"
#include "base/error.h"
#include "base/log.h"
#include "compiler/codegen/kernel.h"
#include "core/file_io.h"

namespace minidl {

namespace fs = std::filesystem;

namespace {

// NOTE [Kernel cache entry format]
// An entry is, in host byte order:
//   8 bytes  magic "MINIDLK1"
//   4 bytes  key length (32), then the key (hex)
//   8 bytes  payload length
//   8 bytes  payload checksum (FNV-1a 64)
//   payload  the binary
// A file is accepted only if it is exactly that long, the magic and the key match the request
// and the checksum matches the payload.
constexpr char kMagic[8] = {'M', 'I', 'N', 'I', 'D', 'L', 'K', '1'};

// FNV-1a over bytes from a given state: the payload checksum, and one lane of the key hash.
uint64_t fnv1a(const void* data, size_t n, uint64_t h = 0xcbf29ce484222325ull,
               uint64_t prime = 0x100000001b3ull) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * prime;
  return h;
}

uint64_t mix64(uint64_t x) {  // splitmix64's finaliser
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

std::string sanitized(const std::string& name) {
  std::string s;
  for (char c : name.substr(0, 80)) s += (std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-') ? c : '_';
  return s.empty() ? "kernel" : s;
}

template <class T>
void append_pod(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof v);
}
template <class T>
bool read_pod(const std::string& in, size_t& pos, T& v) {
  if (in.size() - pos < sizeof v) return false;
  std::memcpy(&v, in.data() + pos, sizeof v);
  pos += sizeof v;
  return true;
}

// Why `data` is not a valid entry for `key` (NOTE [Kernel cache entry format]), or "" if it is;
// then *payload is where the binary starts.
std::string entry_problem(const std::string& data, const std::string& key, size_t* payload) {
  size_t pos = sizeof kMagic;
  uint32_t key_len = 0;
  uint64_t len = 0, sum = 0;
  if (data.size() < sizeof kMagic || std::memcmp(data.data(), kMagic, sizeof kMagic) != 0) return "bad magic";
  if (!read_pod(data, pos, key_len) || data.size() - pos < key_len) return "truncated header";
  if (key_len != key.size() || data.compare(pos, key_len, key) != 0) return "it holds another key";
  pos += key_len;
  if (!read_pod(data, pos, len) || !read_pod(data, pos, sum)) return "truncated header";
  if (data.size() - pos != len) return fmt::format("payload is {} bytes, header says {}", data.size() - pos, len);
  if (fnv1a(data.data() + pos, len) != sum) return "checksum mismatch";
  *payload = pos;
  return "";
}

}  // namespace

std::string kernel_cache_key(const KernelRequest& r) {
  // A canonical, length-prefixed serialisation of every field, hashed in two independent lanes.
  std::string m = fmt::format("minidl kernel cache key v1\ncodegen {}\n", codegen::kCodegenVersion);
  auto field = [&m](const char* tag, const std::string& v) { m += fmt::format("{} {}:", tag, v.size()) + v + '\n'; };
  field("name", r.name);
  field("arch", r.arch);
  field("compiler", r.compiler);
  for (const auto& o : r.options) field("option", o);
  field("source", r.source);
  field("headers", r.headers);
  const uint64_t a = mix64(fnv1a(m.data(), m.size()));
  const uint64_t b = mix64(fnv1a(m.data(), m.size(), 0x84222325cbf29ce4ull, 0x9e3779b97f4a7c15ull));
  return fmt::format("{:016x}{:016x}", a, b);
}

std::string format_stats(const KernelCacheStats& s) {
  return fmt::format("kernel cache: {} memory hits, {} disk hits, {} misses ({:.1f} ms compiling), "
                     "{} bad entries replaced, {} disk writes",
                     s.memory_hits, s.disk_hits, s.misses, s.compile_ms, s.bad_entries, s.disk_writes);
}

KernelCache::KernelCache(Config config) : config_(std::move(config)) {}

KernelCache::Config KernelCache::config_from_env() {
  Config c;
  c.disk = env_flag("MINIDL_CACHE", true);
  if (const char* dir = std::getenv("MINIDL_CACHE_DIR"); dir && *dir) {
    c.dir = dir;
  } else if (const char* home = std::getenv("HOME"); home && *home) {
    c.dir = (fs::path(home) / ".cache" / "minidl").string();
  } else {
    c.disk = false;  // nowhere to put it
  }
  return c;
}

KernelCache& KernelCache::global() {
  static KernelCache cache(config_from_env());
  return cache;
}

std::string KernelCache::entry_path(const KernelRequest& r) const {
  return (fs::path(config_.dir) / (sanitized(r.name) + "-" + kernel_cache_key(r) + ".cubin")).string();
}

std::shared_ptr<const std::string> KernelCache::get(const KernelRequest& r, const CompileFn& compile) {
  const std::string key = kernel_cache_key(r);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = memory_.find(key); it != memory_.end()) {
      ++stats_.memory_hits;
      return it->second;
    }
  }
  const std::string path = config_.disk ? entry_path(r) : "";
  std::shared_ptr<const std::string> binary;
  if (config_.disk) binary = read_entry(path, key);
  if (binary) {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.disk_hits;
  } else {
    const auto t0 = std::chrono::steady_clock::now();
    binary = std::make_shared<const std::string>(compile(r));  // throws: nothing is cached
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++stats_.misses;
      stats_.compile_ms += ms;
    }
    if (config_.disk) write_entry(path, key, *binary, r.source);
  }
  std::lock_guard<std::mutex> lock(mu_);
  return memory_.emplace(key, binary).first->second;  // a concurrent compile may have won: use its copy
}

std::shared_ptr<const std::string> KernelCache::read_entry(const std::string& path, const std::string& key) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return nullptr;  // not cached yet
  std::string data, why;
  size_t payload = 0;
  try {
    data = read_file(path, "kernel cache");
    why = entry_problem(data, key, &payload);
  } catch (const ValueError& e) {  // a directory, say
    why = e.what();
  }
  if (why.empty()) return std::make_shared<const std::string>(data.substr(payload));
  log("compiler").warn("[kernel cache] ignoring {} ({}); recompiling and replacing it", path, why);
  std::lock_guard<std::mutex> lock(mu_);
  ++stats_.bad_entries;
  return nullptr;
}

void KernelCache::write_entry(const std::string& path, const std::string& key, const std::string& binary,
                              const std::string& source) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!disk_writable_) return;
  }
  std::error_code ec;
  fs::create_directories(config_.dir, ec);
  if (ec) {
    return disk_unwritable(
        fmt::format("[kernel cache] cannot write to {}: {}", config_.dir, ec.message()));
  }
  std::string entry(kMagic, sizeof kMagic);
  append_pod(entry, static_cast<uint32_t>(key.size()));
  entry += key;
  append_pod(entry, static_cast<uint64_t>(binary.size()));
  append_pod(entry, fnv1a(binary.data(), binary.size()));
  entry += binary;
  // The source first: a reader that finds the binary finds its source too.
  const std::string cu = path.substr(0, path.size() - std::string(".cubin").size()) + ".cu";
  try {
    write_file_atomically(cu, source, "kernel cache");
    write_file_atomically(path, entry, "kernel cache");
  } catch (const ValueError& e) {
    return disk_unwritable(e.what());
  }
  std::lock_guard<std::mutex> lock(mu_);
  ++stats_.disk_writes;
}

void KernelCache::disk_unwritable(const std::string& why) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!disk_writable_) return;
  disk_writable_ = false;
  log("compiler").warn("{}; kernels compiled by this process stay in memory only", why);
}

KernelCacheStats KernelCache::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

void KernelCache::reset_stats() {
  std::lock_guard<std::mutex> lock(mu_);
  stats_ = {};
}

}  // namespace minidl
