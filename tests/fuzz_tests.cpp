// Compiled against eager, fuzzed: a seeded generator of random programs over what compile()
// handles (pointwise chains with broadcasting, row ops, reductions, views, matmuls, attention
// spellings and near-misses of them), on random shapes, strides, dtypes and requires_grad. Each
// case runs its program eagerly and compiled and compares the outputs and the gradients of every
// input that requires grad, and checks that the attention spellings fused and the near-misses
// did not. A failure prints the case's seed, the program and the line that replays it.
// A third test lowers the fusion groups of fuzzed programs' plans to generated kernels, compiles
// them with NVRTC (CUDA builds, no GPU needed) and runs them on the CPU emulator of CUDA against
// op-by-op evaluation: the CUDA codegen path, checked without a GPU.
// MINIDL_FUZZ_SEED and MINIDL_FUZZ_CASES (docs/env_vars.md) choose the cases.
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "compiler/compile.h"
#include "compiler/jit.h"
#include "plan_groups.h"
#include "test_utils.h"

using namespace minidl;

namespace {

using Rng = std::mt19937_64;
using Fn = std::function<Tensor(const std::vector<Tensor>&)>;

// A tensor of `shape` (0-dim too) holding data, row-major.
Tensor tensor_of(const std::vector<double>& data, const Shape& shape, DType dtype, Device device) {
  if (shape.empty()) return scalar_tensor(data.at(0), {.dtype = dtype, .device = device});
  return from_vector<double>(data, shape, {.dtype = dtype}).to(device);
}

// What the programs of one test may use.
struct Config {
  Device device;
  const char* test_pattern;  // for the replay line
  // The fused attention kernels are specialised on head dim, dtype, scale and causality and take
  // NVRTC a while to compile: on CUDA attention draws them from short lists.
  bool few_attention_kernels;
  uint64_t default_cases;  // unless MINIDL_FUZZ_CASES says
};

// One value of a program: an input, a constant, or an op applied to earlier values.
struct Step {
  std::vector<int> args;  // ids of the values read
  std::string text;       // "add(%1, %3)"
  Fn fn;                  // on the values of args
  int input = -1;         // an input: its index
  Shape shape;
};

struct Input {
  Shape base;        // the tensor made from data
  std::string view;  // the view of it the program receives (".transpose(0, 1)")
  std::function<Tensor(const Tensor&)> make_view;
  std::vector<double> data;  // of base, row-major
  bool requires_grad = false;
  int alias = -1;  // or: the same tensor as this earlier input is passed again
};

struct Program {
  uint64_t seed = 0;
  DType dtype = kFloat32;
  std::string kind;
  std::vector<Step> steps;  // value %i is steps[i]
  std::vector<Input> inputs;
  std::vector<int> outputs;
  std::vector<Tensor> params;  // captured tensors requiring grad
  int fused_attention = -1;    // forward fused_attention nodes the plan must have (-1: unchecked)

  std::vector<Tensor> run(const std::vector<Tensor>& in) const {
    std::vector<Tensor> vals;
    for (const Step& s : steps) {
      if (s.input >= 0) {
        vals.push_back(in[s.input]);
        continue;
      }
      std::vector<Tensor> args;
      for (int a : s.args) args.push_back(vals[a]);
      vals.push_back(s.fn(args));
    }
    std::vector<Tensor> out;
    for (int o : outputs) out.push_back(vals[o]);
    return out;
  }

  // Fresh leaves holding the inputs' data, as the views the program receives.
  std::vector<Tensor> make_inputs(Device device) const {
    std::vector<Tensor> out;
    for (const Input& in : inputs) {
      if (in.alias >= 0) {
        out.push_back(out[in.alias]);
        continue;
      }
      const Tensor base = tensor_of(in.data, in.base, dtype, device);
      out.push_back(in.make_view(base).detach().requires_grad_(in.requires_grad));
    }
    return out;
  }

  std::string str() const {
    std::string s = fmt::format("program of seed {} ({}, {}, {}):\n", seed, kind, dtype_name(dtype),
                                fused_attention < 0   ? "attention unchecked"
                                : fused_attention > 0 ? "attention must fuse"
                                                      : "attention must not fuse");
    for (size_t i = 0; i < steps.size(); ++i) {
      const Step& st = steps[i];
      std::string text = st.text;
      if (st.input >= 0) {
        const Input& in = inputs[st.input];
        text = fmt::format("input x{}{}", st.input, in.requires_grad ? " requires_grad" : "");
        if (!in.view.empty()) text += fmt::format(" = base {}{}", shape_str(in.base), in.view);
        if (in.alias >= 0) text += fmt::format(" (the tensor x{} again)", in.alias);
      }
      s += fmt::format("  %{} = {} : {}\n", i, text, shape_str(st.shape));
    }
    std::string outs;
    for (int o : outputs) outs += (outs.empty() ? "%" : ", %") + std::to_string(o);
    return s + "  return " + outs + "\n";
  }
};

std::string v(int id) { return "%" + std::to_string(id); }

std::string dims_str(const std::vector<int64_t>& d) {
  std::string s;
  for (int64_t x : d) s += (s.empty() ? "" : ", ") + std::to_string(x);
  return "(" + s + ")";
}

bool broadcastable(const Shape& a, const Shape& b, Shape* out) {
  const size_t n = std::max(a.size(), b.size());
  Shape r(n);
  for (size_t i = 0; i < n; ++i) {
    const int64_t x = i < n - a.size() ? 1 : a[i - (n - a.size())];
    const int64_t y = i < n - b.size() ? 1 : b[i - (n - b.size())];
    if (x != y && x != 1 && y != 1) return false;
    r[i] = x == 1 ? y : x;
  }
  *out = r;
  return true;
}

// Builds one random program from a seed.
class ProgramGenerator {
 public:
  ProgramGenerator(uint64_t seed, const Config& cfg) : rng_(seed), cfg_(cfg) { p_.seed = seed; }

  Program make() {
    const double d = real();
    p_.dtype = d < 0.55 ? kFloat32 : d < 0.75 ? kFloat64 : d < 0.88 ? kFloat16 : kBFloat16;
    low_ = p_.dtype == kFloat16 || p_.dtype == kBFloat16;
    const double k = real();
    if (k < 0.55) {
      p_.kind = "chain";
      chain();
    } else {
      p_.kind = "attention";
      attention();
    }
    return std::move(p_);
  }

 private:
  // ------------------------------------------------------------------ random choices
  int64_t uniform(int64_t lo, int64_t hi) {  // in [lo, hi]
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng_);
  }
  double real() { return std::uniform_real_distribution<double>(0, 1)(rng_); }
  bool coin(double p = 0.5) { return real() < p; }
  template <class T>
  const T& pick(const std::vector<T>& xs) {
    return xs[static_cast<size_t>(uniform(0, static_cast<int64_t>(xs.size()) - 1))];
  }
  int64_t size() { return pick<int64_t>({1, 1, 2, 2, 3, 3, 4, 5, 6, 7, 8, 9, 12, 13, 16}); }
  Shape shape(int64_t max_numel) {
    for (;;) {
      Shape s(static_cast<size_t>(uniform(1, 4)));
      for (auto& x : s) x = size();
      if (numel(s) <= max_numel) return s;
    }
  }
  // A recent value, more likely the latest.
  int recent() {
    const int n = static_cast<int>(p_.steps.size());
    return std::max(0, n - 1 - static_cast<int>(std::min<int64_t>(uniform(0, 3), uniform(0, 6))));
  }
  const Shape& shape_of(int id) const { return p_.steps[id].shape; }

