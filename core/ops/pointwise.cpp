// Pointwise ops: unary and binary math (functors in core/scalar_ops.h), where, masked_fill,
// triu/tril and dtype casts.
#include <cmath>

#include "core/cpu/kernels.h"
#include "core/cpu/loops.h"
#include "core/ops.h"
#include "core/primitives.h"
#if MINIDL_WITH_CUDA
#include "core/cuda/kernels.h"
#endif

namespace minidl {

// ============================================================================ tables

const char* unary_name(UnaryOp op) {
  switch (op) {
#define MINIDL_X(E, N) \
  case UnaryOp::E: return N;
    MINIDL_UNARY_OPS(MINIDL_X)
#undef MINIDL_X
  }
  return "?";
}

const char* binary_name(BinaryOp op) {
  switch (op) {
#define MINIDL_X(E, N) \
  case BinaryOp::E: return N;
    MINIDL_BINARY_OPS(MINIDL_X)
#undef MINIDL_X
  }
  return "?";
}

bool is_comparison(BinaryOp op) {
  switch (op) {
    case BinaryOp::Eq: case BinaryOp::Ne: case BinaryOp::Lt:
    case BinaryOp::Le: case BinaryOp::Gt: case BinaryOp::Ge: return true;
    default: return false;
  }
}

namespace {

// Ops whose math is only defined on floating types: integer inputs are promoted to float32.
bool float_only(UnaryOp op) {
  return !(op == UnaryOp::Neg || op == UnaryOp::Abs || op == UnaryOp::Sign || op == UnaryOp::Relu);
}

// ============================================================================ CPU loops

template <class Out, class In, class F>
void unary_loop(const Tensor& out, const Tensor& x, F f) {
  cpu::LoopOperands<2> ops{{static_cast<char*>(out.data_ptr()), static_cast<char*>(x.data_ptr())},
                           {cpu::byte_strides(out), cpu::broadcast_byte_strides(x, out.shape())}};
  cpu::for_each_run<2>(out.shape(), ops, 8, [&](const std::array<char*, 2>& p, int64_t n,
                                                const std::array<int64_t, 2>& s) {
    for (int64_t i = 0; i < n; ++i)
      *reinterpret_cast<Out*>(p[0] + i * s[0]) =
          Out(f(static_cast<compute_t<In>>(*reinterpret_cast<const In*>(p[1] + i * s[1]))));
  });
}

template <class Out, class In, class F>
void binary_loop(const Tensor& out, const Tensor& a, const Tensor& b, F f) {
  cpu::LoopOperands<3> ops{{static_cast<char*>(out.data_ptr()), static_cast<char*>(a.data_ptr()),
                            static_cast<char*>(b.data_ptr())},
                           {cpu::byte_strides(out), cpu::broadcast_byte_strides(a, out.shape()),
                            cpu::broadcast_byte_strides(b, out.shape())}};
  cpu::for_each_run<3>(out.shape(), ops, 4, [&](const std::array<char*, 3>& p, int64_t n,
                                                const std::array<int64_t, 3>& s) {
    for (int64_t i = 0; i < n; ++i)
      *reinterpret_cast<Out*>(p[0] + i * s[0]) =
          Out(f(static_cast<compute_t<In>>(*reinterpret_cast<const In*>(p[1] + i * s[1])),
                static_cast<compute_t<In>>(*reinterpret_cast<const In*>(p[2] + i * s[2]))));
  });
}

// Shape of a pointwise op whose operands have one shape, or are 0-dim scalars.
Shape pointwise_shape(const char* op, const std::vector<TensorMeta>& in) {
  Shape out;
  bool found = false;
  for (const auto& m : in) {
    if (m.shape.empty()) continue;
    if (!found) out = m.shape, found = true;
    MINIDL_CHECK(m.shape == out, ShapeError,
                 "[{}] operands must be broadcast to one shape first, got {} and {}", op,
                 shape_str(out), shape_str(m.shape));
  }
  return out;
}

// Broadcasts every non-scalar operand to the common shape (an Expand view where needed).
std::vector<Tensor> broadcast_operands(const char* op, std::vector<Tensor> ts) {
  Shape s;
  for (const auto& t : ts) s = broadcast_shapes(s, t.shape(), op);
  for (auto& t : ts)
    if (t.dim() > 0 && t.shape() != s) t = t.expand(s);
  return ts;
}

Tensor zero_like_scalar(const Tensor& g) { return scalar_like(g, 0.0); }

}  // namespace

// ============================================================================ Unary

std::string Unary::codegen_functor() const {
  switch (op_) {
#define MINIDL_X(E, N) \
  case UnaryOp::E: return #E;
    MINIDL_UNARY_OPS(MINIDL_X)
#undef MINIDL_X
  }
  return "";
}

std::vector<TensorMeta> Unary::infer(const std::vector<TensorMeta>& in) const {
  MINIDL_CHECK(in.size() == 1, ValueError, "[{}] expects 1 input, got {}", name(), in.size());
  MINIDL_CHECK(in[0].dtype != kBool && (!float_only(op_) || is_floating(in[0].dtype)), DTypeError,
               "[{}] does not support {} input {}", name(), dtype_name(in[0].dtype),
               shape_str(in[0].shape));
  return {in[0]};
}

std::vector<Tensor> Unary::eval_cpu(const std::vector<Tensor>& in) {
  const Tensor& x = in[0];
  Tensor out = empty(x.shape(), x.dtype(), kCPU, name());
  auto run = [&](auto f) {
    using F = decltype(f);
    MINIDL_DISPATCH_ALL(x.dtype(), name(), [&] {
      if constexpr (std::is_invocable_v<F, compute_t<scalar_t>> && !std::is_same_v<scalar_t, bool>)
        unary_loop<scalar_t, scalar_t>(out, x, f);
      else
        throw_unsupported_dtype(name(), x.dtype());
    });
  };
  switch (op_) {
#define MINIDL_X(E, N) \
  case UnaryOp::E: run(sop::E{}); break;
    MINIDL_UNARY_OPS(MINIDL_X)
#undef MINIDL_X
  }
  return {out};
}

#if MINIDL_WITH_CUDA
std::vector<Tensor> Unary::eval_cuda(const std::vector<Tensor>& in) { return {cuda::unary(op_, in[0])}; }
#endif

SaveMask Unary::saves(const std::vector<bool>&, size_t) const {
  switch (op_) {
    case UnaryOp::Neg: case UnaryOp::Sign: return {{false}, {false}};
    case UnaryOp::Exp: case UnaryOp::Sqrt: case UnaryOp::Rsqrt: case UnaryOp::Tanh:
    case UnaryOp::Sigmoid: case UnaryOp::Relu: return {{false}, {true}};
    default: return {{true}, {false}};
  }
}

std::vector<Tensor> Unary::vjp(const std::vector<Tensor>& primals, const std::vector<Tensor>& cot,
                               const std::vector<Tensor>& outputs, const std::vector<bool>&) {
  const Tensor& g = cot[0];
  const Tensor& x = primals[0];
  const Tensor& y = outputs[0];
  switch (op_) {
    case UnaryOp::Neg: return {-g};
    case UnaryOp::Exp: return {g * y};
    case UnaryOp::Log: return {g / x};
    case UnaryOp::Sqrt: return {g * 0.5 / y};
    case UnaryOp::Rsqrt: return {g * -0.5 * y * y * y};
    case UnaryOp::Abs: return {g * sign(x)};
    case UnaryOp::Sign: return {g * 0.0};
    case UnaryOp::Tanh: return {g * (1.0 - y * y)};
    case UnaryOp::Sigmoid: return {g * y * (1.0 - y)};
    case UnaryOp::Relu: return {masked_fill(g, y <= 0.0, 0.0)};
    case UnaryOp::Gelu: {
      // d/dx 0.5 x (1 + tanh(u)), u = c (x + a x^3): 0.5 (1 + t) + 0.5 x (1 - t^2) c (1 + 3 a x^2)
      const double c = 0.7978845608028654, a = 0.044715;
      Tensor x2 = x * x;
      Tensor t = tanh(c * (x + a * x2 * x));
      return {g * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * (c * (1.0 + 3 * a * x2)))};
    }
    case UnaryOp::Silu: {
      Tensor s = sigmoid(x);
      return {g * (s * (1.0 + x * (1.0 - s)))};
    }
  }
  return {Tensor()};
}

