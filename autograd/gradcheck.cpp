#include "autograd/gradcheck.h"

#include <cmath>

#include "autograd/engine.h"
#include "core/grad_mode.h"
#include "core/ops.h"

namespace minidl {

GradcheckResult gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& fn,
                          const std::vector<Tensor>& inputs, GradcheckOptions opts) {
  for (const auto& x : inputs)
    MINIDL_CHECK(x.device().is_cpu() && (x.dtype() == kFloat64 || !x.requires_grad()), DTypeError,
                 "[gradcheck] inputs that require grad must be float64 CPU tensors, got {}",
                 describe(x));
  // Fresh leaves, so the caller's tensors and their .grad stay untouched.
  std::vector<Tensor> leaves;
  std::vector<size_t> diff;  // indices of inputs that require grad
  for (size_t i = 0; i < inputs.size(); ++i) {
    Tensor c = inputs[i].detach().clone();
    if (inputs[i].requires_grad()) {
      c.requires_grad_(true);
      diff.push_back(i);
    }
    leaves.push_back(c);
  }

  Tensor out = fn(leaves);
  MINIDL_CHECK(out.dtype() == kFloat64, DTypeError,
               "[gradcheck] the function must return float64, got {}", describe(out));
  const int64_t n_out = out.numel();
  std::vector<Tensor> diff_leaves;
  for (size_t i : diff) diff_leaves.push_back(leaves[i]);

  // Analytical Jacobian, one row (output element) at a time.
  std::vector<std::vector<std::vector<double>>> analytical(diff.size());
  for (int64_t j = 0; j < n_out; ++j) {
    Tensor seed = zeros(out.shape(), {.dtype = kFloat64});
    seed.data<double>()[j] = 1.0;
    std::vector<Tensor> g;
    if (out.requires_grad()) g = grad({out}, diff_leaves, {seed}, /*retain_graph=*/true);
    for (size_t k = 0; k < diff.size(); ++k) {
      const int64_t n_in = leaves[diff[k]].numel();
      analytical[k].push_back(k < g.size() && g[k].defined() ? g[k].contiguous().to_vector<double>()
                                                             : std::vector<double>(n_in, 0.0));
    }
  }

  // Numerical Jacobian by central differences, one column (input element) at a time.
  NoGradGuard no_grad;
  for (size_t k = 0; k < diff.size(); ++k) {
    std::vector<Tensor> args = leaves;
    Tensor x = leaves[diff[k]].detach().clone();
    args[diff[k]] = x;
    double* p = x.data<double>();
    for (int64_t e = 0; e < x.numel(); ++e) {
      const double orig = p[e];
      p[e] = orig + opts.eps;
      std::vector<double> plus = fn(args).contiguous().to_vector<double>();
      p[e] = orig - opts.eps;
      std::vector<double> minus = fn(args).contiguous().to_vector<double>();
      p[e] = orig;
      for (int64_t j = 0; j < n_out; ++j) {
        const double num = (plus[j] - minus[j]) / (2 * opts.eps);
        const double ana = analytical[k][j][e];
        if (!(std::abs(ana - num) <= opts.atol + opts.rtol * std::abs(num))) {
          return {false, fmt::format("gradcheck: input {} (shape {}), element {}, output element "
                                     "{}: analytical {:.10g} vs numerical {:.10g}",
                                     diff[k], shape_str(x.shape()), e, j, ana, num)};
        }
      }
    }
  }
  return {true, ""};
}

}  // namespace minidl