  // ------------------------------------------------------------------ values
  int add(std::vector<int> args, std::string text, Shape shape, double bound, Fn fn) {
    p_.steps.push_back({std::move(args), std::move(text), std::move(fn), -1, std::move(shape)});
    bound_.push_back(bound);
    return static_cast<int>(p_.steps.size()) - 1;
  }

  // A new input of `s`, often passed as a strided view (transposed, permuted, sliced or
  // broadcast).
  int input(const Shape& s, double scale = 1.0, double p_grad = 0.6) {
    if (coin(0.04))  // the tensor of an earlier input of this shape, passed twice
      for (const Step& st : p_.steps)
        if (st.input >= 0 && st.shape == s && p_.inputs[st.input].alias < 0 && scale == 1.0) {
          Input again;
          again.alias = st.input;
          again.requires_grad = p_.inputs[st.input].requires_grad;
          p_.inputs.push_back(std::move(again));
          Step a;
          a.input = static_cast<int>(p_.inputs.size()) - 1;
          a.shape = s;
          p_.steps.push_back(std::move(a));
          bound_.push_back(4);
          return static_cast<int>(p_.steps.size()) - 1;
        }
    Input in;
    in.requires_grad = coin(p_grad);
    in.base = s;
    in.make_view = [](const Tensor& t) { return t; };
    const int64_t r = static_cast<int64_t>(s.size());
    const double how = real();
    if (r >= 2 && how < 0.2) {  // the transpose of a base of the swapped shape
      const int64_t a = uniform(0, r - 1), b = (a + uniform(1, r - 1)) % r;
      std::swap(in.base[a], in.base[b]);
      in.view = fmt::format(".transpose({}, {})", a, b);
      in.make_view = [a, b](const Tensor& t) { return t.transpose(a, b); };
    } else if (r >= 2 && how < 0.3) {  // a permutation
      std::vector<int64_t> perm(s.size());
      for (int64_t i = 0; i < r; ++i) perm[i] = i;
      std::shuffle(perm.begin(), perm.end(), rng_);
      for (int64_t i = 0; i < r; ++i) in.base[perm[i]] = s[i];  // view dim i is base dim perm[i]
      in.view = ".permute" + dims_str(perm);
      in.make_view = [perm](const Tensor& t) { return t.permute(perm); };
    } else if (r >= 1 && how < 0.42) {  // a slice with a step of a longer dim
      const int64_t d = uniform(0, r - 1), step = uniform(1, 3), start = uniform(0, 2);
      in.base[d] = start + (s[d] - 1) * step + 1 + uniform(0, 1);
      const int64_t end = start + (s[d] - 1) * step + 1;
      in.view = fmt::format(".slice({}, {}, {}, {})", d, start, end, step);
      in.make_view = [d, start, end, step](const Tensor& t) {
        return t.slice(d, start, end, step);
      };
    } else if (r >= 1 && how < 0.5) {  // a broadcast: dims of stride 0
      for (auto& x : in.base)
        if (coin()) x = 1;
      in.view = ".expand" + shape_str(s);
      in.make_view = [s](const Tensor& t) { return t.expand(s); };
    }
    for (int64_t i = 0; i < numel(in.base); ++i) in.data.push_back(normal() * scale);
    p_.inputs.push_back(std::move(in));
    Step st;
    st.input = static_cast<int>(p_.inputs.size()) - 1;
    st.shape = s;
    p_.steps.push_back(std::move(st));
    bound_.push_back(4 * scale);
    return static_cast<int>(p_.steps.size()) - 1;
  }
  double normal() { return std::normal_distribution<double>(0, 1)(rng_); }

  // A constant of `s` (fixed when the program is made; a traced program sees it as a constant).
  // Sometimes a parameter instead: a tensor read from the closure that requires grad, which
  // compile() makes an input of the plan (and which gets a gradient).
  int constant(const Shape& s) {
    std::vector<double> data;
    for (int64_t i = 0; i < numel(s); ++i) data.push_back(normal());
    Tensor c = tensor_of(data, s, p_.dtype, cfg_.device);
    if (coin(0.3)) {
      p_.params.push_back(c.requires_grad_(true));
      return add({}, fmt::format("parameter p{}", p_.params.size() - 1), s, 4,
                 [c](const std::vector<Tensor>&) { return c; });
    }
    return add({}, "constant", s, 4, [c](const std::vector<Tensor>&) { return c; });
  }

  // A shape that broadcasts with s: some dims 1, some leading dims dropped, and dims of s
  // that are 1 possibly grown (so the result is larger than s).
  Shape broadcast_partner(const Shape& s) {
    Shape out = s;
    for (auto& x : out) {
      if (x == 1 && coin(0.3))
        x = size();
      else if (coin(0.3))
        x = 1;
    }
    if (!out.empty() && coin(0.4))
      out.erase(out.begin(), out.begin() + uniform(0, static_cast<int64_t>(out.size()) - 1));
    return out;
  }

  // x scaled down when its values may grow too large for exp and 16-bit floats.
  int tame(int x, double limit) {
    if (bound_[x] <= limit) return x;
    const double c = limit / bound_[x];
    return add({x}, fmt::format("mul({}, {:g})", v(x), c), shape_of(x), limit,
               [c](const std::vector<Tensor>& a) { return a[0] * c; });
  }

  // ------------------------------------------------------------------ ops
  int unary(int x) {
    struct U {
      const char* name;
      Tensor (*f)(const Tensor&);
      bool kink;
    };
    static const std::vector<U> ops = {
        {"neg", neg, false},        {"tanh", tanh, false},    {"sigmoid", sigmoid, false},
        {"gelu", gelu, false},      {"silu", silu, false},    {"relu", relu, true},
        {"abs", abs, true},         {"sign", sign, true},     {"exp", exp, false},
        {"log", log, false},        {"sqrt", sqrt, false},    {"rsqrt", rsqrt, false},
        {"square", nullptr, false}, {"cast", nullptr, false},
    };
    const U* u;
    do u = &pick(ops);
    while (u->kink && low_);
    const std::string name = u->name;
    const double b = bound_[x];
    if (name == "exp") {
      x = tame(x, 3);
      return add({x}, "exp(" + v(x) + ")", shape_of(x), 21,
                 [](const std::vector<Tensor>& a) { return exp(a[0]); });
    }
    if (name == "log" || name == "sqrt" || name == "rsqrt") {  // of a positive value
      auto f = u->f;
      return add({x}, fmt::format("{}(sigmoid({}) + 0.25)", name, v(x)), shape_of(x), 2,
                 [f](const std::vector<Tensor>& a) { return f(sigmoid(a[0]) + 0.25); });
    }
    if (name == "square")
      return add({x}, "pow(" + v(x) + ", 2)", shape_of(x), b * b,
                 [](const std::vector<Tensor>& a) { return pow(a[0], 2.0); });
    if (name == "cast") {  // a round trip through another float type
      // (a 16-bit one only where compiled computes bit for bit what eager does: on the CPU,
      // without fused attention; a last-bit difference upstream can round differently)
      const bool exact = cfg_.device.is_cpu() && p_.kind == "chain";
      const DType via = p_.dtype != kFloat32 ? kFloat32
                        : exact              ? pick<DType>({kFloat64, kFloat16, kBFloat16})
                                             : kFloat64;
      const DType back = p_.dtype;
      return add({x}, fmt::format("{}.to({}).to({})", v(x), dtype_name(via), dtype_name(back)),
                 shape_of(x), b,
                 [via, back](const std::vector<Tensor>& a) { return a[0].to(via).to(back); });
    }
    auto f = u->f;
    const bool bounded = name == "tanh" || name == "sigmoid" || name == "sign";
    return add({x}, name + "(" + v(x) + ")", shape_of(x), bounded ? 1 : b + 1,
               [f](const std::vector<Tensor>& a) { return f(a[0]); });
  }

