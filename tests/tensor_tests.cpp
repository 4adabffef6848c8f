#include <doctest/doctest.h>

#include "core/minidl.h"

using namespace minidl;

TEST_CASE("tensor basics") {
  Tensor a = from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3});
  CHECK(a.shape() == Shape{2, 3});
  CHECK(a.is_contiguous());
  Tensor t = a.t();
  CHECK(t.shape() == Shape{3, 2});
  CHECK_FALSE(t.is_contiguous());
  CHECK(t.contiguous().to_vector<float>() == std::vector<float>{1, 4, 2, 5, 3, 6});
  Tensor b = a + 1.0;
  CHECK(b.to_vector<float>() == std::vector<float>{2, 3, 4, 5, 6, 7});
  MESSAGE(a.str());
}
