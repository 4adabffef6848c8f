// minidl::nn and minidl::optim: the JSON reader, safetensors I/O, modules and state dicts,
// layers and the GPT, losses, optimizers against hand-computed values, clipping, schedules, and
// short training runs.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <numbers>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "minidl/minidl.h"
#include "nn/json.h"
#include "nn/nn.h"
#include "optim/optim.h"
#include "test_utils.h"

using namespace minidl;
using minidl::testing::rel_error;

namespace {

// A file path under the system temp dir, removed when the test ends.
struct TempPath {
  std::string path;
  explicit TempPath(const std::string& name)
      : path((std::filesystem::temp_directory_path() / ("minidl_nn_tests_" + name)).string()) {}
  ~TempPath() { std::remove(path.c_str()); }
};

std::string le64(uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((n >> (8 * i)) & 0xFF);
  return s;
}

// A safetensors file from a header and data, with the length prefix computed.
std::string st_file(const std::string& header, const std::string& data) {
  return le64(header.size()) + header + data;
}

// Expects a minidl::ValueError whose message contains `part`.
template <class F>
void check_value_error(F&& f, const std::string& part) {
  try {
    f();
    FAIL("no error; expected one mentioning: " << part);
  } catch (const ValueError& e) {
    CHECK_MESSAGE(std::string(e.what()).find(part) != std::string::npos,
                  "message '" << e.what() << "' does not mention '" << part << "'");
  }
}

// Net: a module with a parameter of its own and nested submodules.
struct Net : nn::Module {
  Tensor scale;
  std::shared_ptr<nn::Linear> fc1;
  std::shared_ptr<nn::Sequential> body;
  Net() : Module("Net") {
    scale = ones({3});
    register_parameter("scale", scale);
    fc1 = register_module("fc1", std::make_shared<nn::Linear>(3, 4));
    body = register_module("body", std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{
                                       std::make_shared<nn::ReLU>(), std::make_shared<nn::Linear>(4, 2, false)}));
  }
  Tensor forward(const Tensor& x) override { return body->forward(fc1->forward(x * scale)); }
  void add_param(const std::string& name, Tensor& t) { register_parameter(name, t); }
  void add_module(const std::string& name) { register_module(name, std::make_shared<nn::ReLU>()); }
};

std::vector<std::string> names_of(const nn::Module& m) {
  std::vector<std::string> out;
  for (const auto& [name, t] : m.named_parameters()) out.push_back(name);
  return out;
}

}  // namespace

// ============================================================================ JSON

TEST_CASE("json: parses the subset") {
  const nn::JsonValue v = nn::parse_json(
      R"( {"a": [1, -2, 0], "b": {"c": "x\"y\\z\n\u00e9\ud83d\ude00"}, "e": [], "f": {}} )");
  REQUIRE(v.kind == nn::JsonValue::Kind::Object);
  REQUIRE(v.object.size() == 4);
  CHECK(v.object[0].key == "a");  // file order is kept
  const nn::JsonValue* a = v.find("a");
  REQUIRE(a);
  REQUIRE(a->array.size() == 3);
  CHECK(a->array[1].integer == -2);
  CHECK(v.find("b")->find("c")->string == "x\"y\\z\n\xC3\xA9\xF0\x9F\x98\x80");
  CHECK(v.find("e")->array.empty());
  CHECK(v.find("f")->kind == nn::JsonValue::Kind::Object);
  CHECK(v.find("missing") == nullptr);
  CHECK(nn::parse_json("9223372036854775807").integer == INT64_MAX);
  CHECK(nn::parse_json("-9223372036854775808").integer == INT64_MIN);
}

TEST_CASE("json: rejects everything outside the strict subset") {
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"", "unexpected end"},
      {"{", "unexpected end"},
      {R"({"a":1,})", "expected a string key"},
      {"[1,]", "unexpected character"},
      {"[1 2]", "expected ','"},
      {R"({"a" 1})", "expected ':'"},
      {"01", "leading zeros"},
      {"1.5", "only integers"},
      {"1e3", "only integers"},
      {"-", "expected a digit"},
      {"true", "unexpected character 't'"},
      {"null", "unexpected character 'n'"},
      {"9223372036854775808", "64-bit range"},
      {"-9223372036854775809", "64-bit range"},
      {R"("\x")", "invalid escape"},
      {R"("abc)", "unterminated string"},
      {"\"a\x01\"", "control character"},
      {"\"\xff\"", "invalid UTF-8"},
      {"\"\xC0\xAF\"", "invalid UTF-8"},   // overlong '/'
      {"\"\xED\xA0\x80\"", "invalid UTF-8"},  // encoded surrogate
      {R"("\ud800")", "unpaired high surrogate"},
      {R"("\udc00")", "unpaired low surrogate"},
      {R"("\u12g4")", "invalid hex digit"},
      {R"({"a":1,"a":2})", "duplicate key"},
      {"{} x", "trailing data"},
      {std::string(100, '[') + std::string(100, ']'), "nesting deeper"},
  };
  for (const auto& [text, part] : bad) {
    CAPTURE(text);
    check_value_error([&] { nn::parse_json(text); }, part);
  }
}

TEST_CASE("json: random bytes never crash the parser") {
  std::mt19937 rng(7);
  const std::string alphabet = "{}[]\",:-0123456789 \\u\"abe\x80\xff";
  int parsed = 0;
  for (int i = 0; i < 3000; ++i) {
    std::string s(rng() % 24, '\0');
    for (char& c : s) c = i % 2 ? static_cast<char>(rng()) : alphabet[rng() % alphabet.size()];
    try {
      nn::parse_json(s);
      ++parsed;
    } catch (const Error&) {
      // every failure is a minidl::Error; anything else escapes and fails the test
    }
  }
  CHECK(parsed > 0);  // the generator does produce valid documents too
}

