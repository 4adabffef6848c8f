#include "compiler/fusion_group.h"

namespace minidl {

FusionGroup::FusionGroup(int index, Kind kind, Graph body)
    : index_(index), kind_(kind), body_(std::move(body)) {}

std::vector<std::string> FusionGroup::op_names() const {
  std::vector<std::string> out;
  for (const GraphNode& n : body_.nodes) out.emplace_back(n.op->name());
  return out;
}

std::string FusionGroup::attrs() const {
  std::string ops;
  for (const auto& name : op_names()) ops += (ops.empty() ? "" : ", ") + name;
  return fmt::format("#{} {}: {}", index_, kind_ == Kind::Row ? "row" : "pointwise", ops);
}

std::vector<TensorMeta> FusionGroup::infer(const std::vector<TensorMeta>& in) const {
  const std::vector<TensorMeta> want = body_.metas(body_.inputs);
  MINIDL_CHECK(in.size() == want.size(), ValueError, "[fusion_group] #{} expects {} inputs, got {}",
               index_, want.size(), in.size());
  for (size_t i = 0; i < in.size(); ++i)
    MINIDL_CHECK(in[i] == want[i], ShapeError, "[fusion_group] #{} input {} should be {}, got {}",
                 index_, i, meta_str(want[i]), meta_str(in[i]));
  return body_.metas(body_.outputs);
}

std::vector<Tensor> FusionGroup::eval_cpu(const std::vector<Tensor>& in) {
  return run_graph(body_, in);
}

#if MINIDL_WITH_CUDA
std::vector<Tensor> FusionGroup::eval_cuda(const std::vector<Tensor>& in) {
  return run_graph(body_, in);
}
#endif

const FusionGroup* as_fusion_group(const GraphNode& n) {
  return dynamic_cast<const FusionGroup*>(n.op.get());
}

}  // namespace minidl
