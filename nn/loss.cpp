#include "nn/loss.h"

#include "core/ops.h"

namespace minidl::nn {

Tensor mse_loss(const Tensor& input, const Tensor& target) {
  // Equal shapes only: a broadcast (N,) against (N, 1) silently computes the wrong loss.
  MINIDL_CHECK(input.shape() == target.shape(), ShapeError,
               "[mse_loss] input {} and target {} must have the same shape",
               shape_str(input.shape()), shape_str(target.shape()));
  const Tensor d = input - target;
  return mean(d * d);
}

}  // namespace minidl::nn
