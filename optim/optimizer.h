// Optimizers: SGD (momentum, weight decay) and AdamW (decoupled weight decay, bias correction),
// with PyTorch's update rules. Updates run under NoGradGuard and write the parameters in place
// (Tensor::copy_), so modules and any other holder of a parameter see the new values.
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor.h"

namespace minidl::optim {

/// What every optimizer has: parameters, a learning rate, step() and zero_grad().
class Optimizer {
 public:
  virtual ~Optimizer() = default;
  /// Updates every parameter that has a gradient; parameters without one are left alone.
  virtual void step() = 0;
  /// Drops every parameter's gradient.
  void zero_grad();
  /// The learning rate of the next step.
  double lr() const { return lr_; }
  /// Sets the learning rate for the following steps (what a schedule calls).
  void set_lr(double lr);
  /// The parameters this optimizer updates.
  const std::vector<Tensor>& params() const { return params_; }

 protected:
  /// Checks that each parameter is a floating leaf that requires grad; `name` goes in errors.
  Optimizer(std::vector<Tensor> params, double lr, const char* name);

  std::vector<Tensor> params_;
  double lr_;
  const char* name_;
};

/// Options of SGD (PyTorch's defaults, without dampening and Nesterov).
struct SGDOptions {
  double lr = 0.01;
  double momentum = 0.0;
  double weight_decay = 0.0;  // L2: added to the gradient
};

/// Stochastic gradient descent: g = grad + wd*p; buf = momentum*buf + g (buf = g at first);
/// p -= lr * (momentum ? buf : g).
class SGD : public Optimizer {
 public:
  /// Optimizes `params` (floating leaves that require grad).
  SGD(std::vector<Tensor> params, SGDOptions options = {});
  void step() override;

 private:
  SGDOptions options_;
  std::vector<Tensor> momentum_;  // one buffer per parameter, created at its first step
};

/// Options of AdamW (PyTorch's defaults).
struct AdamWOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 1e-2;  // decoupled: p *= 1 - lr*wd before the Adam update
};

/// Adam with decoupled weight decay (Loshchilov & Hutter): p *= 1 - lr*wd; m, v moving averages
/// of g and g²; p -= lr/(1-β1^t) * m / (sqrt(v)/sqrt(1-β2^t) + eps).
class AdamW : public Optimizer {
 public:
  /// Optimizes `params` (floating leaves that require grad).
  AdamW(std::vector<Tensor> params, AdamWOptions options = {});
  void step() override;

 private:
  AdamWOptions options_;
  std::vector<Tensor> m_, v_;   // first and second moments, created at a parameter's first step
  std::vector<int64_t> steps_;  // steps taken by each parameter (for bias correction)
};

/// Scales all gradients together so that their global L2 norm is at most max_norm, as
/// PyTorch's clip_grad_norm_. Returns the norm before clipping. Parameters without a
/// gradient are skipped.
double clip_grad_norm(const std::vector<Tensor>& params, double max_norm);

}  // namespace minidl::optim