Tensor unary(UnaryOp op, const Tensor& x) {
  Tensor in = (float_only(op) && (is_integral(x.dtype()) || x.dtype() == kBool)) ? x.to(kFloat32) : x;
  return apply1(std::make_shared<Unary>(op), {in});
}

Tensor neg(const Tensor& x) { return unary(UnaryOp::Neg, x); }
Tensor exp(const Tensor& x) { return unary(UnaryOp::Exp, x); }
Tensor log(const Tensor& x) { return unary(UnaryOp::Log, x); }
Tensor sqrt(const Tensor& x) { return unary(UnaryOp::Sqrt, x); }
Tensor rsqrt(const Tensor& x) { return unary(UnaryOp::Rsqrt, x); }
Tensor abs(const Tensor& x) { return unary(UnaryOp::Abs, x); }
Tensor sign(const Tensor& x) { return unary(UnaryOp::Sign, x); }
Tensor tanh(const Tensor& x) { return unary(UnaryOp::Tanh, x); }
Tensor sigmoid(const Tensor& x) { return unary(UnaryOp::Sigmoid, x); }
Tensor relu(const Tensor& x) { return unary(UnaryOp::Relu, x); }
Tensor gelu(const Tensor& x) { return unary(UnaryOp::Gelu, x); }
Tensor silu(const Tensor& x) { return unary(UnaryOp::Silu, x); }

