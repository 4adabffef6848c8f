// compile(): capture, plan cache, fused attention against eager and float64, memory shape of
// the saved tensors, the fusion plan, autodiff of compiled graphs, dumps.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "compiler/fusion_group.h"
#include "test_utils.h"

using namespace minidl;
using minidl::testing::rel_error;

namespace {

// softmax(q kᵀ / √d [causal mask]) v, written with ops as a user would.
Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, bool causal) {
  Tensor s = matmul(q, k.transpose(-2, -1)) * (1.0 / std::sqrt(static_cast<double>(q.size(-1))));
  if (causal)
    s = masked_fill(s, triu(ones({q.size(-2), k.size(-2)}, {.dtype = kBool}), 1), -INFINITY);
  return matmul(softmax(s, -1), v);
}

CompiledFunction compiled_attention(bool causal) {
  return compile(
      [causal](const std::vector<Tensor>& x) { return attention(x[0], x[1], x[2], causal); },
      {.name = "attention", .check_graphs = true});
}

Tensor leaf(const Tensor& t, DType dtype = kFloat32) {
  return t.to(dtype).detach().requires_grad_(true);
}

struct AttentionCase {
  Shape batch;  // (B) for 3-D, (B, H) for 4-D
  int64_t n, d;
  bool causal;
  std::string str() const {
    return fmt::format("batch {} n={} d={} causal={}", shape_str(batch), n, d, causal);
  }
};

// Forward output and input gradients of attention on q, k, v in `dtype`, eager or compiled.
std::vector<Tensor> run_attention(const CompiledFunction* compiled, const std::vector<Tensor>& qkv,
                                  const Tensor& dout, bool causal, DType dtype) {
  std::vector<Tensor> x;
  for (const auto& t : qkv) x.push_back(leaf(t, dtype));
  Tensor o = compiled ? compiled->call1(x) : attention(x[0], x[1], x[2], causal);
  o.backward(dout.to(dtype));
  return {o, x[0].grad(), x[1].grad(), x[2].grad()};
}

}  // namespace

TEST_CASE("compiled attention matches eager and a float64 reference, forward and backward") {
  const std::vector<AttentionCase> cases = {
      {{2}, 1, 8, false},      {{2}, 17, 12, false},   {{3}, 17, 5, true},
      {{2, 3}, 17, 20, false}, {{1, 2}, 65, 24, true}, {{2, 2}, 130, 12, true},
      {{1}, 1000, 12, false},  {{1}, 1000, 6, true},   {{2}, 1, 8, true},
  };
  manual_seed(42);
  for (const auto& c : cases) {
    CAPTURE(c.str());
    Shape s = c.batch;
    s.push_back(c.n);
    s.push_back(c.d);
    const std::vector<Tensor> qkv = {randn(s), randn(s), randn(s)};
    const Tensor dout = randn(s);
    CompiledFunction f = compiled_attention(c.causal);
    const std::vector<Tensor> compiled = run_attention(&f, qkv, dout, c.causal, kFloat32);
    const std::vector<Tensor> eager = run_attention(nullptr, qkv, dout, c.causal, kFloat32);
    const std::vector<Tensor> ref = run_attention(nullptr, qkv, dout, c.causal, kFloat64);
    const char* what[] = {"O", "dq", "dk", "dv"};
    for (size_t i = 0; i < 4; ++i) {
      CAPTURE(what[i]);
      CHECK(rel_error(compiled[i], ref[i]) <= 1e-5);
      CHECK(rel_error(eager[i], ref[i]) <= 1e-5);
    }
    CHECK(f.graph().count("fused_attention") == 1);
    CHECK(f.plan().backward.graph.count("fused_attention_backward") == 1);
  }
}