  // The other operand of a binary op with x: an earlier value that broadcasts with it, a new
  // input or constant of a shape that does, or nothing (then a Python scalar is used).
  int partner(int x, Shape* out) {
    const double r = real();
    if (r < 0.45) {  // an earlier value, of x's shape if there is one (branches that join again)
      std::vector<int> same, other;
      for (int y = floor_; y < static_cast<int>(p_.steps.size()); ++y) {
        if (y == x || !broadcastable(shape_of(x), shape_of(y), out) || numel(*out) > 600) continue;
        (*out == shape_of(x) && shape_of(y) == *out ? same : other).push_back(y);
      }
      const std::vector<int>& from = !same.empty() && (other.empty() || coin(0.7)) ? same : other;
      if (!from.empty()) {
        const int y = pick(from);
        broadcastable(shape_of(x), shape_of(y), out);
        return y;
      }
    }
    if (r < 0.8) {
      Shape s = broadcast_partner(shape_of(x));
      broadcastable(shape_of(x), s, out);
      return coin(0.8) ? input(s) : constant(s);
    }
    return -1;
  }

  int binary(int x) {
    Shape s;
    const int y = partner(x, &s);
    if (y < 0) {  // with a scalar
      const double c = pick<double>({0.5, 2.0, -1.5, 0.125, 3.0});
      const int which = static_cast<int>(uniform(0, 5));
      static const char* texts[] = {"mul({}, {:g})", "add({}, {:g})",   "sub({}, {:g})",
                                    "div({}, {:g})", "mul({1:g}, {0})", "sub({1:g}, {0})"};
      const double b = bound_[x] * std::abs(c) + std::abs(c) + bound_[x];
      return add({x}, fmt::format(fmt::runtime(texts[which]), v(x), c), shape_of(x), b,
                 [c, which](const std::vector<Tensor>& a) {
                   switch (which) {
                     case 0:
                       return a[0] * c;
                     case 1:
                       return a[0] + c;
                     case 2:
                       return a[0] - c;
                     case 3:
                       return a[0] / c;
                     case 4:
                       return c * a[0];
                     default:
                       return c - a[0];
                   }
                 });
    }
    const double bx = bound_[x], by = bound_[y];
    const double r = real();
    if (r < 0.25)
      return add({x, y}, fmt::format("add({}, {})", v(x), v(y)), s, bx + by,
                 [](const std::vector<Tensor>& a) { return a[0] + a[1]; });
    if (r < 0.4)
      return add({x, y}, fmt::format("sub({}, {})", v(x), v(y)), s, bx + by,
                 [](const std::vector<Tensor>& a) { return a[0] - a[1]; });
    if (r < 0.65)
      return add({x, y}, fmt::format("mul({}, {})", v(x), v(y)), s, bx * by,
                 [](const std::vector<Tensor>& a) { return a[0] * a[1]; });
    if (r < 0.75)  // a denominator in [0.25, 1.25]
      return add({x, y}, fmt::format("div({}, sigmoid({}) + 0.25)", v(x), v(y)), s, 4 * bx,
                 [](const std::vector<Tensor>& a) { return a[0] / (sigmoid(a[1]) + 0.25); });
    if (!low_ && r < 0.82)
      return add({x, y}, fmt::format("maximum({}, {})", v(x), v(y)), s, std::max(bx, by),
                 [](const std::vector<Tensor>& a) { return maximum(a[0], a[1]); });
    if (!low_ && r < 0.87)
      return add({x, y}, fmt::format("minimum({}, {})", v(x), v(y)), s, std::max(bx, by),
                 [](const std::vector<Tensor>& a) { return minimum(a[0], a[1]); });
    if (!low_ && r < 0.94)
      return add({x, y}, fmt::format("where({0} > {1}, {0}, {1} * 0.5)", v(x), v(y)), s,
                 std::max(bx, by),
                 [](const std::vector<Tensor>& a) { return where(a[0] > a[1], a[0], a[1] * 0.5); });
    if (!low_)  // a mask computed at run time
      return add({x, y},
                 fmt::format("masked_fill({0} + zeros_like({1}), {1} > 0.5, -2)", v(x), v(y)), s,
                 bx + 2, [](const std::vector<Tensor>& a) {
                   return masked_fill(a[0] + zeros_like(a[1]), a[1] > 0.5, -2.0);
                 });
    return add({x, y}, fmt::format("add({}, {})", v(x), v(y)), s, bx + by,
               [](const std::vector<Tensor>& a) { return a[0] + a[1]; });
  }

  // masked_fill with a constant mask (random, or a triangle) of a shape broadcasting to x's.
  int masked_constant(int x) {
    const Shape s = shape_of(x);
    if (s.empty()) return unary(x);
    Shape ms = broadcast_partner(s), out;
    if (!broadcastable(s, ms, &out) || out != s) ms = s;
    Tensor mask;
    std::string what;
    if (ms.size() >= 2 && coin()) {
      const int64_t k = uniform(-1, 1);
      mask = triu(ones(ms, {.dtype = kBool, .device = cfg_.device}), k);
      what = fmt::format("triu(ones {}, {})", shape_str(ms), k);
    } else {
      std::vector<bool> bits;
      for (int64_t i = 0; i < numel(ms); ++i) bits.push_back(coin(0.3));
      mask = from_vector<bool>(bits, ms, {.dtype = kBool}).to(cfg_.device);
      what = fmt::format("random bool {}", shape_str(ms));
    }
    const double val = pick<double>({-1.0, 0.0, 2.5});
    return add({x}, fmt::format("masked_fill({}, {}, {:g})", v(x), what, val), s,
               std::max(bound_[x], 2.5),
               [mask, val](const std::vector<Tensor>& a) { return masked_fill(a[0], mask, val); });
  }

