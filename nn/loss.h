// Losses. cross_entropy(logits, targets) is an op in core/ops.h; the rest are here.
#pragma once

#include "core/tensor.h"

namespace minidl::nn {

/// Mean squared error, mean((input - target)^2); the shapes must be equal.
Tensor mse_loss(const Tensor& input, const Tensor& target);

}  // namespace minidl::nn
