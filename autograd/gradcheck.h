// Finite-difference gradient checking in float64, as torch.autograd.gradcheck does it.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace minidl {

struct GradcheckOptions {
  double eps = 1e-6;
  double atol = 1e-5;
  double rtol = 1e-3;
};

struct GradcheckResult {
  bool ok = true;
  /// Empty when ok; else which input and element disagreed, with both values.
  std::string message;
  explicit operator bool() const { return ok; }
};

/// Compares the analytical gradients of fn (through backward) with central differences, for
/// every input that requires grad. Inputs must be float64 CPU tensors. fn may return any shape:
/// each output element is checked (a full Jacobian), so keep inputs small.
GradcheckResult gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& fn,
                          const std::vector<Tensor>& inputs, GradcheckOptions opts = {});

}  // namespace minidl
