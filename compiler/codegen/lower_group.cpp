// NOTE [Lowering fusion groups]
// Every member of a group produces the group's shape (NOTE [Fusion groups]), so the members
// become one FusedGroup over that shape, value by value, in the body's topological order:
//
//   body value                         FusedGroup value
//   input, constant of > 1 element     a load, with the tensor's strides broadcast to the shape
//   constant of one element            an inlined literal of its value
//   unary, binary, where               the functor codegen_functor() names (core/scalar_ops.h)
//   masked_fill(x, m) value=v          where(m, v rounded to x's dtype, x), as the CPU kernel
//   cast                               a conversion (rounded to 16 bits for float16/bfloat16)
//   expand(x)                          x's load itself: broadcasting is its strides
//   softmax                            m = row_max(x) (0 for a row of -inf), e = exp(x - m),
//                                      e * (1 / row_sum(e)); log_softmax: (x - m) - log(row_sum(e))
//   softmax_backward(g, y)             y * (g - row_sum(g * y)); log: g - exp(y) * row_sum(g)
//   layer_norm(x[, w, b])              mean = row_sum(x) / C, xc = x - mean,
//                                      xc * rsqrt(row_sum(xc * xc) / C + eps) [* w + b]
//
// The formulas are the CPU kernels' (core/ops/softmax.cpp, core/ops/layer_norm.cpp) in the
// compute type of the dtype (NOTE [Compute type]): 16-bit values are not rounded between members
// as op-by-op evaluation rounds them, and layer_norm's statistics are float sums, not the CPU's
// double ones. A member without a translation (a softmax over another dim, an op added to the
// fusion pass but not here) leaves the program empty with the reason, and the group runs op by op.
#include "compiler/codegen/lower_group.h"

#include <cctype>
#include <cmath>
#include <map>

#include "compiler/codegen/device/kernel_params.h"
#include "compiler/fusion_group.h"
#include "core/half.h"

namespace minidl::codegen {

std::optional<Strides> broadcast_strides(const Shape& from, const Strides& strides, const Shape& to) {
  const size_t n = to.size(), m = from.size();
  if (m > n || strides.size() != m) return std::nullopt;
  const Strides contiguous = contiguous_strides(to);
  Strides out(n, 0);
  for (size_t k = 0; k < n; ++k) {
    if (to[k] == 1) {
      out[k] = contiguous[k];
      continue;
    }
    if (k < n - m) continue;  // a new leading dim
    const size_t i = k - (n - m);
    if (from[i] != to[k] && from[i] != 1) return std::nullopt;
    out[k] = from[i] == 1 ? 0 : strides[i];
  }
  return out;
}

namespace {

// v as the dtype stores it, read back (what a kernel storing v and loading it sees).
double rounded_to(double v, DType t) {
  switch (t) {
    case kFloat16: return Half::to_float(Half::from_float(static_cast<float>(v)));
    case kBFloat16: return static_cast<float>(BFloat16(static_cast<float>(v)));
    case kFloat32: return static_cast<float>(v);
    case kBool: return v != 0;
    case kInt32: case kInt64: return static_cast<double>(static_cast<long long>(v));
    default: return v;
  }
}

// "nearly.forward.group0" -> "nearly_forward_group0": a C identifier for the kernel's name.
std::string identifier(const std::string& s) {
  std::string out;
  for (char c : s) out += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  return out;
}

// Thrown inside the lowering when a member has no translation; caught by lower_group.
struct Untranslatable {
  std::string reason;
};

class Lowerer {
 public:
  Lowerer(const FusionGroup& group, const std::vector<Strides>& input_strides)
      : body_(group.body()),
        shape_(body_.meta(body_.outputs.at(0)).shape),
        strides_(input_strides),
        program_(identifier(body_.name), shape_),
        fused_(body_.values.size(), -1) {}

