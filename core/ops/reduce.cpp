// Reductions over dims: sum, mean, max, min, argmax, and var as a composition.
#include <algorithm>
#include <cmath>
#include <limits>

#include "core/cpu/loops.h"
#include "core/ops.h"
#include "core/primitives.h"
#if MINIDL_WITH_CUDA
#include "core/cuda/kernels.h"
#endif

namespace minidl {

namespace {

// Sorted, unique, normalised dims; all dims when `dims` is empty.
std::vector<int64_t> reduce_dims(const std::vector<int64_t>& dims, const Shape& s, const char* op) {
  std::vector<int64_t> out;
  if (dims.empty()) {
    for (int64_t d = 0; d < static_cast<int64_t>(s.size()); ++d) out.push_back(d);
    return out;
  }
  for (int64_t d : dims) out.push_back(normalize_dim(d, static_cast<int64_t>(s.size()), op, s));
  std::sort(out.begin(), out.end());
  MINIDL_CHECK(std::adjacent_find(out.begin(), out.end()) == out.end(), ShapeError,
               "[{}] dim repeated in {} for a tensor of shape {}", op, shape_str(dims), shape_str(s));
  if (s.empty()) out.clear();  // a scalar has nothing to reduce
  return out;
}

Shape reduced_shape(const Shape& s, const std::vector<int64_t>& dims, bool keepdim) {
  Shape out;
  for (int64_t d = 0; d < static_cast<int64_t>(s.size()); ++d) {
    const bool r = std::binary_search(dims.begin(), dims.end(), d);
    if (!r) out.push_back(s[d]);
    else if (keepdim) out.push_back(1);
  }
  return out;
}

int64_t reduced_count(const Shape& s, const std::vector<int64_t>& dims) {
  int64_t n = 1;
  for (int64_t d : dims) n *= s[d];
  return n;
}

// NOTE [16-bit counts and sums]
// A float16 count or sum above 65504 is inf (and bfloat16 keeps 8 bits of a count), so ops that
// divide by a count or form a sum of squares of 16-bit values (mean's gradient, var) compute in
// float32 and round once, as mean itself does by accumulating in double (CPU) or float (CUDA).
bool is_16bit(DType t) { return t == kFloat16 || t == kBFloat16; }

// Splits x's dims into kept (outer) and reduced (inner) ones, with byte strides.
struct ReduceLayout {
  Shape outer, inner;
  Strides outer_st, inner_st;
};

ReduceLayout layout(const Tensor& x, const std::vector<int64_t>& dims) {
  ReduceLayout l;
  const int64_t isz = static_cast<int64_t>(itemsize(x.dtype()));
  for (int64_t d = 0; d < x.dim(); ++d) {
    const bool r = std::binary_search(dims.begin(), dims.end(), d);
    (r ? l.inner : l.outer).push_back(x.shape()[d]);
    (r ? l.inner_st : l.outer_st).push_back(x.strides()[d] * isz);
  }
  return l;
}

// For each output element o (row-major over the kept dims), calls
// visit(o, base pointer of the reduced block, inner shape, inner byte strides).
template <class Visit>
void for_each_output(const ReduceLayout& l, int64_t cost, const char* base, const Visit& visit) {
  const int64_t n_out = numel(l.outer), n_in = numel(l.inner);
  cpu::parallel_for(n_out, n_in * cost, [&](int64_t b, int64_t e) {
    for (int64_t o = b; o < e; ++o) {
      const char* p = base;
      int64_t rem = o;
      for (int64_t d = static_cast<int64_t>(l.outer.size()) - 1; d >= 0; --d) {
        p += (rem % l.outer[d]) * l.outer_st[d];
        rem /= l.outer[d];
      }
      visit(o, p);
    }
  });
}

// Calls f(element pointer, flat index) over the reduced block at p, in row-major order.
template <class F>
void for_each_inner(const ReduceLayout& l, const char* p, const F& f) {
  const int64_t nd = static_cast<int64_t>(l.inner.size());
  if (nd == 0) {
    f(p, 0);
    return;
  }
  const int64_t last = l.inner.back(), last_st = l.inner_st.back();
  const int64_t rows = numel(l.inner) / std::max<int64_t>(last, 1);
  std::vector<int64_t> idx(nd, 0);
  int64_t flat = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const char* q = p;
    for (int64_t d = 0; d < nd - 1; ++d) q += idx[d] * l.inner_st[d];
    for (int64_t i = 0; i < last; ++i) f(q + i * last_st, flat++);
    for (int64_t d = nd - 2; d >= 0; --d) {
      if (++idx[d] < l.inner[d]) break;
      idx[d] = 0;
    }
  }
}

}  // namespace

