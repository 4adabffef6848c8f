// The attention matcher: spellings it must fuse, and near-matches it must leave alone with the
// rejecting check named in the "compiler" log. Every case also runs compiled against eager.
#include <spdlog/sinks/ostream_sink.h>

#include <cmath>
#include <functional>
#include <sstream>
#include <string>

#include "test_utils.h"

using namespace minidl;
using minidl::testing::rel_error;

namespace {

// Collects what the "compiler" logger says at debug level while it lives, keeping the
// logger's other sinks at their previous level.
class LogCapture {
 public:
  LogCapture() : logger_(log("compiler")), level_(logger_.level()) {
    sink_ = std::make_shared<spdlog::sinks::ostream_sink_mt>(text_);
    sink_->set_pattern("%v");
    for (auto& s : logger_.sinks()) s->set_level(level_);
    logger_.sinks().push_back(sink_);
    logger_.set_level(spdlog::level::debug);
  }
  ~LogCapture() {
    logger_.sinks().pop_back();
    logger_.set_level(level_);
  }
  std::string text() const { return text_.str(); }

 private:
  spdlog::logger& logger_;
  spdlog::level::level_enum level_;
  std::ostringstream text_;
  std::shared_ptr<spdlog::sinks::ostream_sink_mt> sink_;
};

using Fn = std::function<std::vector<Tensor>(const std::vector<Tensor>&)>;

struct Case {
  const char* name;
  Fn fn;
  std::function<std::vector<Tensor>()> inputs;
  double scale = 0;  // must-match cases: the fused node's attributes
  bool causal = false;
  const char* reason = "";  // must-not-match cases: what the log names
};

Tensor qk(const Tensor& q, const Tensor& k) { return matmul(q, k.transpose(-2, -1)); }
Tensor causal_mask(int64_t n) { return triu(ones({n, n}, {.dtype = kBool}), 1); }
std::vector<Tensor> one(const Tensor& t) { return {t}; }

// Random inputs of the given shapes.
std::function<std::vector<Tensor>()> shapes(std::vector<Shape> s) {
  return [s] {
    std::vector<Tensor> out;
    for (const auto& shape : s) out.push_back(randn(shape));
    return out;
  };
}
const Shape kB3 = {2, 6, 4};     // (batch, seq, d)
const Shape kB4 = {2, 3, 6, 4};  // (batch, heads, seq, d)

struct Result {
  const Plan* plan;
  std::string log;
};

// Compiles c.fn, checks it against eager on random inputs, and returns its plan and log.
Result run(const Case& c, CompiledFunction& f) {
  manual_seed(11);
  const std::vector<Tensor> in = c.inputs();
  LogCapture capture;
  const std::vector<Tensor> got = f(in), want = c.fn(in);
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) CHECK(rel_error(got[i], want[i]) <= 1e-5);
  return {&f.plan(), capture.text()};
}

}  // namespace

