#include "optim/optimizer.h"

#include <cmath>

#include "core/grad_mode.h"
#include "core/ops.h"

namespace minidl::optim {

// ---- Optimizer

Optimizer::Optimizer(std::vector<Tensor> params, double lr, const char* name)
    : params_(std::move(params)), lr_(lr), name_(name) {
  set_lr(lr);
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor& p = params_[i];
    MINIDL_CHECK(p.defined() && p.is_leaf() && p.requires_grad(), ValueError,
                 "[{}] parameter {} ({}) must be a leaf tensor that requires grad", name_, i,
                 describe(p));
  }
}

void Optimizer::set_lr(double lr) {
  MINIDL_CHECK(lr >= 0 && std::isfinite(lr), ValueError, "[{}] invalid learning rate {}", name_, lr);
  lr_ = lr;
}

void Optimizer::zero_grad() {
  for (const Tensor& p : params_) p.zero_grad();
}

// ---- SGD

SGD::SGD(std::vector<Tensor> params, SGDOptions o)
    : Optimizer(std::move(params), o.lr, "SGD"), options_(o), momentum_(params_.size()) {
  MINIDL_CHECK(o.momentum >= 0 && o.momentum < 1, ValueError, "[SGD] momentum must be in [0, 1), got {}",
               o.momentum);
  MINIDL_CHECK(o.weight_decay >= 0, ValueError, "[SGD] weight_decay must be >= 0, got {}", o.weight_decay);
}

void SGD::step() {
  NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) {
    Tensor& p = params_[i];
    Tensor g = p.grad();
    if (!g.defined()) continue;
    if (options_.weight_decay != 0) g = g + p * options_.weight_decay;
    if (options_.momentum != 0) {
      Tensor& buf = momentum_[i];
      if (!buf.defined()) buf = g.clone();
      else buf.copy_(buf * options_.momentum + g);
      g = buf;
    }
    p.copy_(p - g * lr_);
  }
}

// ---- AdamW

AdamW::AdamW(std::vector<Tensor> params, AdamWOptions o)
    : Optimizer(std::move(params), o.lr, "AdamW"),
      options_(o),
      m_(params_.size()),
      v_(params_.size()),
      steps_(params_.size(), 0) {
  MINIDL_CHECK(o.beta1 >= 0 && o.beta1 < 1 && o.beta2 >= 0 && o.beta2 < 1, ValueError,
               "[AdamW] betas must be in [0, 1), got ({}, {})", o.beta1, o.beta2);
  MINIDL_CHECK(o.eps > 0, ValueError, "[AdamW] eps must be > 0, got {}", o.eps);
  MINIDL_CHECK(o.weight_decay >= 0, ValueError, "[AdamW] weight_decay must be >= 0, got {}", o.weight_decay);
}

void AdamW::step() {
  NoGradGuard no_grad;
  const double b1 = options_.beta1, b2 = options_.beta2;
  for (size_t i = 0; i < params_.size(); ++i) {
    Tensor& p = params_[i];
    const Tensor g = p.grad();
    if (!g.defined()) continue;
    if (!m_[i].defined()) m_[i] = zeros_like(p), v_[i] = zeros_like(p);
    const double t = static_cast<double>(++steps_[i]);
    if (options_.weight_decay != 0) p.copy_(p * (1.0 - lr_ * options_.weight_decay));
    m_[i].copy_(m_[i] * b1 + g * (1.0 - b1));
    v_[i].copy_(v_[i] * b2 + g * g * (1.0 - b2));
    const double bc1 = 1.0 - std::pow(b1, t), bc2 = 1.0 - std::pow(b2, t);
    const Tensor denom = sqrt(v_[i]) * (1.0 / std::sqrt(bc2)) + options_.eps;
    p.copy_(p - m_[i] / denom * (lr_ / bc1));
  }
}

// ---- clip_grad_norm

double clip_grad_norm(const std::vector<Tensor>& params, double max_norm) {
  MINIDL_CHECK(max_norm > 0, ValueError, "[clip_grad_norm] max_norm must be > 0, got {}", max_norm);
  NoGradGuard no_grad;
  Tensor total;  // sum of squares, accumulated on the gradients' device: one sync at the end
  for (const Tensor& p : params) {
    const Tensor g = p.grad();
    if (!g.defined()) continue;
    const Tensor gf = g.dtype() == kFloat64 ? g : g.to(kFloat32);
    const Tensor sq = sum(gf * gf);
    total = total.defined() ? total + sq.to(total.dtype()) : sq;
  }
  if (!total.defined()) return 0.0;
  const double norm = std::sqrt(total.item());
  if (norm > max_norm) {
    const double scale = max_norm / (norm + 1e-6);
    for (const Tensor& p : params) {
      Tensor g = p.grad();
      if (g.defined()) g.copy_(g * scale);
    }
  }
  return norm;
}

}  // namespace minidl::optim
