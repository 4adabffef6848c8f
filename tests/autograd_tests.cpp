// Autograd: backward (scalar, with a gradient, accumulation, retain_graph, freed graphs),
// grad mode, detach, the functional grad(), requires_grad rules, and higher-order gradients.
// Each op's vjp is checked by gradcheck in ops_tests.cpp.
#include <doctest/doctest.h>

#include "test_utils.h"

using namespace minidl;

namespace {

Tensor leaf(std::vector<double> v, Shape s = {}) {
  return from_vector<double>(v, s, {.dtype = kFloat64, .requires_grad = true});
}

std::vector<double> values(const Tensor& t) { return t.to_vector<double>(); }

/// The message of the minidl::Error f throws (fails the test if it throws none).
template <class E, class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  FAIL("expected an exception");
  return "";
}

}  // namespace

TEST_CASE("backward from a scalar, and with a given gradient") {
  Tensor x = leaf({1, 2, 3});
  (x * x).sum().backward();
  CHECK(values(x.grad()) == std::vector<double>{2, 4, 6});

  // A non-scalar output takes a gradient of its shape: x.grad = J^T g.
  Tensor y = leaf({1, 2, 3, 4}, {2, 2});
  Tensor z = y * 3.0;
  z.backward(from_vector<double>({1, 0, -1, 2}, {2, 2}, {.dtype = kFloat64}));
  CHECK(values(y.grad()) == std::vector<double>{3, 0, -3, 6});
  // A gradient of another dtype is converted to the output's.
  Tensor w = leaf({1, 2});
  (w * 2.0).backward(from_vector<float>({1, 1}));
  CHECK(w.grad().dtype() == kFloat64);
  CHECK(values(w.grad()) == std::vector<double>{2, 2});
  // A leaf is its own root; a one-element non-scalar output needs no gradient.
  Tensor s = leaf({5});
  s.backward();
  CHECK(values(s.grad()) == std::vector<double>{1});
}

TEST_CASE("gradients accumulate into .grad across backwards and along several paths") {
  Tensor x = leaf({1, 2});
  (x * 2.0).sum().backward();
  (x * 3.0).sum().backward();
  CHECK(values(x.grad()) == std::vector<double>{5, 5});
  x.zero_grad();
  CHECK_FALSE(x.grad().defined());
  // Several paths from one leaf sum up (x used three times).
  Tensor y = (x * x + exp(x)).sum();
  y.backward();
  CHECK(x.grad().to_vector<double>()[0] == doctest::Approx(2 + std::exp(1.0)));
  CHECK(x.grad().to_vector<double>()[1] == doctest::Approx(4 + std::exp(2.0)));
  // .grad is a tensor of its own: two leaves fed one gradient do not share it.
  Tensor a = leaf({1, 2}), b = leaf({3, 4});
  (a + b).sum().backward();
  a.grad().fill_(7);
  CHECK(values(b.grad()) == std::vector<double>{1, 1});
  // .grad is dense even where the gradient arrives as a broadcast view (sum's gradient).
  Tensor c = leaf({1, 2, 3, 4, 5, 6}, {2, 3});
  c.sum().backward();
  CHECK(c.grad().is_contiguous());
  CHECK(c.grad().strides() == Strides{3, 1});
  CHECK(c.grad().data<double>()[5] == 1.0);
  // Inputs that do not require grad get none.
  Tensor k = from_vector<double>({1, 2}, {}, {.dtype = kFloat64});
  Tensor m = leaf({3, 4});
  (k * m).sum().backward();
  CHECK_FALSE(k.grad().defined());
  CHECK(values(m.grad()) == std::vector<double>{1, 2});
}

TEST_CASE("retain_graph keeps the saved tensors; a freed graph says so") {
  Tensor x = leaf({1, 2, 3});
  Tensor y = (x * x).sum();
  y.backward({}, /*retain_graph=*/true);
  CHECK(values(x.grad()) == std::vector<double>{2, 4, 6});
  y.backward();  // the second backward frees the graph
  CHECK(values(x.grad()) == std::vector<double>{4, 8, 12});
  const std::string msg = error_of<ValueError>([&] { y.backward(); });
  CHECK(msg.find("[backward]") == 0);
  CHECK(msg.find("second time") != std::string::npos);
  CHECK(msg.find("'mul'") != std::string::npos);  // the node whose saved tensors are gone
  CHECK(msg.find("retain_graph") != std::string::npos);
  // A graph whose nodes saved nothing can be walked again (PyTorch allows it too).
  Tensor z = (x + 1.0).sum();
  z.backward();
  z.backward();
  CHECK(values(x.grad()) == std::vector<double>{6, 10, 14});
}

