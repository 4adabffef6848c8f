// Running a plan's graph: nodes run one by one through apply(), which picks each primitive's
// kernel for the inputs' device (on CUDA, a fusion group's generated kernel; NOTE [Fusion groups]).
#include "compiler/graph.h"

namespace minidl {

std::vector<Tensor> run_graph(const Graph& g, const std::vector<Tensor>& inputs) {
  MINIDL_CHECK(inputs.size() == g.inputs.size(), ValueError,
               "[compile] graph {} takes {} inputs, got {}", g.name, g.inputs.size(),
               inputs.size());
  // Each value is dropped after the last node reading it, unless the graph returns it.
  std::vector<int64_t> last_read(g.values.size(), -1);
  for (size_t i = 0; i < g.nodes.size(); ++i)
    for (ValueId v : g.nodes[i].inputs) last_read[v] = static_cast<int64_t>(i);
  for (ValueId v : g.outputs) last_read[v] = static_cast<int64_t>(g.nodes.size());

  std::vector<Tensor> env(g.values.size());
  for (size_t i = 0; i < inputs.size(); ++i) env[g.inputs[i]] = inputs[i];
  for (size_t v = 0; v < g.values.size(); ++v)
    if (g.values[v].kind == ValueKind::Constant && last_read[v] >= 0) env[v] = g.values[v].data;

  std::vector<Tensor> args;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const GraphNode& n = g.nodes[i];
    args.clear();
    for (ValueId v : n.inputs) args.push_back(env[v]);
    std::vector<Tensor> outs = minidl::apply(n.op, args);
    for (size_t j = 0; j < outs.size(); ++j) env[n.outputs[j]] = std::move(outs[j]);
    for (ValueId v : n.inputs)
      if (last_read[v] == static_cast<int64_t>(i)) env[v] = Tensor();
  }
  std::vector<Tensor> out;
  out.reserve(g.outputs.size());
  for (ValueId v : g.outputs) out.push_back(env[v]);
  return out;
}

}  // namespace minidl
