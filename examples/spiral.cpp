// spiral: an MLP classifier on three interleaved 2-D spirals (CS231n's toy problem), trained
// full-batch with AdamW and a cosine schedule, then scored on points it has never seen.
//
//   build/examples/spiral                  # 600 full-batch steps, seconds on a CPU
//   build/examples/spiral --device cuda --steps 3000
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <random>

#include "example_args.h"
#include "minidl/minidl.h"
#include "nn/nn.h"
#include "optim/optim.h"

using namespace minidl;

namespace {

constexpr int64_t kClasses = 3;

struct Dataset {
  Tensor x;  // (N, 2) float32
  Tensor y;  // (N,) int64 class ids
};

// n points per class along arm k: radius r in [0, 1], angle 4k + 4r plus Gaussian noise.
Dataset make_spirals(int64_t n, uint32_t seed, Device device) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> noise(0.0f, 0.2f);
  std::vector<float> xs;
  std::vector<int64_t> ys;
  for (int64_t k = 0; k < kClasses; ++k) {
    for (int64_t i = 0; i < n; ++i) {
      const float r = static_cast<float>(i + 1) / static_cast<float>(n);
      const float t = 4.0f * static_cast<float>(k) + 4.0f * r + noise(rng);
      xs.push_back(r * std::sin(t));
      xs.push_back(r * std::cos(t));
      ys.push_back(k);
    }
  }
  const int64_t total = n * kClasses;
  return {from_vector(xs, {total, 2}, {.device = device}), from_vector(ys, {total}, {.dtype = kInt64, .device = device})};
}

// The model, written as a module: two hidden ReLU layers and a linear head. (nn::MLP({2, hidden,
// hidden, 3}) builds the same network in one line.)
class Classifier : public nn::Module {
 public:
  Classifier(int64_t hidden, int64_t classes) : Module("Classifier") {
    fc1 = register_module("fc1", std::make_shared<nn::Linear>(2, hidden));
    fc2 = register_module("fc2", std::make_shared<nn::Linear>(hidden, hidden));
    head = register_module("head", std::make_shared<nn::Linear>(hidden, classes));
  }

  Tensor forward(const Tensor& x) override {
    const Tensor h = relu(fc2->forward(relu(fc1->forward(x))));
    return head->forward(h);  // logits (N, classes)
  }

 private:
  std::shared_ptr<nn::Linear> fc1, fc2, head;
};

double accuracy(const Tensor& logits, const Tensor& y) {
  return eq(argmax(logits, 1), y).to(kFloat32).mean().item();
}

}  // namespace

int main(int argc, char** argv) {
  Args args("spiral", "Trains an MLP to classify points of three interleaved spirals.");
  args.option("device", "cpu", "cpu or cuda")
      .option("steps", "600", "training steps (full batch)")
      .option("lr", "0.01", "peak learning rate (AdamW, cosine schedule with warm-up)")
      .option("hidden", "64", "width of the two hidden layers")
      .option("seed", "0", "seed for the model's initialisation");
  args.parse(argc, argv);
  const int64_t steps = args.integer("steps", 1), hidden = args.integer("hidden", 1);
  const double lr = args.number("lr");

  try {
    const Device device = args.device();
    manual_seed(static_cast<uint64_t>(args.integer("seed")));
    const Dataset train = make_spirals(500, 1, device), test = make_spirals(500, 2, device);

    auto model = std::make_shared<Classifier>(hidden, kClasses);
    model->to(device);
    optim::AdamW opt(model->parameters(), {.lr = lr, .weight_decay = 1e-4});
    const optim::CosineSchedule schedule(lr, steps / 20, steps, lr / 20);
    std::printf("spiral: %lld train / %lld test points, classifier with %lld parameters on %s\n",
                static_cast<long long>(train.x.size(0)), static_cast<long long>(test.x.size(0)),
                static_cast<long long>(model->num_parameters()), device.str().c_str());

    const auto t0 = std::chrono::steady_clock::now();
    auto last = t0;
    int64_t samples_since = 0;
    for (int64_t step = 0; step < steps; ++step) {
      opt.set_lr(schedule(step));
      const Tensor logits = model->forward(train.x);
      const Tensor loss = cross_entropy(logits, train.y);
      opt.zero_grad();
      loss.backward();
      opt.step();
      samples_since += train.x.size(0);
      if (step % 100 == 0 || step == steps - 1) {
        const double loss_value = loss.item();  // waits for the step to finish
        const auto now = std::chrono::steady_clock::now();
        const double dt = std::chrono::duration<double>(now - last).count();
        std::printf("step %5lld | loss %.4f | train acc %5.1f%% | lr %.2e | %7.0f samples/s | %6.1fs\n",
                    static_cast<long long>(step), loss_value, 100 * accuracy(logits, train.y), opt.lr(),
                    static_cast<double>(samples_since) / std::max(dt, 1e-9),
                    std::chrono::duration<double>(now - t0).count());
        std::fflush(stdout);
        last = now;
        samples_since = 0;
      }
    }

    model->eval();
    NoGradGuard no_grad;
    const double test_acc = accuracy(model->forward(test.x), test.y);
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("held-out accuracy: %.1f%% (%lld points) after %.1fs\n", 100 * test_acc,
                static_cast<long long>(test.x.size(0)), elapsed);
    return test_acc >= 0.95 ? 0 : 1;
  } catch (const Error& e) {
    std::fprintf(stderr, "spiral: %s\n", e.what());
    return 1;
  }
}
