#include "core/cpu/kernels.h"

#include "core/cpu/loops.h"

namespace minidl::cpu {

Strides byte_strides(const Tensor& t) { return broadcast_byte_strides(t, t.shape()); }

namespace {

template <class Out, class In>
Out convert_one(In x) {
  if constexpr (std::is_same_v<Out, bool>) {
    return static_cast<compute_t<In>>(x) != compute_t<In>(0);
  } else {
    return Out(static_cast<compute_t<Out>>(static_cast<compute_t<In>>(x)));
  }
}

}  // namespace

void convert(const Tensor& dst, const Tensor& src) {
  LoopOperands<2> ops{{static_cast<char*>(dst.data_ptr()), static_cast<char*>(src.data_ptr())},
                      {byte_strides(dst), broadcast_byte_strides(src, dst.shape())}};
  MINIDL_DISPATCH_ALL(dst.dtype(), "copy", [&] {
    using Out = scalar_t;
    MINIDL_DISPATCH_ALL(src.dtype(), "copy", [&] {
      using In = scalar_t;
      for_each_run<2>(dst.shape(), ops, 1, [](const std::array<char*, 2>& p, int64_t n,
                                              const std::array<int64_t, 2>& s) {
        if (s[0] == sizeof(Out) && s[1] == sizeof(In)) {
          Out* o = reinterpret_cast<Out*>(p[0]);
          const In* x = reinterpret_cast<const In*>(p[1]);
          for (int64_t i = 0; i < n; ++i) o[i] = convert_one<Out>(x[i]);
        } else {
          for (int64_t i = 0; i < n; ++i)
            *reinterpret_cast<Out*>(p[0] + i * s[0]) =
                convert_one<Out>(*reinterpret_cast<const In*>(p[1] + i * s[1]));
        }
      });
    });
  });
}

void fill(const Tensor& dst, double v) {
  LoopOperands<1> ops{{static_cast<char*>(dst.data_ptr())}, {byte_strides(dst)}};
  MINIDL_DISPATCH_ALL(dst.dtype(), "fill", [&] {
    const scalar_t value = convert_one<scalar_t>(v);
    for_each_run<1>(dst.shape(), ops, 1,
                    [&](const std::array<char*, 1>& p, int64_t n, const std::array<int64_t, 1>& s) {
                      for (int64_t i = 0; i < n; ++i) *reinterpret_cast<scalar_t*>(p[0] + i * s[0]) = value;
                    });
  });
}

}  // namespace minidl::cpu
