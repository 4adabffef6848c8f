// Running generated kernels on the CPU emulator of CUDA (tests/cuda_emu.h): a set of kernels is
// compiled by the host compiler, the emulator included first, into one shared library (one
// compile for many kernels keeps the suites fast), loaded, and launched over a 1-D grid.
#pragma once

#include <dlfcn.h>
#include <doctest/doctest.h>
#include <spdlog/fmt/fmt.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <iterator>
#include <memory>
#include <set>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "compiler/codegen/embedded_headers.h"
#include "compiler/codegen/kernel.h"

namespace minidl::testing {

/// Host compiler for the emulated kernels ($CXX, c++, g++); empty where none works.
inline const std::string& host_compiler() {
  static const std::string cxx = [] {
    for (const char* c : {static_cast<const char*>(std::getenv("CXX")), "c++", "g++"}) {
      if (c && *c && std::system((std::string(c) + " --version > /dev/null 2>&1").c_str()) == 0) return std::string(c);
    }
    return std::string();
  }();
  return cxx;
}

/// True where emulated kernels can run; else prints why the calling test is skipped.
inline bool emulator_or_skip(const char* test) {
#if defined(__x86_64__)
  if (!host_compiler().empty()) return true;
  std::printf("[minidl tests] skipped '%s': no host C++ compiler to build emulated kernels\n", test);
#else
  std::printf("[minidl tests] skipped '%s': the kernel emulator switches fibers with x86-64 code\n", test);
#endif
  return false;
}

/// The parameter block type of a generated kernel, from its signature "<name>(const minidl::<Type> p)".
inline std::string params_type(const codegen::GeneratedKernel& k) {
  const size_t at = k.source.find("const minidl::", k.source.find(k.name + "(")) + 14;
  return k.source.substr(at, k.source.find(' ', at) - at);
}

/// Generated kernels (distinct names) built together for the emulator and loaded.
class EmulatedKernels {
 public:
  /// `flags` go to the host compiler (-DMINIDL_EMU_IEEE_MMA: NOTE [Tensor-core accumulation] in cuda_emu.h).
  explicit EmulatedKernels(const std::vector<codegen::GeneratedKernel>& ks, const std::string& flags = "") : ks_(ks) {
    namespace fs = std::filesystem;
    static std::atomic<int> built{0};
    REQUIRE(!ks.empty());
    dir_ = fs::temp_directory_path() / fmt::format("minidl-emu-{}", ::getpid()) /
           fmt::format("{}-{}", ks.front().name, built++);
    for (const auto& h : codegen::embedded_headers()) write_text(dir_ / h.name, h.text);
    std::string tu = "#include \"cuda_emu.h\"\n";
    std::set<std::string> names;
    for (size_t i = 0; i < ks.size(); ++i) {
      REQUIRE_MESSAGE(names.insert(ks[i].name).second, "two kernels named " << ks[i].name);
      tu += fmt::format("{}\nextern \"C\" void minidl_emu_run_{}(unsigned grid, const void* p) {{\n"
                        "  emu::launch(grid, {}, {}, [&] {{ {}(*static_cast<const minidl::{}*>(p)); }});\n}}\n",
                        ks[i].source, i, ks[i].threads, ks[i].smem_bytes, ks[i].name, params_type(ks[i]));
    }
    write_text(dir_ / "kernels.cpp", tu);
    const fs::path tests = fs::path(MINIDL_SOURCE_DIR) / "tests";
    const std::string cmd = fmt::format("{} -std=c++17 -O1 -march=native -fPIC -shared -w {} -I{} -I{} -I{} -o {} {} 2> {}",
                                        host_compiler(), flags, dir_.string(), tests.string(), tests.parent_path().string(),
                                        (dir_ / "kernels.so").string(), (dir_ / "kernels.cpp").string(),
                                        (dir_ / "build.log").string());
    if (std::system(cmd.c_str()) != 0) {
      std::ifstream log(dir_ / "build.log");
      FAIL("emulated build of " << ks.front().name << " failed (" << dir_.string() << "):\n"
                                << std::string(std::istreambuf_iterator<char>(log), {}));
    }
    lib_ = dlopen((dir_ / "kernels.so").c_str(), RTLD_NOW | RTLD_LOCAL);
    REQUIRE_MESSAGE(lib_ != nullptr, dlerror());
    for (size_t i = 0; i < ks.size(); ++i) {
      runs_.push_back(reinterpret_cast<void (*)(unsigned, const void*)>(
          dlsym(lib_, fmt::format("minidl_emu_run_{}", i).c_str())));
      REQUIRE(reinterpret_cast<void*>(runs_.back()) != nullptr);
    }
  }
  ~EmulatedKernels() {
    if (lib_) dlclose(lib_);
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  EmulatedKernels(const EmulatedKernels&) = delete;
  EmulatedKernels& operator=(const EmulatedKernels&) = delete;

  /// Runs kernel i over `blocks` blocks with its parameter block.
  void run(size_t i, long long blocks, const void* params) const { runs_.at(i)(static_cast<unsigned>(blocks), params); }
  const codegen::GeneratedKernel& kernel(size_t i) const { return ks_.at(i); }
  size_t size() const { return ks_.size(); }

 private:
  static void write_text(const std::filesystem::path& p, const std::string& text) {
    std::filesystem::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << text;
  }

  std::vector<codegen::GeneratedKernel> ks_;
  std::filesystem::path dir_;  // kept when the build fails (the constructor throws), for its log
  void* lib_ = nullptr;
  std::vector<void (*)(unsigned, const void*)> runs_;
};

}  // namespace minidl::testing
