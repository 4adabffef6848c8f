// Dead-code elimination.
#include "compiler/passes/passes.h"

namespace minidl {

void dce(Graph& g) {
  std::vector<bool> live(g.values.size(), false);
  for (ValueId v : g.outputs) live[v] = true;
  std::vector<GraphNode> kept;
  for (auto n = g.nodes.rbegin(); n != g.nodes.rend(); ++n) {
    bool used = false;
    for (ValueId v : n->outputs) used = used || live[v];
    if (!used) continue;
    for (ValueId v : n->inputs) live[v] = true;
    kept.push_back(std::move(*n));
  }
  g.nodes.assign(std::make_move_iterator(kept.rbegin()), std::make_move_iterator(kept.rend()));
  for (size_t v = 0; v < g.values.size(); ++v)
    if (g.values[v].kind == ValueKind::Constant && !live[v]) g.values[v].data = Tensor();
}

}  // namespace minidl
