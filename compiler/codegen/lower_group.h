// Lowering: a fusion group's body (compiler/fusion_group.h) as the generator's FusedGroup
// (compiler/codegen/fusion.h), the program of one generated kernel. See NOTE [Lowering fusion
// groups] in lower_group.cpp for how each member translates.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "compiler/codegen/fusion.h"
#include "core/shape.h"
#include "core/tensor.h"

namespace minidl {
class FusionGroup;
}

namespace minidl::codegen {

/// A group's kernel program, or why its members must run one by one.
struct LoweredGroup {
  /// The program; empty when a member has no translation (then `reason` names it).
  std::optional<FusedGroup> program;
  std::string reason;
  /// Constants of the body the kernel reads from memory (those of more than one element), in
  /// FusedArgs::in order after the body's inputs.
  std::vector<Tensor> constants;
};

/// Lowers `group` for inputs with these strides (one per body input, in elements, over the
/// input's own shape): the kernel is specialised on them, on the dtypes and on the shape.
LoweredGroup lower_group(const FusionGroup& group, const std::vector<Strides>& input_strides);

/// Strides of a tensor of shape `from` seen through the broadcast to `to` (numpy rules: 0 along
/// new leading dims and dims of size 1), canonical where a dim of `to` has size 1 (its contiguous
/// stride, which no load uses), so equal layouts give equal kernels. Empty if `from` does not
/// broadcast to `to`.
std::optional<Strides> broadcast_strides(const Shape& from, const Strides& strides, const Shape& to);

}  // namespace minidl::codegen
