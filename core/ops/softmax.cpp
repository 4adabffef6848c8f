// softmax and log_softmax along one dim: one pass per row on the CPU (max, sum of exp, write).
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
        C s = 0;
        for (int64_t j = 0; j < n; ++j) s += std::exp(static_cast<C>(src[base + j * inner]) - m);
        if (log) {
          // (x - m) - log s: forming m + log s first would round away the digits of x - m.
          const C ls = std::log(s);
          for (int64_t j = 0; j < n; ++j)
            dst[base + j * inner] = scalar_t((static_cast<C>(src[base + j * inner]) - m) - ls);
        } else {
          const C inv = C(1) / s;
          for (int64_t j = 0; j < n; ++j)
            dst[base + j * inner] = scalar_t(std::exp(static_cast<C>(src[base + j * inner]) - m) * inv);
        }
      }
    });
  });
  return {out};
}

SaveMask Softmax::saves(const std::vector<bool>&, size_t) const { return {{false}, {true}}; }

std::vector<Tensor> Softmax::vjp(const std::vector<Tensor>&, const std::vector<Tensor>& cot,
                                 const std::vector<Tensor>& outputs, const std::vector<bool>&) {
  const Tensor& g = cot[0];
  const Tensor& y = outputs[0];
  if (log_) return {g - exp(y) * sum(g, {dim_}, true)};
  return {y * (g - sum(g * y, {dim_}, true))};
}

Tensor softmax(const Tensor& x, int64_t dim) {
  return apply1(std::make_shared<Softmax>(normalize_dim(dim, x.dim(), "softmax", x.shape()), false), {x});
}

Tensor log_softmax(const Tensor& x, int64_t dim) {
  return apply1(std::make_shared<Softmax>(normalize_dim(dim, x.dim(), "log_softmax", x.shape()), true),
                {x});
}

}  // namespace minidl