  int row_op(int x) {
    const Shape s = shape_of(x);
    if (s.empty()) return unary(x);
    const int64_t r = static_cast<int64_t>(s.size());
    const double c = real();
    if (c < 0.55) {
      const bool log = coin(0.35);
      // the last dim (a row op, spelled -1 or r - 1) or another one (not fused)
      int64_t dim = coin(0.75) ? (coin() ? -1 : r - 1) : uniform(-r, r - 1);
      if (log || low_) x = tame(x, low_ ? 6 : 30);
      return add({x}, fmt::format("{}({}, {})", log ? "log_softmax" : "softmax", v(x), dim), s,
                 log ? 2 * bound_[x] + 4 : 1, [log, dim](const std::vector<Tensor>& a) {
                   return log ? log_softmax(a[0], dim) : softmax(a[0], dim);
                 });
    }
    const int64_t ch = s.back();
    // Normalising 2 or 3 values amplifies their rounding (16-bit: up to 7 values).
    if ((ch > 1 && ch < 4) || (low_ && ch < 8)) return unary(x);
    const double eps = pick<double>({1e-5, 1e-3});
    std::vector<int> args = {x};
    std::string text = fmt::format("layer_norm({}", v(x));
    const bool w = coin(0.7), b = w;  // both or neither
    if (w) args.push_back(input({ch}, 1.0, 0.7)), text += ", w=" + v(args.back());
    if (b) args.push_back(input({ch}, 1.0, 0.7)), text += ", b=" + v(args.back());
    text += fmt::format(", eps={:g})", eps);
    return add(args, text, s, 4 * std::sqrt(static_cast<double>(ch)) + 4,
               [w, b, eps](const std::vector<Tensor>& a) {
                 return layer_norm(a[0], w ? a[1] : Tensor(), b ? a[w ? 2 : 1] : Tensor(), eps);
               });
  }

  int reduce(int x) {
    const Shape s = shape_of(x);
    const int64_t r = static_cast<int64_t>(s.size());
    std::vector<int64_t> dims;
    for (int64_t d = 0; d < r; ++d)
      if (coin(0.4)) dims.push_back(coin(0.3) ? d - r : d);
    const bool keep = coin();
    Shape out;
    int64_t count = 1;
    for (int64_t d = 0; d < r; ++d) {
      bool reduced = dims.empty();
      for (int64_t e : dims) reduced = reduced || (e + r) % r == d;
      if (reduced) count *= s[d];
      if (!reduced)
        out.push_back(s[d]);
      else if (keep)
        out.push_back(1);
    }
    const int which = static_cast<int>(uniform(0, low_ ? 1 : 4));
    static const char* names[] = {"sum", "mean", "max", "min", "var"};
    const double b = which == 0 ? bound_[x] * static_cast<double>(count) : bound_[x] * bound_[x];
    const int64_t correction = count > 1 ? uniform(0, 1) : 0;
    std::string text =
        fmt::format("{}({}, dims={}, keepdim={}", names[which], v(x), dims_str(dims), keep);
    text += which == 4 ? fmt::format(", correction={})", correction) : ")";
    return add({x}, text, out, b, [which, dims, keep, correction](const std::vector<Tensor>& a) {
      switch (which) {
        case 0:
          return sum(a[0], dims, keep);
        case 1:
          return mean(a[0], dims, keep);
        case 2:
          return max(a[0], dims, keep);
        case 3:
          return min(a[0], dims, keep);
        default:
          return var(a[0], dims, correction, keep);
      }
    });
  }

  int view(int x) {
    const Shape s = shape_of(x);
    const int64_t r = static_cast<int64_t>(s.size());
    const double c = real();
    if (r >= 2 && c < 0.3) {
      const int64_t a = uniform(-r, r - 1), b = uniform(-r, r - 1);
      Shape out = s;
      std::swap(out[(a + r) % r], out[(b + r) % r]);
      return add({x}, fmt::format("{}.transpose({}, {})", v(x), a, b), out, bound_[x],
                 [a, b](const std::vector<Tensor>& t) { return t[0].transpose(a, b); });
    }
    if (r >= 2 && c < 0.45) {
      std::vector<int64_t> perm(s.size());
      for (int64_t i = 0; i < r; ++i) perm[i] = i;
      std::shuffle(perm.begin(), perm.end(), rng_);
      Shape out(s.size());
      for (int64_t i = 0; i < r; ++i) out[i] = s[perm[i]];
      return add({x}, fmt::format("{}.permute{}", v(x), dims_str(perm)), out, bound_[x],
                 [perm](const std::vector<Tensor>& t) { return t[0].permute(perm); });
    }
    if (c < 0.6) {
      const int64_t d = uniform(0, r - 1);
      if (s[d] >= 2) {
        const int64_t start = uniform(0, s[d] - 1), step = uniform(1, 2);
        const int64_t end = uniform(start + 1, s[d]);
        Shape out = s;
        out[d] = (end - start + step - 1) / step;
        return add({x}, fmt::format("{}.slice({}, {}, {}, {})", v(x), d, start, end, step), out,
                   bound_[x], [d, start, end, step](const std::vector<Tensor>& t) {
                     return t[0].slice(d, start, end, step);
                   });
      }
    }
    if (c < 0.75 && r < 4) {
      const int64_t d = uniform(0, r);
      Shape out = s;
      out.insert(out.begin() + d, 1);
      if (coin()) {  // and expand the new dim
        out[d] = uniform(2, 4);
        const Shape e = out;
        return add({x}, fmt::format("{}.unsqueeze({}).expand{}", v(x), d, shape_str(e)), e,
                   bound_[x],
                   [d, e](const std::vector<Tensor>& t) { return t[0].unsqueeze(d).expand(e); });
      }
      return add({x}, fmt::format("{}.unsqueeze({})", v(x), d), out, bound_[x],
                 [d](const std::vector<Tensor>& t) { return t[0].unsqueeze(d); });
    }
    // a reshape: merge two neighbouring dims, or flatten
    if (r >= 2) {
      const int64_t d = uniform(0, r - 2);
      Shape out = s;
      out[d] *= out[d + 1];
      out.erase(out.begin() + d + 1);
      return add({x}, fmt::format("{}.reshape{}", v(x), shape_str(out)), out, bound_[x],
                 [out](const std::vector<Tensor>& t) { return t[0].reshape(out); });
    }
    return unary(x);
  }

  int matmul_op(int x) {
    x = tame(x, 6);
    const Shape s = shape_of(x);
    const int64_t r = static_cast<int64_t>(s.size());
    const int64_t k = s.back();
    if (r >= 2 && coin(0.15))  // x xᵀ
      return add(
          {x}, fmt::format("matmul({0}, {0}.transpose(-2, -1))", v(x)),
          [&] {
            Shape o = s;
            o.back() = s[r - 2];
            return o;
          }(),
          bound_[x] * bound_[x] * static_cast<double>(k),
          [](const std::vector<Tensor>& a) { return matmul(a[0], a[0].transpose(-2, -1)); });
    Shape bs;
    const int64_t n = coin(0.4) ? k : size();  // square: the shape stays, and can fuse on
    if (coin(0.15)) {
      bs = {k};  // a vector
    } else {
      bs = {k, n};
      if (r >= 3 && coin(0.5)) {  // batched, the batch dims broadcast
        Shape batch(s.begin(), s.end() - 2);
        for (auto& b : batch)
          if (coin(0.3)) b = 1;
        bs.insert(bs.begin(), batch.begin(), batch.end());
      }
    }
    const int y = input(bs, 1.0);
    // the result's shape, as matmul's broadcasting gives it
    Shape out;
    if (r == 1 && bs.size() == 1) {
      out = {};
    } else if (bs.size() == 1) {
      out = Shape(s.begin(), s.end() - 1);
    } else if (r == 1) {
      out = Shape(bs.begin(), bs.end() - 2);
      out.push_back(n);
    } else {
      Shape ba(s.begin(), s.end() - 2), bb(bs.begin(), bs.end() - 2);
      broadcastable(ba, bb, &out);
      out.push_back(s[r - 2]);
      out.push_back(n);
    }
    return add({x, y}, fmt::format("matmul({}, {})", v(x), v(y)), out,
               bound_[x] * 4 * static_cast<double>(k),
               [](const std::vector<Tensor>& a) { return matmul(a[0], a[1]); });
  }