  LoweredGroup run() {
    LoweredGroup out;
    try {
      if (strides_.size() != body_.inputs.size())
        throw Untranslatable{fmt::format("{} input strides for {} inputs", strides_.size(), body_.inputs.size())};
      // FusedArgs::in holds the body's inputs in order, then the constants read from memory.
      for (ValueId v : body_.inputs) {
        input_index_[v] = static_cast<int>(input_index_.size());
        operand(v);
      }
      for (const GraphNode& n : body_.nodes) {
        const std::string attrs = n.op->attrs();
        program_.nodes.push_back(attrs.empty() ? node_str(n) : fmt::format("{} {}", node_str(n), attrs));
        member(n);
      }
      const std::vector<bool> per_element = element_values();
      for (ValueId v : body_.outputs) {
        if (!per_element[fused_[v]])
          throw Untranslatable{fmt::format("output %{} depends on no input (one value, not one per element)", v)};
        program_.output(fused_[v], body_.meta(v).dtype);
      }
      if (program_.inputs.size() > static_cast<size_t>(kMaxFusedInputs) ||
          program_.outputs.size() > static_cast<size_t>(kMaxFusedOutputs))
        throw Untranslatable{fmt::format("{} inputs and {} outputs, past a kernel's {} and {}", program_.inputs.size(),
                                         program_.outputs.size(), kMaxFusedInputs, kMaxFusedOutputs)};
    } catch (const Untranslatable& u) {
      out.reason = u.reason;
      return out;
    }
    out.program = std::move(program_);
    out.constants = std::move(constants_);
    return out;
  }

 private:
  // The program value of body value v: a member's result, else a load or a literal made once.
  int operand(ValueId v) {
    if (fused_[v] >= 0) return fused_[v];
    const Value& val = body_.values[v];
    if (val.kind == ValueKind::Computed)
      throw Untranslatable{fmt::format("%{} is read before it is computed", v)};
    if (val.kind == ValueKind::Constant && single_element(val.data)) {
      const Tensor one = make_view(val.data, Shape{}, Strides{}, val.data.offset());
      return fused_[v] = program_.constant(one.item(), val.meta.dtype);
    }
    const bool input = val.kind == ValueKind::Input;
    const Strides& own = input ? strides_[input_index_.at(v)] : val.data.strides();
    const std::optional<Strides> s = broadcast_strides(val.meta.shape, own, shape_);
    if (!s)
      throw Untranslatable{fmt::format("%{} of shape {} does not broadcast to the group's shape {}", v,
                                       shape_str(val.meta.shape), shape_str(shape_))};
    if (!input) constants_.push_back(val.data);
    return fused_[v] = program_.input(val.meta.dtype, *s);
  }

  // Input i of member n: a value of the group's shape computed in the group, or an outside value
  // (broadcast to the group's shape).
  int arg(const GraphNode& n, size_t i) {
    const ValueId v = n.inputs.at(i);
    if (body_.values[v].kind == ValueKind::Computed && body_.meta(v).shape != shape_)
      throw Untranslatable{fmt::format("{} reads %{} of shape {}, not the group's {}", node_str(n), v,
                                       shape_str(body_.meta(v).shape), shape_str(shape_))};
    return operand(v);
  }

