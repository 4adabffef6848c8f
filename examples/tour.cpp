// A tour of minidl's C++ API: tensors, ops, autograd, errors, devices and memory statistics.
// docs/api.md walks through it. Build and run: ninja -C build tour && build/examples/tour
#include <minidl/minidl.h>

#include <cstdio>
#include <iostream>

using namespace minidl;

int main() {
  // ---- Tensors: factories, dtypes, printing
  Tensor a = from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3});  // float32 by default
  std::cout << "a = " << a << "\n";
  std::cout << "a is " << describe(a) << "; a.sum() = " << a.sum().item() << "\n";
  Tensor h = ones({2, 2}, {.dtype = kBFloat16});
  std::cout << "h = " << h << "\n";
  Generator gen(42);  // a seeded stream: the same numbers on every run and device
  Tensor noise = randn({2, 3}, {}, &gen);

  // ---- Ops: broadcasting, views that share storage, reductions, row ops
  Tensor b = a + from_vector<float>({10, 20, 30});  // (2, 3) + (3,) broadcasts
  Tensor at = a.t();                                // a view: no copy, strides (1, 3)
  std::cout << "b = " << b << "\n";
  std::cout << "a.t() strides: (" << at.strides()[0] << ", " << at.strides()[1] << ")\n";
  std::cout << "a @ a.t() = " << matmul(a, at) << "\n";
  std::cout << "row maxima: " << max(a, {1}) << ", softmax(a)[0]: " << softmax(a, -1).select(0, 0)
            << "\n";
  std::cout << "column means of a + noise: " << (a + noise).mean({0}) << "\n";

  // ---- Autograd: fit y = 2x - 1 with a linear model and plain SGD
  Tensor x = randn({64, 1}, {}, &gen);
  Tensor y = 2.0 * x - 1.0;
  Tensor w = zeros({1, 1}, {.requires_grad = true});
  Tensor bias = zeros({1}, {.requires_grad = true});
  for (int step = 0; step < 200; ++step) {
    Tensor loss = mean(pow(matmul(x, w) + bias - y, 2.0));
    loss.backward();  // fills w.grad() and bias.grad()
    {
      NoGradGuard no_grad;  // the update itself is not part of the graph
      w.copy_(w - 0.1 * w.grad());
      bias.copy_(bias - 0.1 * bias.grad());
    }
    w.zero_grad();
    bias.zero_grad();
    if (step % 50 == 0) std::printf("step %3d  loss %.6f\n", step, loss.item());
  }
  std::printf("w = %.4f, b = %.4f\n", w.item(), bias.item());

  // ---- Errors: minidl::Error subclasses whose message names the op and the shapes
  try {
    matmul(a, a);
  } catch (const ShapeError& e) {
    std::cout << "ShapeError: " << e.what() << "\n";
  }

  // ---- Devices: the same code on a GPU where one is usable
  const Device dev = cuda::is_available() ? kCUDA : kCPU;
  Tensor g = a.to(dev);
  std::cout << "on " << dev.str() << ": (2a).sum() = " << (g * 2.0).sum().item() << "\n";
  if (!cuda::is_available()) std::cout << "(no GPU: " << cuda::unavailable_reason() << ")\n";

  // ---- Memory: every tensor's bytes are counted by its device's allocator
  reset_peak_memory_stats();
  const int64_t before = memory_allocated();
  {
    Tensor big = zeros({1024, 1024});  // 4 MiB, freed at the end of the scope
  }
  std::cout << "peak grew by " << format_bytes(max_memory_allocated() - before) << "; "
            << memory_allocated() - before << " bytes of it still held\n";
  return 0;
}