TEST_CASE("the matcher fuses every spelling of attention") {
  const std::vector<Case> cases = {
      {"3-D, transpose(-2, -1), scores * 1/sqrt(d)",
       [](const auto& x) { return one(matmul(softmax(qk(x[0], x[1]) * 0.5, -1), x[2])); },
       shapes({kB3, kB3, kB3}), 0.5},
      {"4-D, transpose(-1, -2), scores / sqrt(d)",
       [](const auto& x) {
         return one(matmul(softmax(matmul(x[0], x[1].transpose(-1, -2)) / 2.0, -1), x[2]));
       },
       shapes({kB4, kB4, kB4}), 0.5},
      {"3-D, scale on the left: 0.25 * scores",
       [](const auto& x) { return one(matmul(softmax(0.25 * qk(x[0], x[1]), -1), x[2])); },
       shapes({kB3, kB3, kB3}), 0.25},
      {"4-D, permute(0, 1, 3, 2)",
       [](const auto& x) {
         return one(matmul(softmax(matmul(x[0], x[1].permute({0, 1, 3, 2})) * 0.5, 3), x[2]));
       },
       shapes({kB4, kB4, kB4}), 0.5},
      {"3-D, permute(0, 2, 1), no scale",
       [](const auto& x) {
         return one(matmul(softmax(matmul(x[0], x[1].permute({0, 2, 1})), -1), x[2]));
       },
       shapes({kB3, kB3, kB3}), 1.0},
      {"3-D, t()",
       [](const auto& x) { return one(matmul(softmax(matmul(x[0], x[1].t()) * 0.5, -1), x[2])); },
       shapes({kB3, kB3, kB3}), 0.5},
      {"scale pre-applied to Q",
       [](const auto& x) { return one(matmul(softmax(qk(x[0] * 0.5, x[1]), -1), x[2])); },
       shapes({kB4, kB4, kB4}), 0.5},
      {"scale split between Q and the scores",
       [](const auto& x) { return one(matmul(softmax(qk(x[0] / 2.0, x[1]) * 0.25, -1), x[2])); },
       shapes({kB3, kB3, kB3}), 0.125},
      {"Kᵀ passed in as a transposed view",
       [](const auto& x) { return one(matmul(softmax(matmul(x[0], x[1]) * 0.5, -1), x[2])); },
       [] {
         return std::vector<Tensor>{randn(kB3), randn(kB3).transpose(-2, -1), randn(kB3)};
       },
       0.5},
      {"causal: masked_fill with a triu(1) bool mask",
       [](const auto& x) {
         Tensor s = masked_fill(qk(x[0], x[1]) * 0.5, causal_mask(6), -INFINITY);
         return one(matmul(softmax(s, -1), x[2]));
       },
       shapes({kB4, kB4, kB4}), 0.5, true},
      {"causal: additive mask, -inf above the diagonal",
       [](const auto& x) {
         Tensor s = qk(x[0], x[1]) * 0.5 + triu(full({6, 6}, -INFINITY), 1);
         return one(matmul(softmax(s, -1), x[2]));
       },
       shapes({kB3, kB3, kB3}), 0.5, true},
      {"causal: mask applied before the scale",
       [](const auto& x) {
         Tensor s = qk(x[0], x[1]).masked_fill(causal_mask(6), -INFINITY) * 0.5;
         return one(matmul(softmax(s, -1), x[2]));
       },
       shapes({kB3, kB3, kB3}), 0.5, true},
      {"split heads: (B, N, H·d) reshaped and transposed to (B, H, N, d)",
       [](const auto& x) {
         auto heads = [](const Tensor& t) { return t.reshape({2, 6, 3, 4}).transpose(1, 2); };
         Tensor o = matmul(softmax(qk(heads(x[0]), heads(x[1])) * 0.5, -1), heads(x[2]));
         return one(o.transpose(1, 2).reshape({2, 6, 12}));
       },
       shapes({{2, 6, 12}, {2, 6, 12}, {2, 6, 12}}), 0.5},
      {"self-attention: one input as q, k and v",
       [](const auto& x) { return one(matmul(softmax(qk(x[0], x[0]) * 0.5, -1), x[0])); },
       shapes({kB3}), 0.5},
  };
  for (const Case& c : cases) {
    INFO(c.name);
    CompiledFunction f = compile(c.fn, {.name = "match", .check_graphs = true});
    const Result r = run(c, f);
    REQUIRE(r.plan->forward.count("fused_attention") == 1);
    for (const GraphNode& n : r.plan->forward.nodes)  // fused_attention, views around it
      CHECK((n.op->is_view() || std::string(n.op->name()) == "fused_attention"));
    for (const GraphNode& n : r.plan->forward.nodes)
      if (const auto* fa = dynamic_cast<const FusedAttention*>(n.op.get())) {
        CHECK(fa->scale() == doctest::Approx(c.scale));
        CHECK(fa->causal() == c.causal);
      }
    CHECK(r.plan->attention_rejections.empty());
    CHECK(r.log.find("matched") != std::string::npos);
    CHECK(r.log.find("no match") == std::string::npos);
  }
}

