// The fusion plan: elementwise chains and last-dim row ops of one shape become FusionGroups.
#include <set>

#include "compiler/fusion_group.h"
#include "compiler/passes/passes.h"

namespace minidl {

namespace {

// Computable element by element: a scalar functor, or masked_fill (a select of its value) and
// cast (a conversion), which a generator renders from their attributes.
bool is_elementwise(const GraphNode& n) {
  return !n.op->codegen_functor().empty() || dynamic_cast<const MaskedFill*>(n.op.get()) ||
         dynamic_cast<const Cast*>(n.op.get());
}

bool is_row_op(const Graph& g, const GraphNode& n) {
  const auto rank = static_cast<int64_t>(g.meta(n.outputs[0]).shape.size());
  if (const auto* s = dynamic_cast<const Softmax*>(n.op.get())) return s->dim() + 1 == rank;
  if (const auto* s = dynamic_cast<const SoftmaxBackward*>(n.op.get())) return s->dim() + 1 == rank;
  return dynamic_cast<const LayerNorm*>(n.op.get()) != nullptr;
}

bool is_expand(const GraphNode& n) { return dynamic_cast<const Expand*>(n.op.get()) != nullptr; }

// The body of group `k`: its member nodes, the outside values they read as inputs (constants
// copied in), and the member values read outside as outputs.
Graph group_body(const Graph& g, const GraphIndex& idx, const std::vector<int>& group, int k) {
  Graph body;
  body.name = fmt::format("{}.group{}", g.name, k);
  body.values.resize(g.values.size());
  std::set<ValueId> made;
  for (size_t i = 0; i < g.nodes.size(); ++i)
    if (group[i] == k) made.insert(g.nodes[i].outputs.begin(), g.nodes[i].outputs.end());
  std::set<ValueId> taken;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    if (group[i] != k) continue;
    const GraphNode& n = g.nodes[i];
    for (ValueId v : n.inputs) {
      if (made.count(v) || !taken.insert(v).second) continue;
      if (g.values[v].kind == ValueKind::Constant) {
        body.values[v] = g.values[v];
      } else {
        body.values[v] = {ValueKind::Input, g.meta(v), Tensor(), false, "outer"};
        body.inputs.push_back(v);
      }
    }
    for (ValueId v : n.outputs) {
      body.values[v] = g.values[v];
      bool outside = idx.output_uses[v] > 0;
      for (int32_t u : idx.users[v]) outside = outside || group[u] != k;
      if (outside) body.outputs.push_back(v);
    }
    body.nodes.push_back(n);
  }
  return body;
}

}  // namespace

