// Every primitive of the core, declared in one place so the compiler can pattern-match on them.
// Each is implemented in one file of core/ops/ together with its user-facing function, its CPU
// kernel, its CUDA entry point and its vjp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "base/config.h"
#include "base/device.h"
#include "core/dtype.h"
#include "core/primitive.h"
#include "core/random.h"
#include "core/scalar_ops.h"
#include "core/shape.h"
#include "core/tensor.h"

namespace minidl {

// Boilerplate of a primitive declaration: the shape rule and the kernels (MINIDL_EVAL), and
// the vjp of differentiable ones (MINIDL_VJP). eval_cuda exists in CUDA builds only.
#if MINIDL_WITH_CUDA
#define MINIDL_EVAL_CUDA std::vector<Tensor> eval_cuda(const std::vector<Tensor>& in) override;
#else
#define MINIDL_EVAL_CUDA
#endif
#define MINIDL_EVAL                                                                \
  std::vector<TensorMeta> infer(const std::vector<TensorMeta>& in) const override; \
  std::vector<Tensor> eval_cpu(const std::vector<Tensor>& in) override;            \
  MINIDL_EVAL_CUDA
#define MINIDL_VJP                                                                   \
  std::vector<Tensor> vjp(const std::vector<Tensor>& primals,                        \
                          const std::vector<Tensor>& cotangents,                     \
                          const std::vector<Tensor>& outputs,                        \
                          const std::vector<bool>& needs_grad) override;
#define MINIDL_PRIMITIVE_BODY MINIDL_EVAL MINIDL_VJP

enum class UnaryOp {
#define MINIDL_X(E, N) E,
  MINIDL_UNARY_OPS(MINIDL_X)
#undef MINIDL_X
};
enum class BinaryOp {
#define MINIDL_X(E, N) E,
  MINIDL_BINARY_OPS(MINIDL_X)
#undef MINIDL_X
};
const char* unary_name(UnaryOp op);
const char* binary_name(BinaryOp op);
/// Comparisons (Eq..Ge) return Bool and have no gradient.
bool is_comparison(BinaryOp op);

// ---- pointwise (core/ops/pointwise.cpp)

/// y = f(x), same shape and dtype.
class Unary : public Primitive {
 public:
  explicit Unary(UnaryOp op) : op_(op) {}
  const char* name() const override { return unary_name(op_); }
  std::string codegen_functor() const override;
  SaveMask saves(const std::vector<bool>& needs_grad, size_t n_out) const override;
  UnaryOp op() const { return op_; }
  MINIDL_PRIMITIVE_BODY
 private:
  UnaryOp op_;
};

/// out = f(a, b); inputs already broadcast to one shape and promoted to one dtype, except that
/// a 0-dim operand is a scalar that broadcasts (and may live on the CPU for a CUDA op).
class Binary : public Primitive {
 public:
  explicit Binary(BinaryOp op) : op_(op) {}
  const char* name() const override { return binary_name(op_); }
  std::string codegen_functor() const override;
  bool differentiable() const override { return !is_comparison(op_); }
  SaveMask saves(const std::vector<bool>& needs_grad, size_t n_out) const override;
  BinaryOp op() const { return op_; }
  MINIDL_PRIMITIVE_BODY
 private:
  BinaryOp op_;
};

/// out = cond ? a : b (inputs broadcast to one shape, a and b of one dtype).
class Where : public Primitive {
 public:
  const char* name() const override { return "where"; }
  std::string codegen_functor() const override { return "Where"; }
  SaveMask saves(const std::vector<bool>& needs_grad, size_t n_out) const override;
  MINIDL_PRIMITIVE_BODY
};

/// out = mask ? value : x (mask Bool, broadcastable to x).
class MaskedFill : public Primitive {
 public:
  explicit MaskedFill(double value) : value_(value) {}
  const char* name() const override { return "masked_fill"; }
  std::string attrs() const override;
  SaveMask saves(const std::vector<bool>& needs_grad, size_t n_out) const override;
  double value() const { return value_; }
  MINIDL_PRIMITIVE_BODY
 private:
  double value_;
};

/// triu (upper) / tril of the last two dims with diagonal offset k.
class Triangle : public Primitive {
 public:
  Triangle(bool upper, int64_t k) : upper_(upper), k_(k) {}
  const char* name() const override { return upper_ ? "triu" : "tril"; }
  std::string attrs() const override;
  SaveMask saves(const std::vector<bool>& needs_grad, size_t n_out) const override;
  bool upper() const { return upper_; }
  int64_t k() const { return k_; }
  MINIDL_PRIMITIVE_BODY
 private:
  bool upper_;
  int64_t k_;
};

/// Elementwise conversion to another dtype.
class Cast : public Primitive {
 public:
  explicit Cast(DType to) : to_(to) {}
  const char* name() const override { return "cast"; }
  std::string attrs() const override;
  SaveMask saves(const std::vector<bool>& needs_grad, size_t n_out) const override;
  DType to() const { return to_; }
  MINIDL_PRIMITIVE_BODY
 private:
  DType to_;
};

// ---- copies and devices (core/ops/copy.cpp)

/// A contiguous copy of x (contiguous(), clone()).
class Copy : public Primitive {
 public:
  const char* name() const override { return "copy"; }
  SaveMask saves(const std::vector<bool>& needs_grad, size_t n_out) const override;
  MINIDL_PRIMITIVE_BODY
};

/// x moved to another device.
class ToDevice : public Primitive {
 public:
  explicit ToDevice(Device to) : to_(to) {}
  const char* name() const override { return "to_device"; }
  std::string attrs() const override;
  SaveMask saves(const std::vector<bool>& needs_grad, size_t n_out) const override;
  Device to() const { return to_; }
  MINIDL_PRIMITIVE_BODY
 private:
  Device to_;
};

// ---- views (core/ops/views.cpp): outputs share the input's storage.

/// New shape over the same elements (x must be viewable: see Tensor::view).
class Reshape : public Primitive {
 public:
  explicit Reshape(Shape shape) : shape_(std::move(shape)) {}
  const char* name() const override { return "reshape"; }
  std::string attrs() const override;
  bool is_view() const override { return true; }
  SaveMask saves(const std::vector<bool>& needs_grad, size_t n_out) const override;
  const Shape& shape() const { return shape_; }
  MINIDL_PRIMITIVE_BODY
 private:
  Shape shape_;
};

/// Reorders dims: out.dim(i) = x.dim(dims[i]).
class Permute : public Primitive {
 public:
  explicit Permute(std::vector<int64_t> dims) : dims_(std::move(dims)) {}
  const char* name() const override { return "permute"; }
  std::string attrs() const override;
  bool is_view() const override { return true; }
  SaveMask saves(const std::vector<bool>& needs_grad, size_t n_out) const override;
  const std::vector<int64_t>& dims() const { return dims_; }
  /// True when this swaps the last two dims and keeps the others in place.
  bool is_last_two_transpose() const;
  MINIDL_PRIMITIVE_BODY
 private:
  std::vector<int64_t> dims_;
};

/// Elements start, start+step, ... < end of one dim.
class Slice : public Primitive {
 public:
  Slice(int64_t dim, int64_t start, int64_t end, int64_t step)
      : dim_(dim), start_(start), end_(end), step_(step) {}
  const char* name() const override { return "slice"; }
  std::string attrs() const override;
  bool is_view() const override { return true; }
  SaveMask saves(const std::vector<bool>& needs_grad, size_t n_out) const override;
  int64_t dim() const { return dim_; }
  int64_t start() const { return start_; }
  int64_t end() const { return end_; }
  int64_t step() const { return step_; }
  MINIDL_PRIMITIVE_BODY
 private:
  int64_t dim_, start_, end_, step_;
};

/// The gradient of Slice: g placed into zeros of the input's shape.
class SliceBackward : public Primitive {
 public:
  SliceBackward(Shape input_shape, int64_t dim, int64_t start, int64_t end, int64_t step)
      : input_shape_(std::move(input_shape)), dim_(dim), start_(start), end_(end), step_(step) {}
  const char* name() const override { return "slice_backward"; }
  std::string attrs() const override;
  SaveMask saves(const std::vector<bool>& needs_grad, size_t n_out) const override;
  MINIDL_PRIMITIVE_BODY
 private:
  Shape input_shape_;
  int64_t dim_, start_, end_, step_;
};

/// Broadcast view (stride 0 along expanded dims).
class Expand : public Primitive {
 public:
  explicit Expand(Shape shape) : shape_(std::move(shape)) {}
  const char* name() const override { return "expand"; }
  std::string attrs() const override;
  bool is_view() const override { return true; }
  SaveMask saves(const std::vector<bool>& needs_grad, size_t n_out) const override;
  const Shape& shape() const { return shape_; }
  MINIDL_PRIMITIVE_BODY
 private:
  Shape shape_;
};

// ---- reductions (core/ops/reduce.cpp)

enum class ReduceOp { Sum, Mean, Max, Min };

/// Reduces dims (sorted, unique, normalised) of x.
class Reduce : public Primitive {
 public:
  Reduce(ReduceOp op, std::vector<int64_t> dims, bool keepdim)
      : op_(op), dims_(std::move(dims)), keepdim_(keepdim) {}
  const char* name() const override;
  std::string attrs() const override;
  SaveMask saves(const std::vector<bool>& needs_grad, size_t n_out) const override;
  ReduceOp op() const { return op_; }
  const std::vector<int64_t>& dims() const { return dims_; }
  bool keepdim() const { return keepdim_; }
  MINIDL_PRIMITIVE_BODY
 private:
  ReduceOp op_;
  std::vector<int64_t> dims_;
  bool keepdim_;
};

/// Index of the first maximum along dim (Int64).
class ArgMax : public Primitive {
 public:
  ArgMax(int64_t dim, bool keepdim) : dim_(dim), keepdim_(keepdim) {}
  const char* name() const override { return "argmax"; }
  std::string attrs() const override;
  bool differentiable() const override { return false; }
  MINIDL_EVAL
 private:
  int64_t dim_;
  bool keepdim_;
};

// ---- row ops (core/ops/softmax.cpp, core/ops/layer_norm.cpp)

/// softmax (or log_softmax) along dim.
class Softmax : public Primitive {
 public:
  Softmax(int64_t dim, bool log) : dim_(dim), log_(log) {}
  const char* name() const override { return log_ ? "log_softmax" : "softmax"; }
  std::string attrs() const override;
  SaveMask saves(const std::vector<bool>& needs_grad, size_t n_out) const override;
  int64_t dim() const { return dim_; }
  bool is_log() const { return log_; }
  MINIDL_PRIMITIVE_BODY
 private:
  int64_t dim_;  // normalised
  bool log_;
};

/// The gradient of softmax along dim from its output y and the output's gradient g:
/// y * (g - sum(g * y)), or for log_softmax g - exp(y) * sum(g), in one pass over each row
/// (the composition takes four). Inputs: g, y.
class SoftmaxBackward : public Primitive {
 public:
  SoftmaxBackward(int64_t dim, bool log) : dim_(dim), log_(log) {}
  const char* name() const override { return log_ ? "log_softmax_backward" : "softmax_backward"; }
  std::string attrs() const override;
  SaveMask saves(const std::vector<bool>& needs_grad, size_t n_out) const override;
  int64_t dim() const { return dim_; }
  bool is_log() const { return log_; }
  MINIDL_PRIMITIVE_BODY
 private:
  int64_t dim_;  // normalised
  bool log_;
};

/// Layer norm over the last dim. Inputs: x, then weight and bias if present (has_affine).
class LayerNorm : public Primitive {
 public:
  LayerNorm(double eps, bool affine) : eps_(eps), affine_(affine) {}
  const char* name() const override { return "layer_norm"; }
  std::string attrs() const override;
  SaveMask saves(const std::vector<bool>& needs_grad, size_t n_out) const override;
  double eps() const { return eps_; }
  bool affine() const { return affine_; }
  MINIDL_PRIMITIVE_BODY
 private:
  double eps_;
  bool affine_;
};

// ---- linear algebra (core/ops/matmul.cpp)

/// a (..., M, K) @ b (..., K, N) -> (..., M, N), batch dims broadcast; a and b of one dtype and
/// at least 2-D (the user-facing matmul handles 1-D operands).
class Matmul : public Primitive {
 public:
  const char* name() const override { return "matmul"; }
  SaveMask saves(const std::vector<bool>& needs_grad, size_t n_out) const override;
  MINIDL_PRIMITIVE_BODY
};

// ---- indexing (core/ops/index.cpp)

/// Throws the IndexError for ids[position] = id outside [0, n): one message for the CPU and CUDA
/// paths of embedding, embedding_backward and one_hot. `range` says what n counts.
[[noreturn]] void throw_id_out_of_range(const char* op, int64_t id, int64_t position, const Shape& ids_shape,
                                        const std::string& range, int64_t n);

/// weight (V, D), ids (...) -> (..., D).
class Embedding : public Primitive {
 public:
  const char* name() const override { return "embedding"; }
  SaveMask saves(const std::vector<bool>& needs_grad, size_t n_out) const override;
  MINIDL_PRIMITIVE_BODY
};

/// Scatter-add of grad (..., D) rows into a (num_rows, D) zero tensor at ids (...): the
/// gradient of embedding.
class EmbeddingBackward : public Primitive {
 public:
  explicit EmbeddingBackward(int64_t num_rows) : num_rows_(num_rows) {}
  const char* name() const override { return "embedding_backward"; }
  std::string attrs() const override;
  SaveMask saves(const std::vector<bool>& needs_grad, size_t n_out) const override;
  MINIDL_PRIMITIVE_BODY
 private:
  int64_t num_rows_;
};

/// Concatenation along dim.
class Concat : public Primitive {
 public:
  explicit Concat(int64_t dim) : dim_(dim) {}
  const char* name() const override { return "cat"; }
  std::string attrs() const override;
  SaveMask saves(const std::vector<bool>& needs_grad, size_t n_out) const override;
  MINIDL_PRIMITIVE_BODY
 private:
  int64_t dim_;
};

/// ids (...) -> (..., C) with 1 at the id.
class OneHot : public Primitive {
 public:
  OneHot(int64_t num_classes, DType dtype) : num_classes_(num_classes), dtype_(dtype) {}
  const char* name() const override { return "one_hot"; }
  std::string attrs() const override;
  bool differentiable() const override { return false; }
  MINIDL_EVAL
 private:
  int64_t num_classes_;
  DType dtype_;
};

// ---- losses (core/ops/loss.cpp)

/// Mean over non-ignored rows of -log_softmax(logits)[target]; logits (N, C), target (N,).
class CrossEntropy : public Primitive {
 public:
  explicit CrossEntropy(int64_t ignore_index) : ignore_index_(ignore_index) {}
  const char* name() const override { return "cross_entropy"; }
  std::string attrs() const override;
  SaveMask saves(const std::vector<bool>& needs_grad, size_t n_out) const override;
  MINIDL_PRIMITIVE_BODY
 private:
  int64_t ignore_index_;
};

// ---- random (core/ops/factories.cpp)

enum class RandomKind { Uniform, Normal };

/// Random numbers with the shape, dtype and device of its input (whose values it ignores).
/// The stream position is drawn from the generator at each evaluation, so a compiled plan
/// replayed twice draws fresh numbers, as eager code does.
class RandomLike : public Primitive {
 public:
  RandomLike(RandomKind kind, Generator* gen) : kind_(kind), gen_(gen) {}
  const char* name() const override { return kind_ == RandomKind::Uniform ? "rand_like" : "randn_like"; }
  bool differentiable() const override { return false; }
  SaveMask saves(const std::vector<bool>& needs_grad, size_t n_out) const override;
  MINIDL_EVAL
 private:
  RandomKind kind_;
  Generator* gen_;
};

}  // namespace minidl