TEST_CASE("json: quoting escapes and round-trips") {
  const std::string s = "a\"b\\c\n\t\x01\xC3\xA9";
  CHECK(nn::json_quote(s) == "\"a\\\"b\\\\c\\n\\t\\u0001\xC3\xA9\"");
  CHECK(nn::parse_json(nn::json_quote(s)).string == s);
  check_value_error([] { nn::json_quote("\xff"); }, "invalid UTF-8");
}

// ============================================================================ safetensors

TEST_CASE("safetensors: the exact bytes of the reference implementation") {
  // The reference's serialization test vector (Hugging Face safetensors, bindings/python/tests):
  // a (2, 2) int32 zero tensor; the header is padded with spaces to a multiple of 8 bytes.
  const Tensor z = zeros({2, 2}, {.dtype = kInt32});
  const std::string expected = std::string("@\0\0\0\0\0\0\0", 8) +
                               R"({"test":{"dtype":"I32","shape":[2,2],"data_offsets":[0,16]}})" +
                               "    " + std::string(16, '\0');
  CHECK(nn::serialize_safetensors({{"test", z}}) == expected);

  // The reference's load test (hand-written there, padded with 7 spaces) reads back...
  const std::string meta_header =
      R"({"__metadata__":{"framework":"pt"},"test1":{"dtype":"I32","shape":[2,2],"data_offsets":[0,16]}})";
  const nn::SafeTensors back = nn::deserialize_safetensors(
      std::string("f\0\0\0\0\0\0\0", 8) + meta_header + "       " + std::string(16, '\0'));
  CHECK(back.metadata.at("framework") == "pt");
  // ... and writing it again pads the 95-byte header to 96, as the reference's writer does.
  CHECK(nn::serialize_safetensors(back.tensors, back.metadata) ==
        std::string("`\0\0\0\0\0\0\0", 8) + meta_header + " " + std::string(16, '\0'));
  CHECK(back.tensors.at("test1").shape() == Shape{2, 2});
}

TEST_CASE("safetensors: little-endian data of a known float tensor") {
  const std::string bytes = nn::serialize_safetensors({{"w", from_vector<float>({1.0f, -2.0f})}});
  const std::string header = R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";  // 54 bytes
  REQUIRE(header.size() == 54);
  CHECK(bytes.substr(0, 8) == std::string("\x38\0\0\0\0\0\0\0", 8));  // 56 = 54 + 2 spaces
  CHECK(bytes.substr(8, 56) == header + "  ");
  CHECK(bytes.substr(64) == std::string("\x00\x00\x80\x3f\x00\x00\x00\xc0", 8));  // 1.0f, -2.0f
}

TEST_CASE("safetensors: round trip of every dtype, scalars, empty and strided tensors") {
  manual_seed(3);
  nn::TensorMap in;
  in["f32"] = randn({3, 4});
  in["f64"] = randn({5}, {.dtype = kFloat64});
  in["f16"] = randn({2, 3}).to(kFloat16);
  in["bf16"] = randn({2, 3}).to(kBFloat16);
  in["i32"] = from_vector<int32_t>({-1, 0, 7}, {}, {.dtype = kInt32});
  in["i64"] = from_vector<int64_t>({INT64_MIN, 0, INT64_MAX}, {}, {.dtype = kInt64});
  in["bool"] = from_vector<bool>({true, false, true}, {}, {.dtype = kBool});
  in["scalar"] = scalar_tensor(2.5);
  in["empty"] = zeros({0, 3});
  in["strided"] = randn({3, 4}).t();  // saved as its contiguous values
  in["ünïcode name"] = ones({1});
  TempPath file("roundtrip.safetensors");
  nn::save_safetensors(file.path, in, {{"note", "hello \"world\""}});
  const nn::SafeTensors out = nn::load_safetensors(file.path);
  CHECK(out.metadata.at("note") == "hello \"world\"");
  REQUIRE(out.tensors.size() == in.size());
  for (const auto& [name, t] : in) {
    CAPTURE(name);
    const Tensor& u = out.tensors.at(name);
    CHECK(u.dtype() == t.dtype());
    CHECK(u.shape() == t.shape());
    CHECK(u.device() == kCPU);
    CHECK(u.to_vector<double>() == t.to_vector<double>());
  }
  CHECK(out.tensors.at("i64").to_vector<int64_t>() == std::vector<int64_t>{INT64_MIN, 0, INT64_MAX});
}

TEST_CASE("safetensors: tensors are laid out aligned to their element size") {
  const std::string bytes = nn::serialize_safetensors(
      {{"a_bool", ones({3}, {.dtype = kBool})}, {"b_f64", ones({1}, {.dtype = kFloat64})},
       {"c_f16", ones({1}, {.dtype = kFloat16})}});
  const size_t n = bytes.size() - 8 - 13;  // the header's length: all but the prefix and 13 data bytes
  CHECK(bytes.substr(0, 8) == le64(n));
  const nn::JsonValue h = nn::parse_json(bytes.substr(8, n));
  CHECK(h.find("b_f64")->find("data_offsets")->array[0].integer == 0);
  CHECK(h.find("c_f16")->find("data_offsets")->array[0].integer == 8);
  CHECK(h.find("a_bool")->find("data_offsets")->array[0].integer == 10);
  CHECK(n % 8 == 0);  // header padded: the data starts 8-aligned
}

