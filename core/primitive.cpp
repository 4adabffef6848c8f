#include "core/primitive.h"

#include <typeinfo>

#include "core/autograd_hook.h"
#include "core/grad_mode.h"

namespace minidl {

std::vector<Tensor> Primitive::eval_cuda(const std::vector<Tensor>&) {
  throw DeviceError(fmt::format("[{}] has no CUDA kernel in this build", name()));
}

std::vector<Tensor> Primitive::vjp(const std::vector<Tensor>&, const std::vector<Tensor>&,
                                   const std::vector<Tensor>&, const std::vector<bool>&) {
  throw ValueError(fmt::format("[{}] is not differentiable", name()));
}

SaveMask Primitive::saves(const std::vector<bool>& needs_grad, size_t n_outputs) const {
  return {std::vector<bool>(needs_grad.size(), true), std::vector<bool>(n_outputs, true)};
}

bool Primitive::equals(const Primitive& o) const {
  return typeid(*this) == typeid(o) && std::string_view(name()) == o.name() &&
         attrs() == o.attrs();
}

Device common_device(const char* op, const std::vector<TensorMeta>& in) {
  const TensorMeta* first = nullptr;
  for (const auto& m : in)
    if (!(m.device.is_cpu() && m.shape.empty())) {
      first = &m;
      break;
    }
  if (!first) return in.empty() ? kCPU : in.front().device;
  for (const auto& m : in) {
    if (m.device == first->device || (m.device.is_cpu() && m.shape.empty())) continue;
    std::string all;
    for (const auto& x : in) all += (all.empty() ? "" : ", ") + x.device.str() + " " + shape_str(x.shape);
    throw DeviceError(fmt::format("[{}] expects all tensors on one device, got {}", op, all));
  }
  return first->device;
}

namespace {
thread_local Tracer* current_tracer = nullptr;
}

Tracer* active_tracer() { return current_tracer; }
TracingScope::TracingScope(Tracer* t) : prev_(current_tracer) { current_tracer = t; }
TracingScope::~TracingScope() { current_tracer = prev_; }

std::vector<Tensor> apply(PrimitivePtr p, const std::vector<Tensor>& inputs) {
  std::vector<TensorMeta> in_meta;
  in_meta.reserve(inputs.size());
  Tracer* tracer = nullptr;
  for (const auto& t : inputs) {
    MINIDL_CHECK(t.defined(), ValueError, "[{}] got an undefined tensor as input", p->name());
    in_meta.push_back(t.meta());
    if (t.impl()->tracer) {
      MINIDL_CHECK(!tracer || tracer == t.impl()->tracer, ValueError,
                   "[{}] mixes tracers of two different compile() traces", p->name());
      tracer = t.impl()->tracer;
    }
  }
  if (!tracer && current_tracer && GradMode::is_enabled())
    for (const auto& t : inputs)
      if (t.requires_grad()) tracer = current_tracer;
  std::vector<TensorMeta> out_meta = p->infer(in_meta);

  if (tracer) return tracer->record(std::move(p), inputs, out_meta);

  for (const auto& t : inputs)
    MINIDL_CHECK(t.has_storage(), ValueError, "[{}] input {} has no data ({})", p->name(),
                 shape_str(t.shape()), "a placeholder saved by autograd cannot be computed on");
  const Device dev = common_device(p->name(), in_meta);
  std::vector<Tensor> outputs;
  {
    AutoGradMode no_grad(false);  // ops an eval uses internally record no history
    outputs = dev.is_cpu() ? p->eval_cpu(inputs) : p->eval_cuda(inputs);
  }

  if (GradMode::is_enabled() && p->differentiable()) {
    bool any = false, floating = false;
    for (const auto& t : inputs) any = any || t.requires_grad();
    for (const auto& m : out_meta) floating = floating || is_floating(m.dtype);
    any = any && floating;  // integer and bool results carry no gradient
    if (any) autograd_hook::record(p, inputs, outputs);
  }
  return outputs;
}

Tensor apply1(PrimitivePtr p, const std::vector<Tensor>& inputs) {
  return apply(std::move(p), inputs).at(0);
}

}  // namespace minidl
