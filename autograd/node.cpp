#include "autograd/node.h"

#include <atomic>
#include <cstdint>
#include <mutex>

#include "core/autograd_hook.h"
#include "core/grad_mode.h"
#include "core/ops.h"

namespace minidl {

namespace {
std::atomic<uint64_t> next_sequence_nr{0};
}

Node::Node() : sequence_nr(next_sequence_nr++) {}

PrimitiveNode::PrimitiveNode(PrimitivePtr p, const std::vector<Tensor>& inputs,
                             const std::vector<Tensor>& outputs)
    : prim_(std::move(p)) {
  needs_grad_.reserve(inputs.size());
  for (const auto& t : inputs) {
    needs_grad_.push_back(t.requires_grad());
    next_edges.push_back(gradient_edge(t));
  }
  const SaveMask m = prim_->saves(needs_grad_, outputs.size());
  for (size_t i = 0; i < inputs.size(); ++i)
    inputs_.push_back(m.inputs.at(i) ? inputs[i] : placeholder(inputs[i].meta()));
  // Outputs are kept detached: a saved output holding its own grad_fn would be a cycle.
  for (size_t j = 0; j < outputs.size(); ++j)
    outputs_.push_back(m.outputs.at(j) ? outputs[j].detach() : placeholder(outputs[j].meta()));
}

std::vector<Tensor> PrimitiveNode::apply(std::vector<Tensor> grad_outputs) {
  MINIDL_CHECK(!released_, ValueError,
               "[backward] trying to backward through the graph a second time (through '{}'): "
               "its saved tensors were freed after the first backward. Pass retain_graph=true to "
               "the first backward to keep them.",
               prim_->name());
  for (size_t j = 0; j < grad_outputs.size(); ++j)
    if (!grad_outputs[j].defined())
      grad_outputs[j] = zeros(output_meta[j].shape,
                              {.dtype = output_meta[j].dtype, .device = output_meta[j].device});
  std::vector<Tensor> grads = prim_->vjp(inputs_, grad_outputs, saved_outputs(), needs_grad_);
  grads.resize(inputs_.size());
  for (size_t i = 0; i < grads.size(); ++i) {
    if (!needs_grad_[i]) {
      grads[i] = Tensor();
      continue;
    }
    if (!grads[i].defined()) continue;
    const TensorMeta want = inputs_[i].meta();
    MINIDL_CHECK(grads[i].shape() == want.shape, ShapeError,
                 "[{}] vjp gave a gradient of shape {} for input {} of shape {} (a bug in the "
                 "op's vjp)",
                 prim_->name(), shape_str(grads[i].shape()), i, shape_str(want.shape));
    if (grads[i].dtype() != want.dtype) grads[i] = grads[i].to(want.dtype);
  }
  return grads;
}

std::vector<Tensor> PrimitiveNode::saved_outputs() {
  // With create_graph the vjp's ops are recorded, and a saved output must lead back to this
  // node, or the second derivative through it (exp, tanh, softmax, ...) would be lost. The
  // outputs are kept detached (no cycle through grad_fn) and re-attached only here, during
  // backward, as PyTorch's SavedVariable does when it unpacks an output.
  if (!GradMode::is_enabled()) return outputs_;
  std::vector<Tensor> outs = outputs_;
  for (size_t j = 0; j < outs.size(); ++j) {
    if (!outs[j].has_storage() || !is_floating(outs[j].dtype())) continue;
    auto impl = std::make_shared<TensorImpl>(*outs[j].impl());
    impl->grad_fn = shared_from_this();
    impl->output_nr = static_cast<uint32_t>(j);
    outs[j] = Tensor(impl);
  }
  return outs;
}

void PrimitiveNode::release_saved() {
  // Only a node that saved data can no longer run: one that saved nothing (add, sum, views)
  // can be walked again, as in PyTorch.
  for (auto& t : inputs_) {
    if (t.has_storage()) released_ = true;
    t = placeholder(t.meta());
  }
  for (auto& t : outputs_) {
    if (t.has_storage()) released_ = true;
    t = placeholder(t.meta());
  }
}

AccumulateGrad::AccumulateGrad(const std::shared_ptr<TensorImpl>& leaf) : leaf_(leaf) {
  output_meta.push_back(leaf->meta());
}

std::vector<Tensor> AccumulateGrad::apply(std::vector<Tensor> grads) {
  auto leaf = leaf_.lock();
  if (!leaf || grads.empty() || !grads[0].defined()) return {};
  Tensor g = std::move(grads[0]);
  // .grad is laid out densely, whatever view the gradient arrived as (sum's gradient is an
  // expanded view with stride 0): code that reads .grad's memory may assume row-major order.
  if (!g.is_contiguous()) g = g.contiguous();
  // The engine holds this node's mutex, so accumulations into the leaf run one at a time; the
  // leaf's own mutex keeps readers of .grad off the pointer while it is replaced
  // (NOTE [Autograd and threads]).
  std::shared_ptr<TensorImpl> old;
  {
    std::lock_guard<std::mutex> lock(autograd_mutex(leaf.get()));
    old = leaf->grad;
  }
  if (!GradMode::is_enabled()) {
    // .grad must not alias a tensor anybody else holds (a vjp may hand one cotangent to several
    // inputs), or an in-place change to one .grad would reach the other: steal only when sole.
    const bool sole = g.impl_ptr().use_count() == 1 && g.impl()->storage.use_count() == 1;
    if (!old && (!sole || g.requires_grad())) g = g.clone();
  }
  std::shared_ptr<TensorImpl> sum = old ? add(Tensor(old), g).impl_ptr() : g.impl_ptr();
  std::lock_guard<std::mutex> lock(autograd_mutex(leaf.get()));
  leaf->grad = std::move(sum);
  return {};
}

Edge gradient_edge(const Tensor& t) {
  TensorImpl* i = t.impl();
  if (i->grad_fn) return {i->grad_fn, i->output_nr};
  if (!i->requires_grad) return {};
  // Threads recording ops on one leaf must get one accumulator (NOTE [Autograd and threads]).
  std::lock_guard<std::mutex> lock(autograd_mutex(i));
  auto acc = i->grad_accumulator.lock();
  if (!acc) {
    acc = std::make_shared<AccumulateGrad>(t.impl_ptr());
    i->grad_accumulator = acc;
  }
  return {acc, 0};
}

void set_history(const std::vector<Tensor>& outputs, const std::shared_ptr<Node>& node) {
  node->output_meta.clear();
  for (size_t j = 0; j < outputs.size(); ++j) {
    outputs[j].impl()->grad_fn = node;
    outputs[j].impl()->output_nr = static_cast<uint32_t>(j);
    node->output_meta.push_back(outputs[j].meta());
  }
}

// core records history through this seam (core/autograd_hook.h).
void autograd_hook::record(const PrimitivePtr& p, const std::vector<Tensor>& inputs,
                           const std::vector<Tensor>& outputs) {
  set_history(outputs, std::make_shared<PrimitiveNode>(p, inputs, outputs));
}

std::string autograd_hook::node_name(const Node& node) { return node.name(); }

}  // namespace minidl
