// The graph checker run between passes (debug builds, tests: CompileOptions::check_graphs).
#include "compiler/fusion_group.h"
#include "compiler/passes/passes.h"

namespace minidl {

void check_graph(const Graph& g, const std::string& after) {
  auto fail = [&](const std::string& what) {
    throw ValueError(
        fmt::format("[compile] graph {} is invalid after pass '{}': {}", g.name, after, what));
  };
  const auto n_values = static_cast<ValueId>(g.values.size());
  std::vector<bool> defined(g.values.size(), false);
  for (ValueId v : g.inputs) {
    if (v < 0 || v >= n_values || g.values[v].kind != ValueKind::Input)
      fail(fmt::format("graph input %{} is not an input value", v));
    defined[v] = true;
  }
  for (size_t v = 0; v < g.values.size(); ++v)
    if (g.values[v].kind == ValueKind::Constant)
      defined[v] = g.values[v].data.defined();  // a released constant must not be read
  for (const GraphNode& n : g.nodes) {
    for (ValueId v : n.inputs)
      if (v < 0 || v >= n_values || !defined[v])
        fail(fmt::format("{} reads %{} before it is defined", node_str(n), v));
    std::vector<TensorMeta> want;
    try {
      want = n.op->infer(g.metas(n.inputs));
    } catch (const Error& e) {
      fail(fmt::format("{} rejects its inputs: {}", node_str(n), e.what()));
    }
    if (want.size() != n.outputs.size())
      fail(fmt::format("{} has {} outputs, its primitive gives {}", node_str(n), n.outputs.size(),
                       want.size()));
    for (size_t j = 0; j < n.outputs.size(); ++j) {
      const ValueId v = n.outputs[j];
      if (v < 0 || v >= n_values || g.values[v].kind != ValueKind::Computed || defined[v])
        fail(fmt::format("{} output %{} is not a fresh computed value", node_str(n), v));
      if (!(g.meta(v) == want[j]))
        fail(fmt::format("{} output %{} is {} but the primitive infers {}", node_str(n), v,
                         meta_str(g.meta(v)), meta_str(want[j])));
      defined[v] = true;
    }
    if (const FusionGroup* fg = as_fusion_group(n)) check_graph(fg->body(), after);
  }
  for (ValueId v : g.outputs)
    if (v < 0 || v >= n_values || !defined[v]) fail(fmt::format("output %{} is never defined", v));
}

}  // namespace minidl