TEST_CASE("the attention plan is one fused node each way and saves exactly q, k, v, O and LSE") {
  manual_seed(1);
  CompiledFunction f = compiled_attention(true);
  std::vector<Tensor> x = {leaf(randn({2, 16, 8})), leaf(randn({2, 16, 8})),
                           leaf(randn({2, 16, 8}))};
  f.call1(x).sum().backward();
  const Plan& p = f.plan();
  REQUIRE(p.forward.nodes.size() == 1);
  const auto* fa = dynamic_cast<const FusedAttention*>(p.forward.nodes[0].op.get());
  REQUIRE(fa != nullptr);
  CHECK(fa->causal());
  CHECK(fa->scale() == doctest::Approx(1 / std::sqrt(8.0)));
  REQUIRE(p.backward.graph.nodes.size() == 1);
  CHECK(std::string(p.backward.graph.nodes[0].op->name()) == "fused_attention_backward");
  // Backward inputs: the output's gradient, then the saved values q, k, v, O, LSE.
  const GraphNode& fwd = p.forward.nodes[0];
  std::vector<ValueId> saved(p.forward.outputs.begin() + 1, p.forward.outputs.end());
  std::vector<ValueId> want = {fwd.inputs[0], fwd.inputs[1], fwd.inputs[2], fwd.outputs[0],
                               fwd.outputs[1]};
  std::sort(saved.begin(), saved.end());
  std::sort(want.begin(), want.end());
  CHECK(saved == want);
  CHECK(p.backward.inputs.size() == 6);
  CHECK(p.attention_rejections.empty());
}

TEST_CASE("sources() gives the CUDA kernels of a plan's fused nodes, generated without a GPU") {
  manual_seed(1);
  CompiledFunction f = compiled_attention(true);
  std::vector<Tensor> x = {leaf(randn({2, 16, 8})), leaf(randn({2, 16, 8})), leaf(randn({2, 16, 8}))};
  CHECK_THROWS_AS(f.sources(), ValueError);  // no plan before the first call
  f.call1(x);
  CompiledFunction chain = compile(
      [](const std::vector<Tensor>& in) { return tanh(exp(in[0] * in[1] + 1.0) - in[1]) * 0.5; }, {.name = "chain"});
  chain.call1({randn({4, 7}), randn({7})});
#if MINIDL_WITH_CUDA
  std::vector<std::string> names;
  for (const auto& k : f.sources()) {
    names.push_back(k.name);
    CHECK_MESSAGE(k.source.find("extern \"C\" __global__ void __launch_bounds__") != std::string::npos, k.name);
    CHECK_MESSAGE(k.source.find(k.name) != std::string::npos, k.name);
    CHECK(k.source.find("causal") != std::string::npos);
  }
  auto count = [&](const std::string& prefix) {
    return std::count_if(names.begin(), names.end(), [&](const std::string& n) { return n.rfind(prefix, 0) == 0; });
  };
  // the forward, delta and backward kernels, the forward and backward also with halved tiles
  CHECK(count("minidl_attn_fwd_") >= 1);
  CHECK(count("minidl_attn_delta_") == 1);
  CHECK(count("minidl_attn_bwd_") >= 1);
  CHECK(names.size() == static_cast<size_t>(count("minidl_attn_")));
  const std::vector<codegen::GeneratedKernel> chain_ks = chain.sources();
  REQUIRE(chain_ks.size() == 1);  // one fused group, no backward (nothing requires grad)
  CHECK(chain_ks[0].source.find("Tanh") != std::string::npos);
#else
  CHECK(f.sources().empty());  // nothing is generated without CUDA
  CHECK(chain.sources().empty());
#endif
}

TEST_CASE("bytes alive before backward grow linearly in seq_len compiled, quadratically eager") {
  const int64_t b = 2, d = 16;
  CompiledFunction f = compiled_attention(false);
  // Bytes the forward leaves alive (outputs and saved tensors), inputs excluded.
  auto alive_after_forward = [&](int64_t n, bool compiled) {
    std::vector<Tensor> x = {leaf(randn({b, n, d})), leaf(randn({b, n, d})),
                             leaf(randn({b, n, d}))};
    if (compiled) f.call1(x);  // first call for this signature: trace and compile
    const int64_t before = memory_allocated();
    Tensor o = compiled ? f.call1(x) : attention(x[0], x[1], x[2], false);
    return memory_allocated() - before;
  };
  const int64_t c1 = alive_after_forward(256, true), c2 = alive_after_forward(512, true),
                c4 = alive_after_forward(1024, true);
  const int64_t e1 = alive_after_forward(256, false), e2 = alive_after_forward(512, false),
                e4 = alive_after_forward(1024, false);
  MESSAGE("compiled bytes: ", c1, " ", c2, " ", c4, "; eager bytes: ", e1, " ", e2, " ", e4);
  // Compiled: O (b·n·d floats) and LSE (b·n floats), nothing else.
  CHECK(c1 <= b * 256 * (d + 1) * 4 + 256);
  CHECK(static_cast<double>(c2) / c1 <= 2.05);
  CHECK(static_cast<double>(c4) / c2 <= 2.05);
  // Eager keeps the n×n probabilities.
  CHECK(e1 >= b * 256 * 256 * 4);
  CHECK(static_cast<double>(e2) / e1 >= 3.5);
  CHECK(static_cast<double>(e4) / e2 >= 3.5);
}

