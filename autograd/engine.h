// The backward engine: reverse-mode differentiation over the autograd graph.
#pragma once

#include <vector>

#include "core/tensor.h"

namespace minidl {

/// Backpropagates `grads` (one per root; undefined means ones for a scalar root) from `roots`
/// into the .grad of every leaf that requires grad. Frees saved tensors unless retain_graph.
/// With create_graph the backward ops themselves record history (higher-order gradients), and
/// the graph is retained as if retain_graph were set.
void run_backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads,
                  bool retain_graph = false, bool create_graph = false);

/// Gradients of `outputs` w.r.t. `inputs` (PyTorch's torch.autograd.grad), returned rather than
/// accumulated into .grad. An input the outputs do not depend on gets an undefined tensor.
std::vector<Tensor> grad(const std::vector<Tensor>& outputs, const std::vector<Tensor>& inputs,
                         const std::vector<Tensor>& grad_outputs = {}, bool retain_graph = false,
                         bool create_graph = false);

}  // namespace minidl
