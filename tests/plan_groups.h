// The fusion groups of a compiled function's plan with the values they receive when the plan
// runs on the CPU, lowered to generated kernels and run on the CPU emulator of CUDA against their
// op-by-op evaluation (tests/fusion_codegen_tests.cpp, tests/fuzz_tests.cpp).
#pragma once

#include <doctest/doctest.h>

#include <cmath>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "compiler/codegen/device/kernel_params.h"
#include "compiler/codegen/fusion.h"
#include "compiler/codegen/kernel.h"
#include "compiler/codegen/lower_group.h"
#include "compiler/compile.h"
#include "compiler/fusion_group.h"
#include "compiler/graph.h"
#include "compiler/passes/passes.h"
#include "compiler/plan.h"
#include "core/ops.h"
#include "core/primitive.h"
#include "core/shape.h"
#include "core/tensor.h"
#include "emulated_kernels.h"
#include "test_utils.h"

namespace minidl::testing {

// A group of a plan and the inputs it receives when the plan runs.
struct GroupRun {
  const FusionGroup* group;
  std::vector<Tensor> inputs;
};

// Runs g node by node (as run_graph does) keeping every value, and records each group's inputs.
inline std::vector<Tensor> run_recording(const Graph& g, const std::vector<Tensor>& inputs,
                                 std::vector<GroupRun>& groups) {
  std::vector<Tensor> env(g.values.size());
  for (size_t i = 0; i < inputs.size(); ++i) env[g.inputs[i]] = inputs[i];
  for (size_t v = 0; v < g.values.size(); ++v)
    if (g.values[v].kind == ValueKind::Constant) env[v] = g.values[v].data;
  for (const GraphNode& n : g.nodes) {
    std::vector<Tensor> args;
    for (ValueId v : n.inputs) args.push_back(env[v]);
    if (const FusionGroup* fg = as_fusion_group(n)) groups.push_back({fg, args});
    std::vector<Tensor> outs = minidl::apply(n.op, args);
    for (size_t j = 0; j < outs.size(); ++j) env[n.outputs[j]] = outs[j];
  }
  return env;
}

// Every group of f's plan (forward, then backward) with the inputs it gets on a CPU call.
inline std::vector<GroupRun> plan_groups(const CompiledFunction& f, const std::vector<Tensor>& x) {
  const Plan& plan = f.plan();
  std::vector<Tensor> in;
  for (const Tensor& t : x) in.push_back(t.detach());
  for (const Tensor& t : plan.captured) in.push_back(t.detach());
  std::vector<GroupRun> groups;
  const std::vector<Tensor> fwd = run_recording(plan.forward, in, groups);
  if (plan.has_backward) {
    std::vector<Tensor> bin;
    for (const BackwardInput& b : plan.backward.inputs) {
      if (b.kind == BackwardInput::Kind::Forward) {
        bin.push_back(fwd.at(b.index));
      } else {
        const TensorMeta& m = plan.forward.meta(plan.forward.outputs.at(b.index));
        bin.push_back(randn(m.shape).to(m.dtype));
      }
    }
    run_recording(plan.backward.graph, bin, groups);
  }
  return groups;
}

// A lowered group ready to run: its kernel, its arguments and the op-by-op reference.
struct Lowered {
  std::string what;
  codegen::GeneratedKernel kernel;
  long long blocks = 0;
  std::vector<Tensor> inputs;  // the group's, then the constants the kernel reads
  std::vector<Tensor> expected;
  double tol = 0;
};

/// g lowered for the strides of `in`, with its op-by-op results on `in` as the expectation;
/// nothing (and the reason) where a member has no translation.
inline std::optional<Lowered> lower_for_emulator(const FusionGroup& g, const std::vector<Tensor>& in,
                                                 std::string what, double tol, std::string* reason) {
  std::vector<Strides> strides;
  for (const Tensor& t : in) strides.push_back(t.strides());
  codegen::LoweredGroup l = codegen::lower_group(g, strides);
  if (!l.program) {
    *reason = l.reason;
    return std::nullopt;
  }
  Lowered lw{std::move(what), codegen::generate_fused(*l.program), 0, in, run_graph(g.body(), in), tol};
  lw.blocks = (codegen::fused_rows(*l.program) + lw.kernel.tile - 1) / lw.kernel.tile;
  for (const Tensor& t : l.constants) lw.inputs.push_back(t);
  return lw;
}

// Runs every lowered group on the emulator (one build for all) and compares with op by op.
inline void check_on_emulator(const std::vector<Lowered>& groups,
                              double (*error)(const Tensor&, const Tensor&) = rel_error) {
  std::vector<codegen::GeneratedKernel> ks;
  for (const Lowered& l : groups) ks.push_back(l.kernel);
  const EmulatedKernels emu(ks);
  for (size_t i = 0; i < groups.size(); ++i) {
    const Lowered& l = groups[i];
    INFO(l.what);
    FusedArgs args{};
    for (size_t j = 0; j < l.inputs.size(); ++j) args.in[j] = l.inputs[j].data_ptr();
    std::vector<Tensor> outs;
    for (const Tensor& e : l.expected) {
      outs.push_back(full(e.shape(), NAN, {.dtype = e.dtype()}));  // what is not written fails
      args.out[outs.size() - 1] = outs.back().data_ptr();
    }
    emu.run(i, l.blocks, &args);
    for (size_t j = 0; j < outs.size(); ++j) {
      const double err = error(outs[j], l.expected[j]);
      CHECK_MESSAGE(err <= l.tol, "output " << j << ": relative error " << err);
    }
  }
}

}  // namespace minidl::testing