// ============================================================================ Binary

std::string Binary::codegen_functor() const {
  switch (op_) {
#define MINIDL_X(E, N) \
  case BinaryOp::E: return #E;
    MINIDL_BINARY_OPS(MINIDL_X)
#undef MINIDL_X
  }
  return "";
}

std::vector<TensorMeta> Binary::infer(const std::vector<TensorMeta>& in) const {
  MINIDL_CHECK(in.size() == 2, ValueError, "[{}] expects 2 inputs, got {}", name(), in.size());
  MINIDL_CHECK(in[0].dtype == in[1].dtype, DTypeError,
               "[{}] operands must have one dtype, got {} and {}", name(),
               dtype_name(in[0].dtype), dtype_name(in[1].dtype));
  const bool arith = !is_comparison(op_);
  MINIDL_CHECK(!(arith && in[0].dtype == kBool), DTypeError,
               "[{}] does not support bool operands {} and {}", name(), shape_str(in[0].shape),
               shape_str(in[1].shape));
  MINIDL_CHECK(!(op_ == BinaryOp::Pow || op_ == BinaryOp::Div) || is_floating(in[0].dtype),
               DTypeError, "[{}] expects floating operands, got {}", name(),
               dtype_name(in[0].dtype));
  Device dev = common_device(name(), in);
  return {{pointwise_shape(name(), in), arith ? in[0].dtype : kBool, dev}};
}

std::vector<Tensor> Binary::eval_cpu(const std::vector<Tensor>& in) {
  const Tensor &a = in[0], &b = in[1];
  const TensorMeta m = infer({a.meta(), b.meta()})[0];
  Tensor out = empty(m.shape, m.dtype, kCPU, name());
  auto run = [&](auto f) {
    using F = decltype(f);
    MINIDL_DISPATCH_ALL(a.dtype(), name(), [&] {
      using C = compute_t<scalar_t>;
      constexpr bool compare = std::is_same_v<std::invoke_result_t<F, float, float>, bool>;
      if constexpr (std::is_invocable_v<F, C, C> && compare) {
        binary_loop<bool, scalar_t>(out, a, b, f);
      } else if constexpr (std::is_invocable_v<F, C, C> && !std::is_same_v<C, bool>) {
        binary_loop<scalar_t, scalar_t>(out, a, b, f);  // (infer refuses arithmetic on bools)
      } else {
        throw_unsupported_dtype(name(), a.dtype());
      }
    });
  };
  switch (op_) {
#define MINIDL_X(E, N) \
  case BinaryOp::E: run(sop::E{}); break;
    MINIDL_BINARY_OPS(MINIDL_X)
#undef MINIDL_X
  }
  return {out};
}