TEST_CASE("safetensors: malformed files raise clear errors") {
  const std::string f32x2(8, '\0');
  const auto entry = [](const char* name, const char* dtype, const char* shape, const char* offsets) {
    return fmt::format(R"("{}":{{"dtype":"{}","shape":{},"data_offsets":{}}})", name, dtype, shape, offsets);
  };
  const auto obj = [](const std::string& a, const std::string& b = "") {
    return fmt::format("{{{}{}{}}}", a, b.empty() ? "" : ",", b);
  };
  const std::string good = obj(entry("a", "F32", "[2]", "[0,8]"));
  REQUIRE_NOTHROW(nn::deserialize_safetensors(st_file(good, f32x2)));

  const std::vector<std::pair<std::string, std::string>> cases = {
      {"abc", "too short"},
      {le64(200'000'000) + "{}", "over the 100000000-byte limit"},
      {le64(64) + "{}", "runs past the end of the file"},
      {le64(UINT64_MAX) + "{}", "over the"},
      {st_file("[]", ""), "does not start with '{'"},
      {st_file("", ""), "does not start with '{'"},
      {st_file(R"({"a":)", ""), "invalid JSON"},
      {st_file(R"({"a":{"dtype":"F32",}})", ""), "invalid JSON"},
      {st_file(R"({"a":1})", ""), "is a JSON integer, not an object"},
      {st_file(obj(entry("a", "U8", "[2]", "[0,2]")), std::string(2, '\0')), "dtype \"U8\", which minidl does not support"},
      {st_file(obj(entry("a", "F32", "[3]", "[0,8]")), f32x2), "needs 12 bytes but data_offsets [0, 8] hold 8"},
      {st_file(good, std::string(4, '\0')), "run past the end of the data (4 bytes; truncated?)"},
      {st_file(obj(entry("a", "F32", "[2]", "[8,0]")), f32x2), "end before they begin"},
      {st_file(obj(entry("a", "F32", "[2]", "[0,8]"), entry("b", "F32", "[1]", "[4,8]")), f32x2), "overlap"},
      {st_file(obj(entry("a", "F32", "[1]", "[4,8]")), f32x2), "data bytes [0, 4) belong to no tensor"},
      {st_file(good, f32x2 + "xx"), "2 data bytes after the last tensor"},
      {st_file(obj(entry("a", "F32", "[-2]", "[0,8]")), f32x2), "non-negative integers"},
      {st_file(obj(entry("a", "F32", "[4294967296,4294967296]", "[0,8]")), f32x2), "shape is too large"},
      {st_file(obj(entry("a", "F32", "2", "[0,8]")), f32x2), "shape is a JSON integer"},
      {st_file(obj(entry("a", "F32", "[2]", "[0,8,9]")), f32x2), "data_offsets must be an array [begin, end]"},
      {st_file(obj(entry("a", "BOOL", "[2]", "[0,2]")), std::string("\x01\x02", 2)), "BOOL byte 1 is 2"},
      {st_file(R"({"a":{"dtype":"F32","shape":[2]}})", f32x2), "needs dtype, shape and data_offsets"},
      {st_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}})", f32x2), "unknown field \"x\""},
      {st_file(R"({"__metadata__":{"k":1}})", ""), "__metadata__ value of \"k\" is a JSON integer"},
      {st_file(R"({"__metadata__":[]})", ""), "__metadata__ is a JSON array"},
  };
  for (const auto& [bytes, part] : cases) {
    CAPTURE(part);
    check_value_error([&] { nn::deserialize_safetensors(bytes, "'x.safetensors'"); }, part);
    check_value_error([&] { nn::deserialize_safetensors(bytes, "'x.safetensors'"); }, "[safetensors]");
  }
  check_value_error([] { nn::load_safetensors("/nonexistent/dir/m.safetensors"); }, "cannot open");
  check_value_error([] { nn::save_safetensors("/nonexistent/dir/m.safetensors", {}); },
                    "cannot write '/nonexistent/dir/m.safetensors'");
  check_value_error([] { nn::serialize_safetensors({{"__metadata__", ones({1})}}); }, "invalid tensor name");
  check_value_error([] { nn::serialize_safetensors({{"bad\xff", ones({1})}}); }, "invalid UTF-8");
}

TEST_CASE("safetensors: every I/O failure is a ValueError naming the path") {
  TempPath dir("a_directory");
  std::filesystem::create_directory(dir.path);
  check_value_error([&] { nn::load_safetensors(dir.path); }, "[safetensors] cannot read '" + dir.path + "'");
  check_value_error([&] { nn::load_safetensors(dir.path); }, "Is a directory");
  check_value_error([&] { nn::save_safetensors(dir.path, {{"w", ones({2})}}); },
                    "[safetensors] cannot write '" + dir.path + "'");
  check_value_error([] { nn::load_safetensors("/nonexistent/dir/m.safetensors"); },
                    "cannot open '/nonexistent/dir/m.safetensors'");
  nn::Linear m(2, 3);
  check_value_error([&] { m.load(dir.path); }, "'" + dir.path + "'");
  // Nothing is left beside the path after a failed save.
  for (const auto& f : std::filesystem::directory_iterator(std::filesystem::path(dir.path).parent_path()))
    CHECK(f.path().string().rfind(dir.path + ".tmp", 0) == std::string::npos);
}

