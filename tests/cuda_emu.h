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
// vector atomics, cp.async) are implemented here from the PTX ISA's definitions, except the
// tensor cores' float32 accumulation, which follows the hardware: NOTE [Tensor-core accumulation].
//
// NOTE [Tensor-core accumulation]
// mma.sync with float32 accumulation is not an IEEE sum. Measured on V100, A100 and H100 (Fasi,
// Higham, Mikaitis, Pranesh, "Numerical behavior of NVIDIA tensor cores", PeerJ CS 2021; Khattak,
// Mikaitis, "Accurate models of NVIDIA tensor cores", arXiv:2512.07004), one m16n8k8 step
// computes each output as one fused sum of c and the eight products:
//   1. the products a_k·b_k are exact (TF32 operands: 11-bit significands, 22-bit products);
//   2. every addend (c and the products) is aligned to the largest exponent among them, and the
//      bits below the accumulator's precision at that exponent are dropped (truncation);
//   3. the aligned addends are summed exactly and the sum is normalised to float32 by
//      truncation, i.e. rounded toward zero.
// Step 3 makes every mma round toward zero, a bias of about half an ulp of the result per step:
// a chain of L mma's into one accumulator drifts by ~L/2 ulps, so an accumulator that runs over
// all N keys (L = 3N/8 with 3xTF32) has an error growing linearly with N. That is what the H200
// showed (relative error 1.1e-5 at N = 1024, 3.6e-5 at N = 4096) and what IEEE round-to-nearest,
// whose errors cancel, hides. The model below is steps 1-3 with kMmaAlignBits bits kept below
// float32's 24 in step 2 (0: none; the hardware keeps at most a few) and one group of eight
// products per step; compile a kernel with -DMINIDL_EMU_IEEE_MMA to get an IEEE float32 chain of
// FMAs instead (the emulator before this model), e.g. to compare the two.
#pragma once

#if !defined(__x86_64__)
#error "the kernel emulator switches fibers with x86-64 assembly"
#endif

#include <math.h>

#include <climits>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <algorithm>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
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


// Bits the tensor cores' adder keeps below float32's 24 when it aligns the addends of one mma
// step: NOTE [Tensor-core accumulation].
#ifndef MINIDL_EMU_MMA_ALIGN_BITS
#define MINIDL_EMU_MMA_ALIGN_BITS 0
#endif
constexpr int kMmaAlignBits = MINIDL_EMU_MMA_ALIGN_BITS;

// float32 nearest to x in the direction of zero (x finite).
inline float round_toward_zero(double x) {
  float f = static_cast<float>(x);
  if (std::fabs(static_cast<double>(f)) > std::fabs(x)) f = std::nextafter(f, 0.f);
  return f;
}

#ifndef MINIDL_EMU_MMA_GROUP
#define MINIDL_EMU_MMA_GROUP 8
#endif
constexpr int kMmaGroup = MINIDL_EMU_MMA_GROUP;

// c + the sum of `n` exact products in one fused step: aligned, truncated, rounded toward zero.
inline float fused_sum(float c, const double* products, int n) {
  double addends[9] = {c};
  for (int k = 0; k < n; ++k) addends[k + 1] = products[k];
  int emax = INT_MIN;
  for (int k = 0; k <= n; ++k) {
    const double x = addends[k];
    if (!std::isfinite(x)) {  // inf / NaN propagate as in any sum
      double s = 0;
      for (int j = 0; j <= n; ++j) s += addends[j];
      return static_cast<float>(s);
    }
    if (x != 0) emax = std::max(emax, std::ilogb(x));
  }
  if (emax == INT_MIN) return 0.f;
  // After alignment every addend is a multiple of 2^quantum_exp below 2^(emax+1): at most
  // 24 + kMmaAlignBits bits, so their sum is exact in a double.
  const int quantum_exp = emax - 23 - kMmaAlignBits;
  double sum = 0;
  for (int k = 0; k <= n; ++k) sum += std::ldexp(std::trunc(std::ldexp(addends[k], -quantum_exp)), quantum_exp);
  return round_toward_zero(sum);
}

// c + the sum of the eight exact products of one mma step, as the tensor cores add them.
inline float tensor_core_sum(float c, const double (&products)[8]) {
#if defined(MINIDL_EMU_IEEE_MMA)
  float acc = c;
  for (double p : products) acc += static_cast<float>(p);  // exact: 22-bit products
  return acc;
#else
  for (int k = 0; k < 8; k += kMmaGroup) c = fused_sum(c, products + k, kMmaGroup);
  return c;
#endif
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
    double products[8];
    for (int k = 0; k < 8; ++k) products[k] = static_cast<double>(A(row, k)) * B(k, col);  // exact
    d[i] = emu::tensor_core_sum(w.mma_c[lane][i], products);
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
