// A CPU emulator for generated CUDA kernels, so their indexing, masking, synchronisation and
// tensor-core fragment layouts are tested on machines without a GPU (tests/codegen_tests.cpp).
// The test compiles a kernel's generated source with the host compiler, this header included
// first, into a shared library, and runs it block by block.
//
// Each CUDA thread of a block is a fiber (its own stack, switched cooperatively on x86-64); a
// fiber runs until it reaches __syncthreads, a warp operation (__syncwarp, shuffles, mma) or its
// end, and the scheduler then runs the next one. That order is adversarial for missing
// barriers: a thread that races ahead overwrites shared memory before the others have read it.
// A barrier not reached by every live thread is a deadlock and throws. Dynamic shared memory is
// filled with NaNs before every block, so reading unwritten shared memory poisons the result.
//
// The functions device.cuh writes in PTX (f16 conversions, TF32 rounding, mma.sync m16n8k8,
// vector atomics, cp.async) are implemented here from the PTX ISA's definitions.
#pragma once

#if !defined(__x86_64__)
#error "the kernel emulator switches fibers with x86-64 assembly"
#endif

#include <math.h>

#include <cstdint>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/half.h"

#define MINIDL_DEVICE_EMULATED 1
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) alignas(n)
#define MINIDL_DYNAMIC_SMEM(name) unsigned char* name = ::emu::dynamic_smem()

struct alignas(16) float4 {
  float x, y, z, w;
};
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
struct emu_uint3 {
  unsigned x, y, z;
};

