// Primitive: the one place an op is defined (MLX's primitives.h pattern). A primitive knows its
// shape/dtype rule, how to evaluate on each backend, and its vjp written in terms of other ops,
// so eager autograd and the compiler's symbolic differentiation share one gradient rule.
// User-facing functions (core/ops.h) validate and broadcast, then call apply() (dispatch.h).
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "base/device.h"
#include "core/tensor.h"

namespace minidl {

/// Which primal inputs and outputs a vjp reads; autograd keeps only those.
struct SaveMask {
  std::vector<bool> inputs;   // per input
  std::vector<bool> outputs;  // per output
};

class Primitive {
 public:
  virtual ~Primitive() = default;

  /// The op's name, as printed in errors and graph dumps ("matmul", "softmax").
  virtual const char* name() const = 0;
  /// Attributes for printing and equality ("dim=-1"); empty if none.
  virtual std::string attrs() const { return ""; }

  /// Shape/dtype/device rule: output metadata from input metadata. Throws on invalid input.
  virtual std::vector<TensorMeta> infer(const std::vector<TensorMeta>& in) const = 0;

  /// Computes the outputs on the CPU. Inputs have the metas infer() accepted.
  virtual std::vector<Tensor> eval_cpu(const std::vector<Tensor>& in) = 0;
  /// Computes the outputs on a CUDA device. The default throws DeviceError.
  virtual std::vector<Tensor> eval_cuda(const std::vector<Tensor>& in);

  /// Gradients w.r.t. each input (undefined where needs_grad is false or no gradient exists),
  /// written with ops. `primals`/`outputs` hold data only where saves() asked for it (the rest
  /// are placeholders with metadata); cotangents are defined for every output.
  virtual std::vector<Tensor> vjp(const std::vector<Tensor>& primals,
                                  const std::vector<Tensor>& cotangents,
                                  const std::vector<Tensor>& outputs,
                                  const std::vector<bool>& needs_grad);
  /// What vjp reads, given which inputs need a gradient. Default: every input and output.
  virtual SaveMask saves(const std::vector<bool>& needs_grad, size_t n_outputs) const;
  /// False for ops with no gradient (comparisons, argmax, random).
  virtual bool differentiable() const { return true; }
  /// True for ops whose output aliases an input's storage (views).
  virtual bool is_view() const { return false; }

  /// For pointwise ops: the scalar functor in core/scalar_ops.h the fusion codegen calls,
  /// e.g. "Exp". Empty for everything else.
  virtual std::string codegen_functor() const { return ""; }

  /// Same op with the same attributes.
  virtual bool equals(const Primitive& o) const;
};

using PrimitivePtr = std::shared_ptr<Primitive>;

/// Runs p on its inputs: records it when an input is a tracer, else evaluates on the inputs'
/// device, and records an autograd node when grad mode is on and an input requires grad.
std::vector<Tensor> apply(PrimitivePtr p, const std::vector<Tensor>& inputs);
/// apply() for single-output primitives.
Tensor apply1(PrimitivePtr p, const std::vector<Tensor>& inputs);

/// Receives primitives applied to tracer tensors (implemented by the compiler's tracer).
class Tracer {
 public:
  virtual ~Tracer() = default;
  virtual std::vector<Tensor> record(PrimitivePtr p, const std::vector<Tensor>& inputs,
                                     const std::vector<TensorMeta>& outputs) = 0;
};

/// The tracer of the compile() trace running on this thread, or nullptr. While one is active,
/// apply() also hands it ops on tensors that require grad (with grad mode on), so a parameter a
/// traced function reads becomes a graph input instead of a constant frozen without gradient.
Tracer* active_tracer();
/// Makes t the active tracer for a scope (restoring the previous one on exit).
class TracingScope {
 public:
  explicit TracingScope(Tracer* t);
  ~TracingScope();
  TracingScope(const TracingScope&) = delete;
  TracingScope& operator=(const TracingScope&) = delete;

 private:
  Tracer* prev_;
};

/// Device all inputs live on; a 0-dim CPU tensor counts as a scalar that goes with any device.
/// Throws DeviceError naming op and every input's device when they differ.
Device common_device(const char* op, const std::vector<TensorMeta>& in);

}  // namespace minidl
