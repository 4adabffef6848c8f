// Indexing ops: embedding (gather) and its scatter-add gradient, cat, one_hot.
#include "core/cpu/kernels.h"
#include "core/cpu/parallel.h"
#include "core/ops.h"
#include "core/primitives.h"
#if MINIDL_WITH_CUDA
#include "core/cuda/kernels.h"
#endif

namespace minidl {

void throw_id_out_of_range(const char* op, int64_t id, int64_t position, const Shape& ids_shape,
                           const std::string& range, int64_t n) {
  throw IndexError(fmt::format("[{}] index {} at position {} of the ids {} is out of range for {} (valid: 0 to {})",
                               op, id, position, shape_str(ids_shape), range, n - 1));
}

namespace {

// The ids of an index tensor as int64 (CPU, contiguous), each checked to lie in [0, n);
// `range` says what n counts, for the message ("a weight of shape (10, 4)").
std::vector<int64_t> checked_ids(const Tensor& ids, int64_t n, const char* op, const std::string& range) {
  std::vector<int64_t> v = ids.to_vector<int64_t>();
  for (size_t i = 0; i < v.size(); ++i)
    if (v[i] < 0 || v[i] >= n) throw_id_out_of_range(op, v[i], static_cast<int64_t>(i), ids.shape(), range, n);
  return v;
}

void check_ids_dtype(const TensorMeta& ids, const char* op) {
  MINIDL_CHECK(is_integral(ids.dtype), DTypeError, "[{}] ids must be int32 or int64, got {} {}", op,
               dtype_name(ids.dtype), shape_str(ids.shape));
}

}  // namespace

// ============================================================================ Embedding

std::vector<TensorMeta> Embedding::infer(const std::vector<TensorMeta>& in) const {
  const TensorMeta &w = in[0], &ids = in[1];
  MINIDL_CHECK(w.shape.size() == 2, ShapeError, "[embedding] weight must be 2-D (num, dim), got {}",
               shape_str(w.shape));
  check_ids_dtype(ids, "embedding");
  Shape s = ids.shape;
  s.push_back(w.shape[1]);
  return {{s, w.dtype, common_device("embedding", in)}};
}

std::vector<Tensor> Embedding::eval_cpu(const std::vector<Tensor>& in) {
  const Tensor w = in[0].contiguous();
  const std::vector<int64_t> ids =
      checked_ids(in[1], w.size(0), "embedding", "a weight of shape " + shape_str(w.shape()));
  const int64_t d = w.size(1);
  Shape s = in[1].shape();
  s.push_back(d);
  Tensor out = empty(s, w.dtype(), kCPU, "embedding");
  const size_t row = static_cast<size_t>(d) * itemsize(w.dtype());
  const char* src = static_cast<const char*>(w.data_ptr());
  char* dst = static_cast<char*>(out.data_ptr());
  cpu::parallel_for(static_cast<int64_t>(ids.size()), d, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) std::memcpy(dst + i * row, src + ids[i] * row, row);
  });
  return {out};
}

#if MINIDL_WITH_CUDA
std::vector<Tensor> Embedding::eval_cuda(const std::vector<Tensor>& in) {
  return {cuda::embedding(in[0], in[1])};
}
#endif

SaveMask Embedding::saves(const std::vector<bool>&, size_t) const { return {{false, true}, {false}}; }

std::vector<Tensor> Embedding::vjp(const std::vector<Tensor>& primals, const std::vector<Tensor>& cot,
                                   const std::vector<Tensor>&, const std::vector<bool>&) {
  return {apply1(std::make_shared<EmbeddingBackward>(primals[0].size(0)), {cot[0], primals[1]}),
          Tensor()};
}

Tensor embedding(const Tensor& weight, const Tensor& indices) {
  return apply1(std::make_shared<Embedding>(), {weight, indices});
}

// ============================================================================ EmbeddingBackward

std::string EmbeddingBackward::attrs() const { return fmt::format("num_rows={}", num_rows_); }

