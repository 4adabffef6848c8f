#include "compiler/trace.h"

#include "core/grad_mode.h"

namespace minidl {

Tensor GraphTracer::tracer_for(ValueId v) {
  const Value& val = g_.values.at(v);
  auto impl = std::make_shared<TensorImpl>();
  impl->sizes = val.meta.shape;
  impl->strides = contiguous_strides(val.meta.shape);
  impl->dtype = val.meta.dtype;
  impl->device = val.meta.device;
  impl->requires_grad = val.requires_grad;
  impl->tracer = this;
  impl->trace_id = v;
  return Tensor(impl);
}

Tensor GraphTracer::input(const TensorMeta& meta, std::string label, bool requires_grad) {
  return tracer_for(g_.add_input(meta, std::move(label), requires_grad));
}

ValueId GraphTracer::value_of(const Tensor& t) {
  if (t.impl()->tracer == this) return static_cast<ValueId>(t.impl()->trace_id);
  MINIDL_CHECK(!t.is_tracer(), ValueError,
               "[compile] graph {} got a tracer {} of another trace (a tensor of an enclosing "
               "compiled function's trace leaked into this one)",
               g_.name, shape_str(t.shape()));
  if (auto it = outside_.find(t.impl()); it != outside_.end()) return it->second;
  ValueId v;
  if (t.requires_grad()) {
    v = g_.add_input(t.meta(), fmt::format("captured{}", captured_.size()), true);
    captured_.push_back(t);
  } else {
    v = g_.add_constant(t);
  }
  outside_.emplace(t.impl(), v);
  return v;
}

std::vector<Tensor> GraphTracer::record(PrimitivePtr p, const std::vector<Tensor>& inputs,
                                        const std::vector<TensorMeta>&) {
  std::vector<ValueId> in;
  in.reserve(inputs.size());
  for (const auto& t : inputs) in.push_back(value_of(t));
  std::vector<Tensor> out;
  for (ValueId v : g_.add_node(std::move(p), std::move(in))) out.push_back(tracer_for(v));
  return out;
}

Trace trace(const TracedFunction& fn, const std::vector<InputSpec>& inputs,
            const std::string& name) {
  Trace t;
  t.graph.name = name;
  GraphTracer tracer(t.graph);
  std::vector<Tensor> args;
  for (size_t i = 0; i < inputs.size(); ++i)
    args.push_back(tracer.input(inputs[i].meta, fmt::format("x{}", i), inputs[i].requires_grad));
  std::vector<Tensor> outs;
  {
    // Grad mode on whatever the caller's: a plan serves later calls in either mode, so ops
    // on parameters must be recorded (see active_tracer()).
    AutoGradMode grad(true);
    TracingScope scope(&tracer);
    outs = fn(args);
  }
  for (size_t i = 0; i < outs.size(); ++i) {
    MINIDL_CHECK(outs[i].defined(), ValueError,
                 "[compile] output {} of the traced function {} is an undefined tensor", i, name);
    t.graph.outputs.push_back(tracer.value_of(outs[i]));
  }
  t.captured = tracer.captured();
  return t;
}

}  // namespace minidl
