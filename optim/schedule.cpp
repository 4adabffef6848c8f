#include "optim/schedule.h"

#include <cmath>
#include <numbers>

#include "base/error.h"

namespace minidl::optim {

CosineSchedule::CosineSchedule(double max_lr, int64_t warmup_steps, int64_t total_steps, double min_lr)
    : max_lr_(max_lr), min_lr_(min_lr), warmup_(warmup_steps), total_(total_steps) {
  MINIDL_CHECK(warmup_steps >= 0 && total_steps > warmup_steps, ValueError,
               "[CosineSchedule] need 0 <= warmup_steps < total_steps, got {} and {}", warmup_steps,
               total_steps);
  MINIDL_CHECK(min_lr >= 0 && max_lr >= min_lr, ValueError,
               "[CosineSchedule] need 0 <= min_lr <= max_lr, got {} and {}", min_lr, max_lr);
}

double CosineSchedule::operator()(int64_t step) const {
  MINIDL_CHECK(step >= 0, ValueError, "[CosineSchedule] step must be >= 0, got {}", step);
  if (step < warmup_) return max_lr_ * static_cast<double>(step + 1) / static_cast<double>(warmup_);
  if (step >= total_) return min_lr_;
  const double progress = static_cast<double>(step - warmup_) / static_cast<double>(total_ - warmup_);
  return min_lr_ + 0.5 * (max_lr_ - min_lr_) * (1.0 + std::cos(std::numbers::pi * progress));
}

}  // namespace minidl::optim
