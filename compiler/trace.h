// Tracing: running a function on tracer tensors records every primitive it applies into a Graph
// instead of computing anything (see NOTE [Three kinds of TensorImpl] in core/tensor.h).
#pragma once

#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

#include "compiler/graph.h"
#include "core/primitive.h"
#include "core/tensor.h"

namespace minidl {

/// A function compile() accepts: tensors in, tensors out.
using TracedFunction = std::function<std::vector<Tensor>(const std::vector<Tensor>&)>;

/// Records the primitives applied to its tracer tensors as nodes of a graph. A tensor that is
/// not one of its tracers becomes a constant, or, if it requires grad, a captured input.
class GraphTracer final : public Tracer {
 public:
  /// Records into g (which must outlive the tracer tensors' use).
  explicit GraphTracer(Graph& g) : g_(g) {}

  /// Adds a graph input and returns the tracer tensor standing for it.
  Tensor input(const TensorMeta& meta, std::string label, bool requires_grad = false);
  /// The value of g a tensor stands for (adding a constant or captured input if needed).
  ValueId value_of(const Tensor& t);
  std::vector<Tensor> record(PrimitivePtr p, const std::vector<Tensor>& inputs,
                             const std::vector<TensorMeta>& outputs) override;
  /// Tensors that require grad which the traced code read without receiving them as inputs,
  /// in the order of the inputs they became.
  const std::vector<Tensor>& captured() const { return captured_; }

 private:
  Tensor tracer_for(ValueId v);

  Graph& g_;
  std::unordered_map<const TensorImpl*, ValueId> outside_;  // constants and captured tensors
  std::vector<Tensor> captured_;
};

/// The input signature of one trace: what a tracer input looks like.
struct InputSpec {
  TensorMeta meta;
  bool requires_grad = false;
};

/// A traced function: its graph (inputs x0, x1, ... then captured tensors) and the tensors it
/// captured, which every run of the graph receives after the explicit inputs.
struct Trace {
  Graph graph;
  std::vector<Tensor> captured;
};

/// Runs fn once on tracer tensors of the given specs and returns what it computes as a graph.
/// No kernel runs on the inputs; tensors fn builds without them (a mask, a scalar) are
/// computed once, here, and become constants.
Trace trace(const TracedFunction& fn, const std::vector<InputSpec>& inputs,
            const std::string& name);

}  // namespace minidl
