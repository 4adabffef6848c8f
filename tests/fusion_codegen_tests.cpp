// Generated kernels for the compiler's fusion groups: every group of the plans of several compiled
// functions (forward and backward) is lowered (compiler/codegen/lower_group.h), NVRTC-compiled for
// sm_90 (CUDA builds; no GPU needed) and run on the CPU emulator (tests/cuda_emu.h) against the
// group's op-by-op CPU evaluation, on the values the group sees when the plan runs. On a GPU the
// compiled functions run each group as one generated kernel and match eager CPU.
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "compiler/codegen/device/kernel_params.h"
#include "compiler/codegen/fusion.h"
#include "compiler/codegen/lower_group.h"
#include "compiler/compile.h"
#include "compiler/fusion_group.h"
#include "compiler/jit.h"
#include "emulated_kernels.h"
#include "plan_groups.h"
#include "test_utils.h"

using namespace minidl;
using minidl::testing::check_on_emulator;
using minidl::testing::GroupRun;
using minidl::testing::Lowered;
using minidl::testing::plan_groups;
using minidl::testing::rel_error;

namespace {

// ============================================================================ compiled functions

struct FnCase {
  std::string name;
  std::function<Tensor(const std::vector<Tensor>&)> fn;
  std::vector<Tensor> inputs;  // CPU, float32; each case runs with all of them requiring grad
};

// True above the diagonal of the last two dims of x, on x's device.
Tensor causal_mask(const Tensor& x) {
  return triu(ones({x.size(-2), x.size(-1)}, {.dtype = kBool, .device = x.device()}), 1);
}

// The functions the fusion pass meets most, at small odd sizes (the emulator runs a thread per fiber).
std::vector<FnCase> fn_cases() {
  manual_seed(11);
  return {
      {"chain",  // 6 pointwise ops; b broadcast along the first and last dims
       [](const std::vector<Tensor>& x) { return tanh(exp(x[0] * x[1] + 1.0) - x[1]) * 0.5 + x[0]; },
       {randn({3, 5, 33}), randn({5, 1})}},
      {"bias_gelu", [](const std::vector<Tensor>& x) { return gelu(matmul(x[0], x[1]) + x[2]); },
       {randn({7, 12}), randn({12, 40}), randn({40})}},
      {"residual_layer_norm",
       [](const std::vector<Tensor>& x) { return layer_norm(matmul(x[0], x[1]) + x[0], x[2], x[3]); },
       {randn({9, 48}), randn({48, 48}) * 0.2, randn({48}), randn({48})}},
      {"plain_layer_norm",  // no affine; two row ops of one shape in one group
       [](const std::vector<Tensor>& x) { return layer_norm(x[0] * x[1], Tensor(), Tensor()) + softmax(x[0], -1); },
       {randn({6, 37}), randn({6, 37})}},
      {"masked_softmax",  // no matmul with V after it, so not attention: a row group
       [](const std::vector<Tensor>& x) {
         return softmax(masked_fill(x[0] * 0.125, causal_mask(x[0]), -INFINITY), -1) * x[1];
       },
       {randn({2, 3, 9, 19}) * 4.0, randn({2, 3, 9, 19})}},
      {"masked_log_softmax",  // a finite fill (of the scores' scale, so every output counts in the error)
       [](const std::vector<Tensor>& x) {
         return log_softmax(masked_fill(x[0] / 3.0, causal_mask(x[0]), -8.0), -1) * x[1];
       },
       {randn({2, 11, 11}), randn({2, 11, 11})}},
      {"mlp",
       [](const std::vector<Tensor>& p) {
         Tensor h = gelu(matmul(p[0], p[1]) + p[2]);
         return layer_norm(matmul(h, p[3]) + p[0], p[4], p[5]);
       },
       {randn({5, 24}), randn({24, 40}) * 0.3, randn({40}), randn({40, 24}) * 0.3, randn({24}), randn({24})}},
  };
}

std::vector<Tensor> leaves(const std::vector<Tensor>& xs, DType dtype, Device device) {
  std::vector<Tensor> out;
  for (const Tensor& x : xs) out.push_back(x.to(dtype).to(device).detach().requires_grad_(true));
  return out;
}

// Same values, column-major in the last two dims: the kernel reads them through other strides.
Tensor transposed_layout(const Tensor& t) {
  if (t.dim() < 2 || t.size(-1) == 1 || t.size(-2) == 1) return t;
  return t.transpose(-2, -1).contiguous().transpose(-2, -1);
}

// ============================================================================ the emulated check

// Largest relative error of a kernel against op by op. float32: the two differ by the order of
// the row sums. 16-bit: op by op rounds every intermediate (up to ~8 in these groups) to 11 or
// 8 significant bits, a kernel only what it stores (seen: 1.8e-3 float16, 2.0e-2 bfloat16).
double tolerance(DType t) {
  switch (t) {
    case kFloat16: return 5e-3;
    case kBFloat16: return 4e-2;
    default: return 1e-5;
  }
}

// Lowers every group of the cases' plans, in `dtype`, checking that each one translates.
std::vector<Lowered> lower_cases(DType dtype) {
  std::vector<Lowered> out;
  for (const FnCase& c : fn_cases()) {
    // Named by dtype too, so the kernels of one emulator build have distinct names.
    CompiledFunction f = compile(c.fn, {.name = c.name + "_" + dtype_name(dtype), .check_graphs = true});
    const std::vector<Tensor> x = leaves(c.inputs, dtype, kCPU);
    f.call1(x);
    const std::vector<GroupRun> groups = plan_groups(f, x);
    CHECK_MESSAGE(!groups.empty(), c.name << " has no fusion group");
    for (const GroupRun& run : groups) {
      const Graph& body = run.group->body();
      INFO(body.name << ": " << run.group->attrs());
      std::vector<Tensor> in;
      for (size_t i = 0; i < run.inputs.size(); ++i)
        in.push_back(i % 2 ? transposed_layout(run.inputs[i]) : run.inputs[i]);
      std::string reason;
      std::optional<Lowered> lw =
          testing::lower_for_emulator(*run.group, in, body.name + " (" + run.group->attrs() + ")", tolerance(dtype), &reason);
      REQUIRE_MESSAGE(lw.has_value(), "not lowered: " << reason);
      out.push_back(std::move(*lw));
    }
  }
  return out;
}

}  // namespace

