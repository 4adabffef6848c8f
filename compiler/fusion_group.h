// FusionGroup: a primitive standing for several pointwise and row ops that the fusion pass
// (compiler/passes/fusion.cpp) grouped to run as one kernel. See NOTE [Fusion groups].
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "compiler/graph.h"
#include "core/primitive.h"
#include "core/primitives.h"

namespace minidl {

// NOTE [Fusion groups]
// A group is a set of nodes of one graph that all produce tensors of one shape (the group's
// iteration space), each either elementwise (a primitive with a codegen_functor, rendered as a
// call of that functor of core/scalar_ops.h; masked_fill, a select of its value; cast, a
// conversion) or a row op over the last dim (softmax, log_softmax, their backward, layer_norm),
// plus the expand views that broadcast their operands (a read with stride 0). Such a set can run
// as one kernel: pointwise groups one thread per element, row groups one warp per row. The
// group's body is a Graph of its own whose value ids are those of the enclosing graph (so dumps
// of both read alike): its inputs are the values the members read from outside (constants are
// copied into the body, where a code generator can inline them), its outputs the member values
// read outside the group.
//
// On CUDA a group runs as one generated kernel: its body is lowered to a program of the fusion
// code generator (NOTE [Lowering fusion groups] in compiler/codegen/lower_group.cpp), specialised
// on the strides of the call's inputs, compiled once through the JIT and its cache, and launched
// on the current stream. On the CPU, and on CUDA for a group with a member the lowering cannot
// translate (logged at debug level, naming the member), it evaluates its members one by one.

class FusionGroup : public Primitive {
 public:
  /// Pointwise: one thread per element. Row: a member reduces along the last dim.
  enum class Kind { Pointwise, Row };

  /// Group number `index` of its graph, with its members in `body`.
  FusionGroup(int index, Kind kind, Graph body);
  ~FusionGroup() override;
  const char* name() const override { return "fusion_group"; }
  /// "#0 row: mul, masked_fill, softmax".
  std::string attrs() const override;
  /// Groups are formed after autodiff, so they are never differentiated.
  bool differentiable() const override { return false; }
  MINIDL_EVAL

  /// Number of the group within its graph.
  int index() const { return index_; }
  Kind kind() const { return kind_; }
  /// The members, in topological order, with their own inputs, constants and outputs.
  const Graph& body() const { return body_; }
  /// Names of the member ops in order, views included ("expand", "mul", "softmax").
  std::vector<std::string> op_names() const;

 private:
  int index_;
  Kind kind_;
  Graph body_;
  struct Kernels;  // the generated kernels of this group, by input strides and device
  std::unique_ptr<Kernels> kernels_;
};

/// How fusion groups ran on CUDA, counted over the process since the last reset.
struct FusionGroupStats {
  int64_t kernel_launches = 0;    // groups run as one generated kernel
  int64_t op_by_op = 0;           // groups run member by member (a member without a translation)
  int64_t kernels_generated = 0;  // specialisations lowered and generated (once per group, strides, device)
};
/// The counts so far (all zero in a CPU-only build).
FusionGroupStats fusion_group_stats();
/// Sets the counts to zero.
void reset_fusion_group_stats();

/// The group a node stands for, or nullptr if the node is not a fusion group.
const FusionGroup* as_fusion_group(const GraphNode& n);

}  // namespace minidl
