// Selections: where (cond ? a : b, the functor sop::Where of core/scalar_ops.h) and masked_fill
// (mask ? value : x). Operands are broadcast (stride 0) or 0-dim CPU scalars by value.
#include "core/cuda/kernels.h"
#include "core/cuda/loops.cuh"

namespace minidl::cuda {

namespace {

// ============================================================================ kernels (functors)

template <class C>
struct MaskedFillOp {
  C value;
  MINIDL_HD C operator()(C x, bool mask) const { return mask ? value : x; }
};

}  // namespace

// ============================================================================ launchers

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b, const TensorMeta& m) {
  Tensor out = empty(m.shape, m.dtype, m.device, "where");
  MINIDL_DISPATCH_ALL(m.dtype, "where", [&] {
    launch_elementwise<scalar_t, bool, scalar_t, scalar_t>("where", out, sop::Where{}, cond, a, b);
  });
  return out;
}

Tensor masked_fill(const Tensor& x, const Tensor& mask, double value) {
  MINIDL_CHECK(mask.shape() == x.shape(), ShapeError,
               "[masked_fill] mask {} must have the input's shape {}", shape_str(mask.shape()),
               shape_str(x.shape()));
  // x may be a 0-dim CPU scalar beside a 0-dim CUDA mask.
  Tensor out =
      empty(x.shape(), x.dtype(), x.device().is_cuda() ? x.device() : mask.device(), "masked_fill");
  MINIDL_DISPATCH_ALL(x.dtype(), "masked_fill", [&] {
    using C = compute_t<scalar_t>;
    launch_elementwise<scalar_t, scalar_t, bool>("masked_fill", out,
                                                 MaskedFillOp<C>{static_cast<C>(value)}, x, mask);
  });
  return out;
}

}  // namespace minidl::cuda
