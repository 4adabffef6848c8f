#include "compiler/graph.h"

#include <algorithm>
#include <functional>
#include <queue>
#include <unordered_map>

#include "compiler/fusion_group.h"

namespace minidl {

// ============================================================================ building

ValueId Graph::add_input(const TensorMeta& meta, std::string label, bool requires_grad) {
  const auto id = static_cast<ValueId>(values.size());
  values.push_back({ValueKind::Input, meta, Tensor(), requires_grad, std::move(label)});
  inputs.push_back(id);
  return id;
}

ValueId Graph::add_constant(const Tensor& t) {
  const auto id = static_cast<ValueId>(values.size());
  values.push_back({ValueKind::Constant, t.meta(), t, false, ""});
  return id;
}

std::vector<ValueId> Graph::add_node(PrimitivePtr op, std::vector<ValueId> in, size_t pos) {
  std::vector<TensorMeta> out_metas = op->infer(metas(in));
  GraphNode n{std::move(op), std::move(in), {}};
  for (const auto& m : out_metas) {
    n.outputs.push_back(static_cast<ValueId>(values.size()));
    values.push_back({ValueKind::Computed, m, Tensor(), false, ""});
  }
  std::vector<ValueId> outs = n.outputs;
  nodes.insert(pos >= nodes.size() ? nodes.end() : nodes.begin() + static_cast<ptrdiff_t>(pos),
               std::move(n));
  return outs;
}

void Graph::replace_uses(ValueId from, ValueId to) {
  for (auto& n : nodes) std::replace(n.inputs.begin(), n.inputs.end(), from, to);
  std::replace(outputs.begin(), outputs.end(), from, to);
}

std::vector<TensorMeta> Graph::metas(const std::vector<ValueId>& vs) const {
  std::vector<TensorMeta> out;
  out.reserve(vs.size());
  for (ValueId v : vs) out.push_back(meta(v));
  return out;
}

size_t Graph::count(std::string_view op) const {
  return static_cast<size_t>(std::count_if(nodes.begin(), nodes.end(),
                                           [&](const GraphNode& n) { return op == n.op->name(); }));
}

GraphIndex::GraphIndex(const Graph& g)
    : producer(g.values.size(), -1), users(g.values.size()), output_uses(g.values.size(), 0) {
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    for (ValueId v : g.nodes[i].inputs) users.at(v).push_back(static_cast<int32_t>(i));
    for (ValueId v : g.nodes[i].outputs) producer.at(v) = static_cast<int32_t>(i);
  }
  for (ValueId v : g.outputs) ++output_uses.at(v);
}

void topo_sort(Graph& g) {
  // Kahn's algorithm, always taking the ready node that comes first in the current order.
  const GraphIndex idx(g);
  const size_t n = g.nodes.size();
  std::vector<int> pending(n, 0);
  for (size_t i = 0; i < n; ++i)
    for (ValueId v : g.nodes[i].inputs) pending[i] += idx.producer[v] >= 0;
  std::priority_queue<size_t, std::vector<size_t>, std::greater<>> ready;
  for (size_t i = 0; i < n; ++i)
    if (pending[i] == 0) ready.push(i);
  std::vector<GraphNode> sorted;
  sorted.reserve(n);
  while (!ready.empty()) {
    const size_t i = ready.top();
    ready.pop();
    for (ValueId v : g.nodes[i].outputs)
      for (int32_t u : idx.users[v])
        if (--pending[u] == 0) ready.push(static_cast<size_t>(u));
    sorted.push_back(std::move(g.nodes[i]));
  }
  MINIDL_CHECK(sorted.size() == n, ValueError, "[compile] graph {} has a cycle", g.name);
  g.nodes = std::move(sorted);
}

// ============================================================================ printing

std::string meta_str(const TensorMeta& m) {
  std::string s = fmt::format("{} {}", dtype_name(m.dtype), shape_str(m.shape));
  if (!m.device.is_cpu()) s += " on " + m.device.str();
  return s;
}

namespace {

std::string ids_str(const std::vector<ValueId>& vs) {
  std::string s;
  for (ValueId v : vs) s += (s.empty() ? "%" : ", %") + std::to_string(v);
  return s;
}

// "0.125" for one-element constants, "[1, 2, 3]" for up to four elements, else "".
std::string constant_values(const Tensor& t) {
  if (!t.defined() || t.numel() > 4 || !t.device().is_cpu()) return "";
  std::vector<double> v = t.to_vector<double>();
  if (v.size() == 1) return fmt::format("{:g}", v[0]);
  std::string s;
  for (double x : v) s += (s.empty() ? "" : ", ") + fmt::format("{:g}", x);
  return "[" + s + "]";
}

// "constant 0.125", or "constant" where the values are too many to show.
std::string constant_label(const Tensor& t) {
  const std::string values = constant_values(t);
  return values.empty() ? "constant" : "constant " + values;
}

// "3 inputs", "1 output".
std::string count_str(size_t n, const char* what) {
  return fmt::format("{} {}{}", n, what, n == 1 ? "" : "s");
}

std::string value_line(const Graph& g, ValueId id, const char* indent) {
  const Value& v = g.values[id];
  std::string lhs = fmt::format("%{} = ", id);
  lhs += v.kind == ValueKind::Input ? "input " + v.label : constant_label(v.data);
  std::string line = fmt::format("{}{:<52} : {}", indent, lhs, meta_str(v.meta));
  if (v.requires_grad) line += "  requires_grad";
  return line + "\n";
}

std::string node_line(const Graph& g, const GraphNode& n, const char* indent) {
  std::string lhs = node_str(n);
  const std::string attrs = n.op->attrs();
  if (!attrs.empty()) lhs += " " + attrs;
  std::string metas;
  for (ValueId v : n.outputs) metas += (metas.empty() ? "" : ", ") + meta_str(g.meta(v));
  return fmt::format("{}{:<52} : {}\n", indent, lhs, metas);
}

// Constants read by some node or output of g, in id order.
std::vector<ValueId> live_constants(const Graph& g) {
  const GraphIndex idx(g);
  std::vector<ValueId> out;
  for (size_t v = 0; v < g.values.size(); ++v)
    if (g.values[v].kind == ValueKind::Constant && idx.uses(static_cast<ValueId>(v)) > 0)
      out.push_back(static_cast<ValueId>(v));
  return out;
}

}  // namespace