TEST_CASE("safetensors: concurrent saves to one path leave one complete file") {
  TempPath file("concurrent.safetensors");
  constexpr int kWriters = 8;
  std::vector<nn::TensorMap> writes(kWriters);
  for (int i = 0; i < kWriters; ++i)  // files of different lengths, so a mix cannot parse
    writes[i] = {{"w", full({64, 64}, i)}, {"b", full({i + 1}, i, {.dtype = kInt64})}};
  for (int round = 0; round < 10; ++round) {
    std::mutex mu;
    std::vector<std::string> errors;
    std::vector<std::thread> threads;
    for (int i = 0; i < kWriters; ++i)
      threads.emplace_back([&, i] {
        try {
          nn::save_safetensors(file.path, writes[i]);
        } catch (const std::exception& e) {
          std::lock_guard<std::mutex> lock(mu);
          errors.push_back(e.what());
        }
      });
    for (auto& t : threads) t.join();
    CHECK_MESSAGE(errors.empty(), (errors.empty() ? std::string() : errors.front()));
    const nn::SafeTensors out = nn::load_safetensors(file.path);
    REQUIRE(out.tensors.size() == 2);
    const auto i = static_cast<int>(out.tensors.at("b").to_vector<int64_t>().at(0));
    REQUIRE(i >= 0);
    REQUIRE(i < kWriters);
    CHECK(out.tensors.at("b").to_vector<int64_t>() == writes[i].at("b").to_vector<int64_t>());
    CHECK(out.tensors.at("w").to_vector<float>() == writes[i].at("w").to_vector<float>());
  }
  for (const auto& f : std::filesystem::directory_iterator(std::filesystem::path(file.path).parent_path()))
    CHECK(f.path().string().rfind(file.path + ".tmp", 0) == std::string::npos);
}

TEST_CASE("safetensors: a header of 64k tensors parses in linear time") {
  constexpr int kTensors = 1 << 16;
  std::string header = "{";
  for (int i = 0; i < kTensors; ++i)
    header += fmt::format(R"({}"t{}":{{"dtype":"F32","shape":[1],"data_offsets":[{},{}]}})", i ? "," : "",
                          i, 4 * i, 4 * i + 4);
  header += "}";
  const std::string bytes = st_file(header, std::string(4 * kTensors, '\0'));
  const auto t0 = std::chrono::steady_clock::now();
  const nn::SafeTensors out = nn::deserialize_safetensors(bytes);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  CHECK(out.tensors.size() == kTensors);
  CHECK_MESSAGE(s < 2.0, "64k tensors took ", s, " s (was 7 s with a quadratic duplicate-key scan)");
  // Duplicates are still found, wherever they are.
  check_value_error([&] { nn::deserialize_safetensors(st_file(header.substr(0, header.size() - 1) + R"(,"t0":{}})", "")); },
                    "duplicate key \"t0\"");
}

TEST_CASE("safetensors: corrupted and truncated files never crash") {
  manual_seed(5);
  const std::string good = nn::serialize_safetensors(
      {{"w", randn({4, 3})}, {"ids", from_vector<int64_t>({1, 2, 3})}, {"m", ones({2}, {.dtype = kBool})}},
      {{"k", "v"}});
  std::mt19937 rng(11);
  int loaded = 0;
  for (int i = 0; i < 2000; ++i) {
    std::string bytes = good;
    if (i % 3 == 0) {
      bytes.resize(rng() % good.size());
    } else {
      for (int k = 0, n = 1 + static_cast<int>(rng() % 4); k < n; ++k)
        bytes[rng() % bytes.size()] = static_cast<char>(rng());
    }
    try {
      nn::deserialize_safetensors(bytes);
      ++loaded;  // a flipped data byte still makes a valid file
    } catch (const Error&) {
    }
  }
  CHECK(loaded > 0);
}

// ============================================================================ Module

TEST_CASE("module: registration, dotted names and order") {
  Net net;
  CHECK(names_of(net) == std::vector<std::string>{"scale", "fc1.weight", "fc1.bias", "body.1.weight"});
  CHECK(net.parameters().size() == 4);
  CHECK(net.num_parameters() == 3 + 12 + 4 + 8);
  for (const Tensor& p : net.parameters()) CHECK(p.requires_grad());
  CHECK(net.children().size() == 2);
  CHECK(net.children()[1].first == "body");
  CHECK(net.type_name() == "Net");

  Tensor extra = ones({1});
  check_value_error([&] { net.add_param("scale", extra); }, "already registered");
  check_value_error([&] { net.add_module("fc1"); }, "already registered");
  check_value_error([&] { net.add_param("a.b", extra); }, "invalid name 'a.b'");
  check_value_error([&] { net.add_param("", extra); }, "invalid name");
}

TEST_CASE("module: a tensor registered twice is one parameter") {
  Net net;
  net.add_param("scale_again", net.scale);
  CHECK(net.parameters().size() == 4);
  CHECK(net.state_dict().size() == 5);  // both names are saved, as in PyTorch
}

TEST_CASE("module: train/eval reach every submodule; zero_grad drops gradients") {
  auto mlp = std::make_shared<nn::MLP>(std::vector<int64_t>{2, 8, 2}, "relu", 0.5);
  CHECK(mlp->is_training());
  mlp->eval();
  for (const auto& [name, child] : mlp->children()) CHECK_FALSE(child->is_training());
  const Tensor x = randn({4, 2});
  CHECK(rel_error(mlp->forward(x), mlp->forward(x)) == 0);  // dropout off
  mlp->train();
  CHECK((*mlp)[2]->is_training());

  mlp->forward(x).sum().backward();
  for (const Tensor& p : mlp->parameters()) CHECK(p.grad().defined());
  mlp->zero_grad();
  for (const Tensor& p : mlp->parameters()) CHECK_FALSE(p.grad().defined());
}

