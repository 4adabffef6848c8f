#include "autograd/engine.h"

#include <mutex>
#include <queue>
#include <unordered_map>

#include "autograd/node.h"
#include "base/log.h"
#include "core/autograd_hook.h"
#include "core/grad_mode.h"
#include "core/ops.h"

namespace minidl {

namespace {

struct ReadyOrder {
  bool operator()(const Node* a, const Node* b) const { return a->sequence_nr < b->sequence_nr; }
};

// Runs the graph reachable from root edges. With `capture` set, gradients arriving at those
// edges are returned instead of accumulated into leaves (AccumulateGrad nodes are not run).
std::vector<Tensor> execute(const std::vector<Edge>& roots, std::vector<Tensor> root_grads,
                            bool retain_graph, bool create_graph,
                            const std::vector<Edge>* capture) {
  AutoGradMode mode(create_graph);

  // Count, for every reachable node, the edges that point at it.
  std::unordered_map<Node*, int> deps;
  std::vector<Node*> stack;
  std::unordered_map<Node*, bool> seen;
  for (const auto& e : roots)
    if (e.valid() && !seen[e.node.get()]) seen[e.node.get()] = true, stack.push_back(e.node.get());
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (const auto& e : n->next_edges) {
      if (!e.valid()) continue;
      ++deps[e.node.get()];
      if (!seen[e.node.get()]) seen[e.node.get()] = true, stack.push_back(e.node.get());
    }
  }

  std::unordered_map<Node*, std::vector<Tensor>> buffers;
  auto accumulate = [&](const Edge& e, Tensor g) {
    auto& buf = buffers[e.node.get()];
    if (buf.size() < e.node->output_meta.size()) buf.resize(e.node->output_meta.size());
    Tensor& slot = buf.at(e.input_nr);
    slot = slot.defined() ? add(slot, g) : std::move(g);
  };
  for (size_t i = 0; i < roots.size(); ++i)
    if (roots[i].valid()) accumulate(roots[i], root_grads[i]);

  std::vector<Tensor> captured(capture ? capture->size() : 0);

  std::priority_queue<Node*, std::vector<Node*>, ReadyOrder> ready;
  for (const auto& [n, _] : seen)
    if (deps[n] == 0) ready.push(n);
  while (!ready.empty()) {
    Node* n = ready.top();
    ready.pop();
    std::vector<Tensor> grads = std::move(buffers[n]);
    buffers.erase(n);
    grads.resize(n->output_meta.size());
    if (capture) {
      for (size_t c = 0; c < capture->size(); ++c)
        if ((*capture)[c].node.get() == n) captured[c] = grads.at((*capture)[c].input_nr);
      if (dynamic_cast<AccumulateGrad*>(n)) continue;  // grad() leaves .grad alone
    }
    bool any = false;
    for (const auto& g : grads) any = any || g.defined();
    std::vector<Tensor> in_grads;
    {
      // Another thread's backward may reach n too (NOTE [Autograd and threads]).
      std::lock_guard<std::mutex> lock(n->mutex);
      if (any) {
        log("autograd").trace("backward through {}", n->name());
        in_grads = n->apply(std::move(grads));
      }
      if (!retain_graph) n->release_saved();
    }
    for (size_t i = 0; i < n->next_edges.size(); ++i) {
      const Edge& e = n->next_edges[i];
      if (!e.valid()) continue;
      if (i < in_grads.size() && in_grads[i].defined()) accumulate(e, std::move(in_grads[i]));
      if (--deps[e.node.get()] == 0) ready.push(e.node.get());
    }
  }
  return captured;
}

std::vector<Tensor> root_gradients(const std::vector<Tensor>& roots,
                                   const std::vector<Tensor>& grads, const char* op) {
  MINIDL_CHECK(grads.empty() || grads.size() == roots.size(), ValueError,
               "[{}] got {} gradients for {} outputs", op, grads.size(), roots.size());
  std::vector<Tensor> out;
  for (size_t i = 0; i < roots.size(); ++i) {
    const Tensor& r = roots[i];
    MINIDL_CHECK(r.defined() && r.requires_grad(), ValueError,
                 "[{}] output {} of shape {} does not require grad and has no grad_fn", op, i,
                 r.defined() ? shape_str(r.shape()) : "?");
    Tensor g = i < grads.size() ? grads[i] : Tensor();
    if (!g.defined()) {
      MINIDL_CHECK(r.numel() == 1, ValueError,
                   "[{}] grad can be implicitly created only for scalar outputs, but the output "
                   "has shape {}: pass a gradient of that shape",
                   op, shape_str(r.shape()));
      g = ones_like(r);
    }
    MINIDL_CHECK(g.shape() == r.shape(), ShapeError,
                 "[{}] gradient of shape {} given for an output of shape {}", op,
                 shape_str(g.shape()), shape_str(r.shape()));
    MINIDL_CHECK(g.device() == r.device(), DeviceError,
                 "[{}] gradient on {} given for an output on {}", op, g.device().str(),
                 r.device().str());
    out.push_back(g.dtype() == r.dtype() ? g : g.to(r.dtype()));
  }
  return out;
}

}  // namespace

void run_backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads,
                  bool retain_graph, bool create_graph) {
  std::vector<Tensor> g = root_gradients(roots, grads, "backward");
  std::vector<Edge> edges;
  for (const auto& r : roots) edges.push_back(gradient_edge(r));
  // A graph differentiated with create_graph is usually differentiated again: keep it (PyTorch's
  // retain_graph defaults to create_graph).
  execute(edges, std::move(g), retain_graph || create_graph, create_graph, nullptr);
}

std::vector<Tensor> grad(const std::vector<Tensor>& outputs, const std::vector<Tensor>& inputs,
                         const std::vector<Tensor>& grad_outputs, bool retain_graph,
                         bool create_graph) {
  std::vector<Tensor> g = root_gradients(outputs, grad_outputs, "grad");
  std::vector<Edge> edges, capture;
  for (const auto& r : outputs) edges.push_back(gradient_edge(r));
  for (const auto& x : inputs) {
    MINIDL_CHECK(x.defined() && x.requires_grad(), ValueError,
                 "[grad] input of shape {} does not require grad",
                 x.defined() ? shape_str(x.shape()) : "?");
    capture.push_back(gradient_edge(x));
  }
  return execute(edges, std::move(g), retain_graph || create_graph, create_graph, &capture);
}

void autograd_hook::backward(const Tensor& root, const Tensor& gradient, bool retain_graph,
                             bool create_graph) {
  run_backward({root}, {gradient}, retain_graph, create_graph);
}

}  // namespace minidl