// ============================================================================ Reduce

const char* Reduce::name() const {
  switch (op_) {
    case ReduceOp::Sum: return "sum";
    case ReduceOp::Mean: return "mean";
    case ReduceOp::Max: return "max";
    case ReduceOp::Min: return "min";
  }
  return "?";
}

std::string Reduce::attrs() const {
  return fmt::format("dims={}, keepdim={}", shape_str(dims_), keepdim_);
}

std::vector<TensorMeta> Reduce::infer(const std::vector<TensorMeta>& in) const {
  const TensorMeta& x = in[0];
  MINIDL_CHECK(x.dtype != kBool || op_ == ReduceOp::Sum, DTypeError, "[{}] does not support bool input {}",
               name(), shape_str(x.shape));
  MINIDL_CHECK(op_ != ReduceOp::Mean || is_floating(x.dtype), DTypeError,
               "[mean] needs a floating input, got {} {}", dtype_name(x.dtype), shape_str(x.shape));
  if (op_ == ReduceOp::Max || op_ == ReduceOp::Min)
    MINIDL_CHECK(reduced_count(x.shape, dims_) > 0, ShapeError,
                 "[{}] cannot reduce an empty dim of shape {}", name(), shape_str(x.shape));
  const DType out = (x.dtype == kBool) ? kInt64 : x.dtype;
  return {{reduced_shape(x.shape, dims_, keepdim_), out, x.device}};
}

std::vector<Tensor> Reduce::eval_cpu(const std::vector<Tensor>& in) {
  const Tensor& x = in[0];
  const TensorMeta m = infer({x.meta()})[0];
  Tensor out = empty(m.shape, m.dtype, kCPU, name());
  const ReduceLayout l = layout(x, dims_);
  const int64_t count = numel(l.inner);
  const char* base = static_cast<const char*>(x.data_ptr());
  const ReduceOp op = op_;
  MINIDL_DISPATCH_ALL(x.dtype(), name(), [&] {
    using In = scalar_t;
    if constexpr (std::is_same_v<In, bool>) {
      int64_t* o = out.data<int64_t>();
      for_each_output(l, 1, base, [&](int64_t i, const char* p) {
        int64_t acc = 0;
        for_each_inner(l, p, [&](const char* e, int64_t) { acc += *reinterpret_cast<const bool*>(e); });
        o[i] = acc;
      });
    } else {
      using C = compute_t<In>;
      // Sums accumulate in double (integers in int64) so long float32 rows keep their digits.
      using Acc = std::conditional_t<std::is_floating_point_v<C>, double, int64_t>;
      In* o = static_cast<In*>(out.data_ptr());
      for_each_output(l, 1, base, [&](int64_t i, const char* p) {
        if (op == ReduceOp::Sum || op == ReduceOp::Mean) {
          Acc acc = 0;
          for_each_inner(l, p, [&](const char* e, int64_t) {
            acc += static_cast<Acc>(static_cast<C>(*reinterpret_cast<const In*>(e)));
          });
          if (op == ReduceOp::Mean) acc = static_cast<Acc>(acc / static_cast<Acc>(count));
          o[i] = In(static_cast<C>(acc));
        } else {
          const bool is_max = op == ReduceOp::Max;
          C best = static_cast<C>(*reinterpret_cast<const In*>(p));
          for_each_inner(l, p, [&](const char* e, int64_t) {
            const C v = static_cast<C>(*reinterpret_cast<const In*>(e));
            if (v != v || (best == best && (is_max ? v > best : v < best))) best = v;
          });
          o[i] = In(best);
        }
      });
    }
  });
  return {out};
}

#if MINIDL_WITH_CUDA
std::vector<Tensor> Reduce::eval_cuda(const std::vector<Tensor>& in) {
  return {cuda::reduce(op_, in[0], dims_, infer({in[0].meta()})[0])};
}
#endif

SaveMask Reduce::saves(const std::vector<bool>&, size_t) const {
  const bool extremum = op_ == ReduceOp::Max || op_ == ReduceOp::Min;
  return {{extremum}, {extremum}};
}

