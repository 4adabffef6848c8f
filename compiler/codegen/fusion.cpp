// The fusion kernel generator. Every value of a group is either an element value (one per
// element of the iteration shape) or a row value (one per row of the last dim: constants,
// reductions, and pointwise ops of row values only). A kernel with reductions makes one pass
// over its row per reduction depth (reductions that do not depend on each other share a pass),
// recomputing the element values each pass needs from the inputs, then a last pass writes the
// element outputs: inputs are re-read (from L2 for rows of moderate size) instead of staged.
#include "compiler/codegen/fusion.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "base/error.h"
#include "compiler/codegen/device/kernel_params.h"
#include "compiler/codegen/source_builder.h"
#include "core/scalar_ops.h"

namespace minidl::codegen {

namespace {

constexpr int kThreads = 256, kRowsPerBlock = kThreads / 32;

const std::set<std::string>& unary_functors() {
  static const std::set<std::string> s = {
#define MINIDL_X(E, N) #E,
      MINIDL_UNARY_OPS(MINIDL_X)
#undef MINIDL_X
  };
  return s;
}
const std::set<std::string>& binary_functors() {
  static const std::set<std::string> s = {
#define MINIDL_X(E, N) #E,
      MINIDL_BINARY_OPS(MINIDL_X)
#undef MINIDL_X
  };
  return s;
}
bool is_comparison_functor(const std::string& f) {
  return f == "Eq" || f == "Ne" || f == "Lt" || f == "Le" || f == "Gt" || f == "Ge";
}

// The type values of a dtype are computed in (NOTE [Compute type] in core/dtype.h).
const char* compute_type(DType t) {
  switch (t) {
    case kBool: return "bool";
    case kInt32: return "int";
    case kInt64: return "long long";
    case kFloat64: return "double";
    default: return "float";
  }
}
// The type a dtype is stored as in generated code.
const char* storage_type(DType t) {
  switch (t) {
    case kFloat16: return "minidl::dev::f16";
    case kBFloat16: return "minidl::dev::bf16";
    default: return compute_type(t);
  }
}

// A conversion to the compute type of t, rounded as storing in t rounds (float16, bfloat16), so a
// cast inside a kernel gives what the cast op gives.
std::string cast_expr(DType t, const std::string& v) {
  const std::string c = fmt::format("static_cast<{}>({})", compute_type(t), v);
  if (t == kFloat16) return fmt::format("minidl::dev::f16_to_float(minidl::dev::float_to_f16({}))", c);
  if (t == kBFloat16) return fmt::format("minidl::dev::bf16_to_float(minidl::dev::float_to_bf16({}))", c);
  return c;
}

std::string literal(double v, DType t) {
  switch (t) {
    case kBool: return v != 0 ? "true" : "false";
    case kInt32: return fmt::format("{}", static_cast<long long>(v));
    case kInt64: return fmt::format("{}LL", static_cast<long long>(v));
    default: break;
  }
  const std::string cast = t == kFloat64 ? "(double)" : "";
  if (std::isnan(v)) return cast + "__int_as_float(0x7fc00000)";
  if (std::isinf(v)) return cast + (v > 0 ? "MINIDL_INF" : "-MINIDL_INF");
  return t == kFloat64 ? double_literal(v) : float_literal(v);
}

bool is_reduction(FusedOpKind k) { return k == FusedOpKind::RowSum || k == FusedOpKind::RowMax; }

// What the generator needs to know of every value.
struct Analysis {
  std::vector<bool> row;    // a row value (else an element value)
  std::vector<int> depth;   // row values: the pass after which it exists; reductions: the pass computing it
  int passes = 0;           // reduction passes
};

Analysis analyse(const FusedGroup& g) {
  Analysis a;
  for (const FusedValue& v : g.values) {
    bool row = v.kind != FusedOpKind::Input;
    int depth = 0;
    for (int x : v.args) {
      row = row && a.row[x];
      depth = std::max(depth, a.depth[x]);
    }
    if (is_reduction(v.kind)) {
      row = true;
      depth += 1;
      a.passes = std::max(a.passes, depth);
    }
    a.row.push_back(row);
    a.depth.push_back(depth);
  }
  return a;
}

void validate(const FusedGroup& g, const Analysis& a) {
  MINIDL_CHECK(!g.values.empty() && !g.outputs.empty(), ValueError, "[fusion] group {} computes nothing", g.name);
  MINIDL_CHECK(g.inputs.size() <= static_cast<size_t>(kMaxFusedInputs) &&
                   g.outputs.size() <= static_cast<size_t>(kMaxFusedOutputs),
               ValueError, "[fusion] group {} has {} inputs and {} outputs; at most {} and {}", g.name,
               g.inputs.size(), g.outputs.size(), kMaxFusedInputs, kMaxFusedOutputs);
  MINIDL_CHECK(a.passes == 0 || (!g.shape.empty() && g.shape.back() > 0), ShapeError,
               "[fusion] group {} reduces over the last dim of {}, which has none", g.name, shape_str(g.shape));
  for (const FusedTensor& t : g.inputs)
    MINIDL_CHECK(t.strides.size() == g.shape.size(), ShapeError,
                 "[fusion] group {}: an input has {} strides for shape {}", g.name, t.strides.size(),
                 shape_str(g.shape));
  for (const FusedOutput& o : g.outputs)
    MINIDL_CHECK(o.value >= 0 && o.value < static_cast<int>(g.values.size()), ValueError,
                 "[fusion] group {}: output of value {} which does not exist", g.name, o.value);
}

// Offset, in elements, of a coordinate given as expressions of each dim.
std::string offset_expr(const Strides& strides, const Shape& shape, const std::vector<std::string>& coord, size_t dims) {
  std::string e;
  for (size_t k = 0; k < dims; ++k) {
    if (strides[k] == 0 || shape[k] == 1) continue;
    e += (e.empty() ? "" : " + ") + (strides[k] == 1 ? coord[k] : fmt::format("{} * {}LL", coord[k], strides[k]));
  }
  return e.empty() ? "0" : e;
}

// Emits `coord_k` for dims [0, dims) of shape from the linear index `index` (row-major).
std::vector<std::string> emit_unravel(SourceBuilder& b, const Shape& shape, size_t dims, const std::string& index) {
  std::vector<std::string> coord(dims);
  if (dims == 0) return coord;
  b.line("long long rest = {};", index);
  for (size_t k = dims; k-- > 0;) {
    coord[k] = fmt::format("i{}", k);
    if (k == 0)
      b.line("const long long i0 = rest;");
    else
      b.line("const long long {} = rest % {}; rest /= {};", coord[k], shape[k], shape[k]);
  }
  return coord;
}

class FusedEmitter {
 public:
  FusedEmitter(const FusedGroup& g, const Analysis& a, SourceBuilder& b) : g_(g), a_(a), b_(b) {}