TEST_CASE("module: state_dict round trip through memory and through a file") {
  manual_seed(1);
  Net a;
  manual_seed(2);
  Net b;
  const Tensor x = randn({5, 3});
  CHECK(rel_error(a.forward(x), b.forward(x)) > 1e-3);
  b.load_state_dict(a.state_dict());
  CHECK(rel_error(a.forward(x), b.forward(x)) == 0);
  for (const Tensor& p : b.parameters()) CHECK((p.is_leaf() && p.requires_grad()));

  manual_seed(3);
  Net c;
  TempPath file("net.safetensors");
  a.save(file.path);
  c.load(file.path);
  CHECK(rel_error(a.forward(x), c.forward(x)) == 0);
  CHECK(nn::load_safetensors(file.path).tensors.count("body.1.weight") == 1);
}

TEST_CASE("module: load_state_dict names missing, unexpected and mis-shaped keys") {
  Net net;
  const nn::TensorMap good = net.state_dict();
  const std::vector<double> before = net.fc1->weight.to_vector<double>();

  nn::TensorMap missing = good;
  missing.erase("fc1.bias");
  check_value_error([&] { net.load_state_dict(missing); }, "missing keys: fc1.bias");

  nn::TensorMap unexpected = good;
  unexpected["fc2.weight"] = zeros({1});
  check_value_error([&] { net.load_state_dict(unexpected); }, "unexpected keys: fc2.weight");

  nn::TensorMap shaped = good;
  shaped["fc1.weight"] = zeros({3, 4});
  shaped["scale"] = zeros({3});
  try {
    net.load_state_dict(shaped);
    FAIL("expected a ShapeError");
  } catch (const ShapeError& e) {
    CHECK(std::string(e.what()).find("fc1.weight (expected (4, 3), got (3, 4))") != std::string::npos);
  }
  // Nothing was written by the failed loads.
  CHECK(net.fc1->weight.to_vector<double>() == before);
  CHECK(net.scale.to_vector<double>() == std::vector<double>{1, 1, 1});
}

TEST_CASE("module: to(dtype) converts parameters and keeps them trainable") {
  Net net;
  net.to(kFloat64);
  for (const Tensor& p : net.parameters()) {
    CHECK(p.dtype() == kFloat64);
    CHECK(p.is_leaf());
    CHECK(p.requires_grad());
  }
  const Tensor y = net.forward(randn({2, 3}, {.dtype = kFloat64}));
  CHECK(y.dtype() == kFloat64);
  y.sum().backward();
  CHECK(net.fc1->weight.grad().dtype() == kFloat64);
  net.to(kCPU, kFloat32);
  CHECK(net.fc1->weight.dtype() == kFloat32);
  CHECK(net.fc1->weight.grad().dtype() == kFloat32);  // gradients move with their parameters
}

TEST_CASE("module: to(device) on every available device") {
  for (Device d : minidl::testing::test_devices()) {
    CAPTURE(d.str());
    manual_seed(4);
    nn::GPT gpt({.vocab_size = 5, .block_size = 4, .n_layer = 1, .n_head = 2, .n_embd = 8});
    const Tensor ids = from_vector<int64_t>({1, 2, 3, 4, 0, 1}, {2, 3}, {.dtype = kInt64});
    const Tensor ref = gpt.forward(ids);
    gpt.to(d);
    for (const Tensor& p : gpt.parameters()) CHECK(p.device() == d);
    CHECK(rel_error(gpt.forward(ids.to(d)).cpu(), ref) < 1e-5);
  }
}

TEST_CASE("module: with_parameters swaps parameters in and restores them") {
  manual_seed(6);
  nn::Linear lin(2, 1);
  const Tensor x = from_vector<float>({1, 2}, {1, 2});
  const Tensor w = from_vector<float>({3, 4}, {1, 2}, {.requires_grad = true});
  const Tensor b = from_vector<float>({0.5f}, {1}, {.requires_grad = true});
  const Tensor y = lin.with_parameters({w, b}, [&] { return lin.forward(x); });
  CHECK(y.item() == doctest::Approx(11.5));
  y.sum().backward();
  CHECK(w.grad().to_vector<float>() == std::vector<float>{1, 2});  // gradients reach the inputs
  CHECK_FALSE(lin.weight.grad().defined());
  CHECK(lin.weight.is_same(lin.parameters()[0]));
  CHECK(lin.forward(x).item() != doctest::Approx(11.5));

  const Tensor original = lin.weight;
  CHECK_THROWS_AS(lin.with_parameters({w, b}, [&]() -> Tensor { throw ValueError("boom"); }), ValueError);
  CHECK(lin.weight.is_same(original));  // restored after the exception
  CHECK_THROWS_AS(lin.with_parameters({w}, [&] { return lin.forward(x); }), ValueError);
  CHECK_THROWS_AS(lin.with_parameters({b, w}, [&] { return lin.forward(x); }), ShapeError);
}

// ============================================================================ layers

TEST_CASE("layers: Linear computes x·Wᵀ + b over the last dim, initialised like PyTorch") {
  manual_seed(8);
  nn::Linear lin(16, 3);
  const double bound = 0.25;
  for (double v : lin.weight.to_vector<double>()) CHECK(std::abs(v) <= bound);
  for (double v : lin.bias.to_vector<double>()) CHECK(std::abs(v) <= bound);
  const Tensor x = randn({2, 5, 16});
  const Tensor y = lin.forward(x);
  CHECK(y.shape() == Shape{2, 5, 3});
  CHECK(rel_error(y, matmul(x, lin.weight.t()) + lin.bias) < 1e-5);
  CHECK(nn::Linear(4, 2, false).parameters().size() == 1);
  CHECK_THROWS_AS(lin.forward(randn({2, 15})), ShapeError);
  CHECK_THROWS_AS(nn::Linear(0, 2), ValueError);
}