TEST_CASE("a chain of pointwise ops with broadcasting is planned as one fused group") {
  manual_seed(2);
  CompiledFunction f = compile(
      [](const std::vector<Tensor>& x) { return tanh(exp(x[0] * x[1] + 1.0) - x[1]) * 0.5; },
      {.name = "chain", .check_graphs = true});
  Tensor a = randn({4, 7}), bias = randn({7});
  Tensor out = f.call1({a, bias});
  CHECK(rel_error(out, tanh(exp(a * bias + 1.0) - bias) * 0.5) <= 1e-6);
  const Graph& g = f.graph();
  REQUIRE(g.nodes.size() == 1);
  const FusionGroup* fg = as_fusion_group(g.nodes[0]);
  REQUIRE(fg != nullptr);
  CHECK(fg->kind() == FusionGroup::Kind::Pointwise);
  const std::vector<std::string> ops = fg->op_names();
  CHECK(std::count(ops.begin(), ops.end(), "expand") == 2);  // bias broadcast, read twice
  CHECK(ops.size() == 8);                                    // and mul, add, exp, sub, tanh, mul
  CHECK(f.plan().fusion_summary().size() == 1);
}

TEST_CASE("row ops join the pointwise ops around them; matmuls stay separate") {
  manual_seed(3);
  CompiledFunction f = compile(
      [](const std::vector<Tensor>& x) {
        return softmax(matmul(x[0], x[1]) * 0.5 + 1.0, -1) * 3.0;
      },
      {.name = "row", .check_graphs = true});
  Tensor a = randn({3, 5}), w = randn({5, 6});
  CHECK(rel_error(f.call1({a, w}), softmax(matmul(a, w) * 0.5 + 1.0, -1) * 3.0) <= 1e-6);
  const Graph& g = f.graph();
  REQUIRE(g.nodes.size() == 2);
  CHECK(std::string(g.nodes[0].op->name()) == "matmul");
  const FusionGroup* fg = as_fusion_group(g.nodes[1]);
  REQUIRE(fg != nullptr);
  CHECK(fg->kind() == FusionGroup::Kind::Row);
  CHECK(fg->op_names() == std::vector<std::string>{"mul", "add", "softmax", "mul"});
  // Attention the matcher refuses (a -1e9 mask) still gets scale, mask and softmax in one group.
  CompiledFunction near = compile(
      [](const std::vector<Tensor>& x) {
        Tensor s = masked_fill(matmul(x[0], x[1].transpose(-2, -1)) / 2.0,
                               triu(ones({4, 4}, {.dtype = kBool}), 1), -1e9);
        return matmul(softmax(s, -1), x[2]);
      },
      {.name = "near", .check_graphs = true});
  Tensor q = randn({2, 4, 4});
  near.call1({q, q, q});
  REQUIRE(near.graph().count("fusion_group") == 1);
  for (const GraphNode& n : near.graph().nodes)
    if (const FusionGroup* g2 = as_fusion_group(n))
      CHECK(g2->op_names() == std::vector<std::string>{"div", "masked_fill", "softmax"});
  // A softmax over another dim is not a row op: it stays alone.
  CompiledFunction h =
      compile([](const std::vector<Tensor>& x) { return softmax(x[0] * 2.0, 0) + 1.0; },
              {.name = "cols", .check_graphs = true});
  h.call1({a});
  CHECK(h.graph().count("fusion_group") == 0);
}