  // The C++ expression of value v (its arguments already emitted).
  std::string expr(int v, const std::string& elem_off) const {
    const FusedValue& x = g_.values[v];
    auto arg = [&](int i) { return name(x.args[i]); };
    switch (x.kind) {
      case FusedOpKind::Input:
        return fmt::format("load({} + {})", row_base.empty() ? fmt::format("in{}", x.input) : row_base[x.input],
                           elem_off_for(x.input, elem_off));
      case FusedOpKind::Constant: return literal(x.constant, x.dtype);
      case FusedOpKind::Unary: return fmt::format("minidl::sop::{}{{}}({})", x.functor, arg(0));
      case FusedOpKind::Binary: return fmt::format("minidl::sop::{}{{}}({}, {})", x.functor, arg(0), arg(1));
      case FusedOpKind::Where: return fmt::format("minidl::sop::Where{{}}({}, {}, {})", arg(0), arg(1), arg(2));
      case FusedOpKind::Cast: return cast_expr(x.dtype, arg(0));
      default: return "";
    }
  }
  static std::string name(int v) { return fmt::format("v{}", v); }

  void emit_value(int v, const std::string& elem_off) {
    b_.line("const {} {} = {};", compute_type(g_.values[v].dtype), name(v), expr(v, elem_off));
  }

  // Emits, in order, the element values `targets` depend on (row values are in scope).
  void emit_elements_for(const std::vector<int>& targets, const std::string& elem_off) {
    std::vector<bool> need(g_.values.size(), false);
    for (int t : targets) mark(t, need);
    for (size_t v = 0; v < need.size(); ++v)
      if (need[v]) emit_value(static_cast<int>(v), elem_off);
  }

