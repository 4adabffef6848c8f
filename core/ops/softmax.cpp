// softmax and log_softmax along one dim, and their gradient (softmax_backward): one pass per row
// on the CPU (max, sum of exp, write; dot, write), row kernels on CUDA (core/cuda/softmax.cu).
#include <cmath>

#include "core/cpu/parallel.h"
#include "core/ops.h"
#include "core/primitives.h"
#if MINIDL_WITH_CUDA
#include "core/cuda/kernels.h"
#endif

namespace minidl {

std::string Softmax::attrs() const { return fmt::format("dim={}", dim_); }

std::vector<TensorMeta> Softmax::infer(const std::vector<TensorMeta>& in) const {
  MINIDL_CHECK(is_floating(in[0].dtype), DTypeError, "[{}] needs a floating input, got {} {}",
               name(), dtype_name(in[0].dtype), shape_str(in[0].shape));
  return {in[0]};
}

std::vector<Tensor> Softmax::eval_cpu(const std::vector<Tensor>& in) {
  const Tensor x = in[0].contiguous();
  Tensor out = empty(x.shape(), x.dtype(), kCPU, name());
  if (x.numel() == 0) return {out};
  // View as (outer, n, inner): rows run along dim with stride `inner`.
  const int64_t n = x.dim() == 0 ? 1 : x.shape()[dim_];
  int64_t inner = 1;
  for (int64_t d = dim_ + 1; d < x.dim(); ++d) inner *= x.shape()[d];
  const int64_t rows = x.numel() / n;
  const bool log = log_;
  MINIDL_DISPATCH_FLOAT(x.dtype(), name(), [&] {
    using C = compute_t<scalar_t>;
    const scalar_t* src = static_cast<const scalar_t*>(x.data_ptr());
    scalar_t* dst = static_cast<scalar_t*>(out.data_ptr());
    cpu::parallel_for(rows, n * 8, [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) {
        const int64_t base = (r / inner) * n * inner + r % inner;
        C m = -INFINITY;
        for (int64_t j = 0; j < n; ++j) m = std::max<C>(m, static_cast<C>(src[base + j * inner]));
        if (m == -INFINITY) m = 0;  // a fully masked row: exp gives 0s, not NaNs from inf - inf
        // Sums accumulate in double, so long float32 rows keep their digits.
        double s = 0;
        for (int64_t j = 0; j < n; ++j) s += std::exp(static_cast<C>(src[base + j * inner]) - m);
        if (log) {
          // (x - m) - log s: forming m + log s first would round away the digits of x - m.
          const C ls = static_cast<C>(std::log(s));
          for (int64_t j = 0; j < n; ++j)
            dst[base + j * inner] = scalar_t((static_cast<C>(src[base + j * inner]) - m) - ls);
        } else {
          const C inv = static_cast<C>(1.0 / s);
          for (int64_t j = 0; j < n; ++j)
            dst[base + j * inner] = scalar_t(std::exp(static_cast<C>(src[base + j * inner]) - m) * inv);
        }
      }
    });
  });
  return {out};
}

#if MINIDL_WITH_CUDA
std::vector<Tensor> Softmax::eval_cuda(const std::vector<Tensor>& in) {
  return {cuda::softmax(in[0], dim_, log_)};
}
#endif

SaveMask Softmax::saves(const std::vector<bool>&, size_t) const { return {{false}, {true}}; }

std::vector<Tensor> Softmax::vjp(const std::vector<Tensor>&, const std::vector<Tensor>& cot,
                                 const std::vector<Tensor>& outputs, const std::vector<bool>&) {
  return {softmax_backward(cot[0], outputs[0], dim_, log_)};
}

// ============================================================================ SoftmaxBackward

std::string SoftmaxBackward::attrs() const { return fmt::format("dim={}", dim_); }

std::vector<TensorMeta> SoftmaxBackward::infer(const std::vector<TensorMeta>& in) const {
  MINIDL_CHECK(in.size() == 2, ValueError, "[{}] expects 2 inputs (g, y), got {}", name(), in.size());
  MINIDL_CHECK(in[0].shape == in[1].shape && in[0].dtype == in[1].dtype && is_floating(in[0].dtype),
               ShapeError, "[{}] expects a gradient and an output of one shape and floating dtype, got {} {} and {} {}",
               name(), dtype_name(in[0].dtype), shape_str(in[0].shape), dtype_name(in[1].dtype),
               shape_str(in[1].shape));
  return {{in[0].shape, in[0].dtype, common_device(name(), in)}};
}

