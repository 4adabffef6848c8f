// The compiler's passes, one file each in this folder, run in order by build_plan()
// (compiler/plan.cpp). Each takes a graph and rewrites it; check_graph validates the result.
// The attention matcher lives with the rest of attention: compiler/attention/match.h.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "compiler/graph.h"

namespace minidl {

/// Dead-code elimination: drops the nodes whose outputs nothing reads and releases the data of
/// constants nothing reads any more (dce.cpp).
void dce(Graph& g);

/// Where an input of a backward graph comes from when the backward runs.
struct BackwardInput {
  enum class Kind { Cotangent, Forward } kind;
  /// Cotangent: which output of the forward graph it is the gradient of.
  /// Forward: the forward graph's value it stands for (an input or a computed value).
  int32_t index;
};

/// A backward graph and how it connects to its forward graph.
struct BackwardGraph {
  Graph graph;
  std::vector<BackwardInput> inputs;  // one per graph.inputs
  std::vector<size_t> grad_of;  // one per graph.outputs: the forward input it is the gradient of
};

/// Reverse-mode autodiff: traces every node's vjp, last node first, on tracer tensors standing
/// for the forward values they read, giving the graph of the gradients of the forward inputs
/// that require grad (autodiff.cpp). Inputs: cotangents first, then the forward values used.
BackwardGraph autodiff(const Graph& forward);

/// Memory-aware saving: drops the backward inputs nothing reads, then appends the forward
/// values the backward still reads to the forward graph's outputs, after its own. Returns those
/// values, in the order they were appended (saving.cpp).
std::vector<ValueId> select_saved(Graph& forward, BackwardGraph& backward);

/// Groups chains of pointwise ops and last-dim row ops of one shape into FusionGroup nodes
/// (fusion.cpp, NOTE [Fusion groups] in compiler/fusion_group.h).
void fuse(Graph& g);

/// Checks g's invariants: every value read is defined earlier, computed values have one
/// producer, node outputs have the metas their primitive infers. Throws ValueError naming the
/// pass `after` and the offending node (check.cpp).
void check_graph(const Graph& g, const std::string& after);

}  // namespace minidl
