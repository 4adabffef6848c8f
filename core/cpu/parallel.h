// Parallel loops for CPU kernels (OpenMP underneath). Work below the grain size runs on the
// calling thread, where threading would cost more than it saves.
#pragma once

#include <cstdint>
#include <functional>

namespace minidl::cpu {

/// Number of threads CPU kernels use (OMP_NUM_THREADS, else the core count).
int num_threads();

/// Calls f(begin, end) over chunks of [0, n), in parallel when n * cost_per_item is large.
/// cost_per_item is a rough count of operations per index.
void parallel_for(int64_t n, int64_t cost_per_item, const std::function<void(int64_t, int64_t)>& f);

}  // namespace minidl::cpu