  // One random step on a recent value.
  int step() {
    int x = recent();
    if (shape_of(x).empty() && coin(0.7)) x = 0;  // not only scalars
    const double c = real();
    int out;
    if (c < 0.25 || shape_of(x).empty())
      out = c < 0.55 ? unary(x) : binary(x);
    else if (c < 0.55)
      out = binary(x);
    else if (c < 0.6)
      out = masked_constant(x);
    else if (c < 0.75)
      out = row_op(x);
    else if (c < 0.83)
      out = reduce(x);
    else if (c < 0.91)
      out = view(x);
    else
      out = matmul_op(x);
    return tame(out, 40);
  }

  void chain() {
    const Shape s = shape(240);
    input(s);
    if (coin(0.6)) input(broadcast_partner(s));
    const int64_t n = uniform(1, 16);
    for (int64_t i = 0; i < n; ++i) step();
    finish(true);
  }

  // The outputs: the last value, sometimes another value (or an input) too.
  void finish(bool extra) {
    const int last = static_cast<int>(p_.steps.size()) - 1;
    p_.outputs = {last};
    for (int i = 0; extra && i < 2; ++i)
      if (coin(0.3)) p_.outputs.push_back(static_cast<int>(uniform(0, last)));
    if (extra && coin(0.05)) p_.outputs.push_back(last);  // one value returned twice
  }

