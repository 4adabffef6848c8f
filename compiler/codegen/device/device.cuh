// Device helpers for generated kernels (compiler/codegen/): the fixed-width integer types NVRTC
// lacks, the 16-bit float storage types and their conversions, the TF32 split and the m16n8k8
// TF32 tensor-core product. Embedded as a string at build time (NVRTC 13 has no cuda_fp16.h),
// so generated code needs no toolkit header.
//
// The host compiler sees this file only under the CPU emulator of the kernel tests
// (tests/cuda_emu.h), which defines MINIDL_DEVICE_EMULATED and supplies the functions that are
// written in PTX here (f16 conversions, TF32 rounding, mma, vector atomics, async copies) and the dynamic
// shared memory.
#pragma once

#if defined(__CUDACC_RTC__)
typedef signed char int8_t;
typedef unsigned char uint8_t;
typedef short int16_t;
typedef unsigned short uint16_t;
typedef int int32_t;
typedef unsigned int uint32_t;
typedef long long int64_t;
typedef unsigned long long uint64_t;
#endif

#define MINIDL_DEV __device__ __forceinline__
#define MINIDL_INF __int_as_float(0x7f800000)
#define MINIDL_LOG2E 1.4426950408889634f
#define MINIDL_LN2 0.6931471805599453f

// MINIDL_DYNAMIC_SMEM(name); declares the block's dynamic shared memory, 16-byte aligned.
#ifndef MINIDL_DYNAMIC_SMEM
#define MINIDL_DYNAMIC_SMEM(name) extern __shared__ __align__(16) unsigned char name[]
#endif

namespace minidl {
namespace dev {

/// IEEE binary16 and bfloat16 as stored in memory; arithmetic happens in float.
struct f16 {
  unsigned short bits;
};
struct bf16 {
  unsigned short bits;
};

/// bfloat16 <-> float: the top half of a float, rounded to nearest even, NaN kept (bit-identical
/// to the host's BFloat16 in core/half.h).
MINIDL_DEV float bf16_to_float(unsigned short b) { return __uint_as_float(static_cast<unsigned>(b) << 16); }
MINIDL_DEV unsigned short float_to_bf16(float f) {
  unsigned x = __float_as_uint(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<unsigned short>((x >> 16) | 0x40u);
  x += 0x7fffu + ((x >> 16) & 1u);
  return static_cast<unsigned short>(x >> 16);
}

#ifndef MINIDL_DEVICE_EMULATED
/// binary16 <-> float through the hardware conversions (round to nearest even).
MINIDL_DEV float f16_to_float(unsigned short h) {
  float f;
  asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
  return f;
}
MINIDL_DEV unsigned short float_to_f16(float f) {
  unsigned short h;
  asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
  return h;
}

/// x rounded to TF32 (10-bit mantissa, round half away from zero), as the bits of a float.
MINIDL_DEV unsigned to_tf32(float x) {
  unsigned r;
  asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
  return r;
}

/// c += a · b on the tensor cores: one m16n8k8 TF32 product of a warp, fp32 accumulation.
/// Fragments (g = lane / 4, t = lane % 4): a = A[g][t], A[g+8][t], A[g][t+4], A[g+8][t+4];
/// b = B[t][g], B[t+4][g]; c = C[g][2t], C[g][2t+1], C[g+8][2t], C[g+8][2t+1].
MINIDL_DEV void mma_tf32(float (&c)[4], const unsigned (&a)[4], const unsigned (&b)[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

/// p[0] += a, p[1] += b as one vector atomic reduction (sm_90; p 8-byte aligned).
MINIDL_DEV void atomic_add2(float* p, float a, float b) {
  asm volatile("red.global.add.v2.f32 [%0], {%1, %2};" ::"l"(p), "f"(a), "f"(b) : "memory");
}
/// p[0..3] += v as one vector atomic reduction (sm_90; p 16-byte aligned).
MINIDL_DEV void atomic_add4(float* p, float4 v) {
  asm volatile("red.global.add.v4.f32 [%0], {%1, %2, %3, %4};" ::"l"(p), "f"(v.x), "f"(v.y), "f"(v.z), "f"(v.w)
               : "memory");
}

/// Starts an asynchronous 4-byte copy *src -> *dst (shared memory), or writes 0 when !valid (src
/// must still be a readable address). The copy lands at a later cp_async_wait of this thread.
MINIDL_DEV void cp_async_f32(float* dst, const float* src, bool valid) {
  const unsigned d = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;" ::"r"(d), "l"(src), "r"(valid ? 4 : 0));
}
/// Closes this thread's group of copies started since the previous commit.
MINIDL_DEV void cp_async_commit() { asm volatile("cp.async.commit_group;"); }
/// Waits until at most N of this thread's committed groups are still in flight; a barrier then
/// makes the landed copies visible to the whole block.
template <int N>
MINIDL_DEV void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;" ::"n"(N));
}
#endif

/// The 3xTF32 split: x ≈ big + small, both read as TF32 by the mma, so a·b ≈ big·big + big·small
/// + small·big keeps float32 accuracy on the tensor cores (NOTE [3xTF32] in
/// compiler/codegen/attention.cpp). Three instructions, where two cvt.rna.tf32 took about eight
/// on sm_90 (an infinity test, an add, a select and a mask each): the split runs for every
/// fragment a warp reads from a float tile and was a third of the Tf32 kernels' instructions
/// (docs/kernel-notes.md, "Profile"). big is x rounded to TF32 (half away from zero), masked so
/// that x − big is exact; small keeps its low 13 bits, which the mma ignores (it truncates small
/// to TF32: an error of 2^-21·|x| at most, against the 2^-22 of the small·small term dropped anyway).
/// A NaN whose rounding carries into the sign bit makes big a zero, but small is x − big, the NaN.
MINIDL_DEV void split_tf32(float x, unsigned& big, unsigned& small) {
  big = (__float_as_uint(x) + 0x1000u) & 0xffffe000u;
  small = __float_as_uint(x - __uint_as_float(big));
}

/// Component i (0..3, a compile-time constant after unrolling) of a float4.
MINIDL_DEV float comp(const float4& v, int i) { return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w; }

// Loads convert a stored element to its compute type (NOTE [Compute type] in core/dtype.h);
// stores convert back.
template <class T>
MINIDL_DEV T load(const T* p) {
  return *p;
}
MINIDL_DEV float load(const f16* p) { return f16_to_float(p->bits); }
MINIDL_DEV float load(const bf16* p) { return bf16_to_float(p->bits); }

template <class T, class C>
MINIDL_DEV void store(T* p, C v) {
  *p = static_cast<T>(v);
}
MINIDL_DEV void store(f16* p, float v) { p->bits = float_to_f16(v); }
MINIDL_DEV void store(bf16* p, float v) { p->bits = float_to_bf16(v); }

}  // namespace dev
}  // namespace minidl
