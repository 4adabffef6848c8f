// Plan: what compile() makes of one input signature. The forward and backward graphs after
// every pass, how the backward connects to the forward, and the snapshots of each graph
// between passes (the inspection API, and the files of MINIDL_DUMP_DIR).
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "compiler/graph.h"
#include "compiler/passes/passes.h"
#include "compiler/trace.h"
#include "core/tensor.h"

namespace minidl {

/// Options of compile().
struct CompileOptions {
  /// Names the graphs, dumps and log lines of this function.
  std::string name = "fn";
  /// Run check_graph after every pass (on in debug builds; tests turn it on).
#ifdef NDEBUG
  bool check_graphs = false;
#else
  bool check_graphs = true;
#endif
};

/// A graph as one pass left it: the text and DOT that MINIDL_DUMP_DIR writes.
struct PassSnapshot {
  std::string name;  // "03-forward-attention": number (pass order), graph, pass
  std::string text;
  std::string dot;
};

/// What compile() made of one input signature.
struct Plan {
  /// The input signature, as text ("float32 (8, 64, 16) requires_grad, ...").
  std::string signature;
  /// After every pass. Outputs: the function's outputs, then the values the backward reads.
  Graph forward;
  /// Outputs of the function (the first num_outputs of forward.outputs).
  size_t num_outputs = 0;
  /// Tensors the function read that require grad, passed after the explicit inputs.
  std::vector<Tensor> captured;
  /// Whether a backward graph exists (some input requires grad and an output depends on it).
  bool has_backward = false;
  /// After every pass: the graph the compiled call's autograd node runs.
  BackwardGraph backward;
  /// Which forward outputs carry a gradient (they get the compiled call's autograd node).
  std::vector<bool> output_requires_grad;
  /// Each graph between passes, in pass order.
  std::vector<PassSnapshot> passes;
  /// Near-matches the attention matcher rejected, with the failed check.
  std::vector<std::string> attention_rejections;
  /// Where this plan's dumps went (empty when MINIDL_DUMP_DIR is unset). The generated kernel
  /// sources go to MINIDL_DUMP_DIR itself (`<kernel>-<hash>.cu`, written by the JIT), since a
  /// kernel is shared by every plan that uses it.
  std::filesystem::path dump_dir;

  /// Which nodes fused into which group, one line per FusionGroup of both graphs:
  /// "forward group #0 (row): %9 = mul(%5, %3); %10 = softmax(%9)".
  std::vector<std::string> fusion_summary() const;
};

/// Runs the passes over a traced function, in order (the compiler's pipeline).
Plan build_plan(Trace traced, const std::string& signature, const CompileOptions& options);

}  // namespace minidl
