// Tensor: a cheap, reference-counted handle to a TensorImpl (sizes, strides, offset, dtype,
// device, storage, autograd state). Views share storage. Every op is a free function in
// core/ops.h; the methods here are the ones PyTorch users reach for on the object.
#pragma once

#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "base/device.h"
#include "base/error.h"
#include "core/dtype.h"
#include "core/shape.h"
#include "core/storage.h"

namespace minidl {

class Node;
class Tracer;
class Tensor;

/// Shape, dtype and device: what the shape rule of an op reads and produces.
struct TensorMeta {
  Shape shape;
  DType dtype = kFloat32;
  Device device;
  bool operator==(const TensorMeta&) const = default;
};

// NOTE [Three kinds of TensorImpl]
// A TensorImpl with storage holds data. One without storage is either a *tracer*
// (tracer != nullptr: a value in a graph being captured by compile(); see compiler/trace.h) or a
// *placeholder* (metadata only: what autograd keeps of an input whose data its vjp does not
// read). Reading the data of either throws.
struct TensorImpl {
  Shape sizes;
  Strides strides;
  int64_t offset = 0;  // in elements
  DType dtype = kFloat32;
  Device device;
  std::shared_ptr<Storage> storage;

  // Autograd. A leaf requires grad if requires_grad; a non-leaf if it has a grad_fn.
  bool requires_grad = false;
  std::shared_ptr<TensorImpl> grad;
  std::shared_ptr<Node> grad_fn;
  uint32_t output_nr = 0;              // which output of grad_fn this is
  std::weak_ptr<Node> grad_accumulator;  // leaves: the node that accumulates into grad

  // Tracing (compiler): the value this tensor stands for in the graph being captured.
  Tracer* tracer = nullptr;
  int64_t trace_id = -1;

  TensorMeta meta() const { return {sizes, dtype, device}; }
};

/// The mutex guarding t's grad and grad_accumulator (NOTE [Autograd and threads] in
/// autograd/node.h).
std::mutex& autograd_mutex(const TensorImpl* t);

class Tensor {
 public:
  Tensor() = default;  // undefined
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  bool defined() const { return impl_ != nullptr; }
  TensorImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  /// Same TensorImpl (not same values).
  bool is_same(const Tensor& o) const { return impl_ == o.impl_; }

  // ---- metadata
  const Shape& shape() const;
  const Strides& strides() const;
  int64_t dim() const { return static_cast<int64_t>(shape().size()); }
  /// Size of dim d (negative d counts from the end).
  int64_t size(int64_t d) const;
  int64_t numel() const;
  int64_t offset() const { return impl()->offset; }
  DType dtype() const;
  Device device() const;
  TensorMeta meta() const { return impl()->meta(); }
  bool is_contiguous() const;
  bool is_tracer() const { return defined() && impl_->tracer != nullptr; }
  bool has_storage() const { return defined() && impl_->storage != nullptr; }
  size_t nbytes() const { return static_cast<size_t>(numel()) * itemsize(dtype()); }

  // ---- data access (CPU tensors; CUDA tensors are copied to the host first where noted)
  /// Pointer to the first element (storage + offset). Throws for tracers and placeholders.
  void* data_ptr() const;
  template <class T>
  T* data() const;
  /// The single value of a one-element tensor, converted to double (copies from CUDA).
  double item() const;
  template <class T>
  T item() const { return static_cast<T>(item()); }
  /// All values in row-major order, converted to T (copies from CUDA).
  template <class T>
  std::vector<T> to_vector() const;

  // ---- conversion and copies
  Tensor to(DType t) const;
  Tensor to(Device d) const;
  Tensor cuda() const { return to(kCUDA); }
  Tensor cpu() const { return to(kCPU); }
  /// This tensor if already contiguous, else a contiguous copy (differentiable).
  Tensor contiguous() const;
  /// A contiguous copy (differentiable).
  Tensor clone() const;