TEST_CASE("layers: Embedding, LayerNorm, Dropout and activations") {
  manual_seed(9);
  nn::Embedding emb(10, 4);
  const Tensor ids = from_vector<int64_t>({3, 3, 9}, {}, {.dtype = kInt64});
  const Tensor e = emb.forward(ids);
  CHECK(e.shape() == Shape{3, 4});
  CHECK(rel_error(e.select(0, 0), emb.weight.select(0, 3)) == 0);
  CHECK_THROWS_AS(emb.forward(from_vector<int64_t>({10}, {}, {.dtype = kInt64})), IndexError);

  nn::LayerNorm ln(4);
  const Tensor y = ln.forward(randn({3, 4}) * 5.0 + 2.0);
  CHECK(max(abs(mean(y, {-1}))).item() < 1e-5);

  nn::Dropout drop(0.5);
  const Tensor x = ones({1000});
  const std::vector<double> d = drop.forward(x).to_vector<double>();
  const auto zeros_n = std::count(d.begin(), d.end(), 0.0);
  CHECK(zeros_n > 400);
  CHECK(zeros_n < 600);
  CHECK(std::count(d.begin(), d.end(), 2.0) == 1000 - zeros_n);
  drop.eval();
  CHECK(drop.forward(x).is_same(x));
  CHECK_THROWS_AS(nn::Dropout(1.0), ValueError);

  const Tensor v = from_vector<float>({-1, 0, 2});
  CHECK(nn::ReLU().forward(v).to_vector<float>() == std::vector<float>{0, 0, 2});
  CHECK(rel_error(nn::make_activation("gelu")->forward(v), gelu(v)) == 0);
  CHECK(rel_error(nn::make_activation("silu")->forward(v), silu(v)) == 0);
  CHECK(rel_error(nn::make_activation("tanh")->forward(v), tanh(v)) == 0);
  CHECK(rel_error(nn::make_activation("sigmoid")->forward(v), sigmoid(v)) == 0);
  check_value_error([] { nn::make_activation("swish"); }, "unknown activation 'swish'");
}

TEST_CASE("layers: Sequential and MLP structure") {
  nn::MLP mlp({2, 8, 8, 3}, "tanh");
  CHECK(mlp.size() == 5);
  CHECK(mlp.linears.size() == 3);
  CHECK(names_of(mlp) == std::vector<std::string>{"0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"});
  CHECK(mlp[1]->type_name() == "Tanh");
  CHECK(mlp.forward(randn({7, 2})).shape() == Shape{7, 3});
  CHECK_THROWS_AS(nn::MLP({2}), ValueError);
  CHECK_THROWS_AS(nn::MLP({2, 3}, "nope"), ValueError);
}

TEST_CASE("layers: causal attention ignores the future; gradients match finite differences") {
  manual_seed(10);
  nn::MultiHeadAttention attn(8, 2, true);
  const Tensor x = randn({2, 5, 8});
  const Tensor y = attn.forward(x);
  CHECK(y.shape() == Shape{2, 5, 8});
  Tensor x2 = x.clone();
  x2.slice(1, 3, 5).copy_(randn({2, 2, 8}));  // change positions 3 and 4 only
  const Tensor y2 = attn.forward(x2);
  CHECK(rel_error(y2.slice(1, 0, 3), y.slice(1, 0, 3)) < 1e-6);
  CHECK(rel_error(y2.slice(1, 3, 5), y.slice(1, 3, 5)) > 1e-3);
  CHECK_THROWS_AS(nn::MultiHeadAttention(8, 3), ValueError);
  CHECK_THROWS_AS(attn.forward(randn({5, 8})), ShapeError);

  // The whole block, input and every parameter, in float64.
  nn::TransformerBlock block(4, 2, true);
  block.to(kFloat64);
  std::vector<Tensor> inputs{randn({1, 3, 4}, {.dtype = kFloat64, .requires_grad = true})};
  for (const Tensor& p : block.parameters()) inputs.push_back(p.detach().requires_grad_());
  const Tensor probe = randn({1, 3, 4}, {.dtype = kFloat64});
  const auto r = gradcheck(
      [&](const std::vector<Tensor>& in) {
        const std::vector<Tensor> params(in.begin() + 1, in.end());
        return block.with_parameters(params, [&] { return (block.forward(in[0]) * probe).sum(); });
      },
      inputs);
  CHECK_MESSAGE(r.ok, r.message);
}

TEST_CASE("gpt: shapes, causality, and gradients reach every parameter") {
  manual_seed(12);
  nn::GPT gpt({.vocab_size = 7, .block_size = 8, .n_layer = 2, .n_head = 2, .n_embd = 16});
  CHECK(gpt.named_parameters().size() == 2 + 2 * 16 + 2 + 1);
  const Tensor ids = randint(0, 7, {3, 6});
  const Tensor logits = gpt.forward(ids);
  CHECK(logits.shape() == Shape{3, 6, 7});

  Tensor ids2 = ids.clone();
  ids2.slice(1, 5, 6).fill_(0);
  ids2.slice(1, 4, 5).fill_(1);
  CHECK(rel_error(gpt.forward(ids2).slice(1, 0, 4), logits.slice(1, 0, 4)) < 1e-6);

  const Tensor loss = cross_entropy(logits.reshape({-1, 7}), randint(0, 7, {18}));
  loss.backward();
  for (const auto& [name, p] : gpt.named_parameters()) {
    CAPTURE(name);
    REQUIRE(p.grad().defined());
    CHECK(p.grad().shape() == p.shape());
    CHECK(abs(p.grad()).sum().item() > 0);
  }

  const Tensor out = gpt.generate(ids.slice(1, 0, 2), 9);  // runs past block_size: crops
  CHECK(out.shape() == Shape{3, 11});
  CHECK(out.slice(1, 0, 2).to_vector<int64_t>() == ids.slice(1, 0, 2).to_vector<int64_t>());
  CHECK_THROWS_AS(gpt.forward(randint(0, 7, {1, 9})), ShapeError);
  CHECK_THROWS_AS(gpt.forward(randint(0, 7, {9})), ShapeError);
}

