#include "compiler/fusion_group.h"

#include <atomic>

#if MINIDL_WITH_CUDA
#include <map>
#include <mutex>
#include <utility>

#include "base/log.h"
#include "compiler/codegen/device/kernel_params.h"
#include "compiler/codegen/lower_group.h"
#include "compiler/jit.h"
#include "runtime/cuda_check.h"
#endif

namespace minidl {

namespace {
std::atomic<int64_t> launches{0}, op_by_op{0}, generated{0};
}  // namespace

FusionGroupStats fusion_group_stats() { return {launches.load(), op_by_op.load(), generated.load()}; }

void reset_fusion_group_stats() {
  launches = 0;
  op_by_op = 0;
  generated = 0;
}

#if MINIDL_WITH_CUDA
// One specialisation per device and input strides (shapes and dtypes are the group's own), made
// on the first call that needs it, so later calls of a plan neither lower nor generate source.
struct FusionGroup::Kernels {
  struct Entry {
    const jit::LoadedKernel* kernel = nullptr;  // nullptr: the group runs op by op
    std::vector<Tensor> constants;              // read after the inputs (FusedArgs::in)
    long long blocks = 0;
  };
  using Key = std::pair<int, std::vector<Strides>>;

  const Entry& get(const FusionGroup& g, Device dev, const std::vector<Tensor>& in) {
    Key key{dev.index, {}};
    key.second.reserve(in.size());
    for (const Tensor& t : in) key.second.push_back(t.strides());
    std::lock_guard<std::mutex> lock(mu);
    if (auto it = entries.find(key); it != entries.end()) return it->second;
    Entry e = make(g, dev, key.second);
    return entries.emplace(std::move(key), std::move(e)).first->second;
  }

  static Entry make(const FusionGroup& g, Device dev, const std::vector<Strides>& strides) {
    codegen::LoweredGroup lowered = codegen::lower_group(g, strides);
    std::string reason = lowered.reason;
    for (const Tensor& c : lowered.constants)
      if (reason.empty() && c.device() != dev)
        reason = fmt::format("a constant {} is on {}", meta_str(c.meta()), c.device().str());
    Entry e;
    if (!reason.empty()) {
      log("compiler").debug("[fusion_group] #{} ({}) runs op by op on {}: {}", g.index(), g.body().name, dev.str(),
                            reason);
      return e;
    }
    cuda::DeviceGuard guard(dev.index);
    const codegen::GeneratedKernel k = codegen::generate_fused(*lowered.program);
    e.kernel = &jit::load(k);
    e.constants = std::move(lowered.constants);
    e.blocks = (codegen::fused_rows(*lowered.program) + k.tile - 1) / k.tile;
    ++generated;
    log("compiler").debug("[fusion_group] #{} ({}) runs as {} on {}", g.index(), g.body().name, k.name, dev.str());
    return e;
  }

  std::mutex mu;
  std::map<Key, Entry> entries;
};
#else
struct FusionGroup::Kernels {};
#endif

FusionGroup::FusionGroup(int index, Kind kind, Graph body)
    : index_(index), kind_(kind), body_(std::move(body)), kernels_(std::make_unique<Kernels>()) {}

FusionGroup::~FusionGroup() = default;

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
  const std::vector<TensorMeta> metas = body_.metas(body_.outputs);
  const Device dev = metas.at(0).device;
  std::vector<Tensor> out;
  if (numel(metas[0].shape) == 0) {
    for (const TensorMeta& m : metas) out.push_back(empty(m.shape, m.dtype, dev, "fusion_group"));
    return out;
  }
  const Kernels::Entry& k = kernels_->get(*this, dev, in);
  if (!k.kernel) {
    ++op_by_op;
    return run_graph(body_, in);
  }
  FusedArgs args{};
  std::vector<Tensor> staged;  // 0-dim CPU inputs (scalars) copied to the device for the kernel
  for (size_t i = 0; i < in.size(); ++i)
    args.in[i] = (in[i].device() == dev ? in[i] : staged.emplace_back(in[i].to(dev))).data_ptr();
  for (size_t i = 0; i < k.constants.size(); ++i) args.in[in.size() + i] = k.constants[i].data_ptr();
  for (const TensorMeta& m : metas) {
    out.push_back(empty(m.shape, m.dtype, dev, "fusion_group"));
    args.out[out.size() - 1] = out.back().data_ptr();
  }
  cuda::DeviceGuard guard(dev.index);
  jit::launch(*k.kernel, k.blocks, &args);
  ++launches;
  return out;
}
#endif

const FusionGroup* as_fusion_group(const GraphNode& n) {
  return dynamic_cast<const FusionGroup*>(n.op.get());
}

}  // namespace minidl