std::string node_str(const GraphNode& n) {
  return fmt::format("{} = {}({})", ids_str(n.outputs), n.op->name(), ids_str(n.inputs));
}

std::string Graph::str() const {
  std::string s = fmt::format("graph {}: {}, {}, {}\n", name, count_str(inputs.size(), "input"),
                              count_str(nodes.size(), "node"), count_str(outputs.size(), "output"));
  for (ValueId v : inputs) s += value_line(*this, v, "  ");
  for (ValueId v : live_constants(*this)) s += value_line(*this, v, "  ");
  for (const GraphNode& n : nodes) {
    s += node_line(*this, n, "  ");
    if (const FusionGroup* fg = as_fusion_group(n)) {
      for (ValueId v : live_constants(fg->body())) s += value_line(fg->body(), v, "      | ");
      for (const GraphNode& m : fg->body().nodes) s += node_line(fg->body(), m, "      | ");
    }
  }
  return s + "  return " + ids_str(outputs) + "\n";
}

namespace {

std::string dot_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

}  // namespace

std::string Graph::dot() const {
  std::string s = fmt::format("digraph \"{}\" {{\n", dot_escape(name));
  s += "  node [fontname=\"Helvetica\", fontsize=10, shape=box, style=rounded];\n";
  s += "  edge [fontname=\"Helvetica\", fontsize=9];\n";

  // The DOT node that produces each value; a fusion group is drawn as its members.
  std::unordered_map<ValueId, std::string> source;
  std::unordered_map<ValueId, size_t> outputs_of_source;
  auto declare_value = [&](const Graph& g, ValueId v) {
    const Value& val = g.values[v];
    const std::string label = val.kind == ValueKind::Input
                                  ? fmt::format("%{} {}", v, val.label)
                                  : fmt::format("%{} {}", v, constant_label(val.data));
    s += fmt::format("  v{} [label=\"{}\\n{}\", shape={}];\n", v, dot_escape(label),
                     meta_str(val.meta), val.kind == ValueKind::Input ? "ellipse" : "note");
    source[v] = fmt::format("v{}", v);
    outputs_of_source[v] = 1;
  };
  auto declare_node = [&](const Graph& g, const GraphNode& n) {
    const std::string id = fmt::format("n{}", n.outputs.empty() ? -1 : n.outputs[0]);
    std::string label = fmt::format("{} = {}", ids_str(n.outputs), n.op->name());
    if (!n.op->attrs().empty()) label += "\\n" + dot_escape(n.op->attrs());
    for (ValueId v : n.outputs) label += "\\n" + meta_str(g.meta(v));
    s += fmt::format("  {} [label=\"{}\"];\n", id, label);
    for (ValueId v : n.outputs) source[v] = id, outputs_of_source[v] = n.outputs.size();
  };
  auto edges_into = [&](const GraphNode& n) {
    const std::string id = fmt::format("n{}", n.outputs.empty() ? -1 : n.outputs[0]);
    for (ValueId v : n.inputs) {
      if (outputs_of_source[v] > 1)
        s += fmt::format("  {} -> {} [label=\"%{}\"];\n", source[v], id, v);
      else
        s += fmt::format("  {} -> {};\n", source[v], id);
    }
  };

  for (ValueId v : inputs) declare_value(*this, v);
  for (ValueId v : live_constants(*this)) declare_value(*this, v);
  for (const GraphNode& n : nodes) {
    const FusionGroup* fg = as_fusion_group(n);
    if (!fg) {
      declare_node(*this, n);
      edges_into(n);
      continue;
    }
    s += fmt::format("  subgraph cluster_{} {{\n  label=\"fusion_group {}\";\n", fg->index(),
                     dot_escape(fg->attrs()));
    s += "  style=\"filled,rounded\"; fillcolor=\"#e8f0fe\"; color=\"#4a7bd0\";\n";
    for (ValueId v : live_constants(fg->body())) declare_value(fg->body(), v);
    for (const GraphNode& m : fg->body().nodes) declare_node(fg->body(), m);
    s += "  }\n";
    for (const GraphNode& m : fg->body().nodes) edges_into(m);
  }
  for (size_t i = 0; i < outputs.size(); ++i) {
    s += fmt::format("  out{} [label=\"output {}\", shape=plaintext];\n", i, i);
    s += fmt::format("  {} -> out{};\n", source[outputs[i]], i);
  }
  return s + "}\n";
}

}  // namespace minidl