std::vector<TensorMeta> EmbeddingBackward::infer(const std::vector<TensorMeta>& in) const {
  const TensorMeta &g = in[0], &ids = in[1];
  check_ids_dtype(ids, "embedding_backward");
  Shape want = ids.shape;
  want.push_back(g.shape.empty() ? 0 : g.shape.back());
  MINIDL_CHECK(g.shape == want, ShapeError,
               "[embedding_backward] gradient {} does not match ids {} plus a feature dim",
               shape_str(g.shape), shape_str(ids.shape));
  return {{{num_rows_, g.shape.back()}, g.dtype, common_device("embedding_backward", in)}};
}

std::vector<Tensor> EmbeddingBackward::eval_cpu(const std::vector<Tensor>& in) {
  const Tensor g = in[0].contiguous();
  const std::vector<int64_t> ids = checked_ids(in[1], num_rows_, "embedding_backward",
                                               fmt::format("a weight of {} rows", num_rows_));
  const int64_t d = g.shape().back();
  Tensor out = zeros({num_rows_, d}, {.dtype = g.dtype()});
  MINIDL_DISPATCH_FLOAT(g.dtype(), "embedding_backward", [&] {
    using C = compute_t<scalar_t>;
    const scalar_t* src = static_cast<const scalar_t*>(g.data_ptr());
    scalar_t* dst = static_cast<scalar_t*>(out.data_ptr());
    // Parallel over feature columns: rows with equal ids never race.
    cpu::parallel_for(d, static_cast<int64_t>(ids.size()), [&](int64_t b, int64_t e) {
      for (size_t i = 0; i < ids.size(); ++i)
        for (int64_t j = b; j < e; ++j)
          dst[ids[i] * d + j] = scalar_t(static_cast<C>(dst[ids[i] * d + j]) + static_cast<C>(src[i * d + j]));
    });
  });
  return {out};
}

#if MINIDL_WITH_CUDA
std::vector<Tensor> EmbeddingBackward::eval_cuda(const std::vector<Tensor>& in) {
  return {cuda::embedding_backward(in[0], in[1], num_rows_)};
}
#endif

SaveMask EmbeddingBackward::saves(const std::vector<bool>&, size_t) const {
  return {{false, true}, {false}};
}

std::vector<Tensor> EmbeddingBackward::vjp(const std::vector<Tensor>& primals,
                                           const std::vector<Tensor>& cot,
                                           const std::vector<Tensor>&, const std::vector<bool>&) {
  return {embedding(cot[0], primals[1]), Tensor()};
}

// ============================================================================ Concat

std::string Concat::attrs() const { return fmt::format("dim={}", dim_); }

std::vector<TensorMeta> Concat::infer(const std::vector<TensorMeta>& in) const {
  MINIDL_CHECK(!in.empty(), ValueError, "[cat] expects at least one tensor");
  Shape out = in[0].shape;
  MINIDL_CHECK(dim_ >= 0 && dim_ < static_cast<int64_t>(out.size()), ShapeError,
               "[cat] dim {} out of range for shape {}", dim_, shape_str(out));
  for (size_t i = 1; i < in.size(); ++i) {
    const Shape& s = in[i].shape;
    bool ok = s.size() == out.size();
    for (size_t d = 0; ok && d < s.size(); ++d) ok = static_cast<int64_t>(d) == dim_ || s[d] == out[d];
    MINIDL_CHECK(ok, ShapeError, "[cat] tensor {} has shape {}, which differs from {} outside dim {}",
                 i, shape_str(s), shape_str(in[0].shape), dim_);
    MINIDL_CHECK(in[i].dtype == in[0].dtype, DTypeError, "[cat] tensor {} is {} but tensor 0 is {}", i,
                 dtype_name(in[i].dtype), dtype_name(in[0].dtype));
    out[dim_] += s[dim_];
  }
  return {{out, in[0].dtype, common_device("cat", in)}};
}

std::vector<Tensor> Concat::eval_cpu(const std::vector<Tensor>& in) {
  const TensorMeta m = infer([&] { std::vector<TensorMeta> v; for (auto& t : in) v.push_back(t.meta()); return v; }())[0];
  Tensor out = empty(m.shape, m.dtype, kCPU, "cat");
  int64_t at = 0;
  for (const auto& t : in) {
    const int64_t n = t.shape()[dim_];
    if (n > 0) {
      Strides st = out.strides();
      Shape s = out.shape();
      s[dim_] = n;
      cpu::convert(make_view(out, s, st, at * st[dim_]), t);
    }
    at += n;
  }
  return {out};
}