TEST_CASE("the matcher leaves near-matches alone and logs the check that failed") {
  const std::vector<Case> cases = {
      {"softmax over dim -2",
       [](const auto& x) { return one(matmul(softmax(qk(x[0], x[1]) * 0.5, -2), x[2])); },
       shapes({kB3, kB3, kB3}), 0, false, "softmax over dim 1, not the last dim (2)"},
      {"log_softmax",
       [](const auto& x) { return one(matmul(log_softmax(qk(x[0], x[1]) * 0.5, -1), x[2])); },
       shapes({kB3, kB3, kB3}), 0, false, "it is log_softmax, not softmax"},
      {"the scores have another reader",
       [](const auto& x) {
         Tensor s = qk(x[0], x[1]);
         return std::vector<Tensor>{matmul(softmax(s * 0.5, -1), x[2]), s};
       },
       shapes({kB3, kB3, kB3}), 0, false, "are read 2 times; only the next step may read them"},
      {"the probabilities have another reader",
       [](const auto& x) {
         Tensor p = softmax(qk(x[0], x[1]) * 0.5, -1);
         return std::vector<Tensor>{matmul(p, x[2]), p.sum()};
       },
       shapes({kB3, kB3, kB3}), 0, false, "are read 2 times; only matmul(P, V) may read them"},
      {"K permuted (0, 3, 1, 2), not transposed (heads == d, so the shapes fit)",
       [](const auto& x) {
         return one(matmul(softmax(matmul(x[0], x[1].permute({0, 3, 1, 2})) * 0.5, -1), x[2]));
       },
       shapes({{1, 4, 6, 4}, {1, 4, 6, 4}, {1, 4, 6, 4}}), 0, false,
       "is permute dims=(0, 3, 1, 2), not a transpose of the last two dims"},
      {"K permuted (2, 0, 1) on 3-D (batch == d)",
       [](const auto& x) {
         return one(matmul(softmax(matmul(x[0], x[1].permute({2, 0, 1})), -1), x[2]));
       },
       shapes({{4, 6, 4}, {4, 6, 4}, {4, 6, 4}}), 0, false, "not a transpose of the last two dims"},
      {"mask not causal: triu(2)",
       [](const auto& x) {
         Tensor s = masked_fill(qk(x[0], x[1]), triu(ones({6, 6}, {.dtype = kBool}), 2), -INFINITY);
         return one(matmul(softmax(s, -1), x[2]));
       },
       shapes({kB3, kB3, kB3}), 0, false, "is not causal (true exactly where key > query)"},
      {"mask not causal: tril(-1), the other triangle",
       [](const auto& x) {
         Tensor s =
             masked_fill(qk(x[0], x[1]), tril(ones({6, 6}, {.dtype = kBool}), -1), -INFINITY);
         return one(matmul(softmax(s, -1), x[2]));
       },
       shapes({kB3, kB3, kB3}), 0, false, "is not causal"},
      {"mask given as an input: its pattern is unknown",
       [](const auto& x) {
         return one(matmul(softmax(masked_fill(qk(x[0], x[1]), x[3], -INFINITY), -1), x[2]));
       },
       [] {
         return std::vector<Tensor>{randn(kB3), randn(kB3), randn(kB3), causal_mask(6)};
       },
       0, false, "is computed at run time, not a constant"},
      {"masked_fill with -1e9 instead of -inf",
       [](const auto& x) {
         return one(matmul(softmax(masked_fill(qk(x[0], x[1]), causal_mask(6), -1e9), -1), x[2]));
       },
       shapes({kB3, kB3, kB3}), 0, false, "masked_fill value -1e+09"},
      {"additive mask that is a padding mask",
       [](const auto& x) {
         Tensor pad = from_vector<float>({0, 0, 0, 0, -INFINITY, -INFINITY}, {1, 6});
         return one(matmul(softmax(qk(x[0], x[1]) + pad, -1), x[2]));
       },
       shapes({kB3, kB3, kB3}), 0, false, "is not a causal mask"},
      {"negative scale",
       [](const auto& x) { return one(matmul(softmax(qk(x[0], x[1]) * -0.5, -1), x[2])); },
       shapes({kB3, kB3, kB3}), 0, false, "scale factor -0.5"},
      {"scores scaled by a tensor, not a constant",
       [](const auto& x) { return one(matmul(softmax(qk(x[0], x[1]) * x[3], -1), x[2])); },
       shapes({kB3, kB3, kB3, {}}), 0, false, "scores come from 'mul'"},
      {"V's head dim differs from Q's",
       [](const auto& x) { return one(matmul(softmax(qk(x[0], x[1]) * 0.5, -1), x[2])); },
       shapes({kB3, kB3, {2, 6, 7}}), 0, false, "mismatched shapes"},
      {"K broadcast over the batch",
       [](const auto& x) { return one(matmul(softmax(qk(x[0], x[1]) * 0.5, -1), x[2])); },
       shapes({kB3, {6, 4}, kB3}), 0, false, "mismatched shapes"},
      {"probabilities as the right operand",
       [](const auto& x) { return one(matmul(x[2], softmax(qk(x[0], x[1]) * 0.5, -1))); },
       shapes({kB3, kB3, {2, 4, 6}}), 0, false, "are not the left operand"},
  };
  for (const Case& c : cases) {
    INFO(c.name);
    CompiledFunction f = compile(c.fn, {.name = "near", .check_graphs = true});
    const Result r = run(c, f);
    CHECK(r.plan->forward.count("fused_attention") == 0);
    CHECK(r.log.find("no match at") != std::string::npos);
    CHECK_MESSAGE(r.log.find(c.reason) != std::string::npos, "log: ", r.log);
    REQUIRE(r.plan->attention_rejections.size() == 1);
    CHECK(r.plan->attention_rejections[0].find(c.reason) != std::string::npos);
  }
}

TEST_CASE("a softmax that no matmul reads is not a near-match") {
  Case c{"classifier", [](const auto& x) { return one(softmax(matmul(x[0], x[1]), -1)); },
         shapes({{4, 6}, {6, 3}})};
  CompiledFunction f = compile(c.fn, {.name = "classifier", .check_graphs = true});
  const Result r = run(c, f);
  CHECK(r.log.find("attention") == std::string::npos);
  CHECK(r.plan->attention_rejections.empty());
}

TEST_CASE("two attentions in one function are both fused, the second reading the first") {
  Case c{"stacked",
         [](const auto& x) {
           Tensor o = matmul(softmax(qk(x[0], x[1]) * 0.5, -1), x[2]);
           return one(matmul(softmax(qk(o, x[1]) * 0.5, -1), x[2]));
         },
         shapes({kB3, kB3, kB3})};
  CompiledFunction f = compile(c.fn, {.name = "stacked", .check_graphs = true});
  const Result r = run(c, f);
  CHECK(r.plan->forward.count("fused_attention") == 2);
  CHECK(r.plan->forward.nodes.size() == 2);
}
