// Generated kernels for fused groups of pointwise ops and row reductions (softmax, layer_norm,
// bias + GELU, residual adds). A FusedGroup is a small self-contained program over one iteration
// shape: values computed from inputs (any strides: a stride of 0 broadcasts), constants,
// pointwise functors of core/scalar_ops.h (the names Primitive::codegen_functor() returns) and
// reductions over the last dim. The compiler's fusion groups translate into it
// (compiler/codegen/lower_group.h); plain matmuls stay on cuBLAS.
//
//   FusedGroup g("softmax", {rows, C});                  // softmax over the last dim
//   int x = g.input(kFloat32, {C, 1});
//   int e = g.unary("Exp", g.binary("Sub", x, g.row_max(x)));
//   g.output(g.binary("Div", e, g.row_sum(e)), kFloat32);
//   GeneratedKernel k = generate_fused(g);               // launch with one FusedArgs
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "compiler/codegen/kernel.h"
#include "core/dtype.h"
#include "core/shape.h"

namespace minidl::codegen {

enum class FusedOpKind { Input, Constant, Unary, Binary, Where, Cast, RowSum, RowMax };

/// One value of a group's program; `args` index earlier values.
struct FusedValue {
  FusedOpKind kind;
  DType dtype;               // of the result
  std::vector<int> args;
  std::string functor;       // Unary, Binary: the functor in core/scalar_ops.h ("Exp", "Add")
  int input = -1;            // Input: index into FusedGroup::inputs
  double constant = 0;       // Constant
};

/// An operand in memory: dtype and strides (elements) over the group's shape.
struct FusedTensor {
  DType dtype;
  Strides strides;
};

/// A result written contiguously: the group's shape for element values, its shape without the
/// last dim for row values (reductions and what is computed from them alone).
struct FusedOutput {
  int value;
  DType dtype;
};

struct FusedGroup {
  std::string name;                 // kernel name stem ("softmax")
  Shape shape;                      // iteration shape; reductions run over its last dim
  std::vector<std::string> nodes;   // graph nodes the kernel implements, for its header comment
  std::vector<FusedTensor> inputs;
  std::vector<FusedValue> values;
  std::vector<FusedOutput> outputs;

  FusedGroup(std::string name, Shape shape) : name(std::move(name)), shape(std::move(shape)) {}

  /// Adds an input (FusedArgs::in[i] in order) and returns the value that loads it.
  int input(DType dtype, Strides strides);
  int constant(double v, DType dtype = kFloat32);
  int unary(const std::string& functor, int a);
  /// Comparison functors (Eq ... Ge) give Bool; the others the operands' dtype.
  int binary(const std::string& functor, int a, int b);
  int where(int cond, int a, int b);
  int cast(int a, DType to);
  int row_sum(int a);
  int row_max(int a);
  /// Writes value v (FusedArgs::out[i] in order).
  void output(int v, DType dtype);
};

/// The kernel of a group: element-wise groups take one thread per element (256 per block),
/// groups with reductions one warp per row of the last dim (8 per block). Launch it over
/// ceil(fused_rows(g) / tile) blocks with one FusedArgs. Throws ValueError for an ill-formed group.
GeneratedKernel generate_fused(const FusedGroup& g);
/// What a block's tile counts: elements (no reductions) or rows of the last dim.
int64_t fused_rows(const FusedGroup& g);

}  // namespace minidl::codegen
