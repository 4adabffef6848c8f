// cross_entropy: log-softmax and negative log-likelihood in one pass, mean over the rows whose
// target is not ignore_index.
#include <cmath>

#include "core/cpu/parallel.h"
#include "core/ops.h"
#include "core/primitives.h"
#if MINIDL_WITH_CUDA
#include "core/cuda/kernels.h"
#endif

namespace minidl {

std::string CrossEntropy::attrs() const { return fmt::format("ignore_index={}", ignore_index_); }

std::vector<TensorMeta> CrossEntropy::infer(const std::vector<TensorMeta>& in) const {
  const TensorMeta &x = in[0], &t = in[1];
  MINIDL_CHECK(x.shape.size() == 2, ShapeError,
               "[cross_entropy] logits must be (N, C), got {} (reshape (B, T, C) to (B*T, C))",
               shape_str(x.shape));
  MINIDL_CHECK(is_floating(x.dtype), DTypeError, "[cross_entropy] logits must be floating, got {}",
               dtype_name(x.dtype));
  MINIDL_CHECK(is_integral(t.dtype), DTypeError, "[cross_entropy] targets must be int32 or int64, got {}",
               dtype_name(t.dtype));
  MINIDL_CHECK(t.shape == Shape{x.shape[0]}, ShapeError,
               "[cross_entropy] targets {} do not match logits {} (expected ({},))", shape_str(t.shape),
               shape_str(x.shape), x.shape[0]);
  return {{{}, x.dtype, common_device("cross_entropy", in)}};
}

std::vector<Tensor> CrossEntropy::eval_cpu(const std::vector<Tensor>& in) {
  const Tensor x = in[0].contiguous();
  const std::vector<int64_t> t = in[1].to_vector<int64_t>();
  const int64_t n = x.size(0), c = x.size(1);
  for (int64_t i = 0; i < n; ++i)
    MINIDL_CHECK(t[i] == ignore_index_ || (t[i] >= 0 && t[i] < c), IndexError,
                 "[cross_entropy] target {} at row {} is out of range for {} classes (logits {})",
                 t[i], i, c, shape_str(x.shape()));
  std::vector<double> loss(n, 0.0);
  MINIDL_DISPATCH_FLOAT(x.dtype(), "cross_entropy", [&] {
    const scalar_t* p = static_cast<const scalar_t*>(x.data_ptr());
    cpu::parallel_for(n, c * 8, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        if (t[i] == ignore_index_) continue;
        const scalar_t* row = p + i * c;
        double m = -INFINITY, s = 0;
        for (int64_t j = 0; j < c; ++j) m = std::max<double>(m, static_cast<double>(static_cast<compute_t<scalar_t>>(row[j])));
        for (int64_t j = 0; j < c; ++j) s += std::exp(static_cast<double>(static_cast<compute_t<scalar_t>>(row[j])) - m);
        loss[i] = m + std::log(s) - static_cast<double>(static_cast<compute_t<scalar_t>>(row[t[i]]));
      }
    });
  });
  double total = 0;
  int64_t count = 0;
  for (int64_t i = 0; i < n; ++i)
    if (t[i] != ignore_index_) total += loss[i], ++count;
  return {scalar_tensor(count ? total / static_cast<double>(count) : NAN, {.dtype = x.dtype()})};
}

#if MINIDL_WITH_CUDA
std::vector<Tensor> CrossEntropy::eval_cuda(const std::vector<Tensor>& in) {
  return {cuda::cross_entropy(in[0], in[1], ignore_index_)};
}
#endif

SaveMask CrossEntropy::saves(const std::vector<bool>&, size_t) const { return {{true, true}, {false}}; }

std::vector<Tensor> CrossEntropy::vjp(const std::vector<Tensor>& primals, const std::vector<Tensor>& cot,
                                      const std::vector<Tensor>&, const std::vector<bool>&) {
  const Tensor &logits = primals[0], &target = primals[1];
  const DType dt = logits.dtype();
  Tensor valid = ne(target, scalar_like(target, static_cast<double>(ignore_index_)));
  Tensor safe = where(valid, target, scalar_like(target, 0.0));
  Tensor w = valid.to(dt);
  Tensor diff = softmax(logits, -1) - one_hot(safe, logits.size(1), dt);
  return {diff * w.unsqueeze(-1) * (cot[0] / sum(w)), Tensor()};
}

Tensor cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index) {
  return apply1(std::make_shared<CrossEntropy>(ignore_index), {logits, target});
}

}  // namespace minidl
