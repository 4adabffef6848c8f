// The compiler on a model written with minidl::nn: the GPT's attention fuses, and training
// through the compiled loss follows the eager loss curve.
#include <doctest/doctest.h>

#include "minidl/minidl.h"
#include "nn/nn.h"
#include "optim/optim.h"

using namespace minidl;

namespace {

nn::GPTConfig small_config() {
  nn::GPTConfig c;
  c.vocab_size = 12;
  c.block_size = 10;
  c.n_layer = 2;
  c.n_head = 2;
  c.n_embd = 16;
  return c;
}

Tensor loss_of(nn::GPT& model, const Tensor& x, const Tensor& y) {
  return cross_entropy(model.forward(x).reshape({-1, 12}), y.reshape({-1}));
}

}  // namespace

TEST_CASE("compiled GPT forward holds one fused attention per layer") {
  manual_seed(3);
  nn::GPT model(small_config());
  Tensor x = randint(0, 12, {4, 10});
  CompiledFunction fwd = compile([&](const std::vector<Tensor>& in) { return model.forward(in[0]); },
                                 {.name = "gpt", .check_graphs = true});
  Tensor logits = fwd.call1({x});
  CHECK(fwd.graph().count("fused_attention") == 2);
  CHECK(fwd.plan().backward.graph.count("fused_attention_backward") == 2);
  CHECK(fwd.plan().attention_rejections.empty());
  Tensor ref = model.forward(x);
  CHECK(max(abs(logits - ref)).item() <= 1e-5 * std::max(1.0, max(abs(ref)).item()));
}

TEST_CASE("training through the compiled loss follows the eager loss curve") {
  std::vector<double> curves[2];
  for (int compiled = 0; compiled < 2; ++compiled) {
    manual_seed(11);
    nn::GPT model(small_config());
    optim::AdamW opt(model.parameters(), {.lr = 3e-3});
    auto fn = [&model](const std::vector<Tensor>& in) { return loss_of(model, in[0], in[1]); };
    CompiledFunction cfn = compile(fn, {.name = "gpt_loss", .check_graphs = true});
    Generator data(5);  // one fixed batch: the model can fit it, so the loss must fall
    Tensor x = randint(0, 12, {8, 10}, {.dtype = kInt64}, &data);
    Tensor y = randint(0, 12, {8, 10}, {.dtype = kInt64}, &data);
    for (int step = 0; step < 12; ++step) {
      Tensor loss = compiled ? cfn.call1({x, y}) : fn({x, y});
      opt.zero_grad();
      loss.backward();
      opt.step();
      curves[compiled].push_back(loss.item());
    }
    if (compiled) CHECK(cfn.stats().traces == 1);
  }
  CHECK(curves[0].back() < curves[0].front());  // it learns
  for (size_t i = 0; i < curves[0].size(); ++i)
    CHECK_MESSAGE(std::abs(curves[0][i] - curves[1][i]) <= 1e-4 * std::abs(curves[0][i]),
                  "step ", i, ": eager ", curves[0][i], " vs compiled ", curves[1][i]);
}
