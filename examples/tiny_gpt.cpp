// tiny_gpt: a small GPT learns to sort digit strings, e.g. "3 9 1 4 1 0 7 2 =" -> "0 1 1 2 3 4 7 9".
// The data is generated in code; the test strings are held out of training. Training prints
// progress, scores greedy decoding on the held-out strings (exact-sequence accuracy) and saves a
// safetensors checkpoint; --eval loads a checkpoint and scores it again.
//
//   build/examples/tiny_gpt --out sort.safetensors     # train (about a minute on a CPU)
//   build/examples/tiny_gpt --eval sort.safetensors    # reload, score, print samples
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <optional>
#include <random>
#include <map>
#include <set>
#include <string>

#include "example_args.h"
#include "minidl/minidl.h"
#include "nn/nn.h"
#include "optim/optim.h"

using namespace minidl;

namespace {

constexpr int64_t kSep = 10;    // token after the input digits; digits are tokens 0-9
constexpr int64_t kVocab = 11;

// A sequence is the input digits, kSep, then the same digits sorted: 2 * length + 1 tokens.
using Digits = std::vector<int64_t>;

Digits random_digits(std::mt19937& rng, int64_t length) {
  std::uniform_int_distribution<int64_t> digit(0, 9);
  Digits d(static_cast<size_t>(length));
  for (auto& x : d) x = digit(rng);
  return d;
}

Digits sorted(Digits d) {
  std::sort(d.begin(), d.end());
  return d;
}

struct Task {
  int64_t length;
  std::set<Digits> held_out;
  std::vector<Digits> test;

  Task(int64_t len, int64_t n_test) : length(len) {
    std::mt19937 rng(1234);
    while (static_cast<int64_t>(test.size()) < n_test) {
      Digits d = random_digits(rng, length);
      if (held_out.insert(d).second) test.push_back(d);
    }
  }