  // softmax(Q Kᵀ · scale [+ causal mask]) V in one of its spellings, or a near-miss of one.
  void attention() {
    const bool cuda = cfg_.few_attention_kernels;
    // (sometimes longer than the CPU kernel's tiles)
    const int64_t b = uniform(1, 3), h = uniform(1, 3),
                  nq = !cuda && coin(0.1) ? pick<int64_t>({33, 65, 100}) : size();
    const int64_t d = cuda ? pick<int64_t>({8, 16}) : pick<int64_t>({1, 2, 3, 4, 5, 8, 12, 16, 17});
    // 3-D, 4-D, split heads, projected (self-attention: Nk = Nq), 2-D
    const int layout = static_cast<int>(uniform(0, 4));
    const int64_t nk = layout == 3 || coin(0.6) ? nq : !cuda && coin(0.1) ? 70 : size();
    static const std::vector<std::string> misses = {"log_softmax",
                                                    "softmax over the query dim",
                                                    "negative scale",
                                                    "finite mask value",
                                                    "mask not causal",
                                                    "mask computed at run time",
                                                    "probabilities read twice",
                                                    "scores read twice",
                                                    "probabilities as the right operand",
                                                    "K permuted across batch dims",
                                                    "V head dim differs",
                                                    "K batch broadcast",
                                                    "scale a run-time tensor",
                                                    "two masks",
                                                    "scale a non-scalar constant"};
    std::string miss = coin(0.4) ? pick(misses) : "";
    // the misses that need K to be an input of 4 dims, or two keys at least
    if ((miss == "K permuted across batch dims" && layout != 1) ||
        (miss == "K batch broadcast" && layout > 1) ||
        ((miss == "mask not causal" || miss == "scale a non-scalar constant") && nk < 2))
      miss = "log_softmax";
    p_.kind = "attention" + (miss.empty() ? std::string() : ", near-miss: " + miss);

    Shape batch = layout == 0 ? Shape{b} : layout == 4 ? Shape{} : Shape{b, h};
    if (miss == "K permuted across batch dims") batch = {b, b};
    auto full_shape = [&](int64_t n, int64_t dd) {
      Shape s = batch;
      s.push_back(n);
      s.push_back(dd);
      return s;
    };
    const int64_t dv = miss == "V head dim differs" ? d + 1 : d;
    int q, k, v_;
    bool k_transposed = false;  // k holds Kᵀ already
    if (layout == 2) {          // (B, N, H·d) split into heads (B, H, N, d)
      auto heads = [&](int64_t n, int64_t dd) {
        const int x = input({b, n, h * dd});
        const Shape out = {b, h, n, dd};
        return add({x},
                   fmt::format("{}.reshape(({}, {}, {}, {})).transpose(1, 2)", v(x), b, n, h, dd),
                   out, 4, [b, n, h, dd](const std::vector<Tensor>& a) {
                     return a[0].reshape({b, n, h, dd}).transpose(1, 2);
                   });
      };
      q = heads(nq, d);
      k = heads(nk, d);
      v_ = heads(nk, dv);
    } else if (layout == 3) {  // projections of one x (B, N, C): self-attention, Nq = Nk
      const int64_t c = size() + 1;
      const int x = input({b, nq, c}, 1.0, 0.5);
      auto proj = [&](int64_t dd) {
        const int w = input({c, dd}, 1.0 / std::sqrt(static_cast<double>(c)));
        return add({x, w}, fmt::format("matmul({}, {})", v(x), v(w)), Shape{b, nq, dd}, 4,
                   [](const std::vector<Tensor>& a) { return matmul(a[0], a[1]); });
      };
      batch = {b};
      q = proj(d);
      k = proj(d);
      v_ = proj(dv);
    } else {
      q = input(full_shape(nq, d));
      if (coin(0.15) && miss.empty()) {
        k_transposed = true;
        k = input(full_shape(d, nk));
      } else {
        Shape ks = full_shape(nk, d);
        if (miss == "K batch broadcast") ks[0] = b == 1 ? 2 : 1;
        k = input(ks);
      }
      v_ = coin(0.1) && miss.empty() && nq == nk && dv == d && !k_transposed
               ? q
               : input(full_shape(nk, dv));
    }
    const int64_t nk_real = shape_of(k)[shape_of(k).size() - (k_transposed ? 1 : 2)];

    // the scale: on the scores, on Q, split between both, or none
    // (16-bit: scores of about unit size, since eager rounds large scores coarsely)
    const double rd = 1 / std::sqrt(static_cast<double>(d));
    // (and at most 2 / √d: sharper softmaxes make the gradients cancel to a few digits)
    // (CUDA: 1/√d only, each scale being other kernels to compile)
    std::vector<double> scales = cuda   ? std::vector<double>{rd}
                                 : low_ ? std::vector<double>{rd, rd / 2}
                                        : std::vector<double>{1.0, 0.5, 0.125, rd, 2.0};
    scales.erase(std::remove_if(scales.begin(), scales.end(), [&](double c) { return c > 2 * rd; }),
                 scales.end());
    const double total = pick(scales);
    double on_q = 1, on_s = total;
    const double where_scale = real();
    if (total != 1 && where_scale < 0.3)
      on_q = total, on_s = 1;
    else if (total != 1 && where_scale < 0.4 && !cuda)
      on_q = 0.5, on_s = total / 0.5;
    // Whether a scale or mask constant has more dims than the scores (so broadcasting adds
    // dims to them, and O has more dims than Q): whether that fuses is not checked.
    bool grows = false;
    auto scaled = [&](int x, double c, bool allow_div) {
      if (c == 1) return x;
      const int form = static_cast<int>(uniform(0, allow_div ? 3 : 1));
      if (form == 3) {  // times a constant tensor of ones dims holding c
        const Shape& xs = shape_of(x);
        const Shape cs(static_cast<size_t>(uniform(0, static_cast<int64_t>(xs.size()) + 1)), 1);
        Shape out;
        broadcastable(xs, cs, &out);
        grows = grows || out.size() > xs.size();
        Tensor ct = full(cs, c, {.dtype = p_.dtype, .device = cfg_.device});
        return add({x}, fmt::format("mul({}, full {} {:g})", v(x), shape_str(cs), c), out, 4 * c,
                   [ct](const std::vector<Tensor>& a) { return a[0] * ct; });
      }
      static const char* texts[] = {"mul({}, {:g})", "mul({1:g}, {0})", "div({}, {:g})"};
      const double arg = form == 2 ? 1 / c : c;
      return add({x}, fmt::format(fmt::runtime(texts[form]), v(x), arg), shape_of(x), 4 * c,
                 [form, arg](const std::vector<Tensor>& a) {
                   return form == 0 ? a[0] * arg : form == 1 ? arg * a[0] : a[0] / arg;
                 });
    };
    if (miss == "negative scale") on_s = -on_s;
    q = scaled(q, on_q, true);

    // Kᵀ
    int kt;
    const Shape ksh = shape_of(k);
    const int64_t kr = static_cast<int64_t>(ksh.size());
    Shape kts = ksh;
    std::swap(kts[kr - 1], kts[kr - 2]);
    if (k_transposed) {
      kt = k;
    } else if (miss == "K permuted across batch dims") {
      kt = add({k}, fmt::format("{}.permute((1, 0, 3, 2))", v(k)), kts, 4,
               [](const std::vector<Tensor>& a) {
                 return a[0].permute({1, 0, 3, 2});
               });
    } else {
      const int form = static_cast<int>(uniform(0, 3));
      std::vector<int64_t> perm(static_cast<size_t>(kr));
      for (int64_t i = 0; i < kr; ++i) perm[i] = i;
      std::swap(perm[kr - 1], perm[kr - 2]);
      static const char* texts[] = {"{}.transpose(-2, -1)", "{}.transpose(-1, -2)", "{}.permute{}",
                                    "{}.t()"};
      kt = add({k}, fmt::format(fmt::runtime(texts[form]), v(k), dims_str(perm)), kts, 4,
               [form, perm](const std::vector<Tensor>& a) {
                 switch (form) {
                   case 0:
                     return a[0].transpose(-2, -1);
                   case 1:
                     return a[0].transpose(-1, -2);
                   case 2:
                     return a[0].permute(perm);
                   default:
                     return a[0].t();
                 }
               });
    }
    Shape ss;
    {
      Shape bq(shape_of(q).begin(), shape_of(q).end() - 2), bk(kts.begin(), kts.end() - 2);
      broadcastable(bq, bk, &ss);
      ss.push_back(nq);
      ss.push_back(nk_real);
    }
    int s = add({q, kt}, fmt::format("matmul({}, {})", v(q), v(kt)), ss, 8,
                [](const std::vector<Tensor>& a) { return matmul(a[0], a[1]); });

    // scale and mask, in either order
    const bool mask = coin(0.5) || miss.find("mask") != std::string::npos;
    const bool mask_first = coin();
    auto apply_mask = [&](int x, bool second) {
      // (1, Nq, Nk) broadcasts; only an additive mask may add a dim to the scores
      const bool add_dim = coin(0.2);
      const Shape ms = add_dim ? Shape{1, nq, nk_real} : Shape{nq, nk_real};
      const Shape fill_ms = add_dim && shape_of(x).size() >= 3 ? ms : Shape{nq, nk_real};
      const std::string& m = second ? std::string() : miss;
      if (m == "mask computed at run time") {
        const int mi = input(fill_ms, 1.0, 0.0);
        Input& in = p_.inputs.back();
        in.alias = -1;      // its own tensor,
        in.base = fill_ms;  // contiguous, so that key 0 is every nk-th element
        in.view.clear();
        in.make_view = [](const Tensor& t) { return t; };
        in.data.resize(static_cast<size_t>(numel(fill_ms)));
        for (size_t i = 0; i < in.data.size(); i += static_cast<size_t>(nk_real))
          in.data[i] = -1;  // key 0 stays visible
        return add(
            {x, mi}, fmt::format("masked_fill({}, {} > 0, -inf)", v(x), v(mi)), shape_of(x), 8,
            [](const std::vector<Tensor>& a) { return masked_fill(a[0], a[1] > 0.0, -INFINITY); });
      }
      if (m == "mask not causal") {  // the keys after the next one
        Tensor mk = triu(ones(fill_ms, {.dtype = kBool, .device = cfg_.device}), 2);
        return add({x},
                   fmt::format("masked_fill({}, triu(ones {}, 2), -inf)", v(x), shape_str(fill_ms)),
                   shape_of(x), 8,
                   [mk](const std::vector<Tensor>& a) { return masked_fill(a[0], mk, -INFINITY); });
      }
      const double fill = m == "finite mask value" ? pick<double>({-1e9, -30.0}) : -INFINITY;
      if (coin(0.3) && fill == -INFINITY) {  // additive
        Tensor mk = triu(full(ms, -INFINITY, {.dtype = p_.dtype, .device = cfg_.device}), 1);
        Shape out;
        broadcastable(shape_of(x), ms, &out);
        grows = grows || out.size() > shape_of(x).size();
        return add({x}, fmt::format("add({}, triu(full {} -inf, 1))", v(x), shape_str(ms)), out, 8,
                   [mk](const std::vector<Tensor>& a) { return a[0] + mk; });
      }
      Tensor mk = triu(ones(fill_ms, {.dtype = kBool, .device = cfg_.device}), 1);
      return add(
          {x},
          fmt::format("masked_fill({}, triu(ones {}, 1), {:g})", v(x), shape_str(fill_ms), fill),
          shape_of(x), 8,
          [mk, fill](const std::vector<Tensor>& a) { return masked_fill(a[0], mk, fill); });
    };
    auto apply_scale = [&](int x) {
      if (miss == "scale a run-time tensor") {
        const int c = input({}, 0.3);
        return add({x, c}, fmt::format("mul({}, {})", v(x), v(c)), shape_of(x), 8,
                   [](const std::vector<Tensor>& a) { return a[0] * a[1]; });
      }
      if (miss == "scale a non-scalar constant") {
        const int c = constant({nk_real});
        return add({x, c}, fmt::format("mul({}, {})", v(x), v(c)), shape_of(x), 32,
                   [](const std::vector<Tensor>& a) { return a[0] * a[1]; });
      }
      return scaled(x, on_s, on_s > 0);
    };
    if (mask && mask_first) s = apply_mask(s, false);
    s = apply_scale(s);
    if (mask && !mask_first) s = apply_mask(s, false);
    if (miss == "two masks") s = apply_mask(s, true);
    ss = shape_of(s);  // with the dims broadcasting may have added

    // P
    int p;
    if (miss == "log_softmax") {
      p = add({s}, fmt::format("log_softmax({}, -1)", v(s)), ss, 20,
              [](const std::vector<Tensor>& a) { return log_softmax(a[0], -1); });
    } else if (miss == "softmax over the query dim") {
      p = add({s}, fmt::format("softmax({}, -2)", v(s)), ss, 1,
              [](const std::vector<Tensor>& a) { return softmax(a[0], -2); });
    } else {
      const int64_t dim = coin() ? -1 : static_cast<int64_t>(ss.size()) - 1;
      p = add({s}, fmt::format("softmax({}, {})", v(s), dim), ss, 1,
              [dim](const std::vector<Tensor>& a) { return softmax(a[0], dim); });
    }
    // O
    int o;
    if (miss == "probabilities as the right operand") {  // (..., dv, Nq) @ P
      Shape ws(ss.begin(), ss.end() - 2);
      ws.push_back(dv);
      ws.push_back(nq);
      const int w = input(ws);
      Shape os = ws;
      os.back() = nk_real;
      o = add({w, p}, fmt::format("matmul({}, {})", v(w), v(p)), os, 4,
              [](const std::vector<Tensor>& a) { return matmul(a[0], a[1]); });
    } else {
      Shape os = ss;
      os.back() = dv;
      {
        Shape bp(ss.begin(), ss.end() - 2), bv(shape_of(v_).begin(), shape_of(v_).end() - 2);
        Shape bo;
        broadcastable(bp, bv, &bo);
        bo.push_back(nq);
        bo.push_back(dv);
        os = bo;
      }
      o = add({p, v_}, fmt::format("matmul({}, {})", v(p), v(v_)), os, 4,
              [](const std::vector<Tensor>& a) { return matmul(a[0], a[1]); });
    }
    if (layout == 2 && miss != "probabilities as the right operand") {  // heads merged back
      const Shape out = {b, nq, h * dv};
      o = add({o}, fmt::format("{}.transpose(1, 2).reshape{}", v(o), shape_str(out)), out, 4,
              [out](const std::vector<Tensor>& a) { return a[0].transpose(1, 2).reshape(out); });
    }
    // an epilogue of pointwise and row ops, which reads no value before O (16-bit: no row ops,
    // which amplify the rounding of eager attention's probabilities: layer_norm of an average)
    floor_ = static_cast<int>(p_.steps.size()) - 1;
    const int64_t epilogue = uniform(0, 2);
    for (int64_t i = 0; i < epilogue; ++i) {
      const int x = static_cast<int>(p_.steps.size()) - 1;
      const double c = real();
      if (c < 0.4)
        unary(x);
      else if (c < 0.8 || low_)
        binary(x);
      else
        row_op(x);
    }
    finish(false);
    if (miss == "probabilities read twice") p_.outputs.push_back(p);
    if (miss == "scores read twice") p_.outputs.push_back(s);
    p_.fused_attention = !miss.empty() ? 0 : grows ? -1 : 1;
  }