  // Appends the program of member n. Values are made in a fixed order (a call takes at most one
  // argument that makes values; the others are made first, in declarations, which run in order),
  // so the generated source, and the kernel cache key, do not depend on the host compiler.
  void member(const GraphNode& n) {
    const Primitive& op = *n.op;
    if (n.outputs.size() != 1 || body_.meta(n.outputs[0]).shape != shape_)
      throw Untranslatable{fmt::format("{} does not produce one value of the group's shape {}", node_str(n),
                                       shape_str(shape_))};
    const DType dt = body_.meta(n.outputs[0]).dtype;
    FusedGroup& g = program_;
    int r = -1;
    if (dynamic_cast<const Unary*>(&op)) {
      r = g.unary(op.codegen_functor(), arg(n, 0));
    } else if (dynamic_cast<const Binary*>(&op)) {
      const int a = arg(n, 0), b = arg(n, 1);
      r = g.binary(op.codegen_functor(), a, b);
    } else if (dynamic_cast<const Where*>(&op)) {
      const int c = arg(n, 0), a = arg(n, 1), b = arg(n, 2);
      r = g.where(c, a, b);
    } else if (const auto* mf = dynamic_cast<const MaskedFill*>(&op)) {
      const int x = arg(n, 0), mask = arg(n, 1), fill = g.constant(rounded_to(mf->value(), dt), dt);
      r = g.where(mask, fill, x);
    } else if (const auto* c = dynamic_cast<const Cast*>(&op)) {
      r = g.cast(arg(n, 0), c->to());
    } else if (dynamic_cast<const Expand*>(&op)) {
      r = operand(n.inputs[0]);  // an outside value's load broadcasts; a member's has the shape
    } else if (const auto* s = dynamic_cast<const Softmax*>(&op)) {
      last_dim(n, s->dim());
      const int x = arg(n, 0);
      const int m0 = g.row_max(x), neg_inf = g.constant(-INFINITY, dt), zero = g.constant(0, dt);
      const int m = g.where(g.binary("Eq", m0, neg_inf), zero, m0);  // a row of -inf: exp gives 0s, not NaNs
      const int xm = g.binary("Sub", x, m), e = g.unary("Exp", xm);
      const int sum = g.row_sum(e);
      r = s->is_log() ? g.binary("Sub", xm, g.unary("Log", sum))
                      : g.binary("Mul", e, g.binary("Div", g.constant(1, dt), sum));
    } else if (const auto* sb = dynamic_cast<const SoftmaxBackward*>(&op)) {
      last_dim(n, sb->dim());
      const int grad = arg(n, 0), y = arg(n, 1);
      if (sb->is_log()) {
        const int ey = g.unary("Exp", y), sum = g.row_sum(grad);
        r = g.binary("Sub", grad, g.binary("Mul", ey, sum));
      } else {
        r = g.binary("Mul", y, g.binary("Sub", grad, g.row_sum(g.binary("Mul", grad, y))));
      }
    } else if (const auto* ln = dynamic_cast<const LayerNorm*>(&op)) {
      const int x = arg(n, 0);
      const int c = g.constant(static_cast<double>(shape_.back()), dt);
      const int xc = g.binary("Sub", x, g.binary("Div", g.row_sum(x), c));
      const int var = g.binary("Div", g.row_sum(g.binary("Mul", xc, xc)), c);
      r = g.binary("Mul", xc, g.unary("Rsqrt", g.binary("Add", var, g.constant(ln->eps(), dt))));
      if (ln->affine()) {
        const int w = arg(n, 1), b = arg(n, 2);
        r = g.binary("Add", g.binary("Mul", r, w), b);
      }
    } else {
      throw Untranslatable{fmt::format("{} ({}) has no translation to a generated kernel", node_str(n), op.name())};
    }
    fused_[n.outputs[0]] = r;
  }

  void last_dim(const GraphNode& n, int64_t dim) const {
    if (dim + 1 != static_cast<int64_t>(shape_.size()))
      throw Untranslatable{fmt::format("{} runs along dim {} of {}, not the last", node_str(n), dim, shape_str(shape_))};
  }

  // Per program value: whether it has one value per element (it reads a load other than
  // through a reduction), as the generator's outputs of the group's shape must.
  std::vector<bool> element_values() const {
    std::vector<bool> out;
    for (const FusedValue& x : program_.values) {
      bool e = x.kind == FusedOpKind::Input;
      if (x.kind != FusedOpKind::RowSum && x.kind != FusedOpKind::RowMax)
        for (int a : x.args) e = e || out[a];
      out.push_back(e);
    }
    return out;
  }

  static bool single_element(const Tensor& t) {
    for (size_t k = 0; k < t.shape().size(); ++k)
      if (t.shape()[k] > 1 && t.strides()[k] != 0) return false;
    return t.numel() > 0;
  }

  const Graph& body_;
  const Shape shape_;
  const std::vector<Strides>& strides_;
  FusedGroup program_;
  std::vector<int> fused_;               // by body ValueId: its program value, -1 until made
  std::map<ValueId, int> input_index_;   // body input -> its position in body.inputs
  std::vector<Tensor> constants_;
};

}  // namespace

LoweredGroup lower_group(const FusionGroup& group, const std::vector<Strides>& input_strides) {
  return Lowerer(group, input_strides).run();
}

}  // namespace minidl::codegen