TEST_CASE("fusion never merges groups into a cycle through a group merged earlier") {
  // p = exp(a) feeds a matmul that feeds group H; u is in group G, which then merges with H.
  // z = p + u may not join p's group: p -> matmul -> H = G -> u -> z would be a cycle.
  auto fn = [](const std::vector<Tensor>& x) -> std::vector<Tensor> {
    Tensor p = exp(x[0]);
    Tensor h = exp(matmul(p, x[2]));
    Tensor g = exp(x[1]);
    Tensor u = -g;
    return {g + h, p + u};
  };
  CompiledFunction f = compile(fn, {.name = "merge_cycle", .check_graphs = true});
  manual_seed(8);
  const std::vector<Tensor> x = {randn({4, 4}), randn({4, 4}), randn({4, 4})};
  const std::vector<Tensor> got = f(x), want = fn(x);
  for (size_t i = 0; i < 2; ++i) CHECK(rel_error(got[i], want[i]) <= 1e-6);
  CHECK(f.graph().count("fusion_group") >= 1);
}

TEST_CASE("the plan cache hits on a known signature and traces a new one") {
  int traced = 0;
  CompiledFunction f = compile(
      [&traced](const std::vector<Tensor>& x) {
        ++traced;
        return x[0] * 2.0;
      },
      {.name = "cache", .check_graphs = true});
  f.call1({ones({2, 3})});
  f.call1({zeros({2, 3})});
  CHECK(f.stats().traces == 1);
  CHECK(f.stats().cache_hits == 1);
  f.call1({ones({3, 3})});                           // shape
  f.call1({ones({2, 3}, {.dtype = kFloat64})});      // dtype
  f.call1({ones({2, 3}, {.requires_grad = true})});  // requires_grad
  f.call1({ones({3, 3})});
  const CompileStats s = f.stats();
  CHECK(s.calls == 6);
  CHECK(s.traces == 4);
  CHECK(s.cache_hits == 2);
  CHECK(traced == 4);
  CHECK(f.num_plans() == 4);
  CompiledFunction copy = f;  // copies share the cache
  copy.call1({ones({3, 3})});
  CHECK(f.stats().cache_hits == 3);
}

TEST_CASE("tracing computes nothing on the inputs") {
  const std::vector<InputSpec> big(3, {{{8, 2048, 64}, kFloat32, kCPU}, true});
  const int64_t before = memory_allocated();
  Trace t = trace(
      [](const std::vector<Tensor>& x) {
        return std::vector<Tensor>{attention(x[0], x[1], x[2], false)};
      },
      big, "big");
  CHECK(memory_allocated() - before <= 64);  // at most the 0-dim scale constant
  CHECK(t.graph.nodes.size() == 5);
  CHECK_THROWS_WITH_AS(trace(
                           [](const std::vector<Tensor>& x) {
                             return std::vector<Tensor>{x[0] * x[0].sum().item()};
                           },
                           big, "item"),
                       doctest::Contains("tracer"), ValueError);
}

TEST_CASE("an MLP with gelu and layer_norm matches eager forward and backward") {
  manual_seed(4);
  auto mlp = [](const std::vector<Tensor>& p) {
    Tensor h = gelu(matmul(p[0], p[1]) + p[2]);
    return layer_norm(matmul(h, p[3]) + p[0], p[4], p[5]);
  };
  CompiledFunction f = compile(mlp, {.name = "mlp", .check_graphs = true});
  const std::vector<Tensor> data = {randn({5, 6}),  randn({6, 10}), randn({10}),
                                    randn({10, 6}), randn({6}),     randn({6})};
  const Tensor dout = randn({5, 6});
  std::vector<Tensor> xc, xe;
  for (const auto& t : data) xc.push_back(leaf(t)), xe.push_back(leaf(t));
  Tensor oc = f.call1(xc), oe = mlp(xe);
  CHECK(rel_error(oc, oe) <= 1e-5);
  oc.backward(dout);
  oe.backward(dout);
  for (size_t i = 0; i < data.size(); ++i) {
    CAPTURE(i);
    CHECK(rel_error(xc[i].grad(), xe[i].grad()) <= 1e-5);
  }
  CHECK(f.graph().count("fusion_group") == 2);  // bias + gelu, residual + layer_norm
  CHECK(f.plan().backward.graph.count("fusion_group") >= 1);
}