  Rng rng_;
  const Config& cfg_;
  Program p_;
  std::vector<double> bound_;  // per value: roughly the largest magnitude it can hold
  bool low_ = false;           // a 16-bit dtype: no ops whose gradient jumps (rounding flips them)
  int floor_ = 0;              // binary ops read no earlier value than this
};

// Relative error allowed between compiled and eager results of dtype t. 16-bit: eager rounds
// every intermediate (attention's scores and probabilities, the projections feeding them) to
// 11 or 8 significant bits where fused attention and generated kernels keep float: the
// gradients of projected attention's weights differ by up to 0.025 in float16 (seed 23496) and
// 0.1 in bfloat16 (seed 9929).
double tolerance(DType t) {
  switch (t) {
    case kFloat64:
      return 1e-9;
    case kFloat32:
      return 2e-4;
    case kFloat16:
      return 3e-2;
    case kBFloat16:
      return 1.5e-1;
    default:
      return 0;
  }
}

struct Results {
  std::vector<Tensor> outputs, grads;  // grads: one per input requiring grad (zeros if none flowed)
  std::vector<std::string> grad_of;    // what each gradient is of ("x2", "p0")
};

Results evaluate(const Program& p, const CompiledFunction* f, Device device,
                 const std::vector<Tensor>& cotangents) {
  const std::vector<Tensor> in = p.make_inputs(device);
  Results r;
  r.outputs = f ? (*f)(in) : p.run(in);
  std::vector<Tensor> roots, gs, wrt;
  for (size_t i = 0; i < r.outputs.size(); ++i)
    if (r.outputs[i].requires_grad()) roots.push_back(r.outputs[i]), gs.push_back(cotangents[i]);
  for (size_t i = 0; i < in.size(); ++i)
    if (in[i].requires_grad()) wrt.push_back(in[i]), r.grad_of.push_back(fmt::format("x{}", i));
  for (size_t i = 0; i < p.params.size(); ++i)
    wrt.push_back(p.params[i]), r.grad_of.push_back(fmt::format("p{}", i));
  if (!roots.empty() && !wrt.empty()) r.grads = grad(roots, wrt, gs);
  for (size_t i = 0; i < r.grads.size(); ++i)
    if (!r.grads[i].defined()) r.grads[i] = zeros_like(wrt[i]);
  return r;
}

// max |got - want| / max(max |want|, 1): relative, except for results much smaller than the
// values of the programs (of order 1), such as a gradient that is zero up to rounding. NaN and
// infinities must agree.
double error_of(const Tensor& got, const Tensor& want) {
  const std::vector<double> x = got.to_vector<double>(), y = want.to_vector<double>();
  double num = 0, den = 1;
  for (size_t i = 0; i < x.size(); ++i) {
    if (std::isnan(x[i]) || std::isnan(y[i]) || std::isinf(x[i]) || std::isinf(y[i])) {
      if (!(x[i] == y[i] || (std::isnan(x[i]) && std::isnan(y[i])))) return INFINITY;
      continue;
    }
    num = std::max(num, std::abs(x[i] - y[i]));
    den = std::max(den, std::abs(y[i]));
  }
  return num / den;
}

// Empty if got matches want; else what differs.
std::string compare(const std::string& what, const Tensor& got, const Tensor& want, double* worst) {
  if (got.shape() != want.shape() || got.dtype() != want.dtype())
    return fmt::format("{}: compiled gives {} {}, eager {} {}", what, dtype_name(got.dtype()),
                       shape_str(got.shape()), dtype_name(want.dtype()), shape_str(want.shape()));
  const double err = error_of(got, want), tol = tolerance(want.dtype());
  *worst = std::max(*worst, err / tol);
  if (err <= tol) return "";
  return fmt::format("{}: relative error {:.3g} > {:.3g}", what, err, tol);
}