// ============================================================================ losses

TEST_CASE("loss: mse_loss value and gradient") {
  const Tensor a = from_vector<double>({1, 2, 3}, {}, {.dtype = kFloat64, .requires_grad = true});
  const Tensor b = from_vector<double>({1, 0, 6}, {}, {.dtype = kFloat64});
  const Tensor l = nn::mse_loss(a, b);
  CHECK(l.item() == doctest::Approx(13.0 / 3.0));
  l.backward();
  CHECK(rel_error(a.grad(), from_vector<double>({0, 4.0 / 3, -2}, {}, {.dtype = kFloat64})) < 1e-12);
  CHECK_THROWS_AS(nn::mse_loss(a, b.unsqueeze(1)), ShapeError);
}

// ============================================================================ optimizers

namespace {
Tensor param(std::vector<double> v) {
  return from_vector<double>(v, {}, {.dtype = kFloat64, .requires_grad = true});
}
void set_grad(const Tensor& p, std::vector<double> g) {
  p.set_grad(from_vector<double>(g, {}, {.dtype = kFloat64}));
}
}  // namespace

TEST_CASE("optim: SGD with momentum and weight decay, by hand") {
  // d = g + 0.1 p; buf = d, then 0.9 buf + d; p -= 0.1 buf.
  //   step 1: d = (0.6, -0.8), p = (0.94, 2.08)
  //   step 2: d = (0.594, -0.792), buf = (1.134, -1.512), p = (0.8266, 2.2312)
  Tensor p = param({1, 2});
  optim::SGD opt({p}, {.lr = 0.1, .momentum = 0.9, .weight_decay = 0.1});
  set_grad(p, {0.5, -1});
  opt.step();
  CHECK(rel_error(p, from_vector<double>({0.94, 2.08}, {}, {.dtype = kFloat64})) < 1e-12);
  set_grad(p, {0.5, -1});
  opt.step();
  CHECK(rel_error(p, from_vector<double>({0.8266, 2.2312}, {}, {.dtype = kFloat64})) < 1e-12);
  CHECK(p.is_leaf());

  Tensor q = param({1});
  optim::SGD plain({q}, {.lr = 0.5});
  set_grad(q, {2});
  plain.step();
  CHECK(q.item() == doctest::Approx(0.0));
  Tensor untouched = param({3});
  optim::SGD none({untouched});
  none.step();  // no gradient: left alone
  CHECK(untouched.item() == 3);
  CHECK_THROWS_AS(optim::SGD({q}, {.momentum = 1.0}), ValueError);
  CHECK_THROWS_AS(optim::SGD({from_vector<double>({1})}), ValueError);  // not requiring grad
}

TEST_CASE("optim: AdamW, two steps by hand") {
  // lr 0.1, betas (0.9, 0.999), eps 1e-8, wd 0.01; gradients (0.1, -0.3) then (0.2, 0.1).
  //   step 1: p *= 0.999; m = (0.01, -0.03); v = (1e-5, 9e-5); p -= 1.0 * m / (sqrt(v / 0.001) + eps)
  //           = (0.999 - 0.1, -1.998 + 0.1) up to eps
  //   step 2: m = (0.029, -0.017); v = (4.999e-5, 9.991e-5); bias corrections 0.19 and 0.001999
  Tensor p = param({1, -2});
  optim::AdamW opt({p}, {.lr = 0.1, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.01});
  set_grad(p, {0.1, -0.3});
  opt.step();
  CHECK(rel_error(p, from_vector<double>({0.8990000099999991, -1.8980000033333333}, {}, {.dtype = kFloat64})) < 1e-12);
  set_grad(p, {0.2, 0.1});
  opt.step();
  CHECK(rel_error(p, from_vector<double>({0.8015828135112532, -1.8560801479247475}, {}, {.dtype = kFloat64})) < 1e-12);
  CHECK_THROWS_AS(optim::AdamW({p}, {.beta1 = 1.0}), ValueError);
  CHECK_THROWS_AS(optim::AdamW({p}, {.lr = -1}), ValueError);
  opt.set_lr(0.5);
  CHECK(opt.lr() == 0.5);
}

TEST_CASE("optim: clip_grad_norm scales all gradients together") {
  Tensor a = param({0, 0}), b = param({0}), c = param({1});
  set_grad(a, {3, 4});
  set_grad(b, {12});
  CHECK(optim::clip_grad_norm({a, b, c}, 20.0) == doctest::Approx(13.0));
  CHECK(a.grad().to_vector<double>() == std::vector<double>{3, 4});  // under the limit: unchanged
  CHECK(optim::clip_grad_norm({a, b, c}, 6.5) == doctest::Approx(13.0));
  CHECK(rel_error(a.grad(), from_vector<double>({1.5, 2}, {}, {.dtype = kFloat64})) < 1e-6);
  CHECK(b.grad().item() == doctest::Approx(6.0).epsilon(1e-6));
  CHECK(optim::clip_grad_norm({c}, 1.0) == 0.0);
  CHECK_THROWS_AS(optim::clip_grad_norm({a}, 0.0), ValueError);
}

