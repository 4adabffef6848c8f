// Peak rate of mma.sync.m16n8k8 TF32 on the GPU at hand, by independent accumulator chains
// per warp and warps per SM (docs/kernel-notes.md, "Profile and mma latency"). Standalone, not
// part of the CMake build: nvcc -arch=sm_90a -O3 -o mma_peak bench/mma_peak.cu && ./mma_peak
#include <cstdio>
#include <cstdlib>
#include <cuda_runtime.h>
template <int CH>
__global__ void __launch_bounds__(256) peak(float* out, int iters) {
  unsigned a[4], b[2];
  for (int i = 0; i < 4; ++i) a[i] = __float_as_uint(1.0f + threadIdx.x * 1e-3f + i);
  for (int i = 0; i < 2; ++i) b[i] = __float_as_uint(0.5f + i);
  float c[CH][4] = {};
  for (int it = 0; it < iters; ++it) {
#pragma unroll
    for (int j = 0; j < CH; ++j)
      asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                   : "+f"(c[j][0]), "+f"(c[j][1]), "+f"(c[j][2]), "+f"(c[j][3])
                   : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  }
  float s = 0;
  for (int j = 0; j < CH; ++j) s += c[j][0] + c[j][1] + c[j][2] + c[j][3];
  out[blockIdx.x * blockDim.x + threadIdx.x] = s;
}
template <int CH>
void run(int threads, int blocks_per_sm, int sms) {
  float* out; cudaMalloc(&out, 1 << 26);
  const int iters = 4096, blocks = sms * blocks_per_sm;
  peak<CH><<<blocks, threads>>>(out, 16);
  cudaEvent_t e0, e1; cudaEventCreate(&e0); cudaEventCreate(&e1);
  cudaEventRecord(e0);
  peak<CH><<<blocks, threads>>>(out, iters);
  cudaEventRecord(e1); cudaEventSynchronize(e1);
  if (const cudaError_t err = cudaGetLastError(); err != cudaSuccess) {
    std::fprintf(stderr, "mma_peak: %s\n", cudaGetErrorString(err));
    std::exit(1);
  }
  float ms; cudaEventElapsedTime(&ms, e0, e1);
  const double flop = 2.0 * 16 * 8 * 8 * CH * double(iters) * blocks * threads / 32;
  printf("chains %2d, %3d threads x %d blocks/SM: %7.1f TFLOP/s of TF32 mma (%.3f ms)\n", CH, threads, blocks_per_sm, flop / ms / 1e9, ms);
  cudaFree(out);
}
int main() {
  int sms; cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
  run<1>(128, 1, sms); run<2>(128, 1, sms); run<4>(128, 1, sms); run<8>(128, 1, sms);
  run<1>(256, 1, sms); run<2>(256, 1, sms); run<4>(256, 1, sms); run<8>(256, 1, sms);
  run<4>(256, 2, sms); run<8>(256, 2, sms); run<8>(256, 4, sms);
}
