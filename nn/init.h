// Parameter initialisation, in place and outside autograd (PyTorch's torch.nn.init).
// Values come from the default generator, so manual_seed() makes a model reproducible.
#pragma once

#include "core/tensor.h"

namespace minidl::nn {

/// Fills t with samples of N(mean, std^2).
void init_normal_(Tensor& t, double std, double mean = 0.0);
/// Fills t with samples of U(lo, hi).
void init_uniform_(Tensor& t, double lo, double hi);
/// Fills t with a constant.
void init_constant_(Tensor& t, double value);

}  // namespace minidl::nn