#if MINIDL_WITH_CUDA
std::vector<Tensor> Concat::eval_cuda(const std::vector<Tensor>& in) {
  const TensorMeta m = infer([&] { std::vector<TensorMeta> v; for (auto& t : in) v.push_back(t.meta()); return v; }())[0];
  Tensor out = empty(m.shape, m.dtype, m.device, "cat");
  int64_t at = 0;
  for (const auto& t : in) {
    const int64_t n = t.shape()[dim_];
    if (n > 0) {
      Shape s = out.shape();
      s[dim_] = n;
      cuda::convert(make_view(out, s, out.strides(), at * out.strides()[dim_]), t);
    }
    at += n;
  }
  return {out};
}
#endif

SaveMask Concat::saves(const std::vector<bool>& ng, size_t) const {
  return {std::vector<bool>(ng.size(), false), {false}};
}

std::vector<Tensor> Concat::vjp(const std::vector<Tensor>& primals, const std::vector<Tensor>& cot,
                                const std::vector<Tensor>&, const std::vector<bool>& ng) {
  std::vector<Tensor> grads;
  int64_t at = 0;
  for (size_t i = 0; i < primals.size(); ++i) {
    const int64_t n = primals[i].shape()[dim_];
    grads.push_back(ng[i] ? cot[0].slice(dim_, at, at + n) : Tensor());
    at += n;
  }
  return grads;
}

Tensor cat(const std::vector<Tensor>& tensors, int64_t dim) {
  MINIDL_CHECK(!tensors.empty(), ValueError, "[cat] expects at least one tensor");
  DType t = tensors[0].dtype();
  for (const auto& x : tensors) t = promote_types(t, x.dtype());
  std::vector<Tensor> in;
  for (const auto& x : tensors) in.push_back(x.dtype() == t ? x : x.to(t));
  if (in.size() == 1) return in[0];
  const int64_t d = normalize_dim(dim, in[0].dim(), "cat", in[0].shape());
  return apply1(std::make_shared<Concat>(d), in);
}

// ============================================================================ OneHot

std::string OneHot::attrs() const {
  return fmt::format("num_classes={}, dtype={}", num_classes_, dtype_name(dtype_));
}

std::vector<TensorMeta> OneHot::infer(const std::vector<TensorMeta>& in) const {
  check_ids_dtype(in[0], "one_hot");
  MINIDL_CHECK(num_classes_ > 0, ValueError, "[one_hot] num_classes must be positive, got {}",
               num_classes_);
  Shape s = in[0].shape;
  s.push_back(num_classes_);
  return {{s, dtype_, in[0].device}};
}

std::vector<Tensor> OneHot::eval_cpu(const std::vector<Tensor>& in) {
  const std::vector<int64_t> ids =
      checked_ids(in[0], num_classes_, "one_hot", fmt::format("{} classes", num_classes_));
  Shape s = in[0].shape();
  s.push_back(num_classes_);
  Tensor out = zeros(s, {.dtype = dtype_});
  const size_t isz = itemsize(dtype_);
  Tensor one = scalar_tensor(1.0, {.dtype = dtype_});
  char* dst = static_cast<char*>(out.data_ptr());
  for (size_t i = 0; i < ids.size(); ++i)
    std::memcpy(dst + (i * num_classes_ + ids[i]) * isz, one.data_ptr(), isz);
  return {out};
}

#if MINIDL_WITH_CUDA
std::vector<Tensor> OneHot::eval_cuda(const std::vector<Tensor>& in) {
  return {cuda::one_hot(in[0], num_classes_, dtype_)};
}
#endif

Tensor one_hot(const Tensor& indices, int64_t num_classes, DType dtype) {
  return apply1(std::make_shared<OneHot>(num_classes, dtype), {indices});
}

}  // namespace minidl