  // Row kernels: per input, the pointer to the current row and the stride along it; input loads
  // then read element `elem_off` of the row. Empty for pointwise kernels, whose loads take the
  // element's full offset.
  std::vector<std::string> row_base, last_stride;

 private:
  void mark(int v, std::vector<bool>& need) const {
    if (a_.row[v] || need[v]) return;
    need[v] = true;
    for (int x : g_.values[v].args) mark(x, need);
  }
  std::string elem_off_for(int input, const std::string& elem_off) const {
    if (row_base.empty()) return elem_off;  // pointwise: precomputed per input
    const std::string& s = last_stride[input];
    if (s == "0") return "0";
    return s == "1" ? elem_off : fmt::format("{} * {}LL", elem_off, s);
  }

  const FusedGroup& g_;
  const Analysis& a_;
  SourceBuilder& b_;
};

void emit_header(SourceBuilder& b, const FusedGroup& g, const std::string& how) {
  std::string nodes;
  for (const auto& n : g.nodes) nodes += (nodes.empty() ? "" : ", ") + n;
  b.comment(fmt::format("minidl generated kernel: fused group '{}' over {}", g.name, shape_str(g.shape)));
  b.comment("implements graph nodes: " + (nodes.empty() ? std::string("(none named)") : nodes));
  b.comment(how);
  b.comment(fmt::format("minidl codegen version {}", kCodegenVersion));
  b.line("#include \"core/scalar_ops.h\"");
  b.line("#include \"compiler/codegen/device/device.cuh\"");
  b.line("#include \"compiler/codegen/device/kernel_params.h\"");
  b.blank();
}

void emit_pointers(SourceBuilder& b, const FusedGroup& g) {
  for (size_t i = 0; i < g.inputs.size(); ++i)
    b.line("const {0}* __restrict__ in{1} = static_cast<const {0}*>(a.in[{1}]);", storage_type(g.inputs[i].dtype), i);
  for (size_t i = 0; i < g.outputs.size(); ++i)
    b.line("{0}* __restrict__ out{1} = static_cast<{0}*>(a.out[{1}]);", storage_type(g.outputs[i].dtype), i);
}

void emit_store(SourceBuilder& b, const FusedGroup& g, size_t out, const std::string& off) {
  const FusedOutput& o = g.outputs[out];
  b.line("store(out{} + {}, static_cast<{}>({}));", out, off, compute_type(o.dtype), FusedEmitter::name(o.value));
}

GeneratedKernel pointwise_kernel(const FusedGroup& g, const Analysis& a) {
  const long long n = numel(g.shape);
  GeneratedKernel k;
  k.name = "minidl_fused_" + g.name;
  k.threads = kThreads;
  k.tile = kThreads;
  SourceBuilder b;
  emit_header(b, g, fmt::format("element-wise: one thread per element of {} elements", n));
  b.open("extern \"C\" __global__ void __launch_bounds__({}) {}(const minidl::FusedArgs a)", kThreads, k.name);
  b.line("using namespace minidl::dev;");
  emit_pointers(b, g);
  b.line("const long long i = (long long)blockIdx.x * {} + threadIdx.x;", kThreads);
  b.line("if (i >= {}LL) return;", n);
  const Strides contiguous = contiguous_strides(g.shape);
  bool all_contiguous = true;
  for (const FusedTensor& t : g.inputs) all_contiguous = all_contiguous && t.strides == contiguous;
  std::vector<std::string> coord = all_contiguous ? std::vector<std::string>() : emit_unravel(b, g.shape, g.shape.size(), "i");
  FusedEmitter e(g, a, b);
  for (size_t v = 0; v < g.values.size(); ++v) {
    const FusedValue& x = g.values[v];
    const std::string off = x.kind != FusedOpKind::Input || g.inputs[x.input].strides == contiguous
                                ? "i"
                                : offset_expr(g.inputs[x.input].strides, g.shape, coord, g.shape.size());
    e.emit_value(static_cast<int>(v), off);
  }
  for (size_t o = 0; o < g.outputs.size(); ++o) emit_store(b, g, o, "i");
  b.close();
  k.source = b.str();
  return k;
}

GeneratedKernel row_kernel(const FusedGroup& g, const Analysis& a) {
  const int64_t C = g.shape.back();
  const int64_t rows = numel(g.shape) / C;
  GeneratedKernel k;
  k.name = "minidl_fused_" + g.name;
  k.threads = kThreads;
  k.tile = kRowsPerBlock;
  SourceBuilder b;
  emit_header(b, g, fmt::format("row reductions: one warp per row of {} elements, {} rows, {} passes over a row",
                                C, rows, a.passes + 1));
  b.open("extern \"C\" __global__ void __launch_bounds__({}) {}(const minidl::FusedArgs a)", kThreads, k.name);
  b.line("using namespace minidl::dev;");
  b.line("constexpr int C = {};", C);
  emit_pointers(b, g);
  b.line("const long long row = (long long)blockIdx.x * {} + threadIdx.x / 32;", kRowsPerBlock);
  b.line("const int lane = threadIdx.x % 32;");
  b.line("if (row >= {}LL) return;  // whole warps leave together", rows);
  std::vector<std::string> coord = emit_unravel(b, g.shape, g.shape.size() - 1, "row");
  FusedEmitter e(g, a, b);
  for (size_t i = 0; i < g.inputs.size(); ++i) {
    const FusedTensor& t = g.inputs[i];
    b.line("const {0}* in{1}_row = in{1} + {2};", storage_type(t.dtype), i,
           offset_expr(t.strides, g.shape, coord, g.shape.size() - 1));
    e.row_base.push_back(fmt::format("in{}_row", i));
    e.last_stride.push_back(std::to_string(C == 1 ? 0 : t.strides.back()));
  }
  auto emit_row_values = [&](int depth) {
    for (size_t v = 0; v < g.values.size(); ++v)
      if (a.row[v] && a.depth[v] == depth && !is_reduction(g.values[v].kind)) e.emit_value(static_cast<int>(v), "");
  };
  emit_row_values(0);
  for (int pass = 1; pass <= a.passes; ++pass) {
    std::vector<int> reds;
    for (size_t v = 0; v < g.values.size(); ++v)
      if (is_reduction(g.values[v].kind) && a.depth[v] == pass) reds.push_back(static_cast<int>(v));
    std::vector<int> args;
    for (int r : reds) {
      const FusedValue& x = g.values[r];
      b.line("{} r{} = {};", compute_type(x.dtype), r,
             x.kind == FusedOpKind::RowSum ? literal(0, x.dtype) : literal(-INFINITY, x.dtype));
      args.push_back(x.args[0]);
    }
    b.open("for (int c = lane; c < C; c += 32)");
    e.emit_elements_for(args, "c");
    for (int r : reds) {
      const FusedValue& x = g.values[r];
      b.line("r{0} = minidl::sop::{1}{{}}(r{0}, {2});", r, x.kind == FusedOpKind::RowSum ? "Add" : "Maximum",
             FusedEmitter::name(x.args[0]));
    }
    b.close();
    for (int r : reds) {
      const FusedValue& x = g.values[r];
      for (int m = 16; m >= 1; m /= 2)
        b.line("r{0} = minidl::sop::{1}{{}}(r{0}, __shfl_xor_sync(0xffffffffu, r{0}, {2}));", r,
               x.kind == FusedOpKind::RowSum ? "Add" : "Maximum", m);
      b.line("const {} {} = r{};", compute_type(x.dtype), FusedEmitter::name(r), r);
    }
    emit_row_values(pass);
  }
  std::vector<int> element_outputs;
  for (const FusedOutput& o : g.outputs)
    if (!a.row[o.value]) element_outputs.push_back(o.value);
  if (!element_outputs.empty()) {
    b.open("for (int c = lane; c < C; c += 32)");
    e.emit_elements_for(element_outputs, "c");
    for (size_t o = 0; o < g.outputs.size(); ++o)
      if (!a.row[g.outputs[o].value]) emit_store(b, g, o, "row * C + c");
    b.close();
  }
  for (size_t o = 0; o < g.outputs.size(); ++o) {
    if (!a.row[g.outputs[o].value]) continue;
    b.line("if (lane == 0) store(out{} + row, static_cast<{}>({}));", o, compute_type(g.outputs[o].dtype),
           FusedEmitter::name(g.outputs[o].value));
  }
  b.close();
  k.source = b.str();
  return k;
}

}  // namespace

// ---- FusedGroup construction

int FusedGroup::input(DType dtype, Strides strides) {
  inputs.push_back({dtype, std::move(strides)});
  values.push_back({FusedOpKind::Input, dtype, {}, "", static_cast<int>(inputs.size()) - 1, 0});
  return static_cast<int>(values.size()) - 1;
}

int FusedGroup::constant(double v, DType dtype) {
  values.push_back({FusedOpKind::Constant, dtype, {}, "", -1, v});
  return static_cast<int>(values.size()) - 1;
}

namespace {
void check_arg(const FusedGroup& g, int a, const char* what) {
  MINIDL_CHECK(a >= 0 && a < static_cast<int>(g.values.size()), ValueError,
               "[fusion] group {}: {} reads value {}, which is not defined yet", g.name, what, a);
}
}  // namespace

int FusedGroup::unary(const std::string& functor, int a) {
  check_arg(*this, a, functor.c_str());
  MINIDL_CHECK(unary_functors().count(functor), ValueError, "[fusion] '{}' is not a unary functor of core/scalar_ops.h",
               functor);
  values.push_back({FusedOpKind::Unary, values[a].dtype, {a}, functor, -1, 0});
  return static_cast<int>(values.size()) - 1;
}

int FusedGroup::binary(const std::string& functor, int a, int b) {
  check_arg(*this, a, functor.c_str());
  check_arg(*this, b, functor.c_str());
  MINIDL_CHECK(binary_functors().count(functor), ValueError,
               "[fusion] '{}' is not a binary functor of core/scalar_ops.h", functor);
  MINIDL_CHECK(values[a].dtype == values[b].dtype, DTypeError, "[fusion] {} of {} and {}: cast to one dtype first",
               functor, dtype_name(values[a].dtype), dtype_name(values[b].dtype));
  values.push_back({FusedOpKind::Binary, is_comparison_functor(functor) ? kBool : values[a].dtype, {a, b}, functor, -1, 0});
  return static_cast<int>(values.size()) - 1;
}

int FusedGroup::where(int cond, int a, int b) {
  for (int x : {cond, a, b}) check_arg(*this, x, "where");
  MINIDL_CHECK(values[cond].dtype == kBool && values[a].dtype == values[b].dtype, DTypeError,
               "[fusion] where needs a bool condition and one dtype, got {}, {}, {}", dtype_name(values[cond].dtype),
               dtype_name(values[a].dtype), dtype_name(values[b].dtype));
  values.push_back({FusedOpKind::Where, values[a].dtype, {cond, a, b}, "Where", -1, 0});
  return static_cast<int>(values.size()) - 1;
}

int FusedGroup::cast(int a, DType to) {
  check_arg(*this, a, "cast");
  values.push_back({FusedOpKind::Cast, to, {a}, "", -1, 0});
  return static_cast<int>(values.size()) - 1;
}

int FusedGroup::row_sum(int a) {
  check_arg(*this, a, "row_sum");
  values.push_back({FusedOpKind::RowSum, values[a].dtype, {a}, "", -1, 0});
  return static_cast<int>(values.size()) - 1;
}

int FusedGroup::row_max(int a) {
  check_arg(*this, a, "row_max");
  values.push_back({FusedOpKind::RowMax, values[a].dtype, {a}, "", -1, 0});
  return static_cast<int>(values.size()) - 1;
}

void FusedGroup::output(int v, DType dtype) {
  check_arg(*this, v, "output");
  outputs.push_back({v, dtype});
}

int64_t fused_rows(const FusedGroup& g) {
  const int64_t n = numel(g.shape);
  return analyse(g).passes == 0 || n == 0 ? n : n / g.shape.back();
}

GeneratedKernel generate_fused(const FusedGroup& g) {
  const Analysis a = analyse(g);
  validate(g, a);
  return a.passes == 0 ? pointwise_kernel(g, a) : row_kernel(g, a);
}

}  // namespace minidl::codegen
