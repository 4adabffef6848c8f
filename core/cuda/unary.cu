// Unary pointwise ops: y = f(x) for each functor of MINIDL_UNARY_OPS (core/scalar_ops.h), the
// same functors the CPU kernels and the generated fusion kernels call.
#include "core/cuda/kernels.h"
#include "core/cuda/loops.cuh"

namespace minidl::cuda {

// ============================================================================ launchers

Tensor unary(UnaryOp op, const Tensor& x) {
  const char* name = unary_name(op);
  Tensor out = empty(x.shape(), x.dtype(), x.device(), name);
  auto run = [&](auto f) {
    using F = decltype(f);
    MINIDL_DISPATCH_ALL(x.dtype(), name, [&] {
      if constexpr (std::is_invocable_v<F, compute_t<scalar_t>> && !std::is_same_v<scalar_t, bool>)
        launch_elementwise<scalar_t, scalar_t>(name, out, f, x);
      else
        throw_unsupported_dtype(name, x.dtype());
    });
  };
  switch (op) {
#define MINIDL_X(E, N) \
  case UnaryOp::E:     \
    run(sop::E{});     \
    break;
    MINIDL_UNARY_OPS(MINIDL_X)
#undef MINIDL_X
  }
  return out;
}

}  // namespace minidl::cuda
