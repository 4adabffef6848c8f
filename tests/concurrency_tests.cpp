// Concurrency: threads that share leaves requiring grad, forward and backward, eager and compiled,
// and the process-wide state on those paths (docs/api.md, "Thread safety"). Every case is named
// "concurrency: ..." so that the ThreadSanitizer job (tests/tsan.sh) selects them alone. The
// values are small integers and halves, so every float sum is exact: a gradient that lost or
// doubled one accumulation is caught exactly.
#include <algorithm>
#include <atomic>
#include <barrier>
#include <cmath>
#include <exception>
#include <functional>
#include <thread>
#include <vector>

#include "test_utils.h"

using namespace minidl;
using minidl::testing::test_devices;

namespace {

constexpr int kThreads = 4;

// Iterations per thread, times kRepeat: ThreadSanitizer sees a race in one overlap, a plain build
// needs the threads to collide, so it runs more of them.
#if defined(__SANITIZE_THREAD__)
constexpr int kRepeat = 1;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
constexpr int kRepeat = 1;
#else
constexpr int kRepeat = 20;
#endif
#else
constexpr int kRepeat = 20;
#endif

// Runs body(t) for t in [0, n) on n threads that start together; rethrows the first exception.
void run_threads(int n, const std::function<void(int)>& body) {
  std::barrier start(n);
  std::vector<std::exception_ptr> errors(static_cast<size_t>(n));
  std::vector<std::thread> threads;
  for (int t = 0; t < n; ++t)
    threads.emplace_back([&, t] {
      start.arrive_and_wait();
      try {
        body(t);
      } catch (...) {
        errors[static_cast<size_t>(t)] = std::current_exception();
      }
    });
  for (auto& th : threads) th.join();
  for (const auto& e : errors)
    if (e) std::rethrow_exception(e);
}

// True if every element of t equals v.
bool all_equal(const Tensor& t, double v) {
  for (double x : t.to_vector<double>())
    if (x != v) return false;
  return true;
}

}  // namespace

TEST_CASE("concurrency: threads share a leaf that requires grad, forward only") {
  for (Device dev : test_devices()) {
    CAPTURE(dev.str());
    Tensor w = full({16}, 1.5, {.device = dev, .requires_grad = true});
    constexpr int kIters = 200 * kRepeat;
    std::atomic<int> wrong{0};
    // Thread 0 runs under no_grad: grad mode is per thread, so it records no history while the
    // others do.
    run_threads(kThreads, [&](int t) {
      AutoGradMode mode(t != 0);
      for (int i = 0; i < kIters; ++i) {
        Tensor y = (w * 2.0 + 1.0).sum();
        if (y.item() != 16 * 4.0 || y.requires_grad() != (t != 0)) ++wrong;
      }
    });
    CHECK(wrong == 0);
    CHECK_FALSE(w.grad().defined());
  }
}

TEST_CASE("concurrency: threads run backward into one leaf; gradients accumulate exactly") {
  for (Device dev : test_devices()) {
    CAPTURE(dev.str());
    Tensor w = full({16}, 1.5, {.device = dev, .requires_grad = true});
    Tensor b = full({16}, 0.5, {.device = dev, .requires_grad = true});
    constexpr int kIters = 200 * kRepeat;
    std::atomic<int> writers{kThreads - 1}, bad_reads{0};
    // Threads 1.. run backward; thread 0 reads .grad meanwhile: each value it sees is a whole
    // number of accumulations, never a torn or freed tensor.
    run_threads(kThreads, [&](int t) {
      if (t == 0) {
        while (writers > 0) {
          Tensor g = w.grad();
          if (!g.defined()) continue;
          const std::vector<double> v = g.to_vector<double>();
          for (double x : v)
            if (x != v[0] || std::fmod(x, 2.5) != 0 || x > 2.5 * (kThreads - 1) * kIters)
              ++bad_reads;
        }
        return;
      }
      struct Done {  // also when a backward throws: the reader must not wait forever
        std::atomic<int>& n;
        ~Done() { --n; }
      } done{writers};
      for (int i = 0; i < kIters; ++i) {
        // w appears twice in the graph: its two contributions meet in the engine first.
        Tensor loss = (w * 2.0 + w * b).sum();
        loss.backward();
      }
    });
    CHECK(bad_reads == 0);
    // d/dw = 2 + b = 2.5, d/db = w = 1.5, per backward.
    CHECK(all_equal(w.grad(), 2.5 * (kThreads - 1) * kIters));
    CHECK(all_equal(b.grad(), 1.5 * (kThreads - 1) * kIters));
  }
}

