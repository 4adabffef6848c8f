// Bad input of every kind: each must throw the right minidl::Error subclass, with a message that
// starts with the op in brackets and names the shapes (or dtypes, devices, indices) involved.
#include <doctest/doctest.h>

#include <cstdlib>
#include <type_traits>

#include "base/env.h"
#include "test_utils.h"

using namespace minidl;

namespace {

template <class E, class F>
void check_error(const std::string& op, const std::vector<std::string>& parts, F&& f,
                 const char* expr) {
  static_assert(std::is_base_of_v<Error, E>);
  INFO(expr);
  try {
    f();
  } catch (const E& e) {
    const std::string m = e.what();
    CHECK_MESSAGE(m.rfind("[" + op + "]", 0) == 0, "message does not start with [", op, "]: ", m);
    for (const auto& p : parts)
      CHECK_MESSAGE(m.find(p) != std::string::npos, "'", p, "' not in: ", m);
    return;
  } catch (const std::exception& e) {
    FAIL_CHECK("threw another error type: " << std::string(e.what()));
    return;
  }
  FAIL_CHECK("did not throw");
}

/// CHECK_ERROR(ShapeError, "matmul", expr, "(2, 3)", "(4, 5)"): expr throws ShapeError whose
/// message starts with "[matmul]" and contains each of the strings.
#define CHECK_ERROR(ErrorT, op, expr, ...) \
  check_error<ErrorT>(                     \
      op, {__VA_ARGS__}, [&] { (void)(expr); }, #expr)

Tensor f32(Shape s) { return zeros(s); }
Tensor i64(Shape s) { return zeros(s, {.dtype = kInt64}); }
Tensor ids(std::vector<int64_t> v) { return from_vector<int64_t>(v, {}, {.dtype = kInt64}); }

}  // namespace

TEST_CASE("errors: pointwise shapes and dtypes") {
  CHECK_ERROR(ShapeError, "add", f32({2, 3}) + f32({4}), "(2, 3)", "(4,)");
  CHECK_ERROR(ShapeError, "mul", f32({2, 3, 4}) * f32({3, 1, 5}), "(2, 3, 4)", "(3, 1, 5)");
  CHECK_ERROR(ShapeError, "maximum", maximum(f32({2}), f32({3})), "(2,)", "(3,)");
  CHECK_ERROR(ShapeError, "lt", lt(f32({2}), f32({3})), "(2,)", "(3,)");
  CHECK_ERROR(DTypeError, "add", ones({2}, {.dtype = kBool}) + ones({2}, {.dtype = kBool}), "bool",
              "(2,)");
  CHECK_ERROR(DTypeError, "neg", -ones({2}, {.dtype = kBool}), "bool", "(2,)");
  CHECK_ERROR(ValueError, "add", f32({2}) + Tensor(), "undefined");
  CHECK_ERROR(DTypeError, "where", where(f32({2}), f32({2}), f32({2})), "bool", "float32", "(2,)");
  CHECK_ERROR(ShapeError, "where", where(ones({3}, {.dtype = kBool}), f32({2}), f32({2})), "(3,)",
              "(2,)");
  CHECK_ERROR(DTypeError, "masked_fill", masked_fill(f32({2}), f32({2}), 0.0), "bool", "(2,)");
  CHECK_ERROR(ShapeError, "masked_fill", masked_fill(f32({2}), ones({3, 2}, {.dtype = kBool}), 0.0),
              "(3, 2)", "(2,)");
  CHECK_ERROR(ShapeError, "masked_fill", masked_fill(f32({2}), ones({3}, {.dtype = kBool}), 0.0),
              "(3,)", "(2,)");
  CHECK_ERROR(ShapeError, "triu", triu(f32({3})), "(3,)");
  CHECK_ERROR(ShapeError, "tril", tril(f32({})), "()");
}

TEST_CASE("errors: reductions and row ops") {
  CHECK_ERROR(ShapeError, "sum", sum(f32({2, 3}), {2}), "dim 2", "(2, 3)");
  CHECK_ERROR(ShapeError, "sum", sum(f32({2, 3}), {-3}), "dim -3", "(2, 3)");
  CHECK_ERROR(ShapeError, "sum", sum(f32({2, 3}), {1, -1}), "repeated", "(2, 3)");
  CHECK_ERROR(ShapeError, "mean", mean(f32({2, 3}), {5}), "dim 5", "(2, 3)");
  CHECK_ERROR(DTypeError, "mean", mean(i64({2, 3}), {0}), "int64", "(2, 3)");
  CHECK_ERROR(ShapeError, "max", max(f32({0, 3}), {0}), "empty", "(0, 3)");
  CHECK_ERROR(DTypeError, "max", max(ones({2}, {.dtype = kBool})), "bool", "(2,)");
  CHECK_ERROR(ShapeError, "argmax", argmax(f32({2, 3}), 2), "dim 2", "(2, 3)");
  CHECK_ERROR(ShapeError, "argmax", argmax(f32({2, 0}), 1), "empty", "(2, 0)");
  CHECK_ERROR(ShapeError, "var", var(f32({1, 3}), {0}), "correction 1", "(1, 3)");
  CHECK_ERROR(ShapeError, "softmax", softmax(f32({2, 3}), 2), "dim 2", "(2, 3)");
  CHECK_ERROR(DTypeError, "softmax", softmax(i64({2, 3}), 1), "int64", "(2, 3)");
  CHECK_ERROR(ShapeError, "log_softmax", log_softmax(f32({2, 3}), -3), "dim -3", "(2, 3)");
  CHECK_ERROR(ShapeError, "layer_norm", layer_norm(f32({2, 3}), f32({4}), f32({4})), "(4,)",
              "(2, 3)");
  CHECK_ERROR(
      DTypeError, "layer_norm",
      layer_norm(f32({2, 3}), ones({3}, {.dtype = kFloat64}), ones({3}, {.dtype = kFloat64})),
      "float64", "float32");
  CHECK_ERROR(ValueError, "layer_norm", layer_norm(f32({2, 3}), f32({3}), Tensor()), "both");
  CHECK_ERROR(DTypeError, "layer_norm", layer_norm(i64({2, 3}), {}, {}), "int64", "(2, 3)");
  CHECK_ERROR(ShapeError, "layer_norm", layer_norm(f32({}), {}, {}), "scalar");
}

TEST_CASE("errors: matmul") {
  CHECK_ERROR(ShapeError, "matmul", matmul(f32({2, 3}), f32({4, 5})), "inner dimensions differ",
              "a is (2, 3), b is (4, 5)");
  CHECK_ERROR(ShapeError, "matmul", matmul(f32({3}), f32({4})), "(1, 3)", "(4, 1)");
  CHECK_ERROR(ShapeError, "matmul", matmul(f32({2, 2, 3}), f32({3, 3, 4})), "batch", "(2, 2, 3)",
              "(3, 3, 4)");
  CHECK_ERROR(ShapeError, "matmul", matmul(f32({}), f32({3})), "()", "(3,)");
  CHECK_ERROR(DTypeError, "matmul", matmul(i64({2, 3}), i64({3, 2})), "int64 (2, 3)",
              "int64 (3, 2)", "after promotion");
  CHECK_ERROR(DTypeError, "matmul", matmul(ones({2, 3}, {.dtype = kBool}), zeros({3, 2}, {.dtype = kInt32})),
              "bool (2, 3)", "int32 (3, 2)", "promote to int32");
  // Mixed dtypes with a floating result are promoted, not refused.
  CHECK(matmul(i64({2, 3}), f32({3, 2})).dtype() == kFloat32);
  CHECK(matmul(f32({2, 3}), zeros({3, 2}, {.dtype = kFloat64})).dtype() == kFloat64);
}

TEST_CASE("errors: views and shapes") {
  Tensor x = f32({3, 4});
  CHECK_ERROR(ShapeError, "view", x.t().view({12}), "(4, 3)", "(12,)", "strides (1, 4)",
              "reshape()");
  CHECK_ERROR(ShapeError, "view", x.view({5, 2}), "(5, 2)", "(3, 4)");
  CHECK_ERROR(ShapeError, "reshape", x.reshape({5}), "(5,)", "(3, 4)", "12 elements");
  CHECK_ERROR(ShapeError, "reshape", x.reshape({-1, -1}), "-1", "(-1, -1)");
  CHECK_ERROR(ShapeError, "reshape", x.reshape({-1, 5}), "(-1, 5)", "(3, 4)");
  CHECK_ERROR(ShapeError, "reshape", x.reshape({-2, -6}), "(-2, -6)");
  CHECK_ERROR(ShapeError, "permute", x.permute({0}), "(0,)", "(3, 4)");
  CHECK_ERROR(ShapeError, "permute", x.permute({0, 0}), "(0, 0)", "(3, 4)");
  CHECK_ERROR(ShapeError, "transpose", x.transpose(0, 2), "dim 2", "(3, 4)");
  CHECK_ERROR(ShapeError, "t", f32({3}).t(), "(3,)");
  CHECK_ERROR(ShapeError, "expand", x.expand({4, 4}), "(3, 4)", "(4, 4)");
  CHECK_ERROR(ShapeError, "expand", x.expand({4}), "(3, 4)", "(4,)");
  CHECK_ERROR(ShapeError, "expand", x.expand({-1, 3, 4}), "-1", "(-1, 3, 4)");
  CHECK_ERROR(ValueError, "slice", x.slice(0, 0, 2, 0), "step", "0");
  CHECK_ERROR(ShapeError, "slice", x.slice(2, 0, 1), "dim 2", "(3, 4)");
  CHECK_ERROR(ShapeError, "slice", f32({}).slice(0, 0, 1), "0-dim");
  CHECK_ERROR(IndexError, "select", x.select(0, 3), "index 3", "size 3", "(3, 4)");
  CHECK_ERROR(IndexError, "select", x.select(1, -5), "index -5", "size 4", "(3, 4)");
  CHECK_ERROR(ShapeError, "select", f32({}).select(0, 0), "0-dim");
  CHECK_ERROR(ShapeError, "squeeze", x.squeeze(2), "dim 2", "(3, 4)");
  CHECK_ERROR(ShapeError, "unsqueeze", x.unsqueeze(3), "dim 3", "(3, 4)");
  CHECK_ERROR(ShapeError, "flatten", f32({2, 3, 4}).flatten(2, 1), "start dim 2", "end dim 1",
              "(2, 3, 4)");
  CHECK_ERROR(ShapeError, "size", x.size(2), "dim 2", "(3, 4)");
  CHECK_ERROR(ShapeError, "size", f32({}).size(0), "0-dim");
  CHECK_ERROR(ShapeError, "cat", cat({f32({2, 3}), f32({2, 4})}, 0), "(2, 4)", "(2, 3)");
  CHECK_ERROR(ShapeError, "cat", cat({f32({2, 3}), f32({2})}, 0), "(2,)", "(2, 3)");
  CHECK_ERROR(ShapeError, "cat", cat({f32({2, 3}), f32({2, 3})}, 2), "dim 2", "(2, 3)");
  CHECK_ERROR(ShapeError, "cat", cat({f32({}), f32({})}), "()");
  CHECK_ERROR(ValueError, "cat", cat({}), "at least one");
  CHECK_ERROR(ShapeError, "copy_", Tensor(f32({2, 3})).copy_(f32({3, 2})), "(3, 2)", "(2, 3)");
}

TEST_CASE("errors: indices out of range") {
  Tensor w = f32({10, 4});
  CHECK_ERROR(IndexError, "embedding", embedding(w, ids({1, 10, 2})), "index 10", "position 1",
              "(3,)", "(10, 4)");
  CHECK_ERROR(IndexError, "embedding", embedding(w, ids({-1})), "index -1", "(10, 4)");
  CHECK_ERROR(DTypeError, "embedding", embedding(w, f32({3})), "float32", "(3,)");
  CHECK_ERROR(ShapeError, "embedding", embedding(f32({10}), ids({1})), "(10,)");
  Tensor logits = f32({3, 4});
  CHECK_ERROR(IndexError, "cross_entropy", cross_entropy(logits, ids({0, 4, 1})), "target 4",
              "row 1", "4 classes", "(3, 4)");
  CHECK_ERROR(IndexError, "cross_entropy", cross_entropy(logits, ids({0, -1, 1})), "target -1",
              "(3, 4)");
  CHECK_ERROR(ShapeError, "cross_entropy", cross_entropy(logits, ids({0, 1})), "(2,)", "(3, 4)");
  CHECK_ERROR(ShapeError, "cross_entropy", cross_entropy(f32({2, 3, 4}), ids({0, 1})), "(2, 3, 4)");
  CHECK_ERROR(DTypeError, "cross_entropy", cross_entropy(logits, f32({3})), "float32");
  CHECK_ERROR(DTypeError, "cross_entropy", cross_entropy(i64({3, 4}), ids({0, 1, 2})), "int64");
  CHECK_ERROR(IndexError, "one_hot", one_hot(ids({0, 3}), 3), "index 3", "(2,)", "3 classes");
  CHECK_ERROR(ValueError, "one_hot", one_hot(ids({0}), 0), "num_classes", "0");
  CHECK_ERROR(DTypeError, "one_hot", one_hot(f32({2}), 3), "float32", "(2,)");
}

TEST_CASE("errors: tensor access and factories") {
  CHECK_ERROR(ValueError, "item", f32({2, 3}).item(), "(2, 3)");
  CHECK_ERROR(ValueError, "item", f32({0}).item(), "(0,)");
  Tensor p = placeholder({{2, 3}, kFloat32, kCPU});
  CHECK_ERROR(ValueError, "data", p.data_ptr(), "(2, 3)", "placeholder");
  CHECK_ERROR(ValueError, "data", p.to_vector<float>(), "(2, 3)", "placeholder");
  CHECK_ERROR(ValueError, "data", placeholder({{1}, kFloat32, kCPU}).item(), "placeholder");
  CHECK_ERROR(ValueError, "add", p + 1.0, "(2, 3)", "no data");
  CHECK_ERROR(DTypeError, "data", f32({2}).data<double>(), "float32", "float64");
  CHECK_ERROR(ValueError, "tensor", Tensor().shape(), "undefined");
  CHECK_ERROR(ShapeError, "full", zeros({2, -1}), "(2, -1)");
  CHECK_ERROR(ShapeError, "from_vector", from_vector<float>({1, 2, 3}, {2, 2}), "3 values",
              "(2, 2)");
  CHECK_ERROR(DTypeError, "rand", rand({2}, {.dtype = kInt64}), "int64");
  CHECK_ERROR(DTypeError, "randn", randn({2}, {.dtype = kBool}), "bool");
  CHECK_ERROR(ValueError, "randint", randint(3, 3, {2}), "[3, 3)");
  CHECK_ERROR(ValueError, "arange", arange(0, 5, 0), "step=0");
  CHECK_ERROR(ValueError, "dropout", dropout(f32({2}), 1.0), "1");
  CHECK_ERROR(ValueError, "dropout", dropout(f32({2}), -0.1), "-0.1");
  CHECK_ERROR(DTypeError, "dropout", dropout(i64({2}), 0.5), "int64", "(2,)");
  CHECK_ERROR(DTypeError, "dtype", dtype_from_string("float8"), "float8");
  CHECK_ERROR(DeviceError, "device", Device::parse("tpu"), "tpu");
  CHECK_ERROR(DeviceError, "device", Device::parse("cuda:x"), "cuda:x");
  // In-place writes into a leaf that requires grad (outside NoGradGuard) would corrupt autograd.
  Tensor leaf = zeros({2}, {.requires_grad = true});
  CHECK_ERROR(ValueError, "copy_", leaf.copy_(f32({2})), "NoGradGuard");
}

TEST_CASE("errors: sizes past int64") {
  constexpr int64_t big = (int64_t{1} << 62) + 1, two32 = int64_t{1} << 32;
  // Element counts that wrap around: 4 * (2^62 + 1) = 2^64 + 4, 2^32 * 2^32 = 2^64.
  CHECK_ERROR(ShapeError, "full", zeros({big, 4}), "(4611686018427387905, 4)", "2^63 - 1");
  CHECK_ERROR(ShapeError, "full", zeros({two32, two32}), "(4294967296, 4294967296)", "too large");
  CHECK_ERROR(ShapeError, "full", zeros({0, two32, two32}), "too large");  // the strides would wrap
  // The count fits but the bytes do not: 2^62 float32 elements are 2^64 bytes.
  CHECK_ERROR(ShapeError, "full", zeros({int64_t{1} << 62}), "float32", "(4611686018427387904,)",
              "bytes");
  CHECK_ERROR(ShapeError, "expand", ones({1}).expand({big, 4}).sum(), "(4611686018427387905, 4)",
              "too large");
  CHECK_ERROR(ShapeError, "reshape", f32({4}).reshape({-1, big, 4}), "(1, 4611686018427387905, 4)");
  CHECK_ERROR(ShapeError, "reshape", f32({0}).reshape({-1, two32, two32}), "too large");
  CHECK_ERROR(ShapeError, "view", f32({4}).view({-1, big, 4}), "too large");
  CHECK_ERROR(ShapeError, "arange", arange(0, 1e30), "1e+30 elements", "2^63 - 1");
  CHECK_ERROR(ShapeError, "arange", arange(0, 9.3e18), "9.3e+18 elements", "2^63 - 1");
  CHECK_ERROR(ShapeError, "arange", arange(0, 1, 1e-30), "step=1e-30", "2^63 - 1");
  CHECK_ERROR(ShapeError, "arange", arange(-1e308, 1e308), "inf elements");
  CHECK_ERROR(ValueError, "memory", parse_bytes("1e30"), "'1e30'", "2^63 - 1");
  CHECK_ERROR(ValueError, "memory", parse_bytes("8388608T"), "'8388608T'", "2^63 - 1");
  CHECK_ERROR(ValueError, "memory", parse_bytes("0.5"), "'0.5'", "less than one byte");
  // A step past the slice's length (end - start + step - 1 would wrap).
  CHECK(f32({3, 4}).slice(0, 0, 3, INT64_MAX).shape() == Shape{1, 4});
  CHECK(f32({3, 4}).slice(1, 1, 4, INT64_MAX - 1).shape() == Shape{3, 1});
}

TEST_CASE("errors: devices") {
  if (!cuda::is_available()) {
    // Without a GPU, asking for one says why.
    CHECK_ERROR(DeviceError, "to_device", f32({2, 3}).to(kCUDA), "(2, 3)", "cuda:0");
    CHECK_ERROR(DeviceError, "full", zeros({2}, {.device = kCUDA}), "cuda:0");
    return;
  }
  // Mixed devices name every input's device and shape (a 0-dim CPU tensor is a scalar that
  // goes with any device, so it is not an error).
  Tensor c = f32({2, 3}), g = f32({2, 3}).to(kCUDA);
  CHECK_ERROR(DeviceError, "add", c + g, "cpu (2, 3)", "cuda:0 (2, 3)");
  CHECK_ERROR(DeviceError, "matmul", matmul(c, g.t()), "cpu (2, 3)", "cuda:0 (3, 2)");
  CHECK_ERROR(DeviceError, "where", where(ones({2, 3}, {.dtype = kBool}), g, c), "cpu", "cuda:0");
  CHECK_ERROR(DeviceError, "embedding", embedding(g, ids({0})), "cpu", "cuda:0");
  CHECK_ERROR(DeviceError, "to_device", c.to(Device(DeviceType::CUDA, cuda::device_count())),
              "does not exist");
  CHECK_NOTHROW(g * scalar_tensor(2.0));
}

TEST_CASE("logging: one named logger per area, level from MINIDL_LOG_LEVEL") {
  // tests/CMakeLists.txt also runs this with MINIDL_LOG_LEVEL set to debug, DEBUG, WARN, banana
  // and "", and MINIDL_TEST_LOG_LEVEL to the level each must give; it checks the output too.
  spdlog::logger& l = log("tests");
  CHECK(l.name() == "minidl.tests");
  CHECK(&log("tests") == &l);
  const char* env = std::getenv("MINIDL_LOG_LEVEL");
  const char* expected = std::getenv("MINIDL_TEST_LOG_LEVEL");
  CHECK(l.level() == spdlog::level::from_str(expected ? expected : env ? env : "warn"));
  if (expected) l.warn("a warning after the level was read");
}

TEST_CASE("errors: environment variables that do not parse name the variable") {
  struct Env {  // sets a variable of the test's own for the scope
    const char* name;
    Env(const char* n, const char* v) : name(n) { ::setenv(n, v, 1); }
    ~Env() { ::unsetenv(name); }
  };
  CHECK(!env_choice("MINIDL_TEST_ENV_VAR", {"ffma", "tf32"}));
  CHECK(env_flag("MINIDL_TEST_ENV_VAR", true));
  CHECK(!env_bytes("MINIDL_TEST_ENV_VAR"));
  {
    Env e("MINIDL_TEST_ENV_VAR", "TF32");
    CHECK(env_choice("MINIDL_TEST_ENV_VAR", {"ffma", "tf32"}) == "tf32");
  }
  for (const char* bad : {"banana", ""}) {
    Env e("MINIDL_TEST_ENV_VAR", bad);
    CHECK_ERROR(ValueError, "env", env_choice("MINIDL_TEST_ENV_VAR", {"ffma", "tf32"}),
                fmt::format("MINIDL_TEST_ENV_VAR='{}' is not one of ffma, tf32", bad));
    CHECK(env_flag("MINIDL_TEST_ENV_VAR", true));  // warns, keeps the default
    CHECK(!env_flag("MINIDL_TEST_ENV_VAR", false));
  }
  for (const char* on : {"1", "on", "TRUE", "Yes"}) {
    Env e("MINIDL_TEST_ENV_VAR", on);
    CHECK(env_flag("MINIDL_TEST_ENV_VAR", false));
  }
  for (const char* off : {"0", "OFF", "false", "no"}) {
    Env e("MINIDL_TEST_ENV_VAR", off);
    CHECK(!env_flag("MINIDL_TEST_ENV_VAR", true));
  }
  {
    Env e("MINIDL_TEST_ENV_VAR", "2GiB");
    CHECK(env_bytes("MINIDL_TEST_ENV_VAR") == int64_t{2} << 30);
  }
  for (const char* bad : {"1e30", "0.5", "lots", ""}) {
    Env e("MINIDL_TEST_ENV_VAR", bad);
    CHECK_ERROR(ValueError, "env", env_bytes("MINIDL_TEST_ENV_VAR"),
                fmt::format("MINIDL_TEST_ENV_VAR='{}': ", bad));
  }
}

TEST_CASE("errors: every error is a minidl::Error and a std::runtime_error") {
  CHECK_THROWS_AS(matmul(f32({2, 3}), f32({4, 5})), Error);
  CHECK_THROWS_AS(matmul(f32({2, 3}), f32({4, 5})), std::runtime_error);
  CHECK_THROWS_AS(f32({2}).select(0, 5), Error);
  CHECK_THROWS_AS(parse_bytes("lots"), Error);
  static_assert(std::is_base_of_v<Error, ShapeError> && std::is_base_of_v<Error, DTypeError> &&
                std::is_base_of_v<Error, DeviceError> &&
                std::is_base_of_v<Error, OutOfMemoryError> &&
                std::is_base_of_v<Error, CompileError> && std::is_base_of_v<Error, IndexError> &&
                std::is_base_of_v<Error, ValueError>);
}
