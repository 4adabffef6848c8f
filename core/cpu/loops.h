// Strided elementwise iteration for CPU kernels: N operands viewed with one shape (inputs
// already broadcast, stride 0 along broadcast dims). Dims that are contiguous for every operand
// are merged, then the innermost run is handed to a callback as (pointers, count, strides), so
// the kernel body is a plain loop the compiler can vectorise.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "core/cpu/parallel.h"
#include "core/shape.h"
#include "core/tensor.h"

namespace minidl::cpu {

template <int N>
struct LoopOperands {
  std::array<char*, N> ptr;
  std::array<Strides, N> strides;  // bytes, one per dim of the shape
};

/// Strides of t (in bytes) as seen through `shape` (t broadcast to it, with stride 0 where t
/// has size 1 or is missing a leading dim).
Strides broadcast_byte_strides(const Tensor& t, const Shape& shape);

/// Merges adjacent dims that are contiguous for all operands (in place).
template <int N>
void coalesce(Shape& shape, LoopOperands<N>& ops) {
  if (shape.size() <= 1) return;
  Shape s{shape.back()};
  std::array<Strides, N> st;
  for (int k = 0; k < N; ++k) st[k] = {ops.strides[k].back()};
  for (int64_t d = static_cast<int64_t>(shape.size()) - 2; d >= 0; --d) {
    bool merge = true;
    for (int k = 0; k < N; ++k)
      if (ops.strides[k][d] != st[k].front() * s.front()) merge = false;
    if (merge || s.front() == 1) {
      if (s.front() == 1)
        for (int k = 0; k < N; ++k) st[k].front() = ops.strides[k][d];
      s.front() *= shape[d];
    } else if (shape[d] != 1) {
      s.insert(s.begin(), shape[d]);
      for (int k = 0; k < N; ++k) st[k].insert(st[k].begin(), ops.strides[k][d]);
    }
  }
  shape = s;
  ops.strides = st;
}

/// Runs body(ptrs, n, strides) over every innermost run of `shape`, in parallel over the
/// outer index when the work is large. cost is a rough op count per element.
template <int N, class Body>
void for_each_run(Shape shape, LoopOperands<N> ops, int64_t cost, const Body& body) {
  if (numel(shape) == 0) return;
  if (shape.empty()) {
    shape = {1};
    for (int k = 0; k < N; ++k) ops.strides[k] = {0};
  }
  coalesce<N>(shape, ops);
  const int64_t nd = static_cast<int64_t>(shape.size());
  const int64_t inner = shape.back();
  const int64_t outer = numel(shape) / inner;
  std::array<int64_t, N> inner_stride;
  for (int k = 0; k < N; ++k) inner_stride[k] = ops.strides[k].back();
  parallel_for(outer, inner * cost, [&](int64_t begin, int64_t end) {
    // Decompose `begin` into an index over the outer dims, then step it like an odometer.
    std::vector<int64_t> idx(nd, 0);
    int64_t rem = begin;
    for (int64_t d = nd - 2; d >= 0; --d) {
      idx[d] = rem % shape[d];
      rem /= shape[d];
    }
    std::array<char*, N> p;
    for (int k = 0; k < N; ++k) {
      p[k] = ops.ptr[k];
      for (int64_t d = 0; d < nd - 1; ++d) p[k] += idx[d] * ops.strides[k][d];
    }
    for (int64_t o = begin; o < end; ++o) {
      body(p, inner, inner_stride);
      for (int64_t d = nd - 2; d >= 0; --d) {
        for (int k = 0; k < N; ++k) p[k] += ops.strides[k][d];
        if (++idx[d] < shape[d]) break;
        for (int k = 0; k < N; ++k) p[k] -= shape[d] * ops.strides[k][d];
        idx[d] = 0;
      }
    }
  });
}

}  // namespace minidl::cpu
