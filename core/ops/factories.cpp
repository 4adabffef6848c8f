// Factories: tensors made from values, constants, ranges and random streams.
#include <cmath>

#include "core/cpu/kernels.h"
#include "core/cpu/parallel.h"
#include "core/ops.h"
#include "core/philox.h"
#include "core/primitives.h"
#if MINIDL_WITH_CUDA
#include "core/cuda/kernels.h"
#endif

namespace minidl {

namespace {

Tensor finish(Tensor t, const Options& o) {
  if (o.requires_grad) t.requires_grad_(true);
  return t;
}

// Fills a contiguous tensor from the Philox stream: uniform [0,1) or standard normal.
void fill_random(const Tensor& t, RandomKind kind, Generator* gen) {
  Generator& g = gen ? *gen : default_generator();
  const auto [seed, offset] = g.reserve(static_cast<uint64_t>(t.numel()));
  if (t.device().is_cuda()) {
#if MINIDL_WITH_CUDA
    cuda::fill_random(t, kind == RandomKind::Normal, seed, offset);
    return;
#endif
  }
  MINIDL_DISPATCH_FLOAT(t.dtype(), "rand", [&] {
    scalar_t* p = static_cast<scalar_t*>(t.data_ptr());
    cpu::parallel_for(t.numel(), 40, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i)
        p[i] = scalar_t(kind == RandomKind::Normal ? philox::normal_at(seed, offset, i)
                                                   : philox::uniform_at(seed, offset, i));
    });
  });
}

}  // namespace

Tensor full(const Shape& shape, double value, Options o) {
  Tensor t = empty(shape, o.dtype, o.device, "full");
  t.fill_(value);
  return finish(t, o);
}
Tensor zeros(const Shape& shape, Options o) { return full(shape, 0.0, o); }
Tensor ones(const Shape& shape, Options o) { return full(shape, 1.0, o); }
Tensor zeros_like(const Tensor& t) { return zeros(t.shape(), {.dtype = t.dtype(), .device = t.device()}); }
Tensor ones_like(const Tensor& t) { return ones(t.shape(), {.dtype = t.dtype(), .device = t.device()}); }
Tensor full_like(const Tensor& t, double v) {
  return full(t.shape(), v, {.dtype = t.dtype(), .device = t.device()});
}
Tensor scalar_tensor(double v, Options o) { return full({}, v, o); }

Tensor arange(double start, double end, double step, Options o) {
  MINIDL_CHECK(step != 0 && std::isfinite(start) && std::isfinite(end), ValueError,
               "[arange] invalid range start={} end={} step={}", start, end, step);
  const double count = std::max(0.0, std::ceil((end - start) / step));
  // 2^63 is a double exactly; the cast below is defined only under it.
  MINIDL_CHECK(count < 0x1p63, ShapeError,
               "[arange] start={} end={} step={} gives {:g} elements, more than 2^63 - 1", start, end,
               step, count);
  const auto n = static_cast<int64_t>(count);
  Tensor t = empty({n}, kFloat64, kCPU, "arange");
  double* p = t.data<double>();
  for (int64_t i = 0; i < n; ++i) p[i] = start + static_cast<double>(i) * step;
  return finish(t.to(o.dtype).to(o.device), o);
}

Tensor rand(const Shape& shape, Options o, Generator* gen) {
  MINIDL_CHECK(is_floating(o.dtype), DTypeError, "[rand] needs a floating dtype, got {}",
               dtype_name(o.dtype));
  Tensor t = empty(shape, o.dtype, o.device, "rand");
  fill_random(t, RandomKind::Uniform, gen);
  return finish(t, o);
}

Tensor randn(const Shape& shape, Options o, Generator* gen) {
  MINIDL_CHECK(is_floating(o.dtype), DTypeError, "[randn] needs a floating dtype, got {}",
               dtype_name(o.dtype));
  Tensor t = empty(shape, o.dtype, o.device, "randn");
  fill_random(t, RandomKind::Normal, gen);
  return finish(t, o);
}

