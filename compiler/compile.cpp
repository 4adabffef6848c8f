#include "compiler/compile.h"

#include <mutex>
#include <set>
#include <unordered_map>

#include "autograd/node.h"
#include "base/config.h"
#include "base/log.h"
#include "core/grad_mode.h"
#include "core/ops.h"
#if MINIDL_WITH_CUDA
#include "compiler/attention/attention.h"
#include "compiler/attention/launch.h"
#include "compiler/codegen/fusion.h"
#include "compiler/codegen/lower_group.h"
#include "compiler/fusion_group.h"
#endif

namespace minidl {

namespace {

// "float32 (8, 64, 16) requires_grad, float32 (8, 64, 16)": the plan cache's key.
std::string signature_of(const std::vector<Tensor>& inputs) {
  std::string s;
  for (const auto& t : inputs) {
    MINIDL_CHECK(t.defined(), ValueError, "[compile] got an undefined tensor as input");
    s += (s.empty() ? "" : ", ") + meta_str(t.meta()) + (t.requires_grad() ? " requires_grad" : "");
  }
  return s;
}

// The one autograd node of a compiled call: its backward runs the plan's backward graph on
// the output gradients and the forward values select_saved kept (and nothing else).
class CompiledNode : public Node {
 public:
  CompiledNode(std::shared_ptr<const Plan> plan, const std::vector<Tensor>& inputs,
               std::vector<Tensor> saved)
      : plan_(std::move(plan)), saved_(std::move(saved)) {
    for (const auto& t : inputs) next_edges.push_back(gradient_edge(t));
  }

  std::string name() const override { return "compiled " + plan_->forward.name; }

  std::vector<Tensor> apply(std::vector<Tensor> grad_outputs) override {
    MINIDL_CHECK(!released_, ValueError,
                 "[backward] trying to backward through the graph a second time (through '{}'): "
                 "its saved tensors were freed after the first backward. Pass retain_graph=true "
                 "to the first backward to keep them.",
                 name());
    // The forward ran without history and the backward graph is fused: a backward through it
    // cannot itself be differentiated.
    MINIDL_CHECK(!GradMode::is_enabled(), ValueError,
                 "[backward] create_graph=true through '{}': a compiled function's backward "
                 "records no history, so higher-order gradients need the function uncompiled",
                 name());
    const BackwardGraph& bw = plan_->backward;
    std::vector<Tensor> args;
    size_t next_saved = 0;
    for (const BackwardInput& in : bw.inputs) {
      if (in.kind == BackwardInput::Kind::Forward) {
        args.push_back(saved_.at(next_saved++));
        continue;
      }
      const Tensor& g = grad_outputs.at(in.index);
      const TensorMeta& m = output_meta.at(in.index);
      args.push_back(g.defined() ? g : zeros(m.shape, {.dtype = m.dtype, .device = m.device}));
    }
    std::vector<Tensor> outs = run_graph(bw.graph, args);
    std::vector<Tensor> grads(next_edges.size());
    for (size_t k = 0; k < outs.size(); ++k) grads[bw.grad_of[k]] = std::move(outs[k]);
    return grads;
  }

  void release_saved() override {
    saved_.clear();
    released_ = true;
  }

 private:
  std::shared_ptr<const Plan> plan_;
  std::vector<Tensor> saved_;
  bool released_ = false;
};

}  // namespace

struct CompiledFunction::State {
  TracedFunction fn;
  CompileOptions options;
  std::mutex mu;
  std::unordered_map<std::string, std::shared_ptr<const Plan>> plans;  // by signature
  std::shared_ptr<const Plan> last;
  CompileStats stats;
};

CompiledFunction::CompiledFunction(TracedFunction fn, CompileOptions options)
    : state_(std::make_shared<State>()) {
  state_->fn = std::move(fn);
  state_->options = std::move(options);
}

std::vector<Tensor> CompiledFunction::operator()(const std::vector<Tensor>& inputs) const {
  for (const auto& t : inputs)
    if (t.is_tracer()) return state_->fn(inputs);  // inside another trace: trace through

  const std::string signature = signature_of(inputs);
  std::shared_ptr<const Plan> plan;
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    ++state_->stats.calls;
    auto it = state_->plans.find(signature);
    if (it != state_->plans.end()) {
      ++state_->stats.cache_hits;
      plan = it->second;
    } else {
      ++state_->stats.traces;
      std::vector<InputSpec> specs;
      for (const auto& t : inputs) specs.push_back({t.meta(), t.requires_grad()});
      const std::string& name = state_->options.name;
      plan = std::make_shared<const Plan>(
          build_plan(trace(state_->fn, specs, name + ".forward"), signature, state_->options));
      log("compiler")
          .debug("compile {}: new signature {}: {} forward nodes, {} backward nodes", name,
                 signature, plan->forward.nodes.size(), plan->backward.graph.nodes.size());
      state_->plans.emplace(signature, plan);
    }
    state_->last = plan;
  }