#if MINIDL_WITH_CUDA
std::vector<Tensor> Binary::eval_cuda(const std::vector<Tensor>& in) {
  return {cuda::binary(op_, in[0], in[1], infer({in[0].meta(), in[1].meta()})[0])};
}
#endif

SaveMask Binary::saves(const std::vector<bool>& ng, size_t) const {
  switch (op_) {
    case BinaryOp::Add: case BinaryOp::Sub: return {{false, false}, {false}};
    case BinaryOp::Mul: return {{ng[1], ng[0]}, {false}};
    case BinaryOp::Div: return {{false, true}, {ng[1]}};
    case BinaryOp::Pow: return {{true, true}, {ng[1]}};
    default: return {{true, true}, {false}};
  }
}

std::vector<Tensor> Binary::vjp(const std::vector<Tensor>& primals, const std::vector<Tensor>& cot,
                                const std::vector<Tensor>& outputs, const std::vector<bool>& ng) {
  const Tensor& g = cot[0];
  const Tensor &a = primals[0], &b = primals[1];
  const Tensor& y = outputs[0];
  Tensor ga, gb;
  switch (op_) {
    case BinaryOp::Add: ga = g, gb = g; break;
    case BinaryOp::Sub: ga = g; if (ng[1]) gb = -g; break;
    case BinaryOp::Mul: if (ng[0]) ga = g * b; if (ng[1]) gb = g * a; break;
    case BinaryOp::Div: if (ng[0]) ga = g / b; if (ng[1]) gb = -g * y / b; break;
    case BinaryOp::Pow:
      if (ng[0]) ga = g * b * pow(a, b - 1.0);
      if (ng[1]) gb = masked_fill(g * y * log(a), eq(a, zero_like_scalar(a)), 0.0);
      break;
    case BinaryOp::Maximum: case BinaryOp::Minimum: {
      // Ties share the gradient equally, as PyTorch does.
      Tensor wins = op_ == BinaryOp::Maximum ? gt(a, b) : lt(a, b);
      Tensor wa = wins.to(g.dtype()) + 0.5 * eq(a, b).to(g.dtype());
      if (ng[0]) ga = g * wa;
      if (ng[1]) gb = g * (1.0 - wa);
      break;
    }
    default: break;
  }
  if (ng[0] && ga.defined()) ga = sum_to(ga, a.shape());
  if (ng[1] && gb.defined()) gb = sum_to(gb, b.shape());
  return {ga, gb};
}

namespace {

Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b) {
  const char* name = binary_name(op);
  MINIDL_CHECK(a.defined() && b.defined(), ValueError, "[{}] got an undefined tensor", name);
  DType t = promote_types(a.dtype(), b.dtype());
  if ((op == BinaryOp::Div || op == BinaryOp::Pow) && !is_floating(t)) t = kFloat32;
  broadcast_shapes(a.shape(), b.shape(), name);  // error naming both shapes
  std::vector<Tensor> ops = broadcast_operands(name, {a.dtype() == t ? a : a.to(t),
                                                      b.dtype() == t ? b : b.to(t)});
  return apply1(std::make_shared<Binary>(op), ops);
}

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Add, a, b); }
Tensor sub(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Sub, a, b); }
Tensor mul(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Mul, a, b); }
Tensor div(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Div, a, b); }
Tensor pow(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Pow, a, b); }
Tensor pow(const Tensor& a, double e) { return binary(BinaryOp::Pow, a, scalar_like(a, e)); }
Tensor maximum(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Maximum, a, b); }
Tensor minimum(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Minimum, a, b); }
Tensor eq(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Eq, a, b); }
Tensor ne(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Ne, a, b); }
Tensor lt(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Lt, a, b); }
Tensor le(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Le, a, b); }
Tensor gt(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Gt, a, b); }
Tensor ge(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Ge, a, b); }

