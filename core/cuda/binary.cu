// Binary pointwise ops: out = f(a, b) for each functor of MINIDL_BINARY_OPS (core/scalar_ops.h);
// comparisons write bool. Operands are broadcast (stride 0) or 0-dim CPU scalars by value.
#include "core/cuda/kernels.h"
#include "core/cuda/loops.cuh"

namespace minidl::cuda {

// ============================================================================ launchers

Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b, const TensorMeta& m) {
  const char* name = binary_name(op);
  MINIDL_CHECK(a.dtype() == b.dtype(), DTypeError,
               "[{}] CUDA kernel expects one dtype, got {} and {}", name, describe(a), describe(b));
  Tensor out = empty(m.shape, m.dtype, m.device, name);
  auto run = [&](auto f) {
    using F = decltype(f);
    MINIDL_DISPATCH_ALL(a.dtype(), name, [&] {
      using C = compute_t<scalar_t>;
      constexpr bool compare = std::is_same_v<std::invoke_result_t<F, float, float>, bool>;
      if constexpr (std::is_invocable_v<F, C, C> && compare)
        launch_elementwise<bool, scalar_t, scalar_t>(name, out, f, a, b);
      else if constexpr (std::is_invocable_v<F, C, C> && !std::is_same_v<C, bool>)
        launch_elementwise<scalar_t, scalar_t, scalar_t>(name, out, f, a, b);
      else
        throw_unsupported_dtype(name, a.dtype());
    });
  };
  switch (op) {
#define MINIDL_X(E, N) \
  case BinaryOp::E:    \
    run(sop::E{});     \
    break;
    MINIDL_BINARY_OPS(MINIDL_X)
#undef MINIDL_X
  }
  return out;
}

}  // namespace minidl::cuda