TEST_CASE("backward without a gradient needs a scalar; the error names the shape") {
  Tensor x = leaf({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor y = x * 2.0;
  const std::string msg = error_of<ValueError>([&] { y.backward(); });
  CHECK(msg.find("[backward]") == 0);
  CHECK(msg.find("(2, 3)") != std::string::npos);
  // A gradient of the wrong shape names both shapes.
  const std::string shape_msg = error_of<ShapeError>([&] {
    y.backward(ones({3, 2}, {.dtype = kFloat64}));
  });
  CHECK(shape_msg.find("(3, 2)") != std::string::npos);
  CHECK(shape_msg.find("(2, 3)") != std::string::npos);
  // An output without history cannot be backpropagated.
  Tensor c = ones({2});
  CHECK_THROWS_AS(c.sum().backward(), ValueError);
  CHECK_THROWS_AS(Tensor().backward(), ValueError);
}

TEST_CASE("NoGradGuard and AutoGradMode scope history recording") {
  Tensor x = leaf({1, 2});
  CHECK(GradMode::is_enabled());
  {
    NoGradGuard guard;
    CHECK_FALSE(GradMode::is_enabled());
    Tensor y = x * 2.0;
    CHECK_FALSE(y.requires_grad());
    CHECK(y.grad_fn() == nullptr);
    CHECK(y.is_leaf());
    {
      AutoGradMode on(true);
      CHECK((x * 2.0).requires_grad());
    }
    CHECK_FALSE(GradMode::is_enabled());
    // In-place writes to a leaf that requires grad are allowed here (optimizers do this).
    x.copy_(from_vector<double>({5, 6}, {}, {.dtype = kFloat64}));
  }
  CHECK(GradMode::is_enabled());
  CHECK(values(x) == std::vector<double>{5, 6});
  CHECK((x * 2.0).requires_grad());
  // The guard restores the mode when an exception leaves its scope.
  try {
    NoGradGuard guard;
    throw ValueError("test");
  } catch (const ValueError&) {
  }
  CHECK(GradMode::is_enabled());
}

TEST_CASE("detach shares data and cuts history") {
  Tensor x = leaf({1, 2, 3});
  Tensor d = x.detach();
  CHECK_FALSE(d.requires_grad());
  CHECK(d.is_leaf());
  CHECK(d.data_ptr() == x.data_ptr());
  d.data<double>()[0] = 10;  // same storage
  CHECK(values(x)[0] == 10);
  // No gradient flows through the detached factor: d(x * stop(x))/dx = stop(x).
  Tensor y = (x * (x * 1.0).detach()).sum();
  y.backward();
  CHECK(values(x.grad()) == std::vector<double>{10, 2, 3});
  // detach of a non-leaf.
  Tensor z = (x * 2.0).detach();
  CHECK(z.is_leaf());
  CHECK_FALSE(z.requires_grad());
}

TEST_CASE("grad(): gradients returned, .grad untouched") {
  Tensor x = leaf({1, 2, 3}), w = leaf({4, 5, 6});
  Tensor y = (x * w).sum();
  std::vector<Tensor> g = grad({y}, {x, w}, {}, /*retain_graph=*/true);
  REQUIRE(g.size() == 2);
  CHECK(values(g[0]) == std::vector<double>{4, 5, 6});
  CHECK(values(g[1]) == std::vector<double>{1, 2, 3});
  CHECK_FALSE(x.grad().defined());
  CHECK_FALSE(w.grad().defined());
  // Gradients w.r.t. an intermediate, with a given output gradient.
  Tensor h = x * 2.0;
  Tensor o = h * h;
  std::vector<Tensor> gh =
      grad({o}, {h}, {from_vector<double>({1, 0, 1}, {}, {.dtype = kFloat64})});
  CHECK(values(gh[0]) == std::vector<double>{4, 0, 12});
  // An input the output does not depend on gets an undefined tensor.
  Tensor unused = leaf({1});
  std::vector<Tensor> gu = grad({(x * 3.0).sum()}, {x, unused});
  CHECK(values(gu[0]) == std::vector<double>{3, 3, 3});
  CHECK_FALSE(gu[1].defined());
  // Several outputs: their gradients add up, also where one output feeds the other.
  Tensor y1 = x * x;
  Tensor y2 = (y1 * 2.0).sum();
  std::vector<Tensor> gm = grad({y1.sum(), y2}, {x});
  CHECK(values(gm[0]) == std::vector<double>{6, 12, 18});  // 2x + 4x
  // Inputs must require grad; the gradient count must match the outputs.
  CHECK_THROWS_AS(grad({(x * 2.0).sum()}, {ones({3})}), ValueError);
  CHECK_THROWS_AS(grad({(x * 2.0).sum()}, {x}, {ones({}), ones({})}), ValueError);
}

TEST_CASE("requires_grad_ rules and integer results without gradient") {
  Tensor x = ones({2, 3});
  CHECK_FALSE(x.requires_grad());
  x.requires_grad_();
  CHECK(x.requires_grad());
  CHECK(x.is_leaf());
  x.requires_grad_(false);
  CHECK_FALSE(x.requires_grad());
  // Only floating tensors can require grad.
  const std::string msg = error_of<DTypeError>([] {
    Tensor i = ones({2}, {.dtype = kInt64});
    i.requires_grad_();
  });
  CHECK(msg.find("[requires_grad_]") == 0);
  CHECK(msg.find("int64") != std::string::npos);
  CHECK_THROWS_AS(ones({2}, {.dtype = kBool, .requires_grad = true}), DTypeError);
  // A non-leaf already requires grad; turning it off is an error that points at detach().
  Tensor l = leaf({1, 2});
  Tensor y = l * 2.0;
  CHECK(y.requires_grad());
  CHECK_FALSE(y.is_leaf());
  CHECK_NOTHROW(y.requires_grad_(true));
  const std::string nl = error_of<ValueError>([&] { y.requires_grad_(false); });
  CHECK(nl.find("'mul'") != std::string::npos);
  CHECK(nl.find("detach()") != std::string::npos);
  // Integer and bool results carry no history.
  CHECK_FALSE(argmax(l, 0).requires_grad());
  CHECK_FALSE((l > 1.0).requires_grad());
  CHECK_FALSE(l.to(kInt64).requires_grad());
  CHECK(l.to(kInt64).grad_fn() == nullptr);
  CHECK_FALSE(eq(l, l).requires_grad());
}

TEST_CASE("create_graph: second derivatives") {
  // d/dx x^3 = 3x^2, d2/dx2 = 6x (ops whose vjp reads their inputs).
  Tensor x = leaf({1, 2, -1});
  Tensor y = (x * x * x).sum();
  std::vector<Tensor> g = grad({y}, {x}, {}, /*retain_graph=*/false, /*create_graph=*/true);
  CHECK(values(g[0]) == std::vector<double>{3, 12, 3});
  CHECK(g[0].requires_grad());
  g[0].sum().backward();
  CHECK(values(x.grad()) == std::vector<double>{6, 12, -6});

  // backward(create_graph) leaves a .grad with history.
  Tensor z = leaf({0.5});
  (z * z * z * z).sum().backward({}, false, true);
  Tensor dz = z.grad();
  CHECK(dz.requires_grad());
  CHECK(values(dz)[0] == doctest::Approx(0.5));  // 4 z^3
  std::vector<Tensor> d2 = grad({dz.sum()}, {z});
  CHECK(values(d2[0])[0] == doctest::Approx(3.0));  // 12 z^2

  // Ops whose vjp reads their output (exp, tanh, sigmoid, sqrt, softmax, ...): second-order
  // gradcheck of x -> d(sum f(x) * c)/dx against finite differences of the first gradient.
  struct Fn {
    const char* name;
    std::function<Tensor(const Tensor&)> f;
    double lo;
  };
  const std::vector<Fn> fns = {
      {"exp", [](const Tensor& t) { return exp(t); }, -1},
      {"tanh", [](const Tensor& t) { return tanh(t); }, -1},
      {"sigmoid", [](const Tensor& t) { return sigmoid(t); }, -1},
      {"sqrt", [](const Tensor& t) { return sqrt(t); }, 0.5},
      {"rsqrt", [](const Tensor& t) { return rsqrt(t); }, 0.5},
      {"log", [](const Tensor& t) { return log(t); }, 0.5},
      {"gelu", [](const Tensor& t) { return gelu(t); }, -1},
      {"silu", [](const Tensor& t) { return silu(t); }, -1},
      {"softmax", [](const Tensor& t) { return softmax(t, -1); }, -1},
      {"log_softmax", [](const Tensor& t) { return log_softmax(t, -1); }, -1},
      {"layer_norm", [](const Tensor& t) { return layer_norm(t, {}, {}); }, -1},
      {"div", [](const Tensor& t) { return 1.0 / t; }, 0.5},
      {"pow", [](const Tensor& t) { return pow(t, t); }, 0.5},
      {"matmul", [](const Tensor& t) { return matmul(t, t.t()); }, -1},
      {"var", [](const Tensor& t) { return var(t, {1}); }, -1},
      {"max", [](const Tensor& t) { return max(t * t, {1}); }, 0.1},
      {"views",
       [](const Tensor& t) {
         return (t.t().slice(0, 1, 3) * t.select(1, 2).unsqueeze(0)).expand({3, 2, 2});
       },
       -1},
      {"cat",
       [](const Tensor& t) {
         return cat({t * t, t.slice(1, 0, 1)}, 1);
       },
       -1},
      {"embedding",
       [](const Tensor& t) {
         Tensor e = embedding(t, from_vector<int64_t>({1, 0, 1}, {}, {.dtype = kInt64}));
         return e * e;
       },
       -1},
      {"cross_entropy",
       [](const Tensor& t) {
         return cross_entropy(t, from_vector<int64_t>({2, 0}, {}, {.dtype = kInt64}));
       },
       -1},
      {"where, masked_fill, maximum",
       [](const Tensor& t) {
         Tensor m =
             from_vector<bool>({true, false, true, false, false, true}, {2, 3}, {.dtype = kBool});
         return maximum(where(m, t * t, exp(t)), masked_fill(t * 2.0, m, 0.5));
       },
       -1},
      {"mean, sum", [](const Tensor& t) { return mean(t * t, {0}) * sum(t, {1}, true); }, -1},
  };
  Generator gen(5);
  for (const auto& fn : fns) {
    INFO(fn.name);
    Tensor x0 = (rand({2, 3}, {.dtype = kFloat64}, &gen) + fn.lo).detach();
    auto first = [&](const std::vector<Tensor>& in) {
      AutoGradMode on(true);  // gradcheck evaluates its numerical side without grad
      Tensor t = in[0].requires_grad() ? in[0] : in[0].detach().requires_grad_();
      Tensor out = fn.f(t);
      Generator wg(11);  // the same weights on every call, so that outputs do not just sum
      Tensor w = randn(out.shape(), {.dtype = kFloat64}, &wg);
      return grad({(out * w).sum()}, {t}, {}, false, /*create_graph=*/true)[0];
    };
    x0.requires_grad_();
    GradcheckResult r = gradcheck(first, {x0});
    CHECK_MESSAGE(r.ok, r.message);
  }
}

TEST_CASE("a graph is freed with its output; leaves outlive it") {
  Tensor x = leaf({1, 2, 3});
  std::weak_ptr<Node> node;
  {
    Tensor y = exp(x).sum();
    node = y.grad_fn();
    CHECK_FALSE(node.expired());
  }
  CHECK(node.expired());
  CHECK(x.requires_grad());
}

TEST_CASE("gradcheck reports the element that disagrees") {
  // A function whose recorded gradient is wrong: y = x * stop(x) claims dy/dx = x, not 2x.
  Tensor x = leaf({1, 2});
  GradcheckResult r =
      gradcheck([](const std::vector<Tensor>& in) { return in[0] * in[0].detach(); }, {x});
  CHECK_FALSE(r.ok);
  CHECK(r.message.find("input 0") != std::string::npos);
  CHECK(r.message.find("analytical 1") != std::string::npos);
  CHECK(r.message.find("numerical 2") != std::string::npos);
  // Inputs that require grad must be float64.
  CHECK_THROWS_AS(gradcheck([](const std::vector<Tensor>& in) { return in[0]; },
                            {ones({2}, {.requires_grad = true})}),
                  DTypeError);
  // The caller's tensors are left as they were.
  CHECK(gradcheck([](const std::vector<Tensor>& in) { return (in[0] * in[0]).sum(); }, {x}).ok);
  CHECK_FALSE(x.grad().defined());
}