Tensor scalar_like(const Tensor& x, double v) {
  DType t = x.dtype();
  if (!is_floating(t)) t = (v == std::floor(v) && t != kBool) ? t : kFloat32;
  if (t == kBool) t = kInt64;
  return scalar_tensor(v, {.dtype = t});
}

Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
Tensor operator-(const Tensor& a) { return neg(a); }
Tensor operator+(const Tensor& a, double b) { return add(a, scalar_like(a, b)); }
Tensor operator-(const Tensor& a, double b) { return sub(a, scalar_like(a, b)); }
Tensor operator*(const Tensor& a, double b) { return mul(a, scalar_like(a, b)); }
Tensor operator/(const Tensor& a, double b) { return div(a, scalar_like(a, b)); }
Tensor operator+(double a, const Tensor& b) { return add(scalar_like(b, a), b); }
Tensor operator-(double a, const Tensor& b) { return sub(scalar_like(b, a), b); }
Tensor operator*(double a, const Tensor& b) { return mul(scalar_like(b, a), b); }
Tensor operator/(double a, const Tensor& b) { return div(scalar_like(b, a), b); }
Tensor operator<(const Tensor& a, const Tensor& b) { return lt(a, b); }
Tensor operator<=(const Tensor& a, const Tensor& b) { return le(a, b); }
Tensor operator>(const Tensor& a, const Tensor& b) { return gt(a, b); }
Tensor operator>=(const Tensor& a, const Tensor& b) { return ge(a, b); }
Tensor operator<(const Tensor& a, double b) { return lt(a, scalar_like(a, b)); }
Tensor operator<=(const Tensor& a, double b) { return le(a, scalar_like(a, b)); }
Tensor operator>(const Tensor& a, double b) { return gt(a, scalar_like(a, b)); }
Tensor operator>=(const Tensor& a, double b) { return ge(a, scalar_like(a, b)); }

// ============================================================================ Where

std::vector<TensorMeta> Where::infer(const std::vector<TensorMeta>& in) const {
  MINIDL_CHECK(in.size() == 3, ValueError, "[where] expects 3 inputs, got {}", in.size());
  MINIDL_CHECK(in[0].dtype == kBool, DTypeError, "[where] condition must be bool, got {} {}",
               dtype_name(in[0].dtype), shape_str(in[0].shape));
  MINIDL_CHECK(in[1].dtype == in[2].dtype, DTypeError,
               "[where] branches must have one dtype, got {} and {}", dtype_name(in[1].dtype),
               dtype_name(in[2].dtype));
  return {{pointwise_shape("where", in), in[1].dtype, common_device("where", in)}};
}

std::vector<Tensor> Where::eval_cpu(const std::vector<Tensor>& in) {
  const TensorMeta m = infer({in[0].meta(), in[1].meta(), in[2].meta()})[0];
  Tensor out = empty(m.shape, m.dtype, kCPU, "where");
  cpu::LoopOperands<4> ops{
      {static_cast<char*>(out.data_ptr()), static_cast<char*>(in[0].data_ptr()),
       static_cast<char*>(in[1].data_ptr()), static_cast<char*>(in[2].data_ptr())},
      {cpu::byte_strides(out), cpu::broadcast_byte_strides(in[0], m.shape),
       cpu::broadcast_byte_strides(in[1], m.shape), cpu::broadcast_byte_strides(in[2], m.shape)}};
  MINIDL_DISPATCH_ALL(m.dtype, "where", [&] {
    cpu::for_each_run<4>(m.shape, ops, 2, [](const std::array<char*, 4>& p, int64_t n,
                                             const std::array<int64_t, 4>& s) {
      for (int64_t i = 0; i < n; ++i)
        *reinterpret_cast<scalar_t*>(p[0] + i * s[0]) =
            *reinterpret_cast<const bool*>(p[1] + i * s[1])
                ? *reinterpret_cast<const scalar_t*>(p[2] + i * s[2])
                : *reinterpret_cast<const scalar_t*>(p[3] + i * s[3]);
    });
  });
  return {out};
}

#if MINIDL_WITH_CUDA
std::vector<Tensor> Where::eval_cuda(const std::vector<Tensor>& in) {
  return {cuda::where(in[0], in[1], in[2], infer({in[0].meta(), in[1].meta(), in[2].meta()})[0])};
}
#endif

SaveMask Where::saves(const std::vector<bool>&, size_t) const {
  return {{true, false, false}, {false}};
}