TEST_CASE("float64 compiled attention passes gradcheck and matches its composition") {
  manual_seed(5);
  for (bool causal : {false, true}) {
    CAPTURE(causal);
    CompiledFunction f = compiled_attention(causal);
    std::vector<Tensor> x = {leaf(randn({2, 5, 3}), kFloat64), leaf(randn({2, 5, 3}), kFloat64),
                             leaf(randn({2, 5, 3}), kFloat64)};
    auto r = gradcheck([&](const std::vector<Tensor>& in) { return f.call1(in); }, x);
    CHECK_MESSAGE(r.ok, r.message);
    const double scale = 1 / std::sqrt(3.0);
    CHECK(rel_error(fused_attention(x[0], x[1], x[2], scale, causal),
                    attention_composite(x[0], x[1], x[2], scale, causal)[0]) <= 1e-12);
  }
}

TEST_CASE("fused_attention kernels match their compositions: strided, cross and odd shapes") {
  manual_seed(6);
  struct Shapes {
    Tensor q, k, v;
    std::string what;
  };
  // (B, N, H, d) split into heads as (B, H, N, d): rows are not contiguous.
  auto heads = [](int64_t n) { return randn({2, n, 3, 9}).transpose(1, 2); };
  const std::vector<Shapes> cases = {
      {heads(70), heads(70), heads(70), "strided heads"},
      {randn({2, 7, 5}), randn({2, 130, 5}), randn({2, 130, 5}), "Nq 7 < Nk 130"},
      {randn({2, 130, 5}), randn({2, 7, 5}), randn({2, 7, 5}), "Nq 130 > Nk 7"},
      {randn({1, 3, 33}), randn({1, 200, 33}), randn({1, 200, 33}), "d 33, Nq 3, Nk 200"},
  };
  for (const auto& c : cases)
    for (bool causal : {false, true}) {
      CAPTURE(c.what);
      CAPTURE(causal);
      FusedAttention fwd(0.3, causal);
      FusedAttentionBackward bwd(0.3, causal);
      std::vector<Tensor> got = fwd.eval_cpu({c.q, c.k, c.v});
      std::vector<Tensor> want = attention_composite(c.q, c.k, c.v, 0.3, causal);
      CHECK(rel_error(got[0], want[0]) <= 1e-5);
      CHECK(rel_error(got[1], want[1]) <= 1e-5);
      const Tensor dout = randn(c.q.shape());
      std::vector<Tensor> g = bwd.eval_cpu({c.q, c.k, c.v, got[0], got[1], dout});
      std::vector<Tensor> gw =
          attention_backward_composite(c.q, c.k, c.v, got[0], got[1], dout, 0.3, causal);
      for (size_t i = 0; i < 3; ++i) CHECK(rel_error(g[i], gw[i]) <= 1e-5);
    }
}

TEST_CASE("inputs used twice, outputs that are inputs, and captured parameters get gradients") {
  manual_seed(7);
  Tensor x = leaf(randn({2, 6, 4}));
  Tensor xe = leaf(x.detach());
  CompiledFunction attn = compiled_attention(false);
  attn.call1({x, x, x}).sum().backward();  // self-attention: one tensor as q, k and v
  attention(xe, xe, xe, false).sum().backward();
  CHECK(rel_error(x.grad(), xe.grad()) <= 1e-5);

  Tensor a = leaf(randn({3})), b = leaf(randn({3}));
  CompiledFunction pass = compile(
      [](const std::vector<Tensor>& in) -> std::vector<Tensor> {
        return {in[0], in[0] * in[1]};
      },
      {.name = "pass", .check_graphs = true});
  std::vector<Tensor> outs = pass({a, b});
  CHECK(!outs[0].is_same(a));
  (outs[0].sum() + outs[1].sum()).backward();
  CHECK(rel_error(a.grad(), 1.0 + b.detach()) <= 1e-7);
  CHECK(rel_error(b.grad(), a.detach()) <= 1e-7);

  // A parameter read from the closure becomes an input: it gets a gradient on every call.
  Tensor w = leaf(randn({4, 5}));
  CompiledFunction lin =
      compile([&w](const std::vector<Tensor>& in) { return gelu(matmul(in[0], w.t())); },
              {.name = "linear", .check_graphs = true});
  Tensor in = randn({3, 5});
  for (int step = 0; step < 2; ++step) {
    w.zero_grad();
    lin.call1({in}).sum().backward();
    Tensor we = leaf(w.detach());
    gelu(matmul(in, we.t())).sum().backward();
    CHECK(rel_error(w.grad(), we.grad()) <= 1e-5);
  }
  CHECK(lin.plan().captured.size() == 1);
  CHECK(lin.stats().traces == 1);
}

