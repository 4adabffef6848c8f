// The user-facing ops. Each validates its arguments (errors name the op and the shapes),
// promotes dtypes, broadcasts, and applies one primitive from core/primitives.h, or composes
// others. All are differentiable where the math is, and traceable by compile().
#pragma once

#include <cstdint>
#include <limits>
#include <vector>

#include "base/device.h"
#include "core/dtype.h"
#include "core/random.h"
#include "core/shape.h"
#include "core/tensor.h"

namespace minidl {

/// Options for factories: `zeros({2, 3}, {.dtype = kFloat64, .requires_grad = true})`.
struct Options {
  DType dtype = kFloat32;
  Device device = kCPU;
  bool requires_grad = false;
};

// ---- factories
Tensor zeros(const Shape& shape, Options o = {});
Tensor ones(const Shape& shape, Options o = {});
Tensor full(const Shape& shape, double value, Options o = {});
Tensor zeros_like(const Tensor& t);
Tensor ones_like(const Tensor& t);
Tensor full_like(const Tensor& t, double value);
/// A 0-dim tensor holding v.
Tensor scalar_tensor(double v, Options o = {});
/// [start, end) with step; dtype Int64 unless o says otherwise.
Tensor arange(double start, double end, double step = 1.0, Options o = {.dtype = kInt64});
inline Tensor arange(int64_t end, Options o = {.dtype = kInt64}) { return arange(0, end, 1, o); }
/// Uniform in [0, 1).
Tensor rand(const Shape& shape, Options o = {}, Generator* gen = nullptr);
/// Standard normal.
Tensor randn(const Shape& shape, Options o = {}, Generator* gen = nullptr);
/// Integers uniform in [low, high), Int64 unless o says otherwise.
Tensor randint(int64_t low, int64_t high, const Shape& shape, Options o = {.dtype = kInt64},
               Generator* gen = nullptr);
/// A tensor from values (row-major) with the given shape ({values.size()} if empty; a 0-dim
/// tensor comes from scalar_tensor). Its dtype is T's (int64_t: int64, double: float64, ...)
/// unless o is given: Options' own dtype is float32, as for arange.
template <class T>
Tensor from_vector(const std::vector<T>& values, const Shape& shape = {},
                   Options o = {.dtype = dtype_of<T>()});

// ---- pointwise, unary
Tensor neg(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor rsqrt(const Tensor& x);
Tensor abs(const Tensor& x);
Tensor sign(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor relu(const Tensor& x);
/// GELU, tanh approximation (as GPT-2 uses).
Tensor gelu(const Tensor& x);
Tensor silu(const Tensor& x);

// ---- pointwise, binary (numpy broadcasting, PyTorch type promotion)
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
/// True division: integer inputs give float32.
Tensor div(const Tensor& a, const Tensor& b);
Tensor pow(const Tensor& a, const Tensor& b);
Tensor pow(const Tensor& a, double exponent);
Tensor maximum(const Tensor& a, const Tensor& b);
Tensor minimum(const Tensor& a, const Tensor& b);
Tensor eq(const Tensor& a, const Tensor& b);
Tensor ne(const Tensor& a, const Tensor& b);
Tensor lt(const Tensor& a, const Tensor& b);
Tensor le(const Tensor& a, const Tensor& b);
Tensor gt(const Tensor& a, const Tensor& b);
Tensor ge(const Tensor& a, const Tensor& b);
/// cond ? a : b, elementwise (cond is Bool; all three broadcast).
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
/// x with `value` where mask (Bool, broadcastable to x) is true.
Tensor masked_fill(const Tensor& x, const Tensor& mask, double value);
/// Upper / lower triangle of the last two dims: keeps j - i >= k (triu) or j - i <= k (tril).
Tensor triu(const Tensor& x, int64_t k = 0);
Tensor tril(const Tensor& x, int64_t k = 0);

/// A 0-dim tensor holding v with a dtype that combines with x as PyTorch's Python scalars do
/// (x's dtype if floating, else float32 for fractional v, else x's dtype).
Tensor scalar_like(const Tensor& x, double v);

Tensor operator+(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a, const Tensor& b);
Tensor operator*(const Tensor& a, const Tensor& b);
Tensor operator/(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a);
Tensor operator+(const Tensor& a, double b);
Tensor operator-(const Tensor& a, double b);
Tensor operator*(const Tensor& a, double b);
Tensor operator/(const Tensor& a, double b);
Tensor operator+(double a, const Tensor& b);
Tensor operator-(double a, const Tensor& b);
Tensor operator*(double a, const Tensor& b);
Tensor operator/(double a, const Tensor& b);
Tensor operator<(const Tensor& a, const Tensor& b);
Tensor operator<=(const Tensor& a, const Tensor& b);
Tensor operator>(const Tensor& a, const Tensor& b);
Tensor operator>=(const Tensor& a, const Tensor& b);
Tensor operator<(const Tensor& a, double b);
Tensor operator<=(const Tensor& a, double b);
Tensor operator>(const Tensor& a, double b);
Tensor operator>=(const Tensor& a, double b);

// ---- reductions. Empty dims reduce over all dims.
Tensor sum(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
/// Maximum values (gradient shared evenly among ties).
Tensor max(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor min(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
/// Index of the first maximum along dim (Int64).
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim = false);
/// Variance with Bessel's correction by default (correction = 1).
Tensor var(const Tensor& x, const std::vector<int64_t>& dims = {}, int64_t correction = 1,
           bool keepdim = false);
/// Sums x down to `shape` (the inverse of broadcasting); used by vjps.
Tensor sum_to(const Tensor& x, const Shape& shape);

// ---- row ops
Tensor softmax(const Tensor& x, int64_t dim);
Tensor log_softmax(const Tensor& x, int64_t dim);
/// The gradient of softmax (log: log_softmax) along dim, from the output y and its gradient g.
Tensor softmax_backward(const Tensor& g, const Tensor& y, int64_t dim, bool log = false);
/// Normalises over the last dim; weight and bias (shape (C,)) may be undefined.
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps = 1e-5);

// ---- linear algebra
/// PyTorch's matmul: 1-D operands are promoted and squeezed back, batch dims broadcast,
/// any strided (e.g. transposed) operand is accepted without a copy.
Tensor matmul(const Tensor& a, const Tensor& b);

// ---- indexing and shapes
/// weight[indices]: (..., ) Int32/Int64 ids -> (..., D). Gradient by scatter-add.
Tensor embedding(const Tensor& weight, const Tensor& indices);
/// Concatenates along dim (shapes equal elsewhere).
Tensor cat(const std::vector<Tensor>& tensors, int64_t dim = 0);
/// (...) ids -> (..., num_classes) in dtype.
Tensor one_hot(const Tensor& indices, int64_t num_classes, DType dtype = kFloat32);

// ---- losses and regularisation
/// Mean cross entropy of logits (N, C) against class ids (N,), skipping ignore_index targets.
Tensor cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index = -100);
/// Zeroes elements with probability p and scales the rest by 1/(1-p) when training.
Tensor dropout(const Tensor& x, double p, bool training = true, Generator* gen = nullptr);

}  // namespace minidl