TEST_CASE("concurrency: backward through one shared graph from several threads") {
  for (Device dev : test_devices()) {
    CAPTURE(dev.str());
    Tensor x = full({16}, 2.0, {.device = dev, .requires_grad = true});
    Tensor w = full({16}, 1.0, {.device = dev, .requires_grad = true});
    Tensor h = x * w;  // its node saves x and w; every thread's backward goes through it
    constexpr int kIters = 50 * kRepeat;
    run_threads(kThreads, [&](int) {
      for (int i = 0; i < kIters; ++i) (h * 3.0).sum().backward({}, /*retain_graph=*/true);
    });
    CHECK(all_equal(x.grad(), 3.0 * kThreads * kIters));
    CHECK(all_equal(w.grad(), 6.0 * kThreads * kIters));

    // Without retain_graph the first backward through h frees what h saved: each other thread
    // either got through before that or gets the usual error, never a crash or a partial grad.
    x.zero_grad();
    w.zero_grad();
    Tensor h2 = x * w;
    std::atomic<int> done{0}, refused{0};
    run_threads(kThreads, [&](int) {
      try {
        (h2 * 3.0).sum().backward();
        ++done;
      } catch (const ValueError&) {
        ++refused;
      }
    });
    CHECK(done + refused == kThreads);
    CHECK(done >= 1);
    CHECK(all_equal(x.grad(), 3.0 * done));
    CHECK(all_equal(w.grad(), 6.0 * done));
  }
}

TEST_CASE("concurrency: a compiled function closing over parameters, called from several threads") {
  for (Device dev : test_devices()) {
    CAPTURE(dev.str());
    Tensor w = full({8, 3}, 0.5, {.device = dev, .requires_grad = true});
    Tensor b = full({3}, 1.0, {.device = dev, .requires_grad = true});
    CompiledFunction f =
        compile([&](const std::vector<Tensor>& x) { return relu(matmul(x[0], w) + b).sum(); },
                {.name = "shared_linear", .check_graphs = true});
    Tensor x = ones({4, 8}, {.device = dev});
    constexpr int kIters = 50 * kRepeat;
    std::atomic<int> wrong{0};
    // The threads start together, so the first calls trace and compile concurrently too.
    run_threads(kThreads, [&](int) {
      for (int i = 0; i < kIters; ++i) {
        Tensor y = f.call1({x});
        if (y.item() != 4 * 3 * (8 * 0.5 + 1.0)) ++wrong;
        y.backward();
      }
    });
    CHECK(wrong == 0);
    // relu is active everywhere: dw[i][j] = sum of x over rows = 4, db[j] = 4, per call.
    CHECK(all_equal(w.grad(), 4.0 * kThreads * kIters));
    CHECK(all_equal(b.grad(), 4.0 * kThreads * kIters));
    CHECK(f.num_plans() == 1);
    const CompileStats s = f.stats();
    CHECK(s.calls == kThreads * kIters);
    CHECK(s.traces == 1);
    CHECK(s.cache_hits == kThreads * kIters - 1);
  }
}

TEST_CASE("concurrency: random draws and allocator counters shared by threads") {
  // Every draw takes its own range of the default generator's stream: the threads together
  // draw exactly the numbers one thread drawing as much would, none twice.
  constexpr int kDraws = 50, kN = 8;
  manual_seed(11);
  std::vector<std::vector<float>> drawn(kThreads);
  const int64_t allocated_before = memory_allocated();
  run_threads(kThreads, [&](int t) {
    for (int i = 0; i < kDraws; ++i) {
      const std::vector<float> v = randn({kN}).to_vector<float>();
      drawn[static_cast<size_t>(t)].insert(drawn[static_cast<size_t>(t)].end(), v.begin(), v.end());
    }
  });
  CHECK(memory_allocated() == allocated_before);
  std::vector<float> all;
  for (const auto& d : drawn) all.insert(all.end(), d.begin(), d.end());
  manual_seed(11);
  std::vector<float> one;
  for (int i = 0; i < kThreads * kDraws; ++i) {
    const std::vector<float> v = randn({kN}).to_vector<float>();
    one.insert(one.end(), v.begin(), v.end());
  }
  std::sort(all.begin(), all.end());
  std::sort(one.begin(), one.end());
  CHECK(all == one);
}
