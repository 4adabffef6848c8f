// The kernel cache: compiled binaries keyed by everything that determines them, in memory
// (thread-safe) in front of a directory on disk that survives the process.
//
// Disk entries are <name>-<key>.cubin with the generated <name>-<key>.cu beside it, written to a
// temp file in the same directory, flushed, closed and renamed, so readers only ever see whole
// entries and two processes compiling one kernel both succeed. Every entry read is checked
// (magic, length, checksum, and the key stored inside); a truncated, corrupted or foreign entry
// is recompiled and replaced with a warning, never trusted. A directory that cannot be written
// warns once and the cache goes on in memory.
//
// Environment: MINIDL_CACHE_DIR (default ~/.cache/minidl), MINIDL_CACHE=0 (no disk cache).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace minidl {

/// What a binary is compiled from: every field is part of the cache key.
struct KernelRequest {
  std::string name;                  // kernel name; prefixes the file names on disk
  std::string source;                // the translation unit
  std::vector<std::string> options;  // compiler options, in their canonical order
  std::string arch;                  // "sm_90"
  std::string compiler;              // "nvrtc-13.0"
  std::string headers;               // names and texts of the headers the source may include
};

/// The cache key of a request: 32 hex digits hashing its fields and kCodegenVersion.
std::string kernel_cache_key(const KernelRequest& r);

struct KernelCacheStats {
  int64_t memory_hits = 0;    // found in this process's memory
  int64_t disk_hits = 0;      // found on disk, valid
  int64_t misses = 0;         // compiled (the compile function was called)
  int64_t bad_entries = 0;    // disk entries rejected (truncated, corrupted, foreign) and replaced
  int64_t disk_writes = 0;    // entries written to disk
  double compile_ms = 0;      // total time spent in the compile function
};

/// "kernel cache: 3 memory hits, 1 disk hit, 2 misses (812.4 ms compiling), 0 bad entries".
std::string format_stats(const KernelCacheStats& s);

class KernelCache {
 public:
  struct Config {
    std::string dir;   // disk cache directory (created on first write)
    bool disk = true;  // false: memory only
  };
  /// Turns a request into a binary; throws on failure (nothing is cached then).
  using CompileFn = std::function<std::string(const KernelRequest&)>;

  explicit KernelCache(Config config);

  /// The configuration the environment asks for (MINIDL_CACHE_DIR, MINIDL_CACHE).
  static Config config_from_env();
  /// The process-wide cache, configured from the environment on first use.
  static KernelCache& global();

  /// The binary for r: from memory, else from a valid disk entry, else compile(r), stored in
  /// memory and on disk.
  std::shared_ptr<const std::string> get(const KernelRequest& r, const CompileFn& compile);

  KernelCacheStats stats() const;
  void reset_stats();
  const Config& config() const { return config_; }
  /// Where the binary of r lives (or would live) on disk; its source is beside it as .cu.
  std::string entry_path(const KernelRequest& r) const;

 private:
  std::shared_ptr<const std::string> read_entry(const std::string& path, const std::string& key);
  void write_entry(const std::string& path, const std::string& key, const std::string& binary,
                   const std::string& source);
  void disk_unwritable(const std::string& why);

  Config config_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, std::shared_ptr<const std::string>> memory_;
  KernelCacheStats stats_;
  bool disk_writable_ = true;
};

}  // namespace minidl