std::vector<Tensor> Where::vjp(const std::vector<Tensor>& primals, const std::vector<Tensor>& cot,
                               const std::vector<Tensor>&, const std::vector<bool>& ng) {
  const Tensor& c = primals[0];
  const Tensor& g = cot[0];
  Tensor zero = zero_like_scalar(g);
  Tensor ga = ng[1] ? sum_to(where(c, g, zero), primals[1].shape()) : Tensor();
  Tensor gb = ng[2] ? sum_to(where(c, zero, g), primals[2].shape()) : Tensor();
  return {Tensor(), ga, gb};
}

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  MINIDL_CHECK(cond.dtype() == kBool, DTypeError, "[where] condition must be bool, got {} {}",
               dtype_name(cond.dtype()), shape_str(cond.shape()));
  DType t = promote_types(a.dtype(), b.dtype());
  return apply1(std::make_shared<Where>(),
                broadcast_operands("where", {cond, a.dtype() == t ? a : a.to(t),
                                             b.dtype() == t ? b : b.to(t)}));
}

// ============================================================================ MaskedFill

std::string MaskedFill::attrs() const { return fmt::format("value={}", value_); }

std::vector<TensorMeta> MaskedFill::infer(const std::vector<TensorMeta>& in) const {
  MINIDL_CHECK(in.size() == 2, ValueError, "[masked_fill] expects 2 inputs, got {}", in.size());
  MINIDL_CHECK(in[1].dtype == kBool, DTypeError, "[masked_fill] mask must be bool, got {} {}",
               dtype_name(in[1].dtype), shape_str(in[1].shape));
  MINIDL_CHECK(in[1].shape == in[0].shape, ShapeError,
               "[masked_fill] mask {} must be broadcast to the input's shape {} first",
               shape_str(in[1].shape), shape_str(in[0].shape));
  return {{in[0].shape, in[0].dtype, common_device("masked_fill", in)}};
}

std::vector<Tensor> MaskedFill::eval_cpu(const std::vector<Tensor>& in) {
  const Tensor &x = in[0], &mask = in[1];
  Tensor out = empty(x.shape(), x.dtype(), kCPU, "masked_fill");
  cpu::LoopOperands<3> ops{{static_cast<char*>(out.data_ptr()), static_cast<char*>(x.data_ptr()),
                            static_cast<char*>(mask.data_ptr())},
                           {cpu::byte_strides(out), cpu::byte_strides(x), cpu::byte_strides(mask)}};
  MINIDL_DISPATCH_ALL(x.dtype(), "masked_fill", [&] {
    const scalar_t v = scalar_t(static_cast<compute_t<scalar_t>>(value_));
    cpu::for_each_run<3>(x.shape(), ops, 2, [&](const std::array<char*, 3>& p, int64_t n,
                                                const std::array<int64_t, 3>& s) {
      for (int64_t i = 0; i < n; ++i)
        *reinterpret_cast<scalar_t*>(p[0] + i * s[0]) =
            *reinterpret_cast<const bool*>(p[2] + i * s[2])
                ? v
                : *reinterpret_cast<const scalar_t*>(p[1] + i * s[1]);
    });
  });
  return {out};
}

#if MINIDL_WITH_CUDA
std::vector<Tensor> MaskedFill::eval_cuda(const std::vector<Tensor>& in) {
  return {cuda::masked_fill(in[0], in[1], value_)};
}
#endif

SaveMask MaskedFill::saves(const std::vector<bool>&, size_t) const { return {{false, true}, {false}}; }

std::vector<Tensor> MaskedFill::vjp(const std::vector<Tensor>& primals,
                                    const std::vector<Tensor>& cot, const std::vector<Tensor>&,
                                    const std::vector<bool>&) {
  return {masked_fill(cot[0], primals[1], 0.0), Tensor()};
}

Tensor masked_fill(const Tensor& x, const Tensor& mask, double value) {
  MINIDL_CHECK(mask.dtype() == kBool, DTypeError, "[masked_fill] mask must be bool, got {} {}",
               dtype_name(mask.dtype()), shape_str(mask.shape()));
  Shape s = broadcast_shapes(x.shape(), mask.shape(), "masked_fill");
  MINIDL_CHECK(s == x.shape(), ShapeError,
               "[masked_fill] mask {} does not broadcast to the input's shape {}",
               shape_str(mask.shape()), shape_str(x.shape()));
  return apply1(std::make_shared<MaskedFill>(value), {x, mask.shape() == s ? mask : mask.expand(s)});
}

