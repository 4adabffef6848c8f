// Uses an installed minidl: a few ops, a backward, an error. Exits non-zero if anything is off.
#include <minidl/minidl.h>

#include <cstdio>

using namespace minidl;

int main() {
  int failures = 0;
  auto check = [&](bool ok, const char* what) {
    if (!ok) {
      std::fprintf(stderr, "consumer: FAILED %s\n", what);
      ++failures;
    }
  };
  Tensor a = from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor w = ones({3, 2}, {.requires_grad = true});
  Tensor loss = softmax(matmul(a, w), -1).sum() + (a * 2.0).mean();
  check(loss.item() == 2 + 7, "forward");  // rows of a softmax sum to 1; mean(2a) = 7
  loss.backward();
  check(w.grad().defined() && w.grad().shape() == Shape{3, 2}, "backward");
  try {
    matmul(a, a);
    check(false, "error");
  } catch (const ShapeError& e) {
    check(std::string(e.what()).rfind("[matmul]", 0) == 0, "error message");
  }
  std::printf("consumer: minidl %s, CUDA %s, %s\n", MINIDL_VERSION,
              MINIDL_WITH_CUDA ? "built" : "not built", failures ? "FAILED" : "ok");
  return failures ? 1 : 0;
}
