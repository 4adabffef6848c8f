// Views: reshape, permute, slice and expand. Their outputs share the input's storage (reshape
// copies only when the strides cannot express the new shape). A view evaluates the same way on
// every device: only metadata changes.
#include <algorithm>
#include <numeric>
#include <optional>

#include "core/cpu/kernels.h"
#include "core/ops.h"
#include "core/primitives.h"
#if MINIDL_WITH_CUDA
#include "core/cuda/kernels.h"
#endif

namespace minidl {

namespace {

// Strides that let `shape` view memory laid out as (old_shape, old_strides), or nothing when
// no such strides exist (PyTorch's computeStride).
std::optional<Strides> view_strides(const Shape& old_shape, const Strides& old_strides,
                                    const Shape& shape) {
  if (numel(old_shape) == 0 || old_shape.empty()) return contiguous_strides(shape);
  Strides out(shape.size());
  int64_t view_d = static_cast<int64_t>(shape.size()) - 1;
  int64_t chunk_base_stride = old_strides.back();
  int64_t tensor_numel = 1, view_numel = 1;
  for (int64_t d = static_cast<int64_t>(old_shape.size()) - 1; d >= 0; --d) {
    tensor_numel *= old_shape[d];
    if (d == 0 || (old_shape[d - 1] != 1 && old_strides[d - 1] != tensor_numel * chunk_base_stride)) {
      while (view_d >= 0 && (view_numel < tensor_numel || shape[view_d] == 1)) {
        out[view_d] = view_numel * chunk_base_stride;
        view_numel *= shape[view_d];
        --view_d;
      }
      if (view_numel != tensor_numel) return std::nullopt;
      if (d > 0) {
        chunk_base_stride = old_strides[d - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  if (view_d != -1) return std::nullopt;
  return out;
}

// Replaces a -1 in s by the size that keeps numel, checking the element count.
Shape infer_size(const Shape& s, int64_t n, const char* op, const Shape& from) {
  Shape out = s;
  int64_t neg = -1;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == -1) {
      MINIDL_CHECK(neg < 0, ShapeError, "[{}] only one dim can be -1, got {}", op, shape_str(s));
      neg = static_cast<int64_t>(i);
      out[i] = 1;
    } else {
      MINIDL_CHECK(s[i] >= 0, ShapeError, "[{}] invalid size in {}", op, shape_str(s));
    }
  }
  const int64_t known = numel(out, op);  // the sizes given, checked for overflow
  if (neg >= 0) {
    MINIDL_CHECK(known != 0 && n % known == 0, ShapeError,
                 "[{}] shape {} is invalid for a tensor of shape {} ({} elements)", op,
                 shape_str(s), shape_str(from), n);
    out[neg] = n / known;
  }
  MINIDL_CHECK(numel(out) == n, ShapeError,
               "[{}] shape {} is invalid for a tensor of shape {} ({} elements)", op, shape_str(s),
               shape_str(from), n);
  return out;
}

std::string dims_str(const std::vector<int64_t>& v) { return shape_str(v); }

// Elements of [start:end:step] for 0 <= start <= end (no overflow for any step > 0).
int64_t slice_size(int64_t start, int64_t end, int64_t step) {
  return end > start ? (end - start - 1) / step + 1 : 0;
}

}  // namespace

// ============================================================================ Reshape

std::string Reshape::attrs() const { return "shape=" + shape_str(shape_); }

std::vector<TensorMeta> Reshape::infer(const std::vector<TensorMeta>& in) const {
  MINIDL_CHECK(numel(in[0].shape) == numel(shape_, "reshape"), ShapeError,
               "[reshape] shape {} is invalid for a tensor of shape {}", shape_str(shape_),
               shape_str(in[0].shape));
  return {{shape_, in[0].dtype, in[0].device}};
}

namespace {
Tensor reshape_eval(const Tensor& x, const Shape& shape) {
  if (auto st = view_strides(x.shape(), x.strides(), shape)) return make_view(x, shape, *st, x.offset());
  Tensor c = x.clone();  // strides cannot express the shape: copy first
  c = c.detach();
  return make_view(c, shape, contiguous_strides(shape), 0);
}
}  // namespace

std::vector<Tensor> Reshape::eval_cpu(const std::vector<Tensor>& in) { return {reshape_eval(in[0], shape_)}; }
#if MINIDL_WITH_CUDA
std::vector<Tensor> Reshape::eval_cuda(const std::vector<Tensor>& in) { return {reshape_eval(in[0], shape_)}; }
#endif

SaveMask Reshape::saves(const std::vector<bool>&, size_t) const { return {{false}, {false}}; }

std::vector<Tensor> Reshape::vjp(const std::vector<Tensor>& primals, const std::vector<Tensor>& cot,
                                 const std::vector<Tensor>&, const std::vector<bool>&) {
  return {cot[0].reshape(primals[0].shape())};
}

Tensor Tensor::view(const Shape& s) const {
  Shape shape = infer_size(s, numel(), "view", this->shape());
  if (shape == this->shape()) return *this;
  if (has_storage())
    MINIDL_CHECK(view_strides(this->shape(), strides(), shape).has_value(), ShapeError,
                 "[view] cannot view a tensor of shape {} with strides {} as {}: use reshape() "
                 "(which copies) or contiguous() first",
                 shape_str(this->shape()), shape_str(strides()), shape_str(shape));
  return apply1(std::make_shared<Reshape>(shape), {*this});
}

Tensor Tensor::reshape(const Shape& s) const {
  Shape shape = infer_size(s, numel(), "reshape", this->shape());
  if (shape == this->shape()) return *this;
  return apply1(std::make_shared<Reshape>(shape), {*this});
}

// ============================================================================ Permute

std::string Permute::attrs() const { return "dims=" + dims_str(dims_); }

bool Permute::is_last_two_transpose() const {
  const int64_t n = static_cast<int64_t>(dims_.size());
  if (n < 2) return false;
  for (int64_t i = 0; i < n - 2; ++i)
    if (dims_[i] != i) return false;
  return dims_[n - 2] == n - 1 && dims_[n - 1] == n - 2;
}

std::vector<TensorMeta> Permute::infer(const std::vector<TensorMeta>& in) const {
  const Shape& s = in[0].shape;
  MINIDL_CHECK(dims_.size() == s.size(), ShapeError,
               "[permute] dims {} do not match a tensor of shape {}", dims_str(dims_), shape_str(s));
  std::vector<bool> seen(s.size(), false);
  Shape out(s.size());
  for (size_t i = 0; i < dims_.size(); ++i) {
    const int64_t d = dims_[i];
    MINIDL_CHECK(d >= 0 && d < static_cast<int64_t>(s.size()) && !seen[d], ShapeError,
                 "[permute] dims {} are not a permutation for a tensor of shape {}", dims_str(dims_),
                 shape_str(s));
    seen[d] = true;
    out[i] = s[d];
  }
  return {{out, in[0].dtype, in[0].device}};
}

namespace {
Tensor permute_eval(const Tensor& x, const std::vector<int64_t>& dims) {
  Shape s(dims.size());
  Strides st(dims.size());
  for (size_t i = 0; i < dims.size(); ++i) {
    s[i] = x.shape()[dims[i]];
    st[i] = x.strides()[dims[i]];
  }
  return make_view(x, s, st, x.offset());
}
}  // namespace

std::vector<Tensor> Permute::eval_cpu(const std::vector<Tensor>& in) { return {permute_eval(in[0], dims_)}; }
#if MINIDL_WITH_CUDA
std::vector<Tensor> Permute::eval_cuda(const std::vector<Tensor>& in) { return {permute_eval(in[0], dims_)}; }
#endif

SaveMask Permute::saves(const std::vector<bool>&, size_t) const { return {{false}, {false}}; }

std::vector<Tensor> Permute::vjp(const std::vector<Tensor>&, const std::vector<Tensor>& cot,
                                 const std::vector<Tensor>&, const std::vector<bool>&) {
  std::vector<int64_t> inv(dims_.size());
  for (size_t i = 0; i < dims_.size(); ++i) inv[dims_[i]] = static_cast<int64_t>(i);
  return {cot[0].permute(inv)};
}

Tensor Tensor::permute(const std::vector<int64_t>& dims) const {
  std::vector<int64_t> d(dims.size());
  for (size_t i = 0; i < dims.size(); ++i)
    d[i] = dims.size() == static_cast<size_t>(dim()) ? normalize_dim(dims[i], dim(), "permute", shape())
                                                     : dims[i];
  bool identity = true;
  for (size_t i = 0; i < d.size(); ++i) identity = identity && d[i] == static_cast<int64_t>(i);
  if (identity && d.size() == static_cast<size_t>(dim())) return *this;
  return apply1(std::make_shared<Permute>(d), {*this});
}

// ============================================================================ Slice

std::string Slice::attrs() const {
  return fmt::format("dim={}, start={}, end={}, step={}", dim_, start_, end_, step_);
}

std::vector<TensorMeta> Slice::infer(const std::vector<TensorMeta>& in) const {
  Shape s = in[0].shape;
  MINIDL_CHECK(dim_ >= 0 && dim_ < static_cast<int64_t>(s.size()) && step_ > 0 && start_ >= 0 &&
                   start_ <= end_ && end_ <= s[dim_],
               ShapeError, "[slice] invalid slice dim={} [{}:{}:{}] of shape {}", dim_, start_, end_,
               step_, shape_str(s));
  s[dim_] = slice_size(start_, end_, step_);
  return {{s, in[0].dtype, in[0].device}};
}

namespace {
Tensor slice_eval(const Tensor& x, int64_t dim, int64_t start, int64_t end, int64_t step) {
  Shape s = x.shape();
  Strides st = x.strides();
  s[dim] = slice_size(start, end, step);
  const int64_t off = x.offset() + start * st[dim];
  if (s[dim] > 1) st[dim] *= step;  // below the storage's extent; a size-1 dim keeps any stride
  return make_view(x, s, st, off);
}
}  // namespace

std::vector<Tensor> Slice::eval_cpu(const std::vector<Tensor>& in) {
  return {slice_eval(in[0], dim_, start_, end_, step_)};
}
#if MINIDL_WITH_CUDA
std::vector<Tensor> Slice::eval_cuda(const std::vector<Tensor>& in) {
  return {slice_eval(in[0], dim_, start_, end_, step_)};
}
#endif

SaveMask Slice::saves(const std::vector<bool>&, size_t) const { return {{false}, {false}}; }

std::vector<Tensor> Slice::vjp(const std::vector<Tensor>& primals, const std::vector<Tensor>& cot,
                               const std::vector<Tensor>&, const std::vector<bool>&) {
  return {apply1(std::make_shared<SliceBackward>(primals[0].shape(), dim_, start_, end_, step_),
                 {cot[0]})};
}

Tensor Tensor::slice(int64_t d, int64_t start, int64_t end, int64_t step) const {
  MINIDL_CHECK(dim() > 0, ShapeError, "[slice] cannot slice a 0-dim tensor");
  d = normalize_dim(d, dim(), "slice", shape());
  const int64_t n = shape()[d];
  MINIDL_CHECK(step > 0, ValueError, "[slice] step must be positive, got {}", step);
  if (start < 0) start += n;
  if (end < 0) end += n;
  start = std::clamp<int64_t>(start, 0, n);
  end = std::clamp<int64_t>(end, start, n);
  if (start == 0 && end == n && step == 1) return *this;
  return apply1(std::make_shared<Slice>(d, start, end, step), {*this});
}

// ============================================================================ SliceBackward

std::string SliceBackward::attrs() const {
  return fmt::format("shape={}, dim={}, start={}, end={}, step={}", shape_str(input_shape_), dim_,
                     start_, end_, step_);
}

std::vector<TensorMeta> SliceBackward::infer(const std::vector<TensorMeta>& in) const {
  return {{input_shape_, in[0].dtype, in[0].device}};
}

std::vector<Tensor> SliceBackward::eval_cpu(const std::vector<Tensor>& in) {
  Tensor out = zeros(input_shape_, {.dtype = in[0].dtype()});
  cpu::convert(slice_eval(out, dim_, start_, end_, step_), in[0]);
  return {out};
}

#if MINIDL_WITH_CUDA
std::vector<Tensor> SliceBackward::eval_cuda(const std::vector<Tensor>& in) {
  Tensor out = zeros(input_shape_, {.dtype = in[0].dtype(), .device = in[0].device()});
  cuda::convert(slice_eval(out, dim_, start_, end_, step_), in[0]);
  return {out};
}
#endif

SaveMask SliceBackward::saves(const std::vector<bool>&, size_t) const { return {{false}, {false}}; }

std::vector<Tensor> SliceBackward::vjp(const std::vector<Tensor>&, const std::vector<Tensor>& cot,
                                       const std::vector<Tensor>&, const std::vector<bool>&) {
  return {cot[0].slice(dim_, start_, end_, step_)};
}

// ============================================================================ Expand

std::string Expand::attrs() const { return "shape=" + shape_str(shape_); }

std::vector<TensorMeta> Expand::infer(const std::vector<TensorMeta>& in) const {
  const Shape& s = in[0].shape;
  MINIDL_CHECK(shape_.size() >= s.size(), ShapeError, "[expand] cannot expand {} to {}",
               shape_str(s), shape_str(shape_));
  const size_t lead = shape_.size() - s.size();
  for (size_t i = 0; i < s.size(); ++i)
    MINIDL_CHECK(s[i] == shape_[lead + i] || s[i] == 1, ShapeError,
                 "[expand] cannot expand {} to {} (dim {}: {} vs {})", shape_str(s),
                 shape_str(shape_), lead + i, s[i], shape_[lead + i]);
  (void)numel(shape_, "expand");  // no size below 0, no element count past int64
  return {{shape_, in[0].dtype, in[0].device}};
}

namespace {
Tensor expand_eval(const Tensor& x, const Shape& shape) {
  const size_t lead = shape.size() - x.shape().size();
  Strides st(shape.size(), 0);
  for (size_t i = 0; i < x.shape().size(); ++i)
    st[lead + i] = x.shape()[i] == shape[lead + i] ? x.strides()[i] : 0;
  return make_view(x, shape, st, x.offset());
}
}  // namespace

std::vector<Tensor> Expand::eval_cpu(const std::vector<Tensor>& in) { return {expand_eval(in[0], shape_)}; }
#if MINIDL_WITH_CUDA
std::vector<Tensor> Expand::eval_cuda(const std::vector<Tensor>& in) { return {expand_eval(in[0], shape_)}; }
#endif

SaveMask Expand::saves(const std::vector<bool>&, size_t) const { return {{false}, {false}}; }

std::vector<Tensor> Expand::vjp(const std::vector<Tensor>& primals, const std::vector<Tensor>& cot,
                                const std::vector<Tensor>&, const std::vector<bool>&) {
  return {sum_to(cot[0], primals[0].shape())};
}

Tensor Tensor::expand(const Shape& s) const {
  Shape shape = s;
  const int64_t lead = static_cast<int64_t>(s.size()) - dim();
  MINIDL_CHECK(lead >= 0, ShapeError, "[expand] cannot expand {} to fewer dims {}",
               shape_str(this->shape()), shape_str(s));
  for (int64_t i = 0; i < static_cast<int64_t>(s.size()); ++i)
    if (s[i] == -1) {
      MINIDL_CHECK(i >= lead, ShapeError, "[expand] -1 is not allowed for a new dim in {}", shape_str(s));
      shape[i] = this->shape()[i - lead];
    }
  if (shape == this->shape()) return *this;
  return apply1(std::make_shared<Expand>(shape), {*this});
}

Tensor sum_to(const Tensor& x, const Shape& shape) {
  if (x.shape() == shape) return x;
  const int64_t lead = x.dim() - static_cast<int64_t>(shape.size());
  MINIDL_CHECK(lead >= 0, ShapeError, "[sum_to] cannot sum {} down to {}", shape_str(x.shape()),
               shape_str(shape));
  std::vector<int64_t> dims;
  for (int64_t i = 0; i < x.dim(); ++i)
    if (i < lead || (shape[i - lead] == 1 && x.shape()[i] != 1)) dims.push_back(i);
  Tensor s = dims.empty() ? x : sum(x, dims, /*keepdim=*/true);
  return s.reshape(shape);
}

}  // namespace minidl