// ============================================================================ Triangle

std::string Triangle::attrs() const { return fmt::format("k={}", k_); }

std::vector<TensorMeta> Triangle::infer(const std::vector<TensorMeta>& in) const {
  MINIDL_CHECK(in.size() == 1 && in[0].shape.size() >= 2, ShapeError,
               "[{}] expects a tensor of at least 2 dims, got {}", name(),
               in.empty() ? "nothing" : shape_str(in[0].shape));
  return {in[0]};
}

std::vector<Tensor> Triangle::eval_cpu(const std::vector<Tensor>& in) {
  const Tensor x = in[0].contiguous();
  Tensor out = empty(x.shape(), x.dtype(), kCPU, name());
  const int64_t rows = x.size(-2), cols = x.size(-1), mats = x.numel() / std::max<int64_t>(rows * cols, 1);
  const size_t isz = itemsize(x.dtype());
  const char* src = static_cast<const char*>(x.data_ptr());
  char* dst = static_cast<char*>(out.data_ptr());
  const bool upper = upper_;
  const int64_t k = k_;
  cpu::parallel_for(mats * rows, cols, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t i = r % rows;
      for (int64_t j = 0; j < cols; ++j) {
        const bool keep = upper ? (j - i >= k) : (j - i <= k);
        const size_t off = static_cast<size_t>(r * cols + j) * isz;
        if (keep) std::memcpy(dst + off, src + off, isz);
        else std::memset(dst + off, 0, isz);
      }
    }
  });
  return {out};
}

#if MINIDL_WITH_CUDA
std::vector<Tensor> Triangle::eval_cuda(const std::vector<Tensor>& in) {
  return {cuda::triangle(in[0], upper_, k_)};
}
#endif

SaveMask Triangle::saves(const std::vector<bool>&, size_t) const { return {{false}, {false}}; }

std::vector<Tensor> Triangle::vjp(const std::vector<Tensor>&, const std::vector<Tensor>& cot,
                                  const std::vector<Tensor>&, const std::vector<bool>&) {
  return {upper_ ? triu(cot[0], k_) : tril(cot[0], k_)};
}

Tensor triu(const Tensor& x, int64_t k) { return apply1(std::make_shared<Triangle>(true, k), {x}); }
Tensor tril(const Tensor& x, int64_t k) { return apply1(std::make_shared<Triangle>(false, k), {x}); }

// ============================================================================ Cast

std::string Cast::attrs() const { return fmt::format("dtype={}", dtype_name(to_)); }

std::vector<TensorMeta> Cast::infer(const std::vector<TensorMeta>& in) const {
  MINIDL_CHECK(in.size() == 1, ValueError, "[cast] expects 1 input, got {}", in.size());
  return {{in[0].shape, to_, in[0].device}};
}

std::vector<Tensor> Cast::eval_cpu(const std::vector<Tensor>& in) {
  Tensor out = empty(in[0].shape(), to_, kCPU, "cast");
  cpu::convert(out, in[0]);
  return {out};
}

#if MINIDL_WITH_CUDA
std::vector<Tensor> Cast::eval_cuda(const std::vector<Tensor>& in) {
  Tensor out = empty(in[0].shape(), to_, in[0].device(), "cast");
  cuda::convert(out, in[0]);
  return {out};
}
#endif

SaveMask Cast::saves(const std::vector<bool>&, size_t) const { return {{false}, {false}}; }

std::vector<Tensor> Cast::vjp(const std::vector<Tensor>& primals, const std::vector<Tensor>& cot,
                              const std::vector<Tensor>&, const std::vector<bool>&) {
  return {cot[0].to(primals[0].dtype())};
}

Tensor Tensor::to(DType t) const {
  if (dtype() == t) return *this;
  return apply1(std::make_shared<Cast>(t), {*this});
}

}  // namespace minidl
