// Learning-rate schedules.
#pragma once

#include <cstdint>

namespace minidl::optim {

/// Linear warm-up then cosine decay (GPT-2/nanoGPT style): for step < warmup the rate rises
/// linearly, reaching max_lr at step warmup-1; from warmup to total it follows half a cosine
/// from max_lr down to min_lr, and stays at min_lr after total.
class CosineSchedule {
 public:
  CosineSchedule(double max_lr, int64_t warmup_steps, int64_t total_steps, double min_lr = 0.0);
  /// The learning rate for a step (0-based).
  double operator()(int64_t step) const;

 private:
  double max_lr_, min_lr_;
  int64_t warmup_, total_;
};

}  // namespace minidl::optim