std::vector<Tensor> SoftmaxBackward::eval_cpu(const std::vector<Tensor>& in) {
  const Tensor g = in[0].contiguous(), y = in[1].contiguous();
  Tensor out = empty(g.shape(), g.dtype(), kCPU, name());
  if (g.numel() == 0) return {out};
  // View as (outer, n, inner): rows run along dim with stride `inner`.
  const int64_t n = g.dim() == 0 ? 1 : g.shape()[dim_];
  int64_t inner = 1;
  for (int64_t d = dim_ + 1; d < g.dim(); ++d) inner *= g.shape()[d];
  const int64_t rows = g.numel() / n;
  const bool log = log_;
  MINIDL_DISPATCH_FLOAT(g.dtype(), name(), [&] {
    using C = compute_t<scalar_t>;
    const scalar_t* pg = static_cast<const scalar_t*>(g.data_ptr());
    const scalar_t* py = static_cast<const scalar_t*>(y.data_ptr());
    scalar_t* dst = static_cast<scalar_t*>(out.data_ptr());
    cpu::parallel_for(rows, n * 6, [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) {
        const int64_t base = (r / inner) * n * inner + r % inner;
        double dot = 0;  // in double, as the forward's sum
        for (int64_t j = 0; j < n; ++j) {
          const int64_t i = base + j * inner;
          dot += log ? static_cast<C>(pg[i]) : static_cast<C>(pg[i]) * static_cast<C>(py[i]);
        }
        const C d = static_cast<C>(dot);
        for (int64_t j = 0; j < n; ++j) {
          const int64_t i = base + j * inner;
          const C gi = static_cast<C>(pg[i]), yi = static_cast<C>(py[i]);
          dst[i] = scalar_t(log ? gi - std::exp(yi) * d : yi * (gi - d));
        }
      }
    });
  });
  return {out};
}

#if MINIDL_WITH_CUDA
std::vector<Tensor> SoftmaxBackward::eval_cuda(const std::vector<Tensor>& in) {
  return {cuda::softmax_backward(in[0], in[1], dim_, log_)};
}
#endif

SaveMask SoftmaxBackward::saves(const std::vector<bool>&, size_t) const { return {{true, true}, {false}}; }

std::vector<Tensor> SoftmaxBackward::vjp(const std::vector<Tensor>& primals, const std::vector<Tensor>& cot,
                                         const std::vector<Tensor>&, const std::vector<bool>& ng) {
  // out = y (g - s), s = sum(g y):  dg = y (u - sum(u y)),  dy = u (g - s) - g sum(u y).
  // log: out = g - exp(y) S, S = sum(g):  dg = u - sum(u exp(y)),  dy = -u exp(y) S.
  const Tensor &g = primals[0], &y = primals[1], &u = cot[0];
  Tensor gg, gy;
  if (log_) {
    Tensor ey = exp(y);
    if (ng[0]) gg = u - sum(u * ey, {dim_}, true);
    if (ng[1]) gy = -(u * ey) * sum(g, {dim_}, true);
  } else {
    if (ng[0]) gg = softmax_backward(u, y, dim_, false);
    if (ng[1]) gy = u * (g - sum(g * y, {dim_}, true)) - g * sum(u * y, {dim_}, true);
  }
  return {gg, gy};
}

Tensor softmax_backward(const Tensor& g, const Tensor& y, int64_t dim, bool log) {
  const char* op = log ? "log_softmax_backward" : "softmax_backward";
  return apply1(std::make_shared<SoftmaxBackward>(normalize_dim(dim, y.dim(), op, y.shape()), log), {g, y});
}

Tensor softmax(const Tensor& x, int64_t dim) {
  return apply1(std::make_shared<Softmax>(normalize_dim(dim, x.dim(), "softmax", x.shape()), false), {x});
}

Tensor log_softmax(const Tensor& x, int64_t dim) {
  return apply1(std::make_shared<Softmax>(normalize_dim(dim, x.dim(), "log_softmax", x.shape()), true),
                {x});
}

}  // namespace minidl
