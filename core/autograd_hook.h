// The seam through which core records autograd history without including autograd/. core
// declares these functions and calls them; autograd/ defines them (autograd/node.cpp and
// autograd/engine.cpp), as the compiler's tracer receives ops through core's Tracer
// (core/primitive.h). The layers above core may call autograd directly.
#pragma once

#include <string>
#include <vector>

#include "core/primitive.h"
#include "core/tensor.h"

namespace minidl::autograd_hook {

/// apply() calls this after evaluating p, when grad mode is on, p is differentiable and a
/// floating-point output depends on an input that requires grad: `outputs` get a node that
/// calls p's vjp.
void record(const PrimitivePtr& p, const std::vector<Tensor>& inputs,
            const std::vector<Tensor>& outputs);

/// The name of a grad_fn, for messages and printing ("matmul", "AccumulateGrad").
std::string node_name(const Node& node);

/// Tensor::backward: backpropagates `gradient` from `root` into the leaves' .grad.
void backward(const Tensor& root, const Tensor& gradient, bool retain_graph, bool create_graph);

}  // namespace minidl::autograd_hook
