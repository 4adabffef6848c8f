// The compiler's pipeline: the passes over one traced function, in the order they run.
#include "compiler/plan.h"

#include <cstdlib>
#include <fstream>

#include "base/log.h"
#include "compiler/attention/match.h"
#include "compiler/fusion_group.h"

namespace minidl {

namespace {

// MINIDL_DUMP_DIR/<name>-<hash of the signature>, or empty when dumps are off.
std::filesystem::path dump_dir_for(const std::string& name, const std::string& signature) {
  const char* root = std::getenv("MINIDL_DUMP_DIR");
  if (!root || !*root) return {};
  uint64_t h = 1469598103934665603ull;  // FNV-1a: stable across runs, so dumps can be diffed
  for (unsigned char c : signature) h = (h ^ c) * 1099511628211ull;
  return std::filesystem::path(root) /
         fmt::format("{}-{:08x}", name, static_cast<uint32_t>(h ^ (h >> 32)));
}

void write_file(const std::filesystem::path& p, const std::string& text) {
  std::ofstream f(p);
  f << text;
  if (!f) log("compiler").warn("MINIDL_DUMP_DIR: cannot write the dump file {}", p.string());
}

// Keeps each graph as a pass left it: a snapshot, the dump files, and a check when asked for.
class PassLog {
 public:
  PassLog(Plan& plan, const CompileOptions& options) : plan_(plan), options_(options) {
    if (plan_.dump_dir.empty()) return;
    std::error_code ec;
    std::filesystem::create_directories(plan_.dump_dir, ec);
    if (ec) {
      log("compiler")
          .warn("MINIDL_DUMP_DIR: cannot create {}: {}", plan_.dump_dir.string(), ec.message());
      plan_.dump_dir.clear();
    }
  }

  void after(const char* role, const char* pass, const Graph& g) {
    if (options_.check_graphs) check_graph(g, pass);
    PassSnapshot s{fmt::format("{:02}-{}-{}", plan_.passes.size(), role, pass), g.str(), g.dot()};
    if (!plan_.dump_dir.empty()) {
      write_file(plan_.dump_dir / (s.name + ".txt"), s.text);
      write_file(plan_.dump_dir / (s.name + ".dot"), s.dot);
    }
    plan_.passes.push_back(std::move(s));
  }

 private:
  Plan& plan_;
  const CompileOptions& options_;
};

void append(std::vector<std::string>& to, const std::vector<std::string>& lines) {
  to.insert(to.end(), lines.begin(), lines.end());
}

std::string summary_text(const Plan& plan) {
  std::string s = fmt::format("signature: {}\n", plan.signature);
  std::string saved;
  for (size_t i = plan.num_outputs; i < plan.forward.outputs.size(); ++i)
    saved += fmt::format("{}%{} {}", saved.empty() ? "" : ", ", plan.forward.outputs[i],
                         meta_str(plan.forward.meta(plan.forward.outputs[i])));
  if (plan.has_backward)
    s += fmt::format("saved for backward: {}\n", saved.empty() ? "nothing" : saved);
  for (const auto& line : plan.fusion_summary()) s += line + "\n";
  for (const auto& line : plan.attention_rejections) s += "attention not matched at " + line + "\n";
  return s;
}

}  // namespace

std::vector<std::string> Plan::fusion_summary() const {
  std::vector<std::string> out;
  auto describe = [&](const char* role, const Graph& g) {
    for (const GraphNode& n : g.nodes)
      if (const FusionGroup* fg = as_fusion_group(n)) {
        std::string members;
        for (const GraphNode& m : fg->body().nodes)
          members += (members.empty() ? "" : "; ") + node_str(m);
        out.push_back(fmt::format("{} group #{} ({}): {}", role, fg->index(),
                                  fg->kind() == FusionGroup::Kind::Row ? "row" : "pointwise",
                                  members));
      }
  };
  describe("forward", forward);
  describe("backward", backward.graph);
  return out;
}

Plan build_plan(Trace traced, const std::string& signature, const CompileOptions& options) {
  Plan plan;
  plan.signature = signature;
  plan.captured = std::move(traced.captured);
  plan.dump_dir = dump_dir_for(options.name, signature);
  PassLog passes(plan, options);
  Graph& fwd = plan.forward;
  fwd = std::move(traced.graph);
  plan.num_outputs = fwd.outputs.size();

  passes.after("forward", "trace", fwd);
  dce(fwd);
  passes.after("forward", "dce", fwd);
  append(plan.attention_rejections, match_attention(fwd));
  passes.after("forward", "attention", fwd);
  dce(fwd);
  passes.after("forward", "dce", fwd);

  bool wants_grad = false;
  for (ValueId v : fwd.inputs) wants_grad = wants_grad || fwd.values[v].requires_grad;
  if (wants_grad) {
    BackwardGraph& bwd = plan.backward;
    bwd = autodiff(fwd);
    bwd.graph.name = options.name + ".backward";
    passes.after("backward", "autodiff", bwd.graph);
    dce(bwd.graph);
    passes.after("backward", "dce", bwd.graph);
    append(plan.attention_rejections, match_attention(bwd.graph));
    passes.after("backward", "attention", bwd.graph);
    dce(bwd.graph);
    passes.after("backward", "dce", bwd.graph);

    plan.output_requires_grad.assign(plan.num_outputs, false);
    for (const BackwardInput& in : bwd.inputs)
      if (in.kind == BackwardInput::Kind::Cotangent) plan.output_requires_grad[in.index] = true;
    plan.has_backward = !bwd.graph.outputs.empty();
    select_saved(fwd, bwd);
    passes.after("forward", "saving", fwd);
    passes.after("backward", "saving", bwd.graph);
    fuse(bwd.graph);
    passes.after("backward", "fusion", bwd.graph);
  }
  fuse(fwd);
  passes.after("forward", "fusion", fwd);

  if (!plan.dump_dir.empty()) write_file(plan.dump_dir / "plan.txt", summary_text(plan));
  return plan;
}

}  // namespace minidl
