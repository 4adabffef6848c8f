#include "nn/init.h"

#include "core/grad_mode.h"
#include "core/ops.h"

namespace minidl::nn {

namespace {
Options like(const Tensor& t) { return {.dtype = t.dtype(), .device = t.device()}; }
}  // namespace

void init_normal_(Tensor& t, double std, double mean) {
  NoGradGuard no_grad;
  t.copy_(randn(t.shape(), like(t)) * std + mean);
}

void init_uniform_(Tensor& t, double lo, double hi) {
  MINIDL_CHECK(lo <= hi, ValueError, "[init_uniform_] empty range [{}, {})", lo, hi);
  NoGradGuard no_grad;
  t.copy_(rand(t.shape(), like(t)) * (hi - lo) + lo);
}

void init_constant_(Tensor& t, double value) {
  NoGradGuard no_grad;
  t.fill_(value);
}

}  // namespace minidl::nn
