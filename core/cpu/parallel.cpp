#include "core/cpu/parallel.h"

#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <exception>

namespace minidl::cpu {

namespace {

// NOTE [Threads on a busy machine]
// A parallel region ends at a barrier, so it is as slow as its slowest thread; on a machine with
// more runnable threads than cores (a shared box, CI next to a build) a descheduled worker stalls
// every region, and small models ran 5-8x slower with two threads than with one. OpenMP's
// dynamic mode sizes each team to the cores the load average leaves idle, so minidl turns it on
// unless the user chose: OMP_DYNAMIC or OMP_NUM_THREADS set in the environment wins.
void use_dynamic_teams() {
  thread_local const bool done = [] {
    if (!std::getenv("OMP_DYNAMIC") && !std::getenv("OMP_NUM_THREADS")) omp_set_dynamic(1);
    return true;
  }();
  (void)done;
}

}  // namespace

int num_threads() { return omp_get_max_threads(); }

void parallel_for(int64_t n, int64_t cost_per_item,
                  const std::function<void(int64_t, int64_t)>& f) {
  if (n <= 0) return;
  constexpr int64_t kGrain = 32768;  // operations below which one thread is faster
  const int64_t threads = std::min<int64_t>(num_threads(), n);
  if (threads <= 1 || n * std::max<int64_t>(cost_per_item, 1) < kGrain || omp_in_parallel()) {
    f(0, n);
    return;
  }
  use_dynamic_teams();
  // An exception must not escape an OpenMP region: keep the first and rethrow it after.
  std::exception_ptr error;
#pragma omp parallel num_threads(static_cast<int>(threads))
  {
    const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
    const int64_t begin = n * t / nt, end = n * (t + 1) / nt;
    try {
      if (begin < end) f(begin, end);
    } catch (...) {
#pragma omp critical(minidl_parallel_error)
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace minidl::cpu
