// Memory-aware saving: the forward keeps exactly the values its backward reads.
#include "compiler/passes/passes.h"

namespace minidl {

std::vector<ValueId> select_saved(Graph& forward, BackwardGraph& backward) {
  const GraphIndex idx(backward.graph);
  std::vector<ValueId> inputs, saved;
  std::vector<BackwardInput> roles;
  for (size_t i = 0; i < backward.graph.inputs.size(); ++i) {
    const ValueId v = backward.graph.inputs[i];
    if (idx.uses(v) == 0) continue;
    inputs.push_back(v);
    roles.push_back(backward.inputs[i]);
    if (roles.back().kind == BackwardInput::Kind::Forward) saved.push_back(roles.back().index);
  }
  backward.graph.inputs = std::move(inputs);
  backward.inputs = std::move(roles);
  forward.outputs.insert(forward.outputs.end(), saved.begin(), saved.end());
  return saved;
}

}  // namespace minidl