TEST_CASE("a create_graph backward through a compiled function is refused, not wrong") {
  Tensor x = leaf(from_vector<float>({0.5f, -1.0f, 2.0f}));
  CompiledFunction cube =
      compile([](const std::vector<Tensor>& in) { return (in[0] * in[0] * in[0]).sum(); },
              {.name = "cube", .check_graphs = true});
  CHECK_THROWS_WITH_AS(grad({cube.call1({x})}, {x}, {}, false, true),
                       doctest::Contains("create_graph"), ValueError);
  CHECK(rel_error(grad({cube.call1({x})}, {x})[0], 3.0 * x.detach() * x.detach()) <= 1e-6);
}

TEST_CASE("graphs print as text and DOT, and MINIDL_DUMP_DIR writes every pass") {
  const std::filesystem::path dir = std::filesystem::temp_directory_path() / "minidl_dump_test";
  std::filesystem::remove_all(dir);
  ::setenv("MINIDL_DUMP_DIR", dir.c_str(), 1);
  CompiledFunction f = compiled_attention(false);
  Tensor q = leaf(randn({1, 4, 2}));
  f.call1({q, q, q}).sum().backward();
  ::unsetenv("MINIDL_DUMP_DIR");

  const Plan& p = f.plan();
  CHECK(p.forward.str().find("fused_attention(%0, %1, %2) scale=0.707107, causal=false") !=
        std::string::npos);
  CHECK(p.forward.dot().rfind("digraph \"attention.forward\" {", 0) == 0);
  REQUIRE(!p.dump_dir.empty());
  CHECK(p.dump_dir.parent_path() == dir);
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(p.dump_dir))
    files.push_back(e.path().filename().string());
  std::sort(files.begin(), files.end());
  CHECK(files.size() == 2 * p.passes.size() + 1);  // .txt and .dot per pass, plan.txt
  CHECK(files.front() == "00-forward-trace.dot");
  CHECK(std::count(files.begin(), files.end(), "02-forward-attention.txt") == 1);
  CHECK(std::count(files.begin(), files.end(), "11-forward-fusion.txt") == 1);
  CHECK(std::count(files.begin(), files.end(), "plan.txt") == 1);
  std::filesystem::remove_all(dir);
}

TEST_CASE("the graph checker catches what a broken pass would leave; dce releases dead constants") {
  Graph g;
  g.name = "hand";
  const ValueId x = g.add_input({{2, 3}, kFloat32, kCPU}, "x");
  const ValueId c = g.add_constant(full({2, 3}, 2.0));
  const ValueId y = g.add_node(std::make_shared<Binary>(BinaryOp::Mul), {x, x})[0];
  const ValueId z = g.add_node(std::make_shared<Unary>(UnaryOp::Exp), {y})[0];
  g.outputs = {z};
  CHECK_NOTHROW(check_graph(g, "build"));

  Graph swapped = g;  // a reader before its producer
  std::swap(swapped.nodes[0], swapped.nodes[1]);
  CHECK_THROWS_WITH_AS(check_graph(swapped, "swap"),
                       doctest::Contains("%3 = exp(%2) reads %2 before it is defined"), ValueError);
  Graph wrong_meta = g;  // an output that is not what the primitive infers
  wrong_meta.values[z].meta.shape = {3, 2};
  CHECK_THROWS_WITH_AS(
      check_graph(wrong_meta, "meta"),
      doctest::Contains("is float32 (3, 2) but the primitive infers float32 (2, 3)"), ValueError);
  Graph dangling = g;  // an output nothing defines
  dangling.outputs = {static_cast<ValueId>(dangling.values.size() + 5)};
  CHECK_THROWS_AS(check_graph(dangling, "output"), ValueError);

  CHECK(g.values[c].data.defined());
  dce(g);  // the constant was never read
  CHECK(!g.values[c].data.defined());
  CHECK(g.nodes.size() == 2);
  CHECK(rel_error(run_graph(g, {full({2, 3}, 0.5)})[0], full({2, 3}, std::exp(0.25))) <= 1e-7);
}
