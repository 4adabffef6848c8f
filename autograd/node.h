// The autograd graph. Each op applied to tensors that require grad creates a Node; a Node's
// next_edges point at the nodes that produced its inputs (or at the AccumulateGrad node of a
// leaf). The engine (engine.h) walks them in reverse topological order.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/primitive.h"
#include "core/tensor.h"

namespace minidl {

class Node;

// NOTE [Autograd and threads]
// Threads may share leaves that require grad (parameters), and even whole graphs, in forward and
// backward, as in PyTorch; each backward runs on the thread that calls it. Two locks make that
// safe, taken in this order only:
// - Node::mutex: the engine holds it while a node runs apply() or release_saved(), so one node
//   reached by two backwards runs once at a time. A leaf's AccumulateGrad is one node per leaf,
//   so its read-add-write of .grad is never interleaved and no accumulation is lost.
// - autograd_mutex(leaf): guards a leaf's grad (read and replaced whole, never written in
//   place, so a reader holds either the value before or after an accumulation) and its lazily
//   created grad_accumulator (gradient_edge creates it at most once while it lives). It is one
//   of a fixed set of mutexes picked by the TensorImpl's address, so tensors pay nothing for
//   it; code holding one never takes another, so two leaves sharing one cannot deadlock.
// Nothing else in a Node is written after construction, except by apply() and release_saved().
// What remains the caller's to order is in docs/api.md, "Thread safety".

/// An input slot of a node: gradients flowing along the edge land in node's input `input_nr`.
struct Edge {
  std::shared_ptr<Node> node;
  uint32_t input_nr = 0;
  bool valid() const { return node != nullptr; }
};

class Node : public std::enable_shared_from_this<Node> {
 public:
  Node();
  virtual ~Node() = default;
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  /// Name for errors and graph printing ("matmul", "AccumulateGrad").
  virtual std::string name() const = 0;
  /// Gradients w.r.t. the node's inputs (one per next edge), from the gradients of its outputs
  /// (one per output; undefined where no gradient flowed).
  virtual std::vector<Tensor> apply(std::vector<Tensor> grad_outputs) = 0;
  /// Frees what the node saved for backward (after a backward without retain_graph).
  virtual void release_saved() {}

  /// Edge i carries the gradient of the node's input i.
  std::vector<Edge> next_edges;
  /// Metadata of each output (the gradient a node receives has this shape/dtype/device).
  std::vector<TensorMeta> output_meta;
  /// Creation order; the engine runs later nodes first among the ready ones.
  uint64_t sequence_nr;
  /// Held by the engine around apply() and release_saved() (NOTE [Autograd and threads]).
  std::mutex mutex;
};

/// The node of a primitive applied in eager mode: keeps what the primitive's saves() asks for
/// and calls its vjp.
class PrimitiveNode : public Node {
 public:
  PrimitiveNode(PrimitivePtr p, const std::vector<Tensor>& inputs,
                const std::vector<Tensor>& outputs);
  std::string name() const override { return prim_->name(); }
  std::vector<Tensor> apply(std::vector<Tensor> grad_outputs) override;
  void release_saved() override;
  const PrimitivePtr& primitive() const { return prim_; }

 private:
  /// The outputs the vjp reads; under create_graph they lead back to this node.
  std::vector<Tensor> saved_outputs();

  PrimitivePtr prim_;
  std::vector<Tensor> inputs_;   // data where saved, else placeholders
  std::vector<Tensor> outputs_;  // detached aliases where saved, else placeholders
  std::vector<bool> needs_grad_;
  bool released_ = false;
};

/// Accumulates the gradient of a leaf into its .grad (one per leaf: NOTE [Autograd and threads]).
class AccumulateGrad : public Node {
 public:
  explicit AccumulateGrad(const std::shared_ptr<TensorImpl>& leaf);
  std::string name() const override { return "AccumulateGrad"; }
  std::vector<Tensor> apply(std::vector<Tensor> grad_outputs) override;

 private:
  std::weak_ptr<TensorImpl> leaf_;
};

/// The edge a gradient for tensor t should flow along: its grad_fn, or its leaf's accumulator
/// (created on first use, once for all threads). Invalid if t does not require grad.
Edge gradient_edge(const Tensor& t);

/// Makes `outputs` the outputs of node (sets grad_fn and output_nr, fills output_meta).
void set_history(const std::vector<Tensor>& outputs, const std::shared_ptr<Node>& node);

}  // namespace minidl