inline float __int_as_float(int i) {
  float f;
  std::memcpy(&f, &i, 4);
  return f;
}
inline float __uint_as_float(unsigned u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline unsigned __float_as_uint(float f) {
  unsigned u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline int __float_as_int(float f) { return static_cast<int>(__float_as_uint(f)); }
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }

extern "C" void emu_switch(void** save_sp, void* next_sp);
// Saves the callee-saved registers and the stack pointer of the running context in *save_sp,
// then resumes the context whose stack pointer is next_sp.
asm(R"(
.text
.p2align 4
.type emu_switch,@function
emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
.size emu_switch, .-emu_switch
)");

namespace emu {

enum class State { Runnable, BlockWait, WarpWait, Done };

// A cp.async copy, performed when its thread waits for its group: the latest moment the
// hardware may complete it, so a read before the wait sees the NaN poison.
struct AsyncCopy {
  float* dst;
  const float* src;
  bool valid;
};

struct Fiber {
  void* sp = nullptr;
  std::vector<char> stack;
  unsigned tid = 0;
  State state = State::Runnable;
  std::vector<AsyncCopy> open_copies;
  std::vector<std::vector<AsyncCopy>> copy_groups;
};

struct Warp {
  int arrived = 0;
  uint64_t slot[32];  // shuffle exchange
  unsigned mma_a[32][4], mma_b[32][2];
  float mma_c[32][4];
};

struct Emulator {
  std::vector<Fiber> fibers;
  std::vector<Warp> warps;
  std::vector<unsigned char> smem;
  void* scheduler_sp = nullptr;
  Fiber* current = nullptr;
  std::function<void()>* body = nullptr;
  int block_arrived = 0;
  emu_uint3 block_idx{0, 0, 0}, block_dim{1, 1, 1}, grid_dim{1, 1, 1};
};

inline Emulator& state() {
  static Emulator e;
  return e;
}

inline unsigned char* dynamic_smem() { return state().smem.data(); }

inline int live_threads() {
  int n = 0;
  for (const auto& f : state().fibers) n += f.state != State::Done;
  return n;
}
inline int live_in_warp(int w) {
  int n = 0;
  for (int l = 0; l < 32; ++l) {
    const size_t i = static_cast<size_t>(w) * 32 + l;
    if (i < state().fibers.size()) n += state().fibers[i].state != State::Done;
  }
  return n;
}

inline void yield() { emu_switch(&state().current->sp, state().scheduler_sp); }

// Releases the barriers that every live thread has reached (called when a thread arrives or ends).
inline void release_barriers() {
  Emulator& e = state();
  if (e.block_arrived > 0 && e.block_arrived == live_threads()) {
    e.block_arrived = 0;
    for (auto& f : e.fibers)
      if (f.state == State::BlockWait) f.state = State::Runnable;
  }
  for (size_t w = 0; w < e.warps.size(); ++w) {
    if (e.warps[w].arrived > 0 && e.warps[w].arrived == live_in_warp(static_cast<int>(w))) {
      e.warps[w].arrived = 0;
      for (int l = 0; l < 32; ++l) {
        const size_t i = w * 32 + l;
        if (i < e.fibers.size() && e.fibers[i].state == State::WarpWait) e.fibers[i].state = State::Runnable;
      }
    }
  }
}

inline void syncthreads() {
  Emulator& e = state();
  ++e.block_arrived;
  e.current->state = State::BlockWait;
  release_barriers();
  if (e.current->state == State::BlockWait) yield();
}

inline void syncwarp() {
  Emulator& e = state();
  ++e.warps[e.current->tid / 32].arrived;
  e.current->state = State::WarpWait;
  release_barriers();
  if (e.current->state == State::WarpWait) yield();
}

inline Warp& my_warp() { return state().warps[state().current->tid / 32]; }
inline int my_lane() { return static_cast<int>(state().current->tid % 32); }

template <class T>
T shfl(T v, int src_lane) {
  static_assert(sizeof(T) <= 8, "shuffle of a wide type");
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  my_warp().slot[my_lane()] = bits;
  syncwarp();
  bits = my_warp().slot[src_lane & 31];
  syncwarp();
  T r;
  std::memcpy(&r, &bits, sizeof(T));
  return r;
}

[[noreturn]] inline void fiber_main() {
  Emulator& e = state();
  (*e.body)();
  e.current->state = State::Done;
  release_barriers();
  emu_switch(&e.current->sp, e.scheduler_sp);
  __builtin_unreachable();
}

// Runs body() as every thread of every block of a 1-D grid.
inline void launch(unsigned grid, unsigned block, size_t smem_bytes, std::function<void()> body) {
  Emulator& e = state();
  constexpr size_t kStack = 256 * 1024;
  e.fibers.assign(block, Fiber{});
  e.warps.assign((block + 31) / 32, Warp{});
  e.body = &body;
  e.block_dim = {block, 1, 1};
  e.grid_dim = {grid, 1, 1};
  for (unsigned b = 0; b < grid; ++b) {
    e.block_idx = {b, 0, 0};
    e.block_arrived = 0;
    e.smem.assign(smem_bytes + 16, 0xff);  // NaN as float: reading unwritten shared memory shows
    for (unsigned t = 0; t < block; ++t) {
      Fiber& f = e.fibers[t];
      f.tid = t;
      f.state = State::Runnable;
      f.open_copies.clear();
      f.copy_groups.clear();
      if (f.stack.empty()) f.stack.resize(kStack);
      // Initial frame: six callee-saved registers, then fiber_main as the return address; the
      // stack pointer is 8 mod 16 at fiber_main's entry, as after a call.
      auto top = reinterpret_cast<uintptr_t>(f.stack.data() + f.stack.size()) & ~uintptr_t(15);
      auto* sp = reinterpret_cast<void**>(top - 16);
      sp[0] = reinterpret_cast<void*>(&fiber_main);
      sp -= 6;
      for (int i = 0; i < 6; ++i) sp[i] = nullptr;
      f.sp = sp;
    }
    for (;;) {
      bool ran = false, all_done = true;
      for (auto& f : e.fibers) {
        if (f.state != State::Done) all_done = false;
        if (f.state != State::Runnable) continue;
        ran = true;
        e.current = &f;
        emu_switch(&e.scheduler_sp, f.sp);
      }
      if (all_done) break;
      if (!ran)
        throw std::runtime_error("emulated kernel deadlocked in block " + std::to_string(b) +
                                 ": a barrier or warp operation was not reached by every live thread");
    }
  }
  e.current = nullptr;
}

}  // namespace emu

#define threadIdx (emu_uint3{::emu::state().current->tid, 0u, 0u})
#define blockIdx (::emu::state().block_idx)
#define blockDim (::emu::state().block_dim)
#define gridDim (::emu::state().grid_dim)
#define __shared__ static

inline void __syncthreads() { emu::syncthreads(); }
inline void __syncwarp(unsigned = 0xffffffffu) { emu::syncwarp(); }
template <class T>
T __shfl_xor_sync(unsigned, T v, int mask) {
  return emu::shfl(v, emu::my_lane() ^ mask);
}
template <class T>
T __shfl_sync(unsigned, T v, int src) {
  return emu::shfl(v, src);
}
inline float atomicAdd(float* p, float v) {
  const float old = *p;
  *p = old + v;
  return old;
}

namespace minidl {
namespace dev {

inline float f16_to_float(unsigned short h) { return Half::to_float(h); }
inline unsigned short float_to_f16(float f) { return Half::from_float(f); }

// cvt.rna.tf32.f32: round the low 13 mantissa bits away, ties away from zero.
inline unsigned to_tf32(float x) {
  unsigned u = __float_as_uint(x);
  if ((u & 0x7f800000u) == 0x7f800000u) return u;  // inf, NaN
  return (u + 0x1000u) & 0xffffe000u;
}

// mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 for the whole warp, from the PTX ISA's
// fragment layouts: a0..a3 = A[g][t], A[g+8][t], A[g][t+4], A[g+8][t+4]; b0, b1 = B[t][g],
// B[t+4][g]; c0..c3 = C[g][2t], C[g][2t+1], C[g+8][2t], C[g+8][2t+1]. The tensor cores read only
// the TF32 bits of each operand.
inline void mma_tf32(float (&c)[4], const unsigned (&a)[4], const unsigned (&b)[2]) {
  emu::Warp& w = emu::my_warp();
  const int lane = emu::my_lane();
  for (int i = 0; i < 4; ++i) w.mma_a[lane][i] = a[i], w.mma_c[lane][i] = c[i];
  for (int i = 0; i < 2; ++i) w.mma_b[lane][i] = b[i];
  emu::syncwarp();
  auto A = [&](int row, int k) {
    return __uint_as_float(w.mma_a[(row % 8) * 4 + k % 4][(row >= 8 ? 1 : 0) + (k >= 4 ? 2 : 0)] & 0xffffe000u);
  };
  auto B = [&](int k, int col) { return __uint_as_float(w.mma_b[col * 4 + k % 4][k >= 4 ? 1 : 0] & 0xffffe000u); };
  float d[4];
  const int g = lane / 4, t = lane % 4;
  for (int i = 0; i < 4; ++i) {
    const int row = g + 8 * (i / 2), col = 2 * t + i % 2;
    float acc = w.mma_c[lane][i];
    for (int k = 0; k < 8; ++k) acc += A(row, k) * B(k, col);
    d[i] = acc;
  }
  emu::syncwarp();  // every lane has read the fragments before any lane changes them
  for (int i = 0; i < 4; ++i) c[i] = d[i];
}

inline void atomic_add2(float* p, float a, float b) {
  p[0] += a;
  p[1] += b;
}
inline void atomic_add4(float* p, float4 v) {
  p[0] += v.x;
  p[1] += v.y;
  p[2] += v.z;
  p[3] += v.w;
}
inline void cp_async_f32(float* dst, const float* src, bool valid) {
  emu::state().current->open_copies.push_back({dst, src, valid});
}
inline void cp_async_commit() {
  emu::Fiber& f = *emu::state().current;
  f.copy_groups.push_back(std::move(f.open_copies));
  f.open_copies.clear();
}
template <int N>
void cp_async_wait() {
  emu::Fiber& f = *emu::state().current;
  while (f.copy_groups.size() > static_cast<size_t>(N)) {
    for (const emu::AsyncCopy& c : f.copy_groups.front()) *c.dst = c.valid ? *c.src : 0.f;
    f.copy_groups.erase(f.copy_groups.begin());
  }
}

}  // namespace dev
}  // namespace minidl