std::vector<Tensor> Reduce::vjp(const std::vector<Tensor>& primals, const std::vector<Tensor>& cot,
                                const std::vector<Tensor>& outputs, const std::vector<bool>&) {
  const Shape& in_shape = primals[0].shape();
  const Shape kept = reduced_shape(in_shape, dims_, true);
  Tensor g = cot[0].reshape(kept).expand(in_shape);
  switch (op_) {
    case ReduceOp::Sum: return {g};
    case ReduceOp::Mean: {
      const double count = static_cast<double>(reduced_count(in_shape, dims_));
      // NOTE [16-bit counts and sums]
      if (is_16bit(g.dtype())) return {(g.to(kFloat32) / count).to(g.dtype())};
      return {g / count};
    }
    default: {
      // Ties share the gradient equally.
      Tensor hit = eq(primals[0], outputs[0].reshape(kept).expand(in_shape)).to(g.dtype());
      return {g * hit / sum(hit, dims_, true).expand(in_shape)};
    }
  }
}

namespace {
Tensor reduce(ReduceOp op, const Tensor& x, const std::vector<int64_t>& dims, bool keepdim,
              const char* name) {
  std::vector<int64_t> d = reduce_dims(dims, x.shape(), name);
  if (d.empty() && op != ReduceOp::Sum) return x;
  return apply1(std::make_shared<Reduce>(op, d, keepdim), {x});
}
}  // namespace

Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  return reduce(ReduceOp::Sum, x, dims, keepdim, "sum");
}
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  return reduce(ReduceOp::Mean, x, dims, keepdim, "mean");
}
Tensor max(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  return reduce(ReduceOp::Max, x, dims, keepdim, "max");
}
Tensor min(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  return reduce(ReduceOp::Min, x, dims, keepdim, "min");
}

Tensor var(const Tensor& x, const std::vector<int64_t>& dims, int64_t correction, bool keepdim) {
  std::vector<int64_t> d = reduce_dims(dims, x.shape(), "var");
  const int64_t n = reduced_count(x.shape(), d);
  MINIDL_CHECK(n - correction > 0, ShapeError,
               "[var] {} elements with correction {} leave no degrees of freedom (shape {})", n,
               correction, shape_str(x.shape()));
  if (is_16bit(x.dtype()))  // NOTE [16-bit counts and sums]
    return var(x.to(kFloat32), dims, correction, keepdim).to(x.dtype());
  Tensor centered = x - mean(x, d, true);
  return sum(centered * centered, d, keepdim) / static_cast<double>(n - correction);
}

// ============================================================================ ArgMax

std::string ArgMax::attrs() const { return fmt::format("dim={}, keepdim={}", dim_, keepdim_); }

std::vector<TensorMeta> ArgMax::infer(const std::vector<TensorMeta>& in) const {
  const TensorMeta& x = in[0];
  MINIDL_CHECK(x.dtype != kBool, DTypeError, "[argmax] does not support bool input {}",
               shape_str(x.shape));
  MINIDL_CHECK(x.shape.empty() || x.shape[dim_] > 0, ShapeError,
               "[argmax] cannot reduce an empty dim of shape {}", shape_str(x.shape));
  return {{reduced_shape(x.shape, x.shape.empty() ? std::vector<int64_t>{} : std::vector<int64_t>{dim_}, keepdim_),
           kInt64, x.device}};
}

std::vector<Tensor> ArgMax::eval_cpu(const std::vector<Tensor>& in) {
  const Tensor& x = in[0];
  const TensorMeta m = infer({x.meta()})[0];
  Tensor out = empty(m.shape, kInt64, kCPU, "argmax");
  int64_t* o = out.data<int64_t>();
  if (x.dim() == 0) {
    o[0] = 0;
    return {out};
  }
  const ReduceLayout l = layout(x, {dim_});
  MINIDL_DISPATCH_ALL(x.dtype(), "argmax", [&] {
    using C = compute_t<scalar_t>;
    for_each_output(l, 1, static_cast<const char*>(x.data_ptr()), [&](int64_t i, const char* p) {
      C best = static_cast<C>(*reinterpret_cast<const scalar_t*>(p));
      int64_t at = 0;
      for_each_inner(l, p, [&](const char* e, int64_t j) {
        const C v = static_cast<C>(*reinterpret_cast<const scalar_t*>(e));
        if (best == best && (v != v || v > best)) best = v, at = j;
      });
      o[i] = at;
    });
  });
  return {out};
}

#if MINIDL_WITH_CUDA
std::vector<Tensor> ArgMax::eval_cuda(const std::vector<Tensor>& in) {
  return {cuda::argmax(in[0], dim_, infer({in[0].meta()})[0])};
}
#endif

Tensor argmax(const Tensor& x, int64_t dim, bool keepdim) {
  const int64_t d = x.dim() == 0 ? 0 : normalize_dim(dim, x.dim(), "argmax", x.shape());
  return apply1(std::make_shared<ArgMax>(d, keepdim), {x});
}

}  // namespace minidl
