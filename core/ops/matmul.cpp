// matmul: batched, broadcast batch dims, strided (e.g. transposed) operands without copies.
// CPU: the blocked kernel in core/cpu/gemm.cpp; CUDA: cuBLAS.
#include <algorithm>

#include "core/cpu/gemm.h"
#include "core/cpu/parallel.h"
#include "core/ops.h"
#include "core/primitives.h"
#if MINIDL_WITH_CUDA
#include "core/cuda/kernels.h"
#endif

namespace minidl {

std::vector<TensorMeta> Matmul::infer(const std::vector<TensorMeta>& in) const {
  const TensorMeta &a = in[0], &b = in[1];
  MINIDL_CHECK(a.shape.size() >= 2 && b.shape.size() >= 2, ShapeError,
               "[matmul] expects operands of at least 2 dims, got {} and {}", shape_str(a.shape),
               shape_str(b.shape));
  MINIDL_CHECK(a.shape.back() == b.shape[b.shape.size() - 2], ShapeError,
               "[matmul] inner dimensions differ: a is {}, b is {}", shape_str(a.shape),
               shape_str(b.shape));
  MINIDL_CHECK(a.dtype == b.dtype && is_floating(a.dtype), DTypeError,
               "[matmul] the primitive expects operands of one floating dtype, got {} and {} "
               "(matmul() promotes them first)",
               dtype_name(a.dtype), dtype_name(b.dtype));
  const Shape ba(a.shape.begin(), a.shape.end() - 2), bb(b.shape.begin(), b.shape.end() - 2);
  for (size_t i = 1; i <= std::min(ba.size(), bb.size()); ++i) {
    const int64_t da = ba[ba.size() - i], db = bb[bb.size() - i];
    MINIDL_CHECK(da == db || da == 1 || db == 1, ShapeError,
                 "[matmul] batch dims do not broadcast: a is {}, b is {}", shape_str(a.shape),
                 shape_str(b.shape));
  }
  Shape batch = broadcast_shapes(ba, bb, "matmul");
  batch.push_back(a.shape[a.shape.size() - 2]);
  batch.push_back(b.shape.back());
  return {{batch, a.dtype, common_device("matmul", in)}};
}

std::vector<Tensor> Matmul::eval_cpu(const std::vector<Tensor>& in) {
  const TensorMeta m = infer({in[0].meta(), in[1].meta()})[0];
  const int64_t nd = static_cast<int64_t>(m.shape.size());
  const Shape batch(m.shape.begin(), m.shape.end() - 2);
  // Broadcast both operands' batch dims to the output's (stride 0 where broadcast).
  const Tensor a = in[0].expand([&] { Shape s = batch; s.push_back(in[0].size(-2)); s.push_back(in[0].size(-1)); return s; }());
  const Tensor b = in[1].expand([&] { Shape s = batch; s.push_back(in[1].size(-2)); s.push_back(in[1].size(-1)); return s; }());
  Tensor out = empty(m.shape, m.dtype, kCPU, "matmul");
  const int64_t M = m.shape[nd - 2], N = m.shape[nd - 1], K = a.size(-1);
  const int64_t nbatch = numel(batch);
  MINIDL_DISPATCH_FLOAT(m.dtype, "matmul", [&] {
    const scalar_t* pa = static_cast<const scalar_t*>(a.data_ptr());
    const scalar_t* pb = static_cast<const scalar_t*>(b.data_ptr());
    scalar_t* pc = static_cast<scalar_t*>(out.data_ptr());
    // Work items: (batch, 64-row block) pairs.
    const int64_t row_blocks = (M + 63) / 64;
    cpu::parallel_for(nbatch * row_blocks, 64 * N * K * 2, [&](int64_t begin, int64_t end) {
      for (int64_t w = begin; w < end; ++w) {
        const int64_t bi = w / row_blocks, r0 = (w % row_blocks) * 64;
        int64_t oa = 0, ob = 0, rem = bi;
        for (int64_t d = static_cast<int64_t>(batch.size()) - 1; d >= 0; --d) {
          const int64_t idx = rem % batch[d];
          rem /= batch[d];
          oa += idx * a.strides()[d];
          ob += idx * b.strides()[d];
        }
        const int64_t rows = std::min<int64_t>(64, M - r0);
        cpu::gemm<scalar_t>(rows, N, K, pa + oa + r0 * a.strides()[nd - 2], a.strides()[nd - 2],
                            a.strides()[nd - 1], pb + ob, b.strides()[nd - 2], b.strides()[nd - 1],
                            pc + bi * M * N + r0 * N, N, 1);
      }
    });
  });
  return {out};
}

#if MINIDL_WITH_CUDA
std::vector<Tensor> Matmul::eval_cuda(const std::vector<Tensor>& in) {
  return {cuda::matmul(in[0], in[1], infer({in[0].meta(), in[1].meta()})[0])};
}
#endif

SaveMask Matmul::saves(const std::vector<bool>& ng, size_t) const { return {{ng[1], ng[0]}, {false}}; }

std::vector<Tensor> Matmul::vjp(const std::vector<Tensor>& primals, const std::vector<Tensor>& cot,
                                const std::vector<Tensor>&, const std::vector<bool>& ng) {
  const Tensor& g = cot[0];
  Tensor ga, gb;
  if (ng[0]) ga = sum_to(matmul(g, primals[1].transpose(-2, -1)), primals[0].shape());
  if (ng[1]) gb = sum_to(matmul(primals[0].transpose(-2, -1), g), primals[1].shape());
  return {ga, gb};
}

Tensor matmul(const Tensor& a, const Tensor& b) {
  MINIDL_CHECK(a.dim() >= 1 && b.dim() >= 1, ShapeError,
               "[matmul] expects operands of at least 1 dim, got {} and {}", shape_str(a.shape()),
               shape_str(b.shape()));
  DType t = promote_types(a.dtype(), b.dtype());
  MINIDL_CHECK(is_floating(t), DTypeError,
               "[matmul] needs a floating dtype after promotion: a is {} {}, b is {} {}, which "
               "promote to {}; cast an operand to a floating dtype",
               dtype_name(a.dtype()), shape_str(a.shape()), dtype_name(b.dtype()),
               shape_str(b.shape()), dtype_name(t));
  Tensor x = a.dtype() == t ? a : a.to(t), y = b.dtype() == t ? b : b.to(t);
  const bool va = x.dim() == 1, vb = y.dim() == 1;
  if (va) x = x.unsqueeze(0);
  if (vb) y = y.unsqueeze(-1);
  Tensor out = apply1(std::make_shared<Matmul>(), {x, y});
  if (va) out = out.squeeze(-2);
  if (vb) out = out.squeeze(-1);
  return out;
}

}  // namespace minidl