TEST_CASE("optim: cosine schedule with linear warm-up") {
  const optim::CosineSchedule s(1.0, 10, 110, 0.1);
  CHECK(s(0) == doctest::Approx(0.1));
  CHECK(s(4) == doctest::Approx(0.5));
  CHECK(s(9) == doctest::Approx(1.0));
  CHECK(s(10) == doctest::Approx(1.0));
  CHECK(s(60) == doctest::Approx(0.55));
  CHECK(s(85) == doctest::Approx(0.1 + 0.45 * (1 + std::cos(0.75 * std::numbers::pi))));
  CHECK(s(110) == doctest::Approx(0.1));
  CHECK(s(1000) == doctest::Approx(0.1));
  for (int64_t i = 10; i < 110; ++i) CHECK(s(i + 1) <= s(i));
  CHECK(optim::CosineSchedule(2.0, 0, 4)(0) == doctest::Approx(2.0));
  CHECK_THROWS_AS(optim::CosineSchedule(1.0, 10, 10), ValueError);
  CHECK_THROWS_AS(optim::CosineSchedule(0.1, 0, 10, 0.2), ValueError);
  CHECK_THROWS_AS(s(-1), ValueError);
}

// ============================================================================ training

TEST_CASE("training: an MLP regression's loss falls with SGD and with AdamW") {
  for (int use_adam = 0; use_adam < 2; ++use_adam) {
    CAPTURE(use_adam);
    manual_seed(13);
    nn::MLP mlp({1, 16, 1}, "tanh");
    const Tensor x = arange(-1.0, 1.0, 0.1, {}).reshape({-1, 1});
    const Tensor y = x * x * 2.0 - 0.5;
    std::unique_ptr<optim::Optimizer> opt;
    if (use_adam) opt = std::make_unique<optim::AdamW>(mlp.parameters(), optim::AdamWOptions{.lr = 0.03});
    else opt = std::make_unique<optim::SGD>(mlp.parameters(), optim::SGDOptions{.lr = 0.2, .momentum = 0.9});
    double first = 0, last = 0;
    for (int step = 0; step < 150; ++step) {
      const Tensor loss = nn::mse_loss(mlp.forward(x), y);
      if (step == 0) first = loss.item();
      last = loss.item();
      opt->zero_grad();
      loss.backward();
      opt->step();
    }
    CHECK(last < first / 10);
  }
}

TEST_CASE("training: a GPT memorises a batch") {
  manual_seed(14);
  nn::GPT gpt({.vocab_size = 8, .block_size = 6, .n_layer = 1, .n_head = 2, .n_embd = 16});
  optim::AdamW opt(gpt.parameters(), {.lr = 1e-2, .weight_decay = 0});
  const Tensor x = randint(0, 8, {4, 6}), y = randint(0, 8, {24});
  double first = 0, last = 0;
  for (int step = 0; step < 60; ++step) {
    const Tensor loss = cross_entropy(gpt.forward(x).reshape({-1, 8}), y);
    if (step == 0) first = loss.item();
    last = loss.item();
    opt.zero_grad();
    loss.backward();
    optim::clip_grad_norm(gpt.parameters(), 1.0);
    opt.step();
  }
  CHECK(first > 1.8);  // about log(8) at initialisation
  CHECK(last < 0.5);
}

// ============================================================================ docs

namespace {
// Lines with surrounding whitespace removed, empty ones dropped.
std::vector<std::string> code_lines(const std::string& text) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos <= text.size()) {
    const size_t end = std::min(text.find('\n', pos), text.size());
    std::string line = text.substr(pos, end - pos);
    line.erase(0, line.find_first_not_of(" \t"));
    line.erase(line.find_last_not_of(" \t\r") + 1);
    if (!line.empty()) out.push_back(line);
    pos = end + 1;
  }
  return out;
}
std::string read_text(const std::filesystem::path& p) {
  std::ifstream f(p);
  REQUIRE_MESSAGE(f.good(), "cannot read " << p);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}
}  // namespace

TEST_CASE("docs: every C++ block of the tutorial is an excerpt of an example") {
  const std::filesystem::path root = MINIDL_SOURCE_DIR;
  std::vector<std::vector<std::string>> examples;
  for (const auto& e : std::filesystem::directory_iterator(root / "examples"))
    if (e.path().extension() == ".cpp") examples.push_back(code_lines(read_text(e.path())));
  REQUIRE(examples.size() >= 2);

  const std::string doc = read_text(root / "docs" / "tutorial.md");
  int blocks = 0;
  for (size_t at = doc.find("```cpp\n"); at != std::string::npos; at = doc.find("```cpp\n", at)) {
    const size_t begin = at + 7, end = doc.find("```", begin);
    REQUIRE(end != std::string::npos);
    const std::vector<std::string> block = code_lines(doc.substr(begin, end - begin));
    const bool found = std::any_of(examples.begin(), examples.end(), [&](const auto& lines) {
      return std::search(lines.begin(), lines.end(), block.begin(), block.end()) != lines.end();
    });
    CHECK_MESSAGE(found, "docs/tutorial.md block not found in examples/*.cpp:\n" << doc.substr(begin, end - begin));
    ++blocks;
    at = end + 3;
  }
  CHECK(blocks >= 10);
}