Tensor randint(int64_t low, int64_t high, const Shape& shape, Options o, Generator* gen) {
  MINIDL_CHECK(low < high, ValueError, "[randint] empty range [{}, {})", low, high);
  Tensor u = rand(shape, {.dtype = kFloat64}, gen);
  Tensor t = empty(shape, kInt64, kCPU, "randint");
  const double* pu = u.data<double>();
  int64_t* pt = t.data<int64_t>();
  const double span = static_cast<double>(high - low);
  for (int64_t i = 0; i < t.numel(); ++i)
    pt[i] = std::min(high - 1, low + static_cast<int64_t>(pu[i] * span));
  return t.to(o.dtype).to(o.device);
}

template <class T>
Tensor from_vector(const std::vector<T>& values, const Shape& shape, Options o) {
  Shape s = shape.empty() ? Shape{static_cast<int64_t>(values.size())} : shape;
  MINIDL_CHECK(numel(s, "from_vector") == static_cast<int64_t>(values.size()), ShapeError,
               "[from_vector] {} values do not fill shape {}", values.size(), shape_str(s));
  Tensor t = empty(s, o.dtype, kCPU, "from_vector");
  MINIDL_DISPATCH_ALL(o.dtype, "from_vector", [&] {
    scalar_t* p = static_cast<scalar_t*>(t.data_ptr());
    for (size_t i = 0; i < values.size(); ++i) {
      if constexpr (std::is_same_v<scalar_t, bool>)
        p[i] = static_cast<double>(values[i]) != 0.0;
      else
        p[i] = scalar_t(static_cast<compute_t<scalar_t>>(values[i]));
    }
  });
  return finish(t.to(o.device), o);
}
template Tensor from_vector<float>(const std::vector<float>&, const Shape&, Options);
template Tensor from_vector<double>(const std::vector<double>&, const Shape&, Options);
template Tensor from_vector<int32_t>(const std::vector<int32_t>&, const Shape&, Options);
template Tensor from_vector<int64_t>(const std::vector<int64_t>&, const Shape&, Options);
template Tensor from_vector<bool>(const std::vector<bool>&, const Shape&, Options);

// ============================================================================ RandomLike

std::vector<TensorMeta> RandomLike::infer(const std::vector<TensorMeta>& in) const {
  MINIDL_CHECK(is_floating(in[0].dtype), DTypeError, "[{}] needs a floating input, got {}", name(),
               dtype_name(in[0].dtype));
  return {in[0]};
}

std::vector<Tensor> RandomLike::eval_cpu(const std::vector<Tensor>& in) {
  Tensor t = empty(in[0].shape(), in[0].dtype(), kCPU, name());
  fill_random(t, kind_, gen_);
  return {t};
}
#if MINIDL_WITH_CUDA
std::vector<Tensor> RandomLike::eval_cuda(const std::vector<Tensor>& in) {
  Tensor t = empty(in[0].shape(), in[0].dtype(), in[0].device(), name());
  fill_random(t, kind_, gen_);
  return {t};
}
#endif

SaveMask RandomLike::saves(const std::vector<bool>&, size_t) const { return {{false}, {false}}; }

Tensor dropout(const Tensor& x, double p, bool training, Generator* gen) {
  MINIDL_CHECK(p >= 0 && p < 1, ValueError, "[dropout] probability must be in [0, 1), got {}", p);
  MINIDL_CHECK(is_floating(x.dtype()), DTypeError, "[dropout] needs a floating input, got {} {}",
               dtype_name(x.dtype()), shape_str(x.shape()));
  if (!training || p == 0) return x;
  Tensor keep = apply1(std::make_shared<RandomLike>(RandomKind::Uniform, gen), {x}) >= p;
  return x * keep.to(x.dtype()) * (1.0 / (1.0 - p));
}

}  // namespace minidl
