// layer_norm over the last dim, with optional elementwise affine (weight, bias).
#include <cmath>

#include "core/cpu/parallel.h"
#include "core/ops.h"
#include "core/primitives.h"
#if MINIDL_WITH_CUDA
#include "core/cuda/kernels.h"
#endif

namespace minidl {

std::string LayerNorm::attrs() const { return fmt::format("eps={}, affine={}", eps_, affine_); }

std::vector<TensorMeta> LayerNorm::infer(const std::vector<TensorMeta>& in) const {
  const TensorMeta& x = in[0];
  MINIDL_CHECK(in.size() == (affine_ ? 3u : 1u), ValueError, "[layer_norm] expects {} inputs, got {}",
               affine_ ? 3 : 1, in.size());
  MINIDL_CHECK(!x.shape.empty(), ShapeError, "[layer_norm] needs at least 1 dim, got a scalar");
  MINIDL_CHECK(is_floating(x.dtype), DTypeError, "[layer_norm] needs a floating input, got {} {}",
               dtype_name(x.dtype), shape_str(x.shape));
  for (size_t i = 1; i < in.size(); ++i) {
    MINIDL_CHECK(in[i].shape == Shape{x.shape.back()}, ShapeError,
                 "[layer_norm] {} of shape {} does not match the normalised dim of input {}",
                 i == 1 ? "weight" : "bias", shape_str(in[i].shape), shape_str(x.shape));
    MINIDL_CHECK(in[i].dtype == x.dtype, DTypeError, "[layer_norm] {} is {} but the input is {}",
                 i == 1 ? "weight" : "bias", dtype_name(in[i].dtype), dtype_name(x.dtype));
  }
  return {{x.shape, x.dtype, common_device("layer_norm", in)}};
}

std::vector<Tensor> LayerNorm::eval_cpu(const std::vector<Tensor>& in) {
  const Tensor x = in[0].contiguous();
  Tensor out = empty(x.shape(), x.dtype(), kCPU, "layer_norm");
  const int64_t c = x.shape().back(), rows = c ? x.numel() / c : 0;
  Tensor w = affine_ ? in[1].contiguous() : Tensor(), b = affine_ ? in[2].contiguous() : Tensor();
  const double eps = eps_;
  MINIDL_DISPATCH_FLOAT(x.dtype(), "layer_norm", [&] {
    using C = compute_t<scalar_t>;
    const scalar_t* src = static_cast<const scalar_t*>(x.data_ptr());
    const scalar_t* pw = w.defined() ? static_cast<const scalar_t*>(w.data_ptr()) : nullptr;
    const scalar_t* pb = b.defined() ? static_cast<const scalar_t*>(b.data_ptr()) : nullptr;
    scalar_t* dst = static_cast<scalar_t*>(out.data_ptr());
    cpu::parallel_for(rows, c * 8, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const scalar_t* row = src + r * c;
        double s = 0, s2 = 0;
        for (int64_t j = 0; j < c; ++j) s += static_cast<C>(row[j]);
        const double mu = s / static_cast<double>(c);
        for (int64_t j = 0; j < c; ++j) {
          const double d = static_cast<C>(row[j]) - mu;
          s2 += d * d;
        }
        const double rstd = 1.0 / std::sqrt(s2 / static_cast<double>(c) + eps);
        for (int64_t j = 0; j < c; ++j) {
          C v = static_cast<C>((static_cast<C>(row[j]) - mu) * rstd);
          if (pw) v = v * static_cast<C>(pw[j]) + static_cast<C>(pb[j]);
          dst[r * c + j] = scalar_t(v);
        }
      }
    });
  });
  return {out};
}

#if MINIDL_WITH_CUDA
std::vector<Tensor> LayerNorm::eval_cuda(const std::vector<Tensor>& in) {
  return {cuda::layer_norm(in[0], affine_ ? in[1] : Tensor(), affine_ ? in[2] : Tensor(), eps_)};
}
#endif

SaveMask LayerNorm::saves(const std::vector<bool>&, size_t) const {
  if (!affine_) return {{true}, {false}};
  return {{true, true, false}, {false}};
}

std::vector<Tensor> LayerNorm::vjp(const std::vector<Tensor>& primals, const std::vector<Tensor>& cot,
                                   const std::vector<Tensor>&, const std::vector<bool>& ng) {
  const Tensor& x = primals[0];
  const Tensor& g = cot[0];
  Tensor centered = x - mean(x, {-1}, true);
  Tensor rstd = rsqrt(mean(centered * centered, {-1}, true) + eps_);
  Tensor xhat = centered * rstd;
  Tensor gxhat = affine_ ? g * primals[1] : g;
  std::vector<Tensor> grads(primals.size());
  if (ng[0])
    grads[0] = rstd * (gxhat - mean(gxhat, {-1}, true) - xhat * mean(gxhat * xhat, {-1}, true));
  if (affine_ && ng[1]) grads[1] = sum_to(g * xhat, primals[1].shape());
  if (affine_ && ng[2]) grads[2] = sum_to(g, primals[2].shape());
  return grads;
}

Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps) {
  MINIDL_CHECK(weight.defined() == bias.defined(), ValueError,
               "[layer_norm] weight and bias must both be given or both be undefined");
  if (!weight.defined()) return apply1(std::make_shared<LayerNorm>(eps, false), {x});
  return apply1(std::make_shared<LayerNorm>(eps, true), {x, weight, bias});
}

}  // namespace minidl