  /// A training batch: inputs (B, 2L) and next-token targets (B, 2L), with -100 (ignored by
  /// cross_entropy) where the target is an input digit rather than part of the answer.
  std::pair<Tensor, Tensor> batch(std::mt19937& rng, int64_t b, Device device) const {
    const int64_t T = 2 * length;
    std::vector<int64_t> x, y;
    for (int64_t i = 0; i < b; ++i) {
      Digits d;
      do d = random_digits(rng, length);
      while (held_out.count(d));
      Digits seq = d;
      seq.push_back(kSep);
      for (int64_t v : sorted(d)) seq.push_back(v);
      for (int64_t t = 0; t < T; ++t) {
        x.push_back(seq[t]);
        y.push_back(t >= length ? seq[t + 1] : -100);
      }
    }
    return {from_vector(x, {b, T}, {.dtype = kInt64, .device = device}),
            from_vector(y, {b, T}, {.dtype = kInt64, .device = device})};
  }
};

std::string show(const Digits& d) {
  std::string s;
  for (int64_t v : d) s += static_cast<char>('0' + v);
  return s;
}

/// Greedy-decodes every held-out string; returns the fraction sorted exactly and prints samples.
double evaluate(nn::GPT& model, const Task& task, Device device, int64_t n_samples) {
  model.eval();
  NoGradGuard no_grad;
  const int64_t L = task.length, n = static_cast<int64_t>(task.test.size()), chunk = 500;
  int64_t correct = 0;
  for (int64_t start = 0; start < n; start += chunk) {
    const int64_t b = std::min(chunk, n - start);
    std::vector<int64_t> prompt;
    for (int64_t i = start; i < start + b; ++i) {
      for (int64_t v : task.test[i]) prompt.push_back(v);
      prompt.push_back(kSep);
    }
    const Tensor out = model.generate(from_vector(prompt, {b, L + 1}, {.dtype = kInt64, .device = device}), L);
    const std::vector<int64_t> ids = out.slice(1, L + 1, 2 * L + 1).to_vector<int64_t>();
    for (int64_t i = 0; i < b; ++i) {
      const Digits& input = task.test[start + i];
      const Digits got(ids.begin() + i * L, ids.begin() + (i + 1) * L), want = sorted(input);
      correct += got == want;
      if (start + i < n_samples)
        std::printf("  %s -> %s %s\n", show(input).c_str(), show(got).c_str(),
                    got == want ? "ok" : ("(want " + show(want) + ")").c_str());
    }
  }
  model.train();
  return static_cast<double>(correct) / static_cast<double>(n);
}

nn::GPTConfig config_for(int64_t length, int64_t layers, int64_t embd, int64_t heads) {
  return {.vocab_size = kVocab, .block_size = 2 * length, .n_layer = layers, .n_head = heads, .n_embd = embd};
}

// The checkpoint records what is needed to rebuild the model.
std::map<std::string, std::string> metadata_for(const nn::GPTConfig& c, int64_t length) {
  return {{"task", "sort"},
          {"length", std::to_string(length)},
          {"n_layer", std::to_string(c.n_layer)},
          {"n_embd", std::to_string(c.n_embd)},
          {"n_head", std::to_string(c.n_head)}};
}

int64_t metadata_int(const std::map<std::string, std::string>& m, const std::string& key, const std::string& path) {
  const auto it = m.find(key);
  char* end = nullptr;
  const long long v = it == m.end() ? 0 : std::strtoll(it->second.c_str(), &end, 10);
  MINIDL_CHECK(it != m.end() && !it->second.empty() && *end == '\0' && v > 0, ValueError,
               "[tiny_gpt] '{}' is not a tiny_gpt checkpoint: metadata '{}' is missing or invalid",
               path, key);
  return v;
}

int run_eval(const std::string& path, Device device, int64_t n_test, int64_t n_samples) {
  const nn::SafeTensors file = nn::load_safetensors(path);
  const auto& meta = file.metadata;
  MINIDL_CHECK(meta.count("task") && meta.at("task") == "sort", ValueError,
               "[tiny_gpt] '{}' is not a tiny_gpt checkpoint (no task=sort metadata)", path);
  const int64_t length = metadata_int(meta, "length", path);
  nn::GPT model(config_for(length, metadata_int(meta, "n_layer", path), metadata_int(meta, "n_embd", path),
                           metadata_int(meta, "n_head", path)));
  model.load_state_dict(file.tensors);
  model.to(device);
  const Task task(length, n_test);
  std::printf("tiny_gpt: loaded %s (%lld parameters), sorting %lld held-out strings of %lld digits on %s\n",
              path.c_str(), static_cast<long long>(model.num_parameters()), static_cast<long long>(n_test),
              static_cast<long long>(length), device.str().c_str());
  const double acc = evaluate(model, task, device, n_samples);
  std::printf("held-out exact-sequence accuracy: %.2f%%\n", 100 * acc);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args args("tiny_gpt", "Trains a tiny GPT to sort digit strings, or evaluates a saved one.");
  args.option("device", "cpu", "cpu or cuda")
      .option("steps", "500", "training steps")
      .option("batch", "64", "sequences per step")
      .option("lr", "0.01", "peak learning rate (AdamW, warm-up then cosine decay)")
      .option("length", "8", "digits per string")
      .option("layers", "2", "transformer blocks")
      .option("embd", "32", "embedding width")
      .option("heads", "2", "attention heads")
      .option("test", "1000", "held-out strings to score")
      .option("samples", "5", "held-out samples to print")
      .option("seed", "0", "seed for initialisation and training data")
      .option("out", "tiny_gpt.safetensors", "checkpoint written after training")
      .option("eval", "", "evaluate the checkpoint at PATH instead of training", "PATH")
      .flag("compile", "train through minidl::compile (fused attention, fused elementwise groups)");
  args.parse(argc, argv);
  const int64_t n_test = args.integer("test", 1), n_samples = args.integer("samples", 0);

  try {
    const Device device = args.device();
    if (!args.str("eval").empty()) return run_eval(args.str("eval"), device, n_test, n_samples);

    const int64_t steps = args.integer("steps", 1), batch = args.integer("batch", 1),
                  length = args.integer("length", 1);
    const double lr = args.number("lr");
    const uint64_t seed = static_cast<uint64_t>(args.integer("seed"));
    manual_seed(seed);
    std::mt19937 rng(static_cast<uint32_t>(seed));
    const Task task(length, n_test);
    const nn::GPTConfig config =
        config_for(length, args.integer("layers", 1), args.integer("embd", 1), args.integer("heads", 1));
    nn::GPT model(config);
    model.to(device);
    optim::AdamW opt(model.parameters(), {.lr = lr, .beta2 = 0.99, .weight_decay = 0.01});
    const optim::CosineSchedule schedule(lr, std::max<int64_t>(1, steps / 20), steps, lr / 10);
    std::printf("tiny_gpt: sorting %lld-digit strings; GPT with %lld layers, %lld heads, width %lld "
                "(%lld parameters) on %s\n",
                static_cast<long long>(length), static_cast<long long>(config.n_layer),
                static_cast<long long>(config.n_head), static_cast<long long>(config.n_embd),
                static_cast<long long>(model.num_parameters()), device.str().c_str());

    // The loss as one function of (tokens, targets); the model's parameters, read from the
    // closure, become inputs of the compiled plan and receive gradients (compiler/compile.h).
    auto loss_fn = [&model](const std::vector<Tensor>& in) {
      return cross_entropy(model.forward(in[0]).reshape({-1, kVocab}), in[1].reshape({-1}));
    };
    std::optional<CompiledFunction> compiled;
    if (args.enabled("compile")) compiled = compile(loss_fn, {.name = "tiny_gpt_loss"});

    const auto t0 = std::chrono::steady_clock::now();
    auto last = t0;
    int64_t tokens_since = 0;
    for (int64_t step = 0; step < steps; ++step) {
      opt.set_lr(schedule(step));
      const auto [x, y] = task.batch(rng, batch, device);
      const Tensor loss = compiled ? compiled->call1({x, y}) : loss_fn({x, y});
      opt.zero_grad();
      loss.backward();
      optim::clip_grad_norm(model.parameters(), 1.0);
      opt.step();
      tokens_since += x.numel();
      if (step % 100 == 0 || step == steps - 1) {
        const auto now = std::chrono::steady_clock::now();
        const double dt = std::chrono::duration<double>(now - last).count();
        std::printf("step %5lld | loss %.4f | lr %.2e | %7.0f tokens/s | %6.1fs\n",
                    static_cast<long long>(step), loss.item(), opt.lr(),
                    static_cast<double>(tokens_since) / std::max(dt, 1e-9),
                    std::chrono::duration<double>(now - t0).count());
        std::fflush(stdout);
        last = now;
        tokens_since = 0;
      }
    }

    if (compiled)
      std::printf("compiled: %lld plan(s) for %lld calls; %zu fused_attention nodes forward, %zu backward, "
                  "%zu fusion groups\n",
                  static_cast<long long>(compiled->stats().traces), static_cast<long long>(compiled->stats().calls),
                  compiled->plan().forward.count("fused_attention"),
                  compiled->plan().backward.graph.count("fused_attention_backward"),
                  compiled->plan().fusion_summary().size());
    const double acc = evaluate(model, task, device, n_samples);
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("held-out exact-sequence accuracy: %.2f%% (%lld strings), %.1fs in all\n", 100 * acc,
                static_cast<long long>(n_test), elapsed);
    nn::save_safetensors(args.str("out"), model.state_dict(), metadata_for(config, length));
    std::printf("saved %s\n", args.str("out").c_str());
    return 0;
  } catch (const Error& e) {
    std::fprintf(stderr, "tiny_gpt: %s\n", e.what());
    return 1;
  }
}