void fuse(Graph& g) {
  const GraphIndex idx(g);
  const size_t n = g.nodes.size();
  // Groups are merged as nodes join them: group[i] is a group id, find() its current group.
  std::vector<int> group(n, -1), parent;
  std::vector<Shape> shape_of;               // per group: the shape every member produces
  std::vector<std::vector<size_t>> members;  // per current group
  auto find = [&](int k) {
    while (parent[k] != k) k = parent[k] = parent[parent[k]];
    return k;
  };
  // The groups each value depends on (ids, to be passed through find()), and per group the
  // groups its members' inputs depend on. A value depends on a group through the groups in
  // between too, and merging groups adds such paths: depending on one member of a merged group
  // is depending on every group upstream of any member. So a dependency is a walk over both.
  std::vector<std::set<int>> upstream(g.values.size()), group_upstream;
  // Whether the members of gs plus `extra` can be one group: no input from outside may depend
  // on gs, else a group would feed a node outside it that feeds it back.
  auto acyclic = [&](const std::set<int>& gs, const GraphNode& extra) {
    std::vector<int> todo;
    auto outside_inputs = [&](const GraphNode& m) {
      for (ValueId u : m.inputs) {
        const int32_t p = idx.producer[u];
        if (p < 0 || group[p] < 0 || !gs.count(find(group[p])))
          todo.insert(todo.end(), upstream[u].begin(), upstream[u].end());
      }
    };
    for (int k : gs)
      for (size_t m : members[k]) outside_inputs(g.nodes[m]);
    outside_inputs(extra);
    std::set<int> seen;
    while (!todo.empty()) {
      const int k = find(todo.back());
      todo.pop_back();
      if (gs.count(k)) return false;
      if (seen.insert(k).second)
        todo.insert(todo.end(), group_upstream[k].begin(), group_upstream[k].end());
    }
    return true;
  };
  for (size_t i = 0; i < n; ++i) {
    const GraphNode& node = g.nodes[i];
    if (is_elementwise(node) || is_row_op(g, node)) {
      const Shape& shape = g.meta(node.outputs[0]).shape;
      std::set<int> joined;  // the producers' groups this node merges, taken greedily
      for (ValueId v : node.inputs) {
        const int32_t p = idx.producer[v];
        if (p < 0 || group[p] < 0) continue;
        const int k = find(group[p]);
        if (joined.count(k) || shape_of[k] != shape) continue;
        std::set<int> with = joined;
        with.insert(k);
        if (acyclic(with, node)) joined = std::move(with);
      }
      int k;
      if (joined.empty()) {
        k = static_cast<int>(shape_of.size());
        parent.push_back(k);
        shape_of.push_back(shape);
        members.emplace_back();
        group_upstream.emplace_back();
      } else {
        k = *joined.begin();
        for (int other : joined) {
          if (other == k) continue;
          parent[other] = k;
          members[k].insert(members[k].end(), members[other].begin(), members[other].end());
          members[other].clear();
          group_upstream[k].insert(group_upstream[other].begin(), group_upstream[other].end());
        }
      }
      group[i] = k;
      members[k].push_back(i);
      for (ValueId v : node.inputs)
        group_upstream[k].insert(upstream[v].begin(), upstream[v].end());
    }
    std::set<int> up;
    for (ValueId v : node.inputs) up.insert(upstream[v].begin(), upstream[v].end());
    if (group[i] >= 0) up.insert(group[i]);
    for (ValueId v : node.outputs) upstream[v] = up;
  }
  for (size_t i = 0; i < n; ++i)
    if (group[i] >= 0) group[i] = find(group[i]);

  // An expand view joins the group all of its readers are in (a broadcasting load).
  for (size_t i = 0; i < n; ++i) {
    const GraphNode& node = g.nodes[i];
    const ValueId out = node.outputs[0];
    if (!is_expand(node) || idx.output_uses[out] > 0 || idx.users[out].empty()) continue;
    const int k = group[idx.users[out][0]];
    bool all = k >= 0 && shape_of[k] == g.meta(out).shape;
    for (int32_t u : idx.users[out]) all = all && group[u] == k;
    if (all && acyclic({k}, node)) group[i] = k;
  }

  // A group pays off from two computing members on: dissolve the others.
  std::vector<int> computing(shape_of.size(), 0), number(shape_of.size(), -1);
  for (size_t i = 0; i < n; ++i)
    if (group[i] >= 0 && !is_expand(g.nodes[i])) ++computing[group[i]];
  int groups = 0;
  for (size_t i = 0; i < n; ++i) {
    if (group[i] < 0) continue;
    if (computing[group[i]] < 2)
      group[i] = -1;
    else
      group[i] = number[group[i]] >= 0 ? number[group[i]] : (number[group[i]] = groups++);
  }
  if (groups == 0) return;

  // Each group becomes one node, placed at its last member; topo_sort then moves readers of
  // its earlier members' outputs after it.
  std::vector<size_t> last(static_cast<size_t>(groups), 0);
  for (size_t i = 0; i < n; ++i)
    if (group[i] >= 0) last[group[i]] = i;
  std::vector<GraphNode> nodes;
  for (size_t i = 0; i < n; ++i) {
    if (group[i] < 0) {
      nodes.push_back(g.nodes[i]);
      continue;
    }
    if (last[group[i]] != i) continue;
    Graph body = group_body(g, idx, group, group[i]);
    bool row = false;
    for (const GraphNode& m : body.nodes) row = row || is_row_op(body, m);
    std::vector<ValueId> ins = body.inputs, outs = body.outputs;
    auto op = std::make_shared<FusionGroup>(
        group[i], row ? FusionGroup::Kind::Row : FusionGroup::Kind::Pointwise, std::move(body));
    nodes.push_back({std::move(op), std::move(ins), std::move(outs)});
  }
  g.nodes = std::move(nodes);
  topo_sort(g);
  dce(g);  // constants now read only inside groups are released here (the bodies keep them)
}

}  // namespace minidl
