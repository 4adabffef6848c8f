// The CUDA kernels of the core ops (CUDA builds only), as called by the eval_cuda of each
// primitive in core/ops/*.cpp. Each launcher checks its preconditions, runs on the device's
// stream (runtime/cuda_check.h: current_stream) and checks the launch. Outputs are new
// contiguous tensors on the inputs' device unless noted. Where an op takes several inputs, a
// 0-dim CPU tensor among them is a scalar passed by value.
#pragma once

#include "base/config.h"
#if MINIDL_WITH_CUDA
#include <cstdint>
#include <vector>

#include "core/dtype.h"
#include "core/primitives.h"
#include "core/tensor.h"

namespace minidl::cuda {

// ---- copies and fills (core/cuda/copy.cu)

/// dst[i] = convert(src[i]) over dst's shape (src broadcast to it), any dtypes and strides;
/// dst and src must not overlap (Tensor::copy_ stages overlapping sources).
void convert(const Tensor& dst, const Tensor& src);
/// Sets every element of dst (any strides) to v converted to its dtype.
void fill(const Tensor& dst, double v);
/// Fills a contiguous floating tensor with elements [offset, offset + numel) of the Philox
/// stream of `seed` (core/philox.h): uniform [0, 1) or standard normal (core/cuda/random.cu).
void fill_random(const Tensor& t, bool normal, uint64_t seed, uint64_t offset);

// ---- pointwise (core/cuda/unary.cu, binary.cu, select.cu, triangle.cu)

/// f(x) elementwise (x any strides).
Tensor unary(UnaryOp op, const Tensor& x);
/// f(a, b) elementwise into a tensor of meta `out` (a, b broadcast to out's shape, one dtype).
Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b, const TensorMeta& out);
/// cond ? a : b elementwise into a tensor of meta `out`.
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b, const TensorMeta& out);
/// x with `value` where mask (bool, x's shape) is true.
Tensor masked_fill(const Tensor& x, const Tensor& mask, double value);
/// triu (upper) or tril of the last two dims with diagonal offset k.
Tensor triangle(const Tensor& x, bool upper, int64_t k);

// ---- reductions (core/cuda/reduce.cu)

/// op over `dims` (sorted, unique, normalised) of x (any strides) into a tensor of meta `out`.
Tensor reduce(ReduceOp op, const Tensor& x, const std::vector<int64_t>& dims,
              const TensorMeta& out);
/// Index of the first maximum (NaN counts as the maximum) along dim, into meta `out` (int64).
Tensor argmax(const Tensor& x, int64_t dim, const TensorMeta& out);

// ---- row ops (core/cuda/softmax.cu, layer_norm.cu, cross_entropy.cu)

/// softmax or log_softmax of x along dim.
Tensor softmax(const Tensor& x, int64_t dim, bool log);
/// The gradient of softmax (y * (g - sum(g * y))) or log_softmax (g - exp(y) * sum(g)) along
/// dim, from the output y and its gradient g (same shape and dtype).
Tensor softmax_backward(const Tensor& g, const Tensor& y, int64_t dim, bool log);
/// Layer norm of x over its last dim; weight and bias (last dim's size) both defined or both not.
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps);
/// Mean over rows whose target is not ignore_index of logsumexp(logits) - logits[target];
/// logits (N, C), target (N,) int32/int64. 0-dim result; NaN when every row is ignored.
/// Throws IndexError for a target outside [0, C) (synchronizes to check).
Tensor cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index);

// ---- linear algebra (core/cuda/matmul.cu)

/// a (..., M, K) @ b (..., K, N) through cuBLAS into meta `out` (batch dims broadcast; any
/// strides: transposed operands go to cuBLAS as transposes, without copies).
Tensor matmul(const Tensor& a, const Tensor& b, const TensorMeta& out);

// ---- indexing (core/cuda/index.cu). Ids are checked on the device, then the first bad one
// is read back (a synchronization) and reported as an IndexError, as on the CPU.

/// weight (V, D) rows at ids (...) -> (..., D).
Tensor embedding(const Tensor& weight, const Tensor& ids);
/// Scatter-add of g (..., D) rows into zeros (num_rows, D) at ids (...).
Tensor embedding_backward(const Tensor& g, const Tensor& ids, int64_t num_rows);
/// ids (...) -> (..., num_classes) of dtype with a 1 at each id.
Tensor one_hot(const Tensor& ids, int64_t num_classes, DType dtype);

}  // namespace minidl::cuda
#endif
