#include <doctest/doctest.h>

#include "core/minidl.h"

using namespace minidl;

TEST_CASE("gradcheck attention composite") {
  manual_seed(1);
  Tensor q = randn({2, 5, 3}, {.dtype = kFloat64, .requires_grad = true});
  Tensor k = randn({2, 5, 3}, {.dtype = kFloat64, .requires_grad = true});
  Tensor v = randn({2, 5, 3}, {.dtype = kFloat64, .requires_grad = true});
  auto r = gradcheck([](const std::vector<Tensor>& in) {
    Tensor s = matmul(in[0], in[1].transpose(-2, -1)) * (1.0 / std::sqrt(3.0));
    return matmul(softmax(s, -1), in[2]);
  }, {q, k, v});
  CHECK_MESSAGE(r.ok, r.message);
}

TEST_CASE("backward accumulates and frees") {
  Tensor x = from_vector<double>({1, 2, 3}, {}, {.dtype = kFloat64, .requires_grad = true});
  Tensor y = (x * x).sum();
  y.backward({}, true);
  CHECK(x.grad().to_vector<double>() == std::vector<double>{2, 4, 6});
  y.backward();
  CHECK(x.grad().to_vector<double>() == std::vector<double>{4, 8, 12});
  CHECK_THROWS_AS(y.backward(), ValueError);
}