  std::vector<Tensor> args = inputs;
  args.insert(args.end(), plan->captured.begin(), plan->captured.end());
  std::vector<Tensor> values;
  {
    NoGradGuard no_grad;  // the compiled call is one autograd node, made below
    values = run_graph(plan->forward, args);
  }
  // Fresh handles: an output may be an input or appear twice, and gets its own grad_fn. A
  // constant is copied, so that writing to it cannot change what later calls return.
  std::vector<Tensor> outputs;
  for (size_t j = 0; j < plan->num_outputs; ++j) {
    const bool constant = plan->forward.values[plan->forward.outputs[j]].kind == ValueKind::Constant;
    outputs.push_back(constant ? values[j].clone() : values[j].detach());
  }
  if (!plan->has_backward || !GradMode::is_enabled()) return outputs;

  std::vector<Tensor> saved(values.begin() + static_cast<ptrdiff_t>(plan->num_outputs),
                            values.end());
  auto node = std::make_shared<CompiledNode>(plan, args, std::move(saved));
  for (size_t j = 0; j < outputs.size(); ++j) {
    node->output_meta.push_back(outputs[j].meta());
    if (!plan->output_requires_grad[j]) continue;
    outputs[j].impl()->grad_fn = node;
    outputs[j].impl()->output_nr = static_cast<uint32_t>(j);
  }
  return outputs;
}

Tensor CompiledFunction::call1(const std::vector<Tensor>& inputs) const {
  std::vector<Tensor> out = (*this)(inputs);
  MINIDL_CHECK(out.size() == 1, ValueError,
               "[compile] {} returns {} tensors, not one (use operator())", state_->options.name,
               out.size());
  return out[0];
}

const Plan& CompiledFunction::plan() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  MINIDL_CHECK(state_->last != nullptr, ValueError,
               "[compile] {} has no plan yet: call it once first", state_->options.name);
  return *state_->last;
}

std::vector<codegen::GeneratedKernel> CompiledFunction::sources() const {
  const Plan& p = plan();
  std::vector<codegen::GeneratedKernel> out;
#if MINIDL_WITH_CUDA
  std::set<std::string> seen;
  auto add = [&](std::vector<codegen::GeneratedKernel> ks) {
    for (auto& k : ks)
      if (seen.insert(k.name).second) out.push_back(std::move(k));
  };
  auto visit = [&](const Graph& g) {
    for (const GraphNode& n : g.nodes) {
      const std::vector<TensorMeta> in = g.metas(n.inputs);
      const Primitive* op = n.op.get();
      if (const auto* group = dynamic_cast<const FusionGroup*>(op)) {
        std::vector<Strides> strides;
        for (const TensorMeta& m : in) strides.push_back(contiguous_strides(m.shape));
        const codegen::LoweredGroup lowered = codegen::lower_group(*group, strides);
        if (lowered.program) add({codegen::generate_fused(*lowered.program)});  // else it runs op by op
      }
      // float64 attention runs its composition (FusedAttention::eval_cuda): no kernels
      const auto* fwd = dynamic_cast<const FusedAttention*>(op);
      const auto* bwd = dynamic_cast<const FusedAttentionBackward*>(op);
      if ((fwd || bwd) && in[0].dtype != kFloat64)
        add(cuda::fused_attention_kernels(in[0].shape.back(), in[0].dtype, fwd ? fwd->scale() : bwd->scale(),
                                          fwd ? fwd->causal() : bwd->causal(), true, bwd != nullptr));
    }
  };
  visit(p.forward);
  if (p.has_backward) visit(p.backward.graph);
#else
  (void)p;
#endif
  return out;
}

size_t CompiledFunction::num_plans() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->plans.size();
}

CompileStats CompiledFunction::stats() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->stats;
}

CompiledFunction compile(TracedFunction fn, CompileOptions options) {
  return CompiledFunction(std::move(fn), std::move(options));
}

CompiledFunction compile(std::function<Tensor(const std::vector<Tensor>&)> fn,
                         CompileOptions options) {
  return CompiledFunction(
      [fn = std::move(fn)](const std::vector<Tensor>& x) { return std::vector<Tensor>{fn(x)}; },
      std::move(options));
}

}  // namespace minidl