// ============================================================================ lowering

TEST_CASE("fusion codegen: broadcast strides follow numpy rules and are canonical") {
  using codegen::broadcast_strides;
  CHECK(broadcast_strides({5, 1}, {1, 1}, {3, 5, 33}) == Strides{0, 1, 0});
  CHECK(broadcast_strides({}, {}, {4, 7}) == Strides{0, 0});
  CHECK(broadcast_strides({7}, {2}, {4, 7}) == Strides{0, 2});
  CHECK(broadcast_strides({4, 7}, {1, 4}, {4, 7}) == Strides{1, 4});
  // a dim of size 1 gets its contiguous stride whatever the tensor says
  CHECK(broadcast_strides({1, 7}, {99, 1}, {1, 7}) == Strides{7, 1});
  CHECK(!broadcast_strides({3}, {1}, {4, 7}).has_value());
  CHECK(!broadcast_strides({2, 4, 7}, {28, 7, 1}, {4, 7}).has_value());
}

TEST_CASE("fusion codegen: a group lowers to one kernel specialised on its inputs' strides") {
  manual_seed(5);
  CompiledFunction f = compile(
      [](const std::vector<Tensor>& x) {
        return softmax(masked_fill(x[0] * 0.125, causal_mask(x[0]), -1e9), -1) + x[1];
      },
      {.name = "spec", .check_graphs = true});
  f.call1({randn({2, 6, 6}), randn({6})});
  REQUIRE(f.graph().nodes.size() == 1);
  const FusionGroup* g = as_fusion_group(f.graph().nodes[0]);
  REQUIRE(g != nullptr);
  const codegen::LoweredGroup a = codegen::lower_group(*g, {{36, 6, 1}, {1}});
  REQUIRE(a.program.has_value());
  const std::string src = codegen::generate_fused(*a.program).source;
  CHECK(src.find("minidl_fused_spec_forward_group0") != std::string::npos);
  CHECK(src.find("softmax(") != std::string::npos);  // the header names the graph nodes
  CHECK(src.find("-1e+09f") != std::string::npos);  // the fill value and the scale are inlined
  CHECK(src.find("0.125f") != std::string::npos);
  CHECK(a.constants.size() == 1);  // the (2, 6, 6) mask, a stride-0 view of (6, 6), is read
  CHECK(a.program->inputs.back().strides == Strides{0, 6, 1});
  CHECK(codegen::generate_fused(*codegen::lower_group(*g, {{36, 6, 1}, {1}}).program).source == src);
  const codegen::LoweredGroup b = codegen::lower_group(*g, {{36, 1, 6}, {1}});  // x transposed
  REQUIRE(b.program.has_value());
  CHECK(codegen::generate_fused(*b.program).source != src);
}

