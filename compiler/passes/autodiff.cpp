// Reverse-mode autodiff of a graph into a backward graph, by tracing every primitive's vjp.
#include <unordered_map>

#include "compiler/passes/passes.h"
#include "compiler/trace.h"
#include "core/ops.h"

namespace minidl {

BackwardGraph autodiff(const Graph& fwd) {
  BackwardGraph bw;
  bw.graph.name = fwd.name + " backward";
  GraphTracer tracer(bw.graph);

  // Which forward values carry a gradient back to an input that requires one.
  std::vector<bool> needs(fwd.values.size(), false);
  for (ValueId v : fwd.inputs) needs[v] = fwd.values[v].requires_grad;
  for (const GraphNode& n : fwd.nodes) {
    bool any = false;
    for (ValueId v : n.inputs) any = any || needs[v];
    for (ValueId v : n.outputs)
      needs[v] = any && n.op->differentiable() && is_floating(fwd.meta(v).dtype);
  }

  std::vector<Tensor> cot(fwd.values.size());
  auto accumulate = [&](ValueId v, const Tensor& g) {
    cot[v] = cot[v].defined() ? add(cot[v], g) : g;
  };
  for (size_t j = 0; j < fwd.outputs.size(); ++j) {
    const ValueId v = fwd.outputs[j];
    if (!needs[v]) continue;
    accumulate(v, tracer.input(fwd.meta(v), fmt::format("grad %{}", v)));
    bw.inputs.push_back({BackwardInput::Kind::Cotangent, static_cast<int32_t>(j)});
  }

  // A forward value as the vjps see it: constants as themselves, the rest as backward inputs.
  std::unordered_map<ValueId, Tensor> forward_inputs;
  auto forward_value = [&](ValueId v) -> Tensor {
    if (fwd.values[v].kind == ValueKind::Constant) return fwd.values[v].data;
    auto [it, fresh] = forward_inputs.try_emplace(v);
    if (fresh) {
      const Value& val = fwd.values[v];
      it->second = tracer.input(val.meta, val.kind == ValueKind::Input
                                              ? fmt::format("saved %{} ({})", v, val.label)
                                              : fmt::format("saved %{}", v));
      bw.inputs.push_back({BackwardInput::Kind::Forward, v});
    }
    return it->second;
  };

  for (auto n = fwd.nodes.rbegin(); n != fwd.nodes.rend(); ++n) {
    bool flows = false, wanted = false;
    std::vector<bool> ng;
    for (ValueId v : n->outputs) flows = flows || cot[v].defined();
    for (ValueId v : n->inputs) ng.push_back(needs[v]), wanted = wanted || needs[v];
    if (!flows || !wanted || !n->op->differentiable()) continue;

    std::vector<Tensor> primals, outputs, cots;
    for (ValueId v : n->inputs) primals.push_back(forward_value(v));
    for (ValueId v : n->outputs) {
      outputs.push_back(forward_value(v));
      const TensorMeta& m = fwd.meta(v);
      cots.push_back(cot[v].defined() ? cot[v]
                                      : zeros(m.shape, {.dtype = m.dtype, .device = m.device}));
    }
    std::vector<Tensor> grads = n->op->vjp(primals, cots, outputs, ng);
    grads.resize(n->inputs.size());
    for (size_t i = 0; i < grads.size(); ++i) {
      if (!ng[i] || !grads[i].defined()) continue;
      const TensorMeta& want = fwd.meta(n->inputs[i]);
      MINIDL_CHECK(grads[i].shape() == want.shape, ShapeError,
                   "[{}] vjp gave a gradient of shape {} for input {} of shape {} (a bug in the "
                   "op's vjp)",
                   n->op->name(), shape_str(grads[i].shape()), i, shape_str(want.shape));
      accumulate(n->inputs[i], grads[i].dtype() == want.dtype ? grads[i] : grads[i].to(want.dtype));
    }
  }

  for (size_t i = 0; i < fwd.inputs.size(); ++i) {
    const ValueId v = fwd.inputs[i];
    if (!fwd.values[v].requires_grad || !cot[v].defined()) continue;
    bw.graph.outputs.push_back(tracer.value_of(cot[v]));
    bw.grad_of.push_back(i);
  }
  return bw;
}

}  // namespace minidl