// Runs one case; returns its failure (empty when it passed). `worst` gets max error / tolerance.
std::string run_case(uint64_t seed, const Config& cfg, double* worst, Program* program) {
  *program = ProgramGenerator(seed, cfg).make();
  const Program& p = *program;
  Rng rng(seed ^ 0x9e3779b97f4a7c15ull);
  Results eager;
  try {
    const std::vector<Tensor> probe = p.run(p.make_inputs(cfg.device));
    std::vector<Tensor> cot;
    for (const Tensor& t : probe) {
      std::vector<double> data;
      for (int64_t i = 0; i < t.numel(); ++i)
        data.push_back(std::normal_distribution<double>()(rng));
      cot.push_back(tensor_of(data, t.shape(), t.dtype(), cfg.device));
    }
    eager = evaluate(p, nullptr, cfg.device, cot);
    CompiledFunction f = compile([&p](const std::vector<Tensor>& x) { return p.run(x); },
                                 {.name = "fuzz", .check_graphs = true});
    const Results compiled = evaluate(p, &f, cfg.device, cot);
    std::string why;
    for (size_t i = 0; i < eager.outputs.size() && why.empty(); ++i)
      why = compare(fmt::format("output {}", i), compiled.outputs[i], eager.outputs[i], worst);
    if (why.empty() && compiled.grads.size() != eager.grads.size())
      why = fmt::format("compiled gives {} gradients, eager {}", compiled.grads.size(),
                        eager.grads.size());
    for (size_t i = 0; i < eager.grads.size() && why.empty(); ++i)
      why = compare(fmt::format("gradient of {}", eager.grad_of[i]), compiled.grads[i],
                    eager.grads[i], worst);
    if (why.empty() && p.fused_attention >= 0 &&
        static_cast<int>(f.graph().count("fused_attention")) != p.fused_attention)
      why = fmt::format("the plan has {} fused_attention nodes, not {}\n{}",
                        f.graph().count("fused_attention"), p.fused_attention, f.graph().str());
    if (why.empty() && seed % 8 == 0) {  // a second call hits the plan cache
      const Results again = evaluate(p, &f, cfg.device, cot);
      for (size_t i = 0; i < eager.outputs.size() && why.empty(); ++i)
        why = compare(fmt::format("second call, output {}", i), again.outputs[i], eager.outputs[i],
                      worst);
      if (why.empty() && f.stats().cache_hits != 1)
        why = "the second call did not hit the plan cache";
    }
    return why;
  } catch (const std::exception& e) {
    return fmt::format("{} threw: {}", eager.outputs.empty() ? "eager" : "compiled", e.what());
  }
}

uint64_t env_u64(const char* name, uint64_t fallback) {
  const char* s = std::getenv(name);
  if (!s) return fallback;
  char* end = nullptr;
  errno = 0;
  const uint64_t v = std::strtoull(s, &end, 0);
  // A value that does not parse must not run zero cases and pass.
  if (!*s || *end || errno || *s == '-') {
    FAIL(fmt::format("{}='{}' is not a non-negative integer", name, s));
  }
  return v;
}

void fuzz(const Config& cfg) {
  const uint64_t base = env_u64("MINIDL_FUZZ_SEED", 12);
  const uint64_t cases = env_u64("MINIDL_FUZZ_CASES", cfg.default_cases);
  const auto t0 = std::chrono::steady_clock::now();
  reset_fusion_group_stats();
  std::map<std::string, std::pair<double, uint64_t>>
      worst;  // by dtype: max error / tolerance, seed
  std::map<std::string, int> kinds;
  int failures = 0;
  for (uint64_t i = 0; i < cases; ++i) {
    const uint64_t seed = base + i;
    double w = 0;
    Program p;
    const std::string why = run_case(seed, cfg, &w, &p);
    const std::string dt = dtype_name(p.dtype);
    worst[dt] = std::max(worst[dt], {w, seed});
    ++kinds[p.kind.substr(0, p.kind.find(','))];
    if (!p.params.empty()) ++kinds["with parameters"];
    if (std::any_of(p.inputs.begin(), p.inputs.end(),
                    [](const Input& in) { return in.alias >= 0; }))
      ++kinds["with a tensor passed twice"];
    if (why.empty()) continue;
    if (++failures <= 5)
      FAIL_CHECK(
          fmt::format("fuzz case seed {} on {} failed: {}\n{}replay: MINIDL_FUZZ_SEED={} "
                      "MINIDL_FUZZ_CASES=1 build/tests/minidl_tests -tc='{}'",
                      seed, cfg.device.str(), why, p.str(), seed, cfg.test_pattern));
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::string summary;
  for (const auto& [dt, w] : worst)
    summary += fmt::format(" {} {:.2f} (seed {})", dt, w.first, w.second);
  std::string counts;
  for (const auto& [k, n] : kinds) counts += fmt::format("{} {}, ", k, n);
  MESSAGE(
      fmt::format("{} fuzz cases on {} (seeds {}..{}) in {:.1f} s, {} failed; {}"
                  "worst error / tolerance:{}",
                  cases, cfg.device.str(), base, base + cases - 1, s, failures, counts, summary));
  CHECK(failures == 0);
  if (cfg.device.is_cuda()) {  // the groups ran as generated kernels, not op by op
    const FusionGroupStats st = fusion_group_stats();
    MESSAGE(fmt::format("fusion groups: {} generated kernel launches ({} kernels), {} op by op",
                        st.kernel_launches, st.kernels_generated, st.op_by_op));
    CHECK(st.kernel_launches > 10 * st.op_by_op);
  }
}

}  // namespace

TEST_CASE("fuzz: compiled against eager on the CPU, forward and backward") {
  // Half a minute. (Seed 32126 among them found the fusion cycle of compiler/passes/fusion.cpp.)
  fuzz({kCPU, "fuzz: compiled*", false, 35000});
}

TEST_CASE("cuda: fuzz compiled against eager") {
  if (!minidl::testing::gpu_or_skip("cuda fuzz")) return;
  fuzz({kCUDA, "cuda: fuzz*", true, 1000});
}

TEST_CASE("fuzz: generated kernels of fuzzed fusion groups match op by op (NVRTC, emulator)") {
  if (!testing::emulator_or_skip("fuzz: generated kernels")) return;
  const uint64_t base = env_u64("MINIDL_FUZZ_SEED", 12);
  const uint64_t cases = env_u64("MINIDL_FUZZ_CASES", 60);  // one emulator build of them all
  const Config cfg{kCPU, "fuzz: generated*", true, cases};
  std::vector<testing::Lowered> groups;
  size_t untranslated = 0;
  for (uint64_t seed = base; seed < base + cases; ++seed) {
    const Program p = ProgramGenerator(seed, cfg).make();
    // named by seed: the kernels of one emulator build need distinct names
    CompiledFunction f = compile([&p](const std::vector<Tensor>& x) { return p.run(x); },
                                 {.name = fmt::format("fuzz{}", seed), .check_graphs = true});
    const std::vector<Tensor> x = p.make_inputs(kCPU);
    f(x);
    manual_seed(seed);  // the cotangents plan_groups draws
    for (const testing::GroupRun& run : testing::plan_groups(f, x)) {
      const std::string what = fmt::format(
          "{} ({}) of the program below\n{}replay: MINIDL_FUZZ_SEED={} MINIDL_FUZZ_CASES=1 "
          "build/tests/minidl_tests -tc='{}'",
          run.group->body().name, run.group->attrs(), p.str(), seed, cfg.test_pattern);
      double tol = 0;  // of its least precise output (a Bool output must match exactly)
      for (const TensorMeta& m : run.group->body().metas(run.group->body().outputs))
        tol = std::max(tol, tolerance(m.dtype));
      std::string reason;
      std::optional<testing::Lowered> l =
          testing::lower_for_emulator(*run.group, run.inputs, what, tol, &reason);
      if (l)
        groups.push_back(std::move(*l));
      else
        ++untranslated;
    }
  }
  MESSAGE(fmt::format("{} programs: {} fusion groups lowered, {} left op by op", cases,
                      groups.size(), untranslated));
  REQUIRE(!groups.empty());
#if MINIDL_WITH_CUDA
  const auto opts = jit::compile_options("sm_90");
  for (const testing::Lowered& l : groups) {
    INFO(l.what);
    CHECK(jit::compile_cubin(l.kernel.name, l.kernel.source, opts)
              .compare(0, 4,
                       "\x7f"
                       "ELF") == 0);
  }
#endif
  testing::check_on_emulator(groups, error_of);
}
