#include "compiler/jit.h"

#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <set>
#include <unordered_map>

#include "base/env.h"
#include "base/log.h"
#include "compiler/kernel_cache.h"

#if MINIDL_WITH_CUDA
#include <nvrtc.h>

#include "compiler/codegen/embedded_headers.h"
#include "runtime/cuda.h"
#include "runtime/cuda_check.h"
#include "runtime/module.h"
#endif

namespace minidl::jit {

namespace fs = std::filesystem;

namespace {

bool write_file(const fs::path& path, const std::string& text) {
  std::error_code ec;
  fs::create_directories(path.parent_path(), ec);
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << text;
  return static_cast<bool>(f);
}

std::string source_tag(const std::string& source) {
  return fmt::format("{:08x}", std::hash<std::string>{}(source) & 0xffffffffu);
}

}  // namespace

std::string dump_source(const std::string& name, const std::string& source) {
  const char* dir = std::getenv("MINIDL_DUMP_DIR");
  if (!dir || !*dir) return "";
  const fs::path path = fs::path(dir) / (name + "-" + source_tag(source) + ".cu");
  static std::mutex mu;
  static std::set<std::string> written;
  std::lock_guard<std::mutex> lock(mu);
  if (written.count(path.string())) return path.string();
  if (!write_file(path, source)) {
    log("compiler").warn("[jit] cannot write {} (MINIDL_DUMP_DIR)", path.string());
    return "";
  }
  written.insert(path.string());
  return path.string();
}

#if MINIDL_WITH_CUDA

namespace {

// Checks an NVRTC call that is not a compilation (those report through the log).
void nvrtc_check(nvrtcResult r, const char* call, const std::string& name) {
  if (r != NVRTC_SUCCESS)
    throw CompileError(fmt::format("[jit] {} failed for {}: {}", call, name, nvrtcGetErrorString(r)));
}

// Where a failed compile's source goes: MINIDL_DUMP_DIR, else the temp directory.
std::string dump_failed_source(const std::string& name, const std::string& source) {
  std::string path = dump_source(name, source);
  if (!path.empty()) return path;
  std::error_code ec;
  const fs::path p = fs::temp_directory_path(ec) / fmt::format("minidl-{}-{}-{}.cu", name, ::getpid(), source_tag(source));
  return write_file(p, source) ? p.string() : "(could not write the source)";
}

bool verbose() {
  return env_flag("MINIDL_JIT_VERBOSE", false);
}

}  // namespace

std::string target_arch() {
  if (!cuda::is_available()) return "sm_90";
  int device = 0;
  cudaGetDevice(&device);
  const cuda::DeviceProperties p = cuda::properties(device);
  return fmt::format("sm_{}{}", p.major, p.minor);
}

std::string compiler_version() {
  int major = 0, minor = 0;
  nvrtcVersion(&major, &minor);
  return fmt::format("nvrtc-{}.{}", major, minor);
}

std::vector<std::string> compile_options(const std::string& arch) {
  std::vector<std::string> o = {"--gpu-architecture=" + arch, "--std=c++17"};
#ifndef NDEBUG
  o.push_back("--generate-line-info");  // for compute-sanitizer and profilers in debug builds
#endif
  if (verbose()) o.push_back("--ptxas-options=--verbose");
  return o;
}

std::string compile_cubin(const std::string& name, const std::string& source,
                          const std::vector<std::string>& options) {
  const auto& headers = codegen::embedded_headers();
  std::vector<const char*> texts, names;
  for (const auto& h : headers) {
    texts.push_back(h.text);
    names.push_back(h.name);
  }
  nvrtcProgram prog = nullptr;
  nvrtc_check(nvrtcCreateProgram(&prog, source.c_str(), (name + ".cu").c_str(), static_cast<int>(texts.size()),
                                 texts.data(), names.data()),
              "nvrtcCreateProgram", name);
  std::unique_ptr<nvrtcProgram, void (*)(nvrtcProgram*)> guard(&prog, [](nvrtcProgram* p) { nvrtcDestroyProgram(p); });

  std::vector<const char*> opts;
  for (const auto& o : options) opts.push_back(o.c_str());
  const nvrtcResult result = nvrtcCompileProgram(prog, static_cast<int>(opts.size()), opts.data());
  size_t log_size = 0;
  nvrtc_check(nvrtcGetProgramLogSize(prog, &log_size), "nvrtcGetProgramLogSize", name);
  std::string log_text(log_size, '\0');
  if (log_size > 1) nvrtc_check(nvrtcGetProgramLog(prog, log_text.data()), "nvrtcGetProgramLog", name);
  log_text.resize(log_size ? log_size - 1 : 0);  // drop the terminating NUL
  if (result != NVRTC_SUCCESS) {
    const std::string path = dump_failed_source(name, source);
    throw JitCompileError(fmt::format("[jit] NVRTC could not compile {} ({}); source: {}\n{}", name,
                                      nvrtcGetErrorString(result), path, log_text),
                          log_text, path);
  }
  if (verbose()) log("compiler").info("[jit] {}: {}", name, log_text);
  size_t size = 0;
  nvrtc_check(nvrtcGetCUBINSize(prog, &size), "nvrtcGetCUBINSize", name);
  std::string cubin(size, '\0');
  nvrtc_check(nvrtcGetCUBIN(prog, cubin.data()), "nvrtcGetCUBIN", name);
  return cubin;
}

namespace {
// The embedded headers' names and texts: part of every cache key, so that a change to
// device.cuh (which the generated source only #includes) recompiles the kernels using it.
const std::string& embedded_headers_text() {
  static const std::string text = [] {
    std::string t;
    for (const auto& h : codegen::embedded_headers()) t += fmt::format("{} {}\n{}\n", h.name, std::strlen(h.text), h.text);
    return t;
  }();
  return text;
}

KernelRequest request_for(const codegen::GeneratedKernel& k) {
  const std::string arch = target_arch();
  return {k.name, k.source, compile_options(arch), arch, compiler_version(), embedded_headers_text()};
}
std::shared_ptr<const std::string> compile_request(const KernelRequest& req) {
  dump_source(req.name, req.source);
  return KernelCache::global().get(req, [](const KernelRequest& r) { return compile_cubin(r.name, r.source, r.options); });
}
}  // namespace

std::shared_ptr<const std::string> compile_cached(const codegen::GeneratedKernel& k) {
  return compile_request(request_for(k));
}

const LoadedKernel& load(const codegen::GeneratedKernel& k) {
  // Loaded modules live until exit: unloading them after the runtime shut down would fail.
  struct Entry {
    std::unique_ptr<cuda::Module> module;
    LoadedKernel kernel;
  };
  static std::mutex mu;
  static auto* loaded = new std::unordered_map<std::string, std::unique_ptr<Entry>>();

  int device = 0;
  MINIDL_CUDA_CHECK(cudaGetDevice(&device), k.name.c_str());
  const KernelRequest req = request_for(k);
  const std::string id = kernel_cache_key(req) + "@" + std::to_string(device);
  std::lock_guard<std::mutex> lock(mu);
  if (auto it = loaded->find(id); it != loaded->end()) return it->second->kernel;

  auto binary = compile_request(req);
  auto e = std::make_unique<Entry>();
  e->module = std::make_unique<cuda::Module>(*binary, k.name);
  e->kernel = {e->module->kernel(k.name), k.threads, k.smem_bytes, k.tile, k.name};
  if (k.smem_bytes > 48 * 1024) cuda::set_dynamic_smem(e->kernel.fn, k.smem_bytes, k.name.c_str());
  return loaded->emplace(id, std::move(e)).first->second->kernel;
}

void launch(const LoadedKernel& k, long long blocks, const void* params) {
  MINIDL_CHECK(blocks > 0 && blocks < (1ll << 31), ValueError, "[{}] cannot launch {} blocks", k.name, blocks);
  cuda::launch(k.fn, static_cast<unsigned>(blocks), static_cast<unsigned>(k.threads), k.smem_bytes, params,
               k.name.c_str());
}

#endif  // MINIDL_WITH_CUDA

}  // namespace minidl::jit
