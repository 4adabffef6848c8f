// Copies: contiguous()/clone(), moves between devices, and the in-place copy_/fill_.
#include "core/cpu/kernels.h"
#include "core/grad_mode.h"
#include "core/ops.h"
#include "core/primitives.h"
#include "runtime/cuda.h"
#if MINIDL_WITH_CUDA
#include "core/cuda/kernels.h"
#endif

namespace minidl {

// ============================================================================ Copy

std::vector<TensorMeta> Copy::infer(const std::vector<TensorMeta>& in) const { return {in[0]}; }

std::vector<Tensor> Copy::eval_cpu(const std::vector<Tensor>& in) {
  Tensor out = empty(in[0].shape(), in[0].dtype(), kCPU, "copy");
  cpu::convert(out, in[0]);
  return {out};
}

#if MINIDL_WITH_CUDA
std::vector<Tensor> Copy::eval_cuda(const std::vector<Tensor>& in) {
  Tensor out = empty(in[0].shape(), in[0].dtype(), in[0].device(), "copy");
  cuda::convert(out, in[0]);
  return {out};
}
#endif

SaveMask Copy::saves(const std::vector<bool>&, size_t) const { return {{false}, {false}}; }

std::vector<Tensor> Copy::vjp(const std::vector<Tensor>&, const std::vector<Tensor>& cot,
                              const std::vector<Tensor>&, const std::vector<bool>&) {
  return {cot[0]};
}

Tensor Tensor::clone() const { return apply1(std::make_shared<Copy>(), {*this}); }

// ============================================================================ ToDevice

std::string ToDevice::attrs() const { return "device=" + to_.str(); }

std::vector<TensorMeta> ToDevice::infer(const std::vector<TensorMeta>& in) const {
  if (to_.is_cuda()) {
    MINIDL_CHECK(cuda::is_available(), DeviceError, "[to_device] cannot move {} to {}: {}",
                 shape_str(in[0].shape), to_.str(), cuda::unavailable_reason());
    MINIDL_CHECK(to_.index < cuda::device_count(), DeviceError,
                 "[to_device] device {} does not exist ({} CUDA devices)", to_.str(),
                 cuda::device_count());
  }
  return {{in[0].shape, in[0].dtype, to_}};
}

namespace {
// Moves x (any device) to `to` through a contiguous staging copy on x's device.
Tensor move_to(const Tensor& x, Device to) {
  Tensor src = x.contiguous();
  Tensor out = empty(x.shape(), x.dtype(), to, "to_device");
  cuda::memcpy(out.data_ptr(), to, src.data_ptr(), src.device(), out.nbytes());
  return out;
}
}  // namespace

std::vector<Tensor> ToDevice::eval_cpu(const std::vector<Tensor>& in) {
  if (to_.is_cpu()) return {in[0]};
  return {move_to(in[0], to_)};
}
#if MINIDL_WITH_CUDA
std::vector<Tensor> ToDevice::eval_cuda(const std::vector<Tensor>& in) { return {move_to(in[0], to_)}; }
#endif

SaveMask ToDevice::saves(const std::vector<bool>&, size_t) const { return {{false}, {false}}; }

std::vector<Tensor> ToDevice::vjp(const std::vector<Tensor>& primals, const std::vector<Tensor>& cot,
                                  const std::vector<Tensor>&, const std::vector<bool>&) {
  return {cot[0].to(primals[0].device())};
}

Tensor Tensor::to(Device d) const {
  if (device() == d) return *this;
  return apply1(std::make_shared<ToDevice>(d), {*this});
}

// ============================================================================ in-place writes

Tensor& Tensor::copy_(const Tensor& src) {
  MINIDL_CHECK(!(GradMode::is_enabled() && requires_grad() && is_leaf()), ValueError,
               "[copy_] a leaf tensor that requires grad cannot be written in place (use "
               "NoGradGuard, as optimizers do)");
  MINIDL_CHECK(broadcast_shapes(shape(), src.shape(), "copy_") == shape(), ShapeError,
               "[copy_] source {} does not broadcast to the destination {}",
               shape_str(src.shape()), shape_str(shape()));
  Tensor s = src.device() == device() ? src.detach() : src.detach().to(device());
  if (device().is_cpu()) {
    // A source that overlaps the destination is staged through a copy first.
    if (s.impl()->storage == impl()->storage) s = s.clone();
    cpu::convert(*this, s);
  } else {
#if MINIDL_WITH_CUDA
    if (s.impl()->storage == impl()->storage) s = s.clone();
    cuda::convert(*this, s);
#endif
  }
  return *this;
}

Tensor& Tensor::fill_(double v) {
  if (device().is_cpu()) {
    cpu::fill(*this, v);
  } else {
#if MINIDL_WITH_CUDA
    cuda::fill(*this, v);
#endif
  }
  return *this;
}

}  // namespace minidl