  // ---- views (share storage; differentiable)
  /// Reinterprets the shape (one dim may be -1). Throws ShapeError if the strides don't allow a view.
  Tensor view(const Shape& s) const;
  /// A view when the strides allow it, else a copy.
  Tensor reshape(const Shape& s) const;
  Tensor flatten(int64_t start = 0, int64_t end = -1) const;
  Tensor transpose(int64_t d0, int64_t d1) const;
  /// Transpose of a 2-D tensor; swaps the last two dims otherwise (mT).
  Tensor t() const;
  Tensor permute(const std::vector<int64_t>& dims) const;
  /// Elements [start, end) of dim with a positive step (negative start/end count from the end).
  Tensor slice(int64_t dim, int64_t start, int64_t end, int64_t step = 1) const;
  /// Index i of dim, removing the dim.
  Tensor select(int64_t dim, int64_t i) const;
  /// Broadcasts size-1 dims (and new leading dims) to shape; -1 keeps a size.
  Tensor expand(const Shape& s) const;
  Tensor unsqueeze(int64_t d) const;
  Tensor squeeze(int64_t d) const;
  Tensor squeeze() const;

  // ---- autograd
  bool requires_grad() const;
  /// Sets requires_grad of a leaf (DTypeError for non-floating dtypes). On a non-leaf, true is a
  /// no-op (it already requires grad) and false throws ValueError.
  Tensor& requires_grad_(bool on = true);
  bool is_leaf() const;
  const std::shared_ptr<Node>& grad_fn() const { return impl()->grad_fn; }
  /// Accumulated gradient (undefined until a backward reaches this leaf).
  Tensor grad() const;
  void set_grad(const Tensor& g) const;
  /// Drops the gradient (set to none, as PyTorch's default).
  void zero_grad() const;
  /// Backpropagates from this tensor into the leaves' .grad. A non-scalar tensor needs a
  /// `gradient` of its shape. The graph is freed unless retain_graph (or create_graph, which
  /// records the backward ops for higher-order gradients) is set.
  void backward(const Tensor& gradient = {}, bool retain_graph = false,
                bool create_graph = false) const;
  /// Same data, no history, requires_grad false.
  Tensor detach() const;

  // ---- in-place writes (outside autograd: they do not record history)
  /// Copies src (broadcast to this shape, any dtype/device) into this tensor's memory.
  Tensor& copy_(const Tensor& src);
  Tensor& fill_(double v);
  Tensor& zero_() { return fill_(0.0); }

  // ---- common ops as methods (same as the free functions in core/ops.h)
  Tensor sum(const std::vector<int64_t>& dims = {}, bool keepdim = false) const;
  Tensor mean(const std::vector<int64_t>& dims = {}, bool keepdim = false) const;
  Tensor exp() const;
  Tensor log() const;
  Tensor softmax(int64_t dim) const;
  Tensor matmul(const Tensor& o) const;
  Tensor triu(int64_t k = 0) const;
  Tensor tril(int64_t k = 0) const;
  Tensor masked_fill(const Tensor& mask, double v) const;

  /// PyTorch-style printout: "tensor([[1.0000, 2.0000]], requires_grad=True)".
  std::string str() const;

 private:
  std::shared_ptr<TensorImpl> impl_;
};

std::ostream& operator<<(std::ostream& os, const Tensor& t);

/// Meta of a tensor, for shape rules and messages.
inline TensorMeta meta_of(const Tensor& t) { return t.meta(); }
/// "float32 (2, 3) on cpu".
std::string describe(const Tensor& t);

template <class T>
T* Tensor::data() const {
  if (dtype_of<T>() != dtype())
    throw DTypeError(fmt::format("[data] tensor is {}, not {}", dtype_name(dtype()),
                                 dtype_name(dtype_of<T>())));
  return static_cast<T*>(data_ptr());
}

// Creation of an empty (uninitialised) tensor; factories with values are in core/ops.h.
Tensor empty(const Shape& shape, DType dtype = kFloat32, Device device = kCPU,
             const char* op = "empty");
/// A TensorImpl viewing `base`'s storage with new sizes/strides/offset (no autograd).
Tensor make_view(const Tensor& base, Shape sizes, Strides strides, int64_t offset);
/// Metadata-only tensor (no storage): autograd placeholder for an input a vjp does not read.
Tensor placeholder(const TensorMeta& m);

}  // namespace minidl
