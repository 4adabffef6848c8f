// Copies and fills: dst = convert(src) for any pair of dtypes and any strides (Tensor::copy_,
// contiguous(), casts, cat, slice_backward), and fills with one value. Contiguous same-dtype
// copies go to cudaMemcpyAsync and zero fills of contiguous tensors to cudaMemsetAsync.
#include <cmath>

#include "core/cuda/kernels.h"
#include "core/cuda/loops.cuh"

namespace minidl::cuda {

namespace {

// ============================================================================ kernels (functors)

/// convert_one of core/cpu/kernels.cpp on compute types: to bool is "!= 0", the rest a cast.
template <class OutC>
struct ConvertTo {
  template <class X>
  MINIDL_HD OutC operator()(X x) const {
    if constexpr (std::is_same_v<OutC, bool>) {
      return x != X(0);
    } else {
      return static_cast<OutC>(x);
    }
  }
};

template <class C>
struct Constant {
  C value;
  MINIDL_HD C operator()() const { return value; }
};

}  // namespace

// ============================================================================ launchers

void convert(const Tensor& dst, const Tensor& src) {
  MINIDL_CHECK(dst.device().is_cuda(), DeviceError, "[copy] destination {} is not a CUDA tensor",
               describe(dst));
  if (dst.numel() == 0) return;
  if (dst.dtype() == src.dtype() && src.device().is_cuda() && src.shape() == dst.shape() &&
      dst.is_contiguous() && src.is_contiguous()) {
    memcpy(dst.data_ptr(), dst.device(), src.data_ptr(), src.device(), dst.nbytes());
    return;
  }
  MINIDL_DISPATCH_ALL(dst.dtype(), "copy", [&] {
    using OutT = scalar_t;
    MINIDL_DISPATCH_ALL(src.dtype(), "copy", [&] {
      using InT = scalar_t;
      launch_elementwise<OutT, InT>("copy", dst, ConvertTo<compute_t<OutT>>{}, src);
    });
  });
}

void fill(const Tensor& dst, double v) {
  MINIDL_CHECK(dst.device().is_cuda(), DeviceError, "[fill] {} is not a CUDA tensor",
               describe(dst));
  if (dst.numel() == 0) return;
  if (v == 0.0 && !std::signbit(v) && dst.is_contiguous()) {  // every dtype's +0 is all zero bits
    DeviceGuard guard(dst.device().index);
    MINIDL_CUDA_CHECK(
        cudaMemsetAsync(dst.data_ptr(), 0, dst.nbytes(), current_stream(dst.device().index)),
        "fill");
    return;
  }
  MINIDL_DISPATCH_ALL(dst.dtype(), "fill", [&] {
    using C = compute_t<scalar_t>;
    launch_elementwise<scalar_t>("fill", dst, Constant<C>{ConvertTo<C>{}(v)});
  });
}

}  // namespace minidl::cuda
