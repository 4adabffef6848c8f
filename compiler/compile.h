// compile(): the entry point of the compiler. The first call for an input signature (shapes,
// dtypes, devices, requires_grad) traces the function into a graph, runs the passes and caches
// the plan (compiler/plan.h); later calls with that signature run the cached plan.
//
//   CompiledFunction attn = compile([](const std::vector<Tensor>& x) {
//     return matmul(softmax(matmul(x[0], x[1].transpose(-2, -1)) * 0.125, -1), x[2]);
//   }, {.name = "attention"});
//   Tensor o = attn.call1({q, k, v});   // one fused_attention node on any device
//   o.backward(dout);                   // one fused_attention_backward node
//
// Tensors fn reads without receiving them are fixed at trace time: those that require grad
// (parameters) become extra inputs of the plan, by identity, and get gradients; the others
// (a mask, a scalar, a frozen weight) become constants. In-place updates of either are seen by
// later calls; a tensor object fn reads that is replaced by another one afterwards is not.
// Higher-order gradients (create_graph) through a compiled call are refused with an error.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "compiler/codegen/kernel.h"
#include "compiler/graph.h"
#include "compiler/plan.h"
#include "compiler/trace.h"
#include "core/tensor.h"

namespace minidl {

/// How often a compiled function traced and how often its plan cache answered.
struct CompileStats {
  int64_t calls = 0;
  int64_t traces = 0;  // cache misses: a new signature was traced and compiled
  int64_t cache_hits = 0;
};

/// A compiled function: call it like the function. Copies share one plan cache.
class CompiledFunction {
 public:
  /// Nothing is traced until the first call (see compile()).
  CompiledFunction(TracedFunction fn, CompileOptions options);

  /// Runs the plan for the inputs' signature (tracing and compiling it on first sight). The
  /// outputs that depend on inputs requiring grad share one autograd node, whose backward runs
  /// the compiled backward plan. Called on tracer tensors (inside another compile()), it
  /// traces through fn instead.
  std::vector<Tensor> operator()(const std::vector<Tensor>& inputs) const;
  /// operator() for functions with one output.
  Tensor call1(const std::vector<Tensor>& inputs) const;

  /// The plan of the most recent call (throws ValueError before the first call).
  const Plan& plan() const;
  /// Its forward graph after every pass.
  const Graph& graph() const { return plan().forward; }
  /// Its graphs between passes, in pass order.
  const std::vector<PassSnapshot>& passes() const { return plan().passes; }
  /// The CUDA kernels its fused nodes (forward, then backward) generate for contiguous inputs
  /// of its signature: each FusionGroup's kernel, and the fused attention's forward, delta and
  /// backward kernels with the halved-tile variants small grids get. The same sources
  /// MINIDL_DUMP_DIR receives when they compile; generating them needs no GPU. Empty in a
  /// build without CUDA (nothing is generated there).
  std::vector<codegen::GeneratedKernel> sources() const;
  /// Number of signatures compiled so far.
  size_t num_plans() const;
  CompileStats stats() const;

 private:
  struct State;
  std::shared_ptr<State> state_;
};

/// Compiles fn (see the top of this file).
CompiledFunction compile(TracedFunction fn, CompileOptions options = {});
/// Compiles a function with one output.
CompiledFunction compile(std::function<Tensor(const std::vector<Tensor>&)> fn,
                         CompileOptions options = {});

}  // namespace minidl