TEST_CASE("fusion codegen: a member without a translation leaves the group to run op by op, saying why") {
  // A softmax over a dim other than the last: the fusion pass never groups it, a hand-made body can.
  Graph body;
  body.name = "hand.group0";
  const ValueId x = body.add_input({{4, 5}, kFloat32, kCPU}, "x");
  const ValueId y = body.add_node(std::make_shared<Softmax>(0, false), {x})[0];
  body.outputs = {body.add_node(std::make_shared<Unary>(UnaryOp::Exp), {y})[0]};
  FusionGroup g(0, FusionGroup::Kind::Row, std::move(body));
  const codegen::LoweredGroup l = codegen::lower_group(g, {{5, 1}});
  CHECK(!l.program.has_value());
  CHECK(l.reason.find("softmax") != std::string::npos);
  CHECK(l.reason.find("not the last") != std::string::npos);
  // The CPU path is unaffected: the members run one by one.
  const Tensor in = randn({4, 5});
  CHECK(rel_error(g.eval_cpu({in})[0], exp(softmax(in, 0))) <= 1e-6);

  Graph many;  // more inputs than a kernel's parameter block holds
  many.name = "many.group0";
  ValueId acc = many.add_input({{3}, kFloat32, kCPU}, "x0");
  for (int i = 1; i <= kMaxFusedInputs; ++i)
    acc = many.add_node(std::make_shared<Binary>(BinaryOp::Add), {acc, many.add_input({{3}, kFloat32, kCPU}, "x")})[0];
  many.outputs = {acc};
  FusionGroup wide(0, FusionGroup::Kind::Pointwise, std::move(many));
  const codegen::LoweredGroup w = codegen::lower_group(wide, std::vector<Strides>(kMaxFusedInputs + 1, Strides{1}));
  CHECK(!w.program.has_value());
  CHECK(w.reason.find("inputs") != std::string::npos);
}

#if MINIDL_WITH_CUDA
TEST_CASE("fusion codegen: every group of the compiled functions compiles under NVRTC for sm_90") {
  const auto opts = jit::compile_options("sm_90");
  size_t n = 0;
  for (DType dt : {kFloat32, kBFloat16}) {
    for (const Lowered& l : lower_cases(dt)) {
      INFO(l.what);
      CHECK(jit::compile_cubin(l.kernel.name, l.kernel.source, opts).compare(0, 4, "\x7f" "ELF") == 0);
      ++n;
    }
  }
  CHECK(n >= 20);
}
#endif

// ============================================================================ emulated results

TEST_CASE("fusion codegen: emulated group kernels match op-by-op evaluation (float32)") {
  if (!testing::emulator_or_skip("emulated fusion group kernels")) return;
  check_on_emulator(lower_cases(kFloat32));
}

TEST_CASE("fusion codegen: emulated group kernels match op-by-op evaluation (bfloat16, float16)") {
  if (!testing::emulator_or_skip("emulated 16-bit fusion group kernels")) return;
  std::vector<Lowered> groups = lower_cases(kBFloat16);
  for (Lowered& l : lower_cases(kFloat16)) groups.push_back(std::move(l));
  check_on_emulator(groups);
}

// ============================================================================ GPU

#if MINIDL_WITH_CUDA
TEST_CASE("fusion codegen gpu: compiled functions run every fusion group as one generated kernel") {
  if (!testing::gpu_or_skip("fusion codegen gpu: compiled functions")) return;
  for (DType dt : {kFloat32, kBFloat16}) {
    for (const FnCase& c : fn_cases()) {
      INFO(c.name << " " << dtype_name(dt));
      CompiledFunction f = compile(c.fn, {.name = c.name, .check_graphs = true});
      const std::vector<Tensor> xe = leaves(c.inputs, dt, kCPU), xc = leaves(c.inputs, dt, kCUDA);
      const Tensor oe = c.fn(xe);
      const Tensor dout = randn(oe.shape()).to(dt);
      oe.backward(dout);
      reset_fusion_group_stats();
      const Tensor oc = f.call1(xc);
      oc.backward(dout.cuda());
      const size_t groups = f.plan().forward.count("fusion_group") + f.plan().backward.graph.count("fusion_group");
      CHECK(groups >= 1);
      FusionGroupStats s = fusion_group_stats();
      CHECK(s.kernel_launches == static_cast<int64_t>(groups));
      CHECK(s.op_by_op == 0);
      CHECK(s.kernels_generated == static_cast<int64_t>(groups));
      const double tol = dt == kFloat32 ? 1e-5 : 3e-2;
      CHECK(rel_error(oc.cpu(), oe) <= tol);
      for (size_t i = 0; i < xe.size(); ++i) {
        CAPTURE(i);
        CHECK(rel_error(xc[i].grad().cpu(), xe[i].grad()) <= (dt == kFloat32 ? 1e-4 : 5e-2));
      }
      // A second call of the plan reuses the kernels: no lowering, no source generated.
      f.call1(leaves(c.inputs, dt, kCUDA)).backward(dout.cuda());
      s = fusion_group_stats();
      CHECK(s.kernel_launches == 2 * static_cast<int64_t>(groups));
      CHECK(s.kernels_generated == static_cast<int64_t>(groups));
    }
  }
}
#endif
