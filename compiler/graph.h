// Graph: the compiler's IR. A list of primitive applications (nodes) in topological order over
// numbered tensor values, printable as text and as Graphviz DOT. See NOTE [Graph IR].
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/primitive.h"
#include "core/tensor.h"

namespace minidl {

// NOTE [Graph IR]
// Every tensor a graph handles is a Value, named %id by its index in Graph::values. A value is
// an input (received at run time), a constant (a tensor fixed at trace time) or the output of
// one node. Ids are never reused or renumbered: a pass that rewrites the graph appends new
// values and leaves dead ones behind, so %7 names the same value in every dump of one graph.
// Nodes hold the primitive itself (attributes included) and are kept in topological order;
// the output metas of a node are the ones its primitive's infer() gives (check_graph verifies).

/// Index of a value in Graph::values, printed as %id.
using ValueId = int32_t;

enum class ValueKind : uint8_t {
  Input,     // received at run time: an argument of the function, or a tensor it captured
  Constant,  // fixed at trace time (Value::data)
  Computed,  // an output of a node
};

/// A tensor-valued value of a graph.
struct Value {
  ValueKind kind = ValueKind::Computed;
  TensorMeta meta;
  Tensor data;                 // Constant: the tensor (released when the constant dies)
  bool requires_grad = false;  // Input: gradients are wanted for it
  std::string label;           // Input: its name in dumps ("x0", "grad %8", "saved %5")
};

/// One primitive applied to values.
struct GraphNode {
  PrimitivePtr op;
  std::vector<ValueId> inputs;
  std::vector<ValueId> outputs;
};

/// Values and the nodes computing them, in topological order (NOTE [Graph IR]).
class Graph {
 public:
  /// add_node's default position: after the last node.
  static constexpr size_t kAppend = std::numeric_limits<size_t>::max();

  std::string name;              // names the dumps ("attention.forward")
  std::vector<Value> values;     // by ValueId
  std::vector<GraphNode> nodes;  // topological order
  std::vector<ValueId> inputs;   // in call order
  std::vector<ValueId> outputs;

  /// Adds an input value (appended to `inputs`).
  ValueId add_input(const TensorMeta& meta, std::string label, bool requires_grad = false);
  /// Adds a constant value holding t.
  ValueId add_constant(const Tensor& t);
  /// Adds a node applying op to `in` (at position pos, default: the end), with outputs of the
  /// metas op->infer() gives; returns the new output values.
  std::vector<ValueId> add_node(PrimitivePtr op, std::vector<ValueId> in, size_t pos = kAppend);
  /// Makes every node input and graph output that reads `from` read `to` instead.
  void replace_uses(ValueId from, ValueId to);

  const TensorMeta& meta(ValueId v) const { return values.at(v).meta; }
  std::vector<TensorMeta> metas(const std::vector<ValueId>& vs) const;
  /// Number of nodes whose primitive is named `op` ("fused_attention").
  size_t count(std::string_view op) const;

  /// Readable text, one line per value: "%5 = matmul(%0, %4) : float32 (2, 16, 16)".
  std::string str() const;
  /// Graphviz DOT: values flow along edges, fusion groups are drawn as clusters.
  std::string dot() const;
};

/// Who produces and who reads each value of a graph (a snapshot: rebuild after rewriting).
struct GraphIndex {
  /// Indexes g as it is now.
  explicit GraphIndex(const Graph& g);
  /// Position in g.nodes of the node producing each value; -1 for inputs and constants.
  std::vector<int32_t> producer;
  /// Positions of the nodes reading each value, once per input slot.
  std::vector<std::vector<int32_t>> users;
  /// How many times each value appears in g.outputs.
  std::vector<int32_t> output_uses;

  /// Reads of v: node input slots plus graph outputs.
  int64_t uses(ValueId v) const { return static_cast<int64_t>(users[v].size()) + output_uses[v]; }
};

/// "float32 (2, 16, 8)".
std::string meta_str(const TensorMeta& m);
/// "%5 = matmul(%0, %4)": a node without its attributes and metas, for messages.
std::string node_str(const GraphNode& n);

/// Evaluates g on `inputs` (one per g.inputs) node by node through apply(), releasing each
/// value after its last read, and returns the values of g.outputs.
std::vector<Tensor> run_graph(const Graph& g, const std::vector<Tensor>& inputs);

/// Puts g.nodes back in a topological order, keeping the current order wherever it is one.
/// Throws ValueError if the nodes form a cycle.
void topo_sort(Graph& g);

}  // namespace minidl
