// Data-driven op tests (the pattern of ggml's test-backend-ops and tinygrad's helper_test_op).
// Each OpCase names an op, its inputs (shape, layout, value range) and a float64 reference
// written here with plain loops, never with minidl. check_op() then runs the case three ways:
//   1. forward on every test device and dtype (float64 on the CPU, float32 tight, float16 and
//      bfloat16 loose) against the reference, on the layout the case asks for (contiguous,
//      transposed, strided slice, expanded);
//   2. gradcheck in float64 (central differences) when the op is differentiable;
//   3. backward in float32 on every test device against the float64 CPU gradients.
// Inputs are built on the CPU in float64 and moved with .to(dtype).to(device); the layout's
// view is applied on the device, so the same definitions test every backend.
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <optional>
#include <random>
#include <sstream>

#include "test_utils.h"

using namespace minidl;
using minidl::testing::test_devices;

namespace {

// ============================================================================ float64 reference

/// Values in row-major order and their shape: what the reference functions take and return.
struct Ref {
  Shape shape;
  std::vector<double> v;
};

int64_t count(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

std::string str(const Shape& s) {
  std::string out = "(";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + (s.size() == 1 ? ",)" : ")");
}

std::vector<int64_t> unravel(int64_t i, const Shape& s) {
  std::vector<int64_t> idx(s.size());
  for (int64_t d = static_cast<int64_t>(s.size()) - 1; d >= 0; --d) {
    idx[d] = i % s[d];
    i /= s[d];
  }
  return idx;
}

Shape ref_broadcast(const Shape& a, const Shape& b) {
  const size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    const int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    const int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    REQUIRE((da == db || da == 1 || db == 1));
    out[i] = da == 1 ? db : da;
  }
  return out;
}

/// x's value at multi-index idx of a shape x broadcasts to (right-aligned, size-1 dims repeat).
double at(const Ref& x, const std::vector<int64_t>& idx) {
  const size_t lead = idx.size() - x.shape.size();
  int64_t flat = 0;
  for (size_t d = 0; d < x.shape.size(); ++d)
    flat = flat * x.shape[d] + (x.shape[d] == 1 ? 0 : idx[lead + d]);
  return x.v[flat];
}

/// out[i] = f(xs[0][i], xs[1][i], ...) with numpy broadcasting.
Ref pointwise(const std::vector<Ref>& xs,
              const std::function<double(const std::vector<double>&)>& f) {
  Ref out;
  for (const Ref& x : xs) out.shape = ref_broadcast(out.shape, x.shape);
  std::vector<double> args(xs.size());
  for (int64_t i = 0; i < count(out.shape); ++i) {
    const std::vector<int64_t> idx = unravel(i, out.shape);
    for (size_t k = 0; k < xs.size(); ++k) args[k] = at(xs[k], idx);
    out.v.push_back(f(args));
  }
  return out;
}

Ref map1(const Ref& x, const std::function<double(double)>& f) {
  return pointwise({x}, [&](const std::vector<double>& a) { return f(a[0]); });
}
Ref map2(const Ref& x, const Ref& y, const std::function<double(double, double)>& f) {
  return pointwise({x, y}, [&](const std::vector<double>& a) { return f(a[0], a[1]); });
}

std::vector<int64_t> norm_dims(std::vector<int64_t> dims, size_t nd) {
  if (dims.empty())
    for (size_t d = 0; d < nd; ++d) dims.push_back(static_cast<int64_t>(d));
  for (auto& d : dims)
    if (d < 0) d += static_cast<int64_t>(nd);
  return dims;
}

/// Reduces dims (all if empty) of x: out = f(values of the reduced block, in row-major order).
Ref reduce(const Ref& x, std::vector<int64_t> dims, bool keepdim,
           const std::function<double(const std::vector<double>&)>& f) {
  dims = norm_dims(dims, x.shape.size());
  auto reduced = [&](int64_t d) { return std::find(dims.begin(), dims.end(), d) != dims.end(); };
  Ref out;
  Shape kept;  // the output shape with keepdim
  for (int64_t d = 0; d < static_cast<int64_t>(x.shape.size()); ++d) {
    kept.push_back(reduced(d) ? 1 : x.shape[d]);
    if (!reduced(d) || keepdim) out.shape.push_back(kept.back());
  }
  std::vector<std::vector<double>> blocks(count(kept));
  for (int64_t i = 0; i < count(x.shape); ++i) {
    std::vector<int64_t> idx = unravel(i, x.shape);
    int64_t o = 0;
    for (size_t d = 0; d < idx.size(); ++d) o = o * kept[d] + (reduced(d) ? 0 : idx[d]);
    blocks[o].push_back(x.v[i]);
  }
  for (const auto& b : blocks) out.v.push_back(f(b));
  return out;
}

/// Applies f to every 1-D row of x along dim (a row in, a row of the same length out).
Ref along(const Ref& x, int64_t dim,
          const std::function<std::vector<double>(const std::vector<double>&)>& f) {
  if (x.shape.empty()) {
    Ref out = x;
    out.v = f(x.v);
    return out;
  }
  if (dim < 0) dim += static_cast<int64_t>(x.shape.size());
  int64_t inner = 1;
  for (size_t d = dim + 1; d < x.shape.size(); ++d) inner *= x.shape[d];
  const int64_t n = x.shape[dim];
  Ref out = x;
  for (int64_t i = 0; i < count(x.shape); ++i) {
    if (unravel(i, x.shape)[dim] != 0) continue;
    std::vector<double> row;
    for (int64_t j = 0; j < n; ++j) row.push_back(x.v[i + j * inner]);
    std::vector<double> r = f(row);
    for (int64_t j = 0; j < n; ++j) out.v[i + j * inner] = r[j];
  }
  return out;
}

/// x with its dims reordered: out.shape[i] = x.shape[perm[i]].
Ref permuted(const Ref& x, const std::vector<int64_t>& perm) {
  Ref out;
  for (int64_t p : perm) out.shape.push_back(x.shape[p]);
  for (int64_t i = 0; i < count(out.shape); ++i) {
    std::vector<int64_t> oi = unravel(i, out.shape), xi(perm.size());
    for (size_t d = 0; d < perm.size(); ++d) xi[perm[d]] = oi[d];
    int64_t flat = 0;
    for (size_t d = 0; d < xi.size(); ++d) flat = flat * x.shape[d] + xi[d];
    out.v.push_back(x.v[flat]);
  }
  return out;
}

/// Elements start, start + step, ... < end of dim.
Ref sliced(const Ref& x, int64_t dim, int64_t start, int64_t end, int64_t step) {
  Ref out = x;
  out.shape[dim] = std::max<int64_t>(0, (end - start + step - 1) / step);
  out.v.clear();
  for (int64_t i = 0; i < count(out.shape); ++i) {
    std::vector<int64_t> idx = unravel(i, out.shape);
    idx[dim] = start + idx[dim] * step;
    int64_t flat = 0;
    for (size_t d = 0; d < idx.size(); ++d) flat = flat * x.shape[d] + idx[d];
    out.v.push_back(x.v[flat]);
  }
  return out;
}

Ref reshaped(Ref x, Shape s) {
  x.shape = std::move(s);
  return x;
}

double sum_of(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return s;
}
double max_of(const std::vector<double>& v) {
  double m = -INFINITY;
  for (double x : v) m = (std::isnan(x) || x > m) ? x : m;
  return m;
}

/// Batched matmul with PyTorch's rules (1-D operands promoted then squeezed, batch broadcast).
Ref ref_matmul(Ref a, Ref b) {
  const bool va = a.shape.size() == 1, vb = b.shape.size() == 1;
  if (va) a.shape.insert(a.shape.begin(), 1);
  if (vb) b.shape.push_back(1);
  const int64_t M = a.shape[a.shape.size() - 2], K = a.shape.back(), N = b.shape.back();
  REQUIRE(b.shape[b.shape.size() - 2] == K);
  const Shape ab(a.shape.begin(), a.shape.end() - 2), bb(b.shape.begin(), b.shape.end() - 2);
  const Shape batch = ref_broadcast(ab, bb);
  Ref out;
  out.shape = batch;
  for (int64_t bi = 0; bi < count(batch); ++bi) {
    const std::vector<int64_t> idx = unravel(bi, batch);
    // Flat batch offsets of a and b (broadcast batch dims repeat).
    auto offset = [&](const Shape& s) {
      int64_t flat = 0;
      const size_t lead = idx.size() - s.size();
      for (size_t d = 0; d < s.size(); ++d) flat = flat * s[d] + (s[d] == 1 ? 0 : idx[lead + d]);
      return flat;
    };
    const int64_t oa = offset(ab) * M * K, ob = offset(bb) * K * N;
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) {
        double s = 0;
        for (int64_t k = 0; k < K; ++k) s += a.v[oa + i * K + k] * b.v[ob + k * N + j];
        out.v.push_back(s);
      }
  }
  if (!va) out.shape.push_back(M);
  if (!vb) out.shape.push_back(N);
  return out;
}

// ============================================================================ inputs

/// How an input reaches the op: a contiguous tensor or a view with other strides.
enum class Layout {
  Contiguous,
  Transposed,  // the last two dims swapped in memory, then transposed back (needs 2 dims)
  Sliced,      // every second element of a longer last dim, starting at offset 1
  Expanded,    // the first dim of size > 1 broadcast (stride 0) from size 1
};

const char* layout_name(Layout l) {
  switch (l) {
    case Layout::Contiguous:
      return "";
    case Layout::Transposed:
      return " transposed";
    case Layout::Sliced:
      return " sliced";
    case Layout::Expanded:
      return " expanded";
  }
  return "";
}

/// One input of a case.
struct Arg {
  Shape shape;
  Layout layout = Layout::Contiguous;
  double lo = -2, hi = 2;      // generated values are uniform in [lo, hi]
  std::optional<DType> fixed;  // a fixed dtype (ids, masks); else the dtype under test
  bool integer = false;        // round generated values down to integers (ties for comparisons)
  std::vector<double> values;  // explicit row-major values instead of generated ones
  bool grad = true;            // floating inputs: differentiated by gradcheck and backward
};

Arg in(Shape s, Layout l = Layout::Contiguous, double lo = -2, double hi = 2) {
  Arg a;
  a.shape = std::move(s);
  a.layout = l;
  a.lo = lo;
  a.hi = hi;
  return a;
}
Arg values(Shape s, std::vector<double> v) {
  Arg a = in(std::move(s));
  a.values = std::move(v);
  return a;
}
/// Integer ids in [lo, hi) of dtype t.
Arg ids(Shape s, int64_t lo, int64_t hi, DType t = kInt64) {
  Arg a =
      in(std::move(s), Layout::Contiguous, static_cast<double>(lo), static_cast<double>(hi) - 1e-9);
  a.fixed = t;
  return a;
}
Arg explicit_ids(Shape s, std::vector<double> v, DType t = kInt64) {
  Arg a = values(std::move(s), std::move(v));
  a.fixed = t;
  return a;
}
Arg mask(Shape s, Layout l = Layout::Contiguous) {
  Arg a = in(std::move(s), l, 0, 2 - 1e-9);
  a.fixed = kBool;
  return a;
}
Arg no_grad(Arg a) {
  a.grad = false;
  return a;
}

/// The values of one input: what is stored (possibly a larger or permuted buffer) and what the
/// op sees through the layout's view (row-major over the logical shape).
struct ArgData {
  Layout layout;  // the arg's layout, or Contiguous where the shape does not allow it
  Shape storage_shape;
  std::vector<double> storage;
  std::vector<double> logical;
};

ArgData make_data(const Arg& a, std::mt19937_64& rng) {
  Layout layout = a.layout;
  if (layout == Layout::Transposed && a.shape.size() < 2) layout = Layout::Contiguous;
  if (layout == Layout::Sliced && a.shape.empty()) layout = Layout::Contiguous;
  int64_t expand_dim = -1;
  for (size_t d = 0; d < a.shape.size(); ++d)
    if (a.shape[d] > 1) {
      expand_dim = static_cast<int64_t>(d);
      break;
    }
  if (layout == Layout::Expanded && expand_dim < 0) layout = Layout::Contiguous;

  std::uniform_real_distribution<double> uni(a.lo, a.hi);
  auto draw = [&](int64_t n) {
    std::vector<double> v(n);
    for (auto& x : v) x = a.integer || a.fixed ? std::floor(uni(rng)) : uni(rng);
    return v;
  };
  ArgData d;
  d.layout = layout;
  const int64_t n = count(a.shape);
  if (!a.values.empty()) REQUIRE(static_cast<int64_t>(a.values.size()) == n);
  switch (layout) {
    case Layout::Contiguous:
      d.storage_shape = a.shape;
      d.storage = a.values.empty() ? draw(n) : a.values;
      d.logical = d.storage;
      break;
    case Layout::Transposed: {
      d.logical = a.values.empty() ? draw(n) : a.values;
      std::vector<int64_t> perm(a.shape.size());
      for (size_t i = 0; i < perm.size(); ++i) perm[i] = static_cast<int64_t>(i);
      std::swap(perm[perm.size() - 1], perm[perm.size() - 2]);
      Ref t = permuted({a.shape, d.logical}, perm);
      d.storage_shape = t.shape;
      d.storage = t.v;
      break;
    }
    case Layout::Sliced: {
      d.logical = a.values.empty() ? draw(n) : a.values;
      d.storage_shape = a.shape;
      const int64_t last = a.shape.back();
      d.storage_shape.back() = 2 * last + 1;
      // Elements the view skips hold NaN (or 1 for ids and masks): reading one shows.
      d.storage.assign(count(d.storage_shape), a.fixed ? 1.0 : NAN);
      for (int64_t i = 0; i < n; ++i)
        d.storage[(i / last) * (2 * last + 1) + 1 + 2 * (i % last)] = d.logical[i];
      break;
    }
    case Layout::Expanded: {
      d.storage_shape = a.shape;
      d.storage_shape[expand_dim] = 1;
      d.storage = draw(count(d.storage_shape));
      REQUIRE(a.values.empty());
      d.logical = pointwise({{d.storage_shape, d.storage}, {a.shape, std::vector<double>(n, 0.0)}},
                            [](const std::vector<double>& x) { return x[0]; })
                      .v;
      break;
    }
  }
  return d;
}

/// A float64 CPU tensor of shape s (0-dim included) holding v.
Tensor tensor_of(const std::vector<double>& v, const Shape& s) {
  return from_vector(v, s.empty() ? Shape{1} : s, {.dtype = kFloat64}).reshape(s);
}

/// An input's storage on device: converted to its dtype on the CPU, then moved.
Tensor make_tensor(const Arg& a, const ArgData& d, DType dt, Device dev) {
  return tensor_of(d.storage, d.storage_shape).to(a.fixed ? *a.fixed : dt).to(dev);
}

Tensor view_as_arg(const Tensor& storage, const Arg& a, const ArgData& d) {
  switch (d.layout) {
    case Layout::Contiguous:
      return storage;
    case Layout::Transposed:
      return storage.transpose(-2, -1);
    case Layout::Sliced:
      return storage.slice(-1, 1, 2 * a.shape.back() + 1, 2);
    case Layout::Expanded:
      return storage.expand(a.shape);
  }
  return storage;
}

/// v as the dtype t would store it (the reference sees what the op sees).
double round_to(double v, DType t) {
  switch (t) {
    case kFloat32:
      return static_cast<float>(v);
    case kFloat16:
      return static_cast<float>(Half(static_cast<float>(v)));
    case kBFloat16:
      return static_cast<float>(BFloat16(static_cast<float>(v)));
    case kInt32:
    case kInt64:
      return std::trunc(v);
    case kBool:
      return v != 0 ? 1 : 0;
    default:
      return v;
  }
}

// ============================================================================ cases

using OpFn = std::function<Tensor(const std::vector<Tensor>&)>;
using RefFn = std::function<Ref(const std::vector<Ref>&)>;

/// One op applied to one set of inputs.
struct OpCase {
  std::string op;  // "add", "sum dims=(1,) keepdim", ...
  std::vector<Arg> args;
  OpFn fn;
  RefFn ref;
  bool differentiable = true;
  std::optional<DType> out_dtype;  // the output's dtype when not the input's (bool, int64)
  std::vector<DType> dtypes = {kFloat32, kFloat16, kBFloat16};  // float64 runs on the CPU too
  double tol16 = 1e-2;  // relative tolerance for float16/bfloat16 results
  double scale = 1;     // absolute error allowed, in units of the tolerance

  OpCase(std::string op_, std::vector<Arg> args_, OpFn fn_, RefFn ref_)
      : op(std::move(op_)), args(std::move(args_)), fn(std::move(fn_)), ref(std::move(ref_)) {}

  std::string name() const {
    std::string s = op + "(";
    for (size_t i = 0; i < args.size(); ++i) {
      s += (i ? ", " : "") + str(args[i].shape) + layout_name(args[i].layout);
      if (args[i].fixed) s += std::string(" ") + dtype_name(*args[i].fixed);
    }
    return s + ")";
  }
};

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

std::vector<ArgData> case_data(const OpCase& c) {
  std::mt19937_64 rng(fnv1a(c.name()));
  std::vector<ArgData> d;
  for (const auto& a : c.args) d.push_back(make_data(a, rng));
  return d;
}

double tolerance(DType t, const OpCase& c) {
  switch (t) {
    case kFloat64:
      return 1e-10;
    case kFloat32:
      return 1e-5;
    default:
      return c.tol16;
  }
}

/// Checks got against want elementwise: |got - want| <= tol * (|want| + scale); NaN matches NaN.
void check_values(const Tensor& got_t, const Ref& want, double tol, double scale,
                  const std::string& what) {
  CHECK_MESSAGE(got_t.shape() == want.shape, what, ": shape ", str(got_t.shape()), ", expected ",
                str(want.shape));
  if (got_t.shape() != want.shape) return;
  const std::vector<double> got = got_t.cpu().to_vector<double>();
  double worst = 0;
  int64_t worst_i = -1;
  for (size_t i = 0; i < got.size(); ++i) {
    const double w = want.v[i], g = got[i];
    if (std::isnan(w) && std::isnan(g)) continue;
    if (std::isinf(w) && g == w) continue;
    const double err = std::abs(g - w) / (std::abs(w) + scale);
    if (!(err <= worst))
      worst = std::isnan(err) ? INFINITY : err, worst_i = static_cast<int64_t>(i);
  }
  if (worst_i < 0) return;
  CHECK_MESSAGE(worst <= tol, what, ": element ", worst_i, " (index ",
                str(unravel(worst_i, want.shape)), ") is ", got[worst_i], ", expected ",
                want.v[worst_i], " (error ", worst, " > tolerance ", tol, ")");
}

std::vector<DType> dtypes_on(const OpCase& c, Device dev) {
  std::vector<DType> ts = c.dtypes;
  if (dev.is_cpu()) ts.insert(ts.begin(), kFloat64);
  return ts;
}

void check_forward(const OpCase& c, const std::vector<ArgData>& data) {
  for (Device dev : test_devices())
    for (DType dt : dtypes_on(c, dev)) {
      const std::string what = c.name() + " on " + dev.str() + " in " + dtype_name(dt);
      try {
        std::vector<Tensor> xs;
        std::vector<Ref> refs;
        for (size_t i = 0; i < c.args.size(); ++i) {
          const Arg& a = c.args[i];
          xs.push_back(view_as_arg(make_tensor(a, data[i], dt, dev), a, data[i]));
          Ref r{a.shape, data[i].logical};
          for (auto& v : r.v) v = round_to(v, a.fixed ? *a.fixed : dt);
          refs.push_back(r);
        }
        Tensor out = c.fn(xs);
        const DType want_dt = c.out_dtype ? *c.out_dtype : dt;
        CHECK_MESSAGE(out.dtype() == want_dt, what, ": dtype ", dtype_name(out.dtype()));
        CHECK_MESSAGE(out.device() == dev, what, ": device ", out.device().str());
        check_values(out, c.ref(refs), is_floating(want_dt) ? tolerance(dt, c) : 0.0, c.scale,
                     what);
      } catch (const std::exception& e) {
        FAIL_CHECK(what << " threw: " << std::string(e.what()));
      }
    }
}

/// The leaves of a gradient check: each input's storage in dtype on dev, requiring grad where
/// the input is floating and differentiated.
std::vector<Tensor> grad_leaves(const OpCase& c, const std::vector<ArgData>& data, DType dt,
                                Device dev) {
  std::vector<Tensor> leaves;
  for (size_t i = 0; i < c.args.size(); ++i) {
    Tensor s = make_tensor(c.args[i], data[i], dt, dev);
    if (!c.args[i].fixed && c.args[i].grad) s.requires_grad_(true);
    leaves.push_back(s);
  }
  return leaves;
}

Tensor apply_case(const OpCase& c, const std::vector<ArgData>& data,
                  const std::vector<Tensor>& leaves) {
  std::vector<Tensor> xs;
  for (size_t i = 0; i < c.args.size(); ++i)
    xs.push_back(view_as_arg(leaves[i], c.args[i], data[i]));
  return c.fn(xs);
}

int64_t input_elements(const std::vector<ArgData>& data) {
  int64_t n = 0;
  for (const auto& d : data) n += static_cast<int64_t>(d.storage.size());
  return n;
}

void check_gradients_or_throw(const OpCase& c, const std::vector<ArgData>& data) {
  // gradcheck builds a full Jacobian: only for small cases (large ones test kernels' blocking).
  std::vector<Tensor> leaves = grad_leaves(c, data, kFloat64, kCPU);
  Tensor out64 = apply_case(c, data, leaves);
  REQUIRE_MESSAGE(out64.requires_grad(), c.name(),
                  ": differentiable, but the output has no history");
  if (input_elements(data) + out64.numel() <= 400) {
    const std::string what = "gradcheck " + c.name();
    try {
      GradcheckResult r =
          gradcheck([&](const std::vector<Tensor>& x) { return apply_case(c, data, x); }, leaves);
      CHECK_MESSAGE(r.ok, what, ": ", r.message);
    } catch (const std::exception& e) {
      FAIL_CHECK(what << " threw: " << std::string(e.what()));
    }
  }

  // Backward in float32 on every device against the float64 CPU gradients, from one cotangent.
  std::mt19937_64 rng(fnv1a(c.name()) + 1);
  std::uniform_real_distribution<double> uni(-1, 1);
  std::vector<double> cot(out64.numel());
  for (auto& v : cot) v = uni(rng);
  out64.backward(tensor_of(cot, out64.shape()));
  for (Device dev : test_devices()) {
    const std::string what = "backward " + c.name() + " on " + dev.str() + " in float32";
    try {
      std::vector<Tensor> l32 = grad_leaves(c, data, kFloat32, dev);
      Tensor out = apply_case(c, data, l32);
      out.backward(tensor_of(cot, out.shape()).to(kFloat32).to(dev));
      for (size_t i = 0; i < leaves.size(); ++i) {
        if (!leaves[i].requires_grad()) continue;
        const std::string w = what + ", gradient of input " + std::to_string(i);
        REQUIRE_MESSAGE(l32[i].grad().defined() == leaves[i].grad().defined(), w);
        if (!leaves[i].grad().defined()) continue;
        CHECK_MESSAGE(l32[i].grad().device() == dev, w);
        CHECK_MESSAGE(l32[i].grad().dtype() == kFloat32, w);
        const Tensor& g64 = leaves[i].grad();
        check_values(l32[i].grad(), Ref{g64.shape(), g64.to_vector<double>()}, 1e-4, c.scale, w);
      }
    } catch (const std::exception& e) {
      FAIL_CHECK(what << " threw: " << std::string(e.what()));
    }
  }
}

void check_gradients(const OpCase& c, const std::vector<ArgData>& data) {
  if (!c.differentiable) return;
  try {
    check_gradients_or_throw(c, data);
  } catch (const std::exception& e) {
    FAIL_CHECK("gradients of " << c.name() << " threw: " << std::string(e.what()));
  }
}

/// Runs a case forward on every device and dtype, then its gradients.
void check_op(const OpCase& c) {
  const std::vector<ArgData> data = case_data(c);
  check_forward(c, data);
  check_gradients(c, data);
}

}  // namespace

// ============================================================================ pointwise

namespace {

constexpr Layout C = Layout::Contiguous, T = Layout::Transposed, S = Layout::Sliced,
                 E = Layout::Expanded;

double gelu_ref(double x) {
  return 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
}

/// Inputs every unary op runs on: 0-dim, empty, odd sizes, each layout, and sizes large enough
/// for the parallel CPU path.
std::vector<Arg> unary_inputs(double lo, double hi) {
  return {in({}, C, lo, hi),        in({0}, C, lo, hi),       in({7}, C, lo, hi),
          in({3, 5}, C, lo, hi),    in({3, 5}, T, lo, hi),    in({4, 6}, S, lo, hi),
          in({3, 4}, E, lo, hi),    in({2, 3, 5}, T, lo, hi), in({2, 0, 3}, C, lo, hi),
          in({67, 129}, C, lo, hi), in({129, 67}, T, lo, hi)};
}

struct UnarySpec {
  const char* name;
  Tensor (*fn)(const Tensor&);
  double (*ref)(double);
  double lo, hi;  // input range (inside the op's domain)
};

const UnarySpec kUnary[] = {
    {"neg", minidl::neg, [](double x) { return -x; }, -2, 2},
    {"exp", minidl::exp, [](double x) { return std::exp(x); }, -3, 3},
    {"log", minidl::log, [](double x) { return std::log(x); }, 0.1, 4},
    {"sqrt", minidl::sqrt, [](double x) { return std::sqrt(x); }, 0.1, 4},
    {"rsqrt", minidl::rsqrt, [](double x) { return 1 / std::sqrt(x); }, 0.2, 4},
    {"abs", minidl::abs, [](double x) { return std::abs(x); }, -2, 2},
    {"sign", minidl::sign, [](double x) { return double((x > 0) - (x < 0)); }, -2, 2},
    {"tanh", minidl::tanh, [](double x) { return std::tanh(x); }, -3, 3},
    {"sigmoid", minidl::sigmoid, [](double x) { return 1 / (1 + std::exp(-x)); }, -4, 4},
    {"relu", minidl::relu, [](double x) { return x > 0 ? x : 0; }, -2, 2},
    {"gelu", minidl::gelu, gelu_ref, -3, 3},
    {"silu", minidl::silu, [](double x) { return x / (1 + std::exp(-x)); }, -4, 4},
};

}  // namespace

TEST_CASE("op unary: neg exp log sqrt rsqrt abs sign tanh sigmoid relu gelu silu") {
  for (const UnarySpec& u : kUnary)
    for (const Arg& a : unary_inputs(u.lo, u.hi)) {
      auto fn = u.fn;
      auto ref = u.ref;
      check_op({u.name,
                {a},
                [fn](const std::vector<Tensor>& x) { return fn(x[0]); },
                [ref](const std::vector<Ref>& x) { return map1(x[0], ref); }});
    }
}

TEST_CASE("op unary: hand-computed values") {
  // Values from the definitions (GELU tanh form: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))).
  Tensor x = from_vector<double>({-1, 0, 1, 2}, {}, {.dtype = kFloat64});
  auto close = [](const Tensor& t, std::vector<double> want) {
    std::vector<double> got = t.to_vector<double>();
    REQUIRE(got.size() == want.size());
    for (size_t i = 0; i < got.size(); ++i) CHECK(got[i] == doctest::Approx(want[i]).epsilon(1e-9));
  };
  close(gelu(x), {-0.15880800939172324, 0, 0.8411919906082768, 1.9545976940871174});
  close(sigmoid(x), {0.2689414213699951, 0.5, 0.7310585786300049, 0.8807970779778823});
  close(silu(x), {-0.2689414213699951, 0, 0.7310585786300049, 1.7615941559557646});
  close(relu(x), {0, 0, 1, 2});
  // Integer inputs: neg/abs/relu/sign keep the dtype; float-only ops compute in float32.
  Tensor i = from_vector<int64_t>({-3, 0, 4}, {}, {.dtype = kInt64});
  CHECK(neg(i).dtype() == kInt64);
  CHECK(neg(i).to_vector<int64_t>() == std::vector<int64_t>{3, 0, -4});
  CHECK(abs(i).to_vector<int64_t>() == std::vector<int64_t>{3, 0, 4});
  CHECK(relu(i).to_vector<int64_t>() == std::vector<int64_t>{0, 0, 4});
  CHECK(sign(i).to_vector<int64_t>() == std::vector<int64_t>{-1, 0, 1});
  CHECK(exp(i).dtype() == kFloat32);
  CHECK(exp(i).to_vector<float>()[1] == 1.0f);
}

namespace {

struct BinarySpec {
  const char* name;
  Tensor (*fn)(const Tensor&, const Tensor&);
  double (*ref)(double, double);
  double alo, ahi, blo, bhi;
};

const BinarySpec kBinary[] = {
    {"add", minidl::add, [](double a, double b) { return a + b; }, -2, 2, -2, 2},
    {"sub", minidl::sub, [](double a, double b) { return a - b; }, -2, 2, -2, 2},
    {"mul", minidl::mul, [](double a, double b) { return a * b; }, -2, 2, -2, 2},
    {"div", minidl::div, [](double a, double b) { return a / b; }, -2, 2, 0.5, 2},
    {"pow", minidl::pow, [](double a, double b) { return std::pow(a, b); }, 0.5, 2, -2, 2},
    {"maximum", minidl::maximum, [](double a, double b) { return std::max(a, b); }, -2, 2, -2, 2},
    {"minimum", minidl::minimum, [](double a, double b) { return std::min(a, b); }, -2, 2, -2, 2},
};

struct ShapePair {
  Shape a;
  Layout la;
  Shape b;
  Layout lb;
};

/// Operand shapes of binary ops: equal, broadcast both ways, 0-dim scalars, empty, each layout,
/// and sizes large enough for the parallel CPU path.
const ShapePair kPairs[] = {
    {{3, 4}, C, {3, 4}, C},
    {{3, 1}, C, {1, 4}, C},
    {{2, 3, 4}, C, {4}, C},
    {{2, 1, 4}, C, {3, 1}, C},
    {{}, C, {3}, C},
    {{3}, C, {}, C},
    {{}, C, {}, C},
    {{0, 3}, C, {1, 3}, C},
    {{3, 4}, T, {3, 4}, S},
    {{3, 4}, E, {3, 1}, T},
    {{4, 5}, S, {5}, C},
    {{2, 3, 4}, T, {2, 3, 4}, E},
    {{130, 257}, C, {257}, C},
    {{257, 130}, T, {257, 130}, C},
};

}  // namespace

TEST_CASE("op binary: add sub mul div pow maximum minimum, broadcast and strided") {
  for (const BinarySpec& b : kBinary)
    for (const ShapePair& p : kPairs) {
      auto fn = b.fn;
      auto ref = b.ref;
      check_op({b.name,
                {in(p.a, p.la, b.alo, b.ahi), in(p.b, p.lb, b.blo, b.bhi)},
                [fn](const std::vector<Tensor>& x) { return fn(x[0], x[1]); },
                [ref](const std::vector<Ref>& x) { return map2(x[0], x[1], ref); }});
    }
}

TEST_CASE("op binary with a number: x + s, s - x, x * s, s / x, pow(x, s)") {
  struct ScalarCase {
    const char* name;
    std::function<Tensor(const Tensor&)> fn;
    std::function<double(double)> ref;
    double lo, hi;
  };
  const std::vector<ScalarCase> cases = {
      {"x + 2.5", [](const Tensor& x) { return x + 2.5; }, [](double x) { return x + 2.5; }, -2, 2},
      {"2.5 + x", [](const Tensor& x) { return 2.5 + x; }, [](double x) { return 2.5 + x; }, -2, 2},
      {"x - 1.5", [](const Tensor& x) { return x - 1.5; }, [](double x) { return x - 1.5; }, -2, 2},
      {"1.5 - x", [](const Tensor& x) { return 1.5 - x; }, [](double x) { return 1.5 - x; }, -2, 2},
      {"x * -3", [](const Tensor& x) { return x * -3.0; }, [](double x) { return x * -3; }, -2, 2},
      {"-3 * x", [](const Tensor& x) { return -3.0 * x; }, [](double x) { return -3 * x; }, -2, 2},
      {"x / 4", [](const Tensor& x) { return x / 4.0; }, [](double x) { return x / 4; }, -2, 2},
      {"3 / x", [](const Tensor& x) { return 3.0 / x; }, [](double x) { return 3 / x; }, 0.5, 2},
      {"-x", [](const Tensor& x) { return -x; }, [](double x) { return -x; }, -2, 2},
      {"pow(x, 3)", [](const Tensor& x) { return pow(x, 3.0); }, [](double x) { return x * x * x; },
       -2, 2},
      {"pow(x, 0.5)", [](const Tensor& x) { return pow(x, 0.5); },
       [](double x) { return std::sqrt(x); }, 0.5, 2},
      {"pow(x, -1.5)", [](const Tensor& x) { return pow(x, -1.5); },
       [](double x) { return std::pow(x, -1.5); }, 0.5, 2},
  };
  for (const auto& sc : cases)
    for (Layout l : {C, T}) {
      auto fn = sc.fn;
      auto ref = sc.ref;
      check_op({sc.name,
                {in({3, 5}, l, sc.lo, sc.hi)},
                [fn](const std::vector<Tensor>& x) { return fn(x[0]); },
                [ref](const std::vector<Ref>& x) { return map1(x[0], ref); }});
    }
}

TEST_CASE("op comparisons: eq ne lt le gt ge") {
  struct CmpSpec {
    const char* name;
    Tensor (*fn)(const Tensor&, const Tensor&);
    bool (*ref)(double, double);
  };
  const CmpSpec specs[] = {
      {"eq", minidl::eq, [](double a, double b) { return a == b; }},
      {"ne", minidl::ne, [](double a, double b) { return a != b; }},
      {"lt", minidl::lt, [](double a, double b) { return a < b; }},
      {"le", minidl::le, [](double a, double b) { return a <= b; }},
      {"gt", minidl::gt, [](double a, double b) { return a > b; }},
      {"ge", minidl::ge, [](double a, double b) { return a >= b; }},
  };
  const ShapePair pairs[] = {{{3, 4}, C, {3, 4}, C},
                             {{3, 1}, C, {1, 4}, C},
                             {{}, C, {5}, C},
                             {{3, 4}, T, {3, 4}, S},
                             {{0, 2}, C, {2}, C}};
  for (const auto& s : specs)
    for (const auto& p : pairs) {
      Arg a = in(p.a, p.la, -2, 2), b = in(p.b, p.lb, -2, 2);
      a.integer = b.integer = true;  // small integers, so that ties occur
      auto fn = s.fn;
      auto ref = s.ref;
      OpCase c{s.name,
               {a, b},
               [fn](const std::vector<Tensor>& x) { return fn(x[0], x[1]); },
               [ref](const std::vector<Ref>& x) {
                 return map2(x[0], x[1],
                             [ref](double u, double v) { return ref(u, v) ? 1.0 : 0.0; });
               }};
      c.differentiable = false;
      c.out_dtype = kBool;
      c.dtypes = {kFloat32, kFloat16, kBFloat16, kInt32, kInt64};
      check_op(c);
    }
  // Operator forms with a number, and on integers.
  Tensor x = from_vector<int64_t>({1, 2, 3}, {}, {.dtype = kInt64});
  CHECK((x < 2.0).to_vector<bool>() == std::vector<bool>{true, false, false});
  CHECK((x <= 2.0).to_vector<bool>() == std::vector<bool>{true, true, false});
  CHECK((x > 2.0).to_vector<bool>() == std::vector<bool>{false, false, true});
  CHECK((x >= 2.0).to_vector<bool>() == std::vector<bool>{false, true, true});
  CHECK((x > 1.5).to_vector<bool>() == std::vector<bool>{false, true, true});
  CHECK_FALSE((x < x).requires_grad());
}

TEST_CASE("op where and masked_fill") {
  auto where_ref = [](const std::vector<Ref>& x) {
    return pointwise(x, [](const std::vector<double>& v) { return v[0] != 0 ? v[1] : v[2]; });
  };
  auto where_fn = [](const std::vector<Tensor>& x) { return where(x[0], x[1], x[2]); };
  const std::vector<std::vector<Arg>> where_args = {
      {mask({3, 4}), in({3, 4}), in({3, 4})},
      {mask({3, 1}), in({1, 4}), in({3, 4}, T)},
      {mask({}), in({2, 3}), in({})},
      {mask({2, 3}, T), in({2, 3}, E), in({3})},
      {mask({4, 5}, S), in({4, 5}, S), in({1})},
      {mask({0, 3}), in({0, 3}), in({3})},
      {mask({40, 300}), in({40, 300}, T), in({300})},
  };
  for (const auto& args : where_args) check_op({"where", args, where_fn, where_ref});

  for (double value : {-2.5, 0.0}) {
    auto mf_fn = [value](const std::vector<Tensor>& x) { return masked_fill(x[0], x[1], value); };
    auto mf_ref = [value](const std::vector<Ref>& x) {
      return pointwise(x,
                       [value](const std::vector<double>& v) { return v[1] != 0 ? value : v[0]; });
    };
    const std::vector<std::vector<Arg>> mf_args = {
        {in({3, 4}), mask({3, 4})},       {in({3, 4}, T), mask({1, 4})},
        {in({2, 3, 4}, S), mask({3, 1})}, {in({}), mask({})},
        {in({3, 4}, E), mask({3, 4}, T)}, {in({50, 700}), mask({50, 1})},
    };
    for (const auto& args : mf_args)
      check_op({"masked_fill value=" + std::to_string(value), args, mf_fn, mf_ref});
  }
  // -inf fill, as causal attention uses it (forward; the filled entries carry no gradient).
  OpCase inf{"masked_fill value=-inf",
             {in({4, 4}), mask({4, 4})},
             [](const std::vector<Tensor>& x) { return masked_fill(x[0], x[1], -INFINITY); },
             [](const std::vector<Ref>& x) {
               return map2(x[0], x[1], [](double v, double m) { return m != 0 ? -INFINITY : v; });
             }};
  inf.differentiable = false;
  check_op(inf);
}

TEST_CASE("op triu and tril") {
  const std::vector<Arg> inputs = {in({4, 5}),    in({5, 3}), in({2, 3, 4}, T), in({3, 7}, S),
                                   in({6, 6}, E), in({0, 3}), in({2, 70, 300})};
  for (bool upper : {true, false})
    for (int64_t k : {-2, -1, 0, 2})
      for (const Arg& a : inputs) {
        auto fn = [upper, k](const std::vector<Tensor>& x) {
          return upper ? triu(x[0], k) : tril(x[0], k);
        };
        auto ref = [upper, k](const std::vector<Ref>& x) {
          Ref out = x[0];
          const int64_t rows = x[0].shape[x[0].shape.size() - 2], cols = x[0].shape.back();
          for (int64_t i = 0; i < count(out.shape); ++i) {
            const int64_t r = (i / cols) % rows, col = i % cols;
            if (!(upper ? col - r >= k : col - r <= k)) out.v[i] = 0;
          }
          return out;
        };
        check_op({std::string(upper ? "triu" : "tril") + " k=" + std::to_string(k), {a}, fn, ref});
      }
  // The causal mask of attention: tril of ones, as bool.
  Tensor m = tril(ones({3, 3}, {.dtype = kBool}));
  CHECK(m.dtype() == kBool);
  CHECK(m.to_vector<bool>() ==
        std::vector<bool>{true, false, false, true, true, false, true, true, true});
  CHECK(Tensor(ones({2, 3})).triu(1).to_vector<float>() == std::vector<float>{0, 1, 1, 0, 0, 1});
  CHECK(Tensor(ones({2, 3})).tril(-1).to_vector<float>() == std::vector<float>{0, 0, 0, 1, 0, 0});
}

TEST_CASE("op type promotion and mixed dtypes") {
  Tensor i32 = from_vector<int32_t>({1, 2}, {}, {.dtype = kInt32});
  Tensor i64 = from_vector<int64_t>({3, 4}, {}, {.dtype = kInt64});
  Tensor f16 = from_vector<float>({0.5, 1.5}, {}, {.dtype = kFloat16});
  Tensor bf16 = from_vector<float>({0.5, 1.5}, {}, {.dtype = kBFloat16});
  Tensor f32 = from_vector<float>({0.5, 1.5}, {}, {.dtype = kFloat32});
  Tensor f64 = from_vector<double>({0.5, 1.5}, {}, {.dtype = kFloat64});
  Tensor b = from_vector<bool>({true, false}, {}, {.dtype = kBool});
  CHECK((i32 + i64).dtype() == kInt64);
  CHECK((i32 + i64).to_vector<int64_t>() == std::vector<int64_t>{4, 6});
  CHECK((i64 + f16).dtype() == kFloat16);
  CHECK((f16 + bf16).dtype() == kFloat32);
  CHECK((f32 + f64).dtype() == kFloat64);
  CHECK((b + i32).dtype() == kInt32);
  CHECK((b + i32).to_vector<int32_t>() == std::vector<int32_t>{2, 2});
  // True division and pow of integers give float32.
  CHECK((i64 / i64).dtype() == kFloat32);
  CHECK((i32 / from_vector<int32_t>({2, 4}, {}, {.dtype = kInt32})).to_vector<float>() ==
        std::vector<float>{0.5f, 0.5f});
  CHECK(pow(i64, 2.0).dtype() == kFloat32);
  CHECK(pow(i64, 2.0).to_vector<float>() == std::vector<float>{9, 16});
  // A number keeps the tensor's dtype; a fractional number turns integers into float32.
  CHECK((f16 * 3.0).dtype() == kFloat16);
  CHECK((i64 * 3.0).dtype() == kInt64);
  CHECK((i64 * 3.0).to_vector<int64_t>() == std::vector<int64_t>{9, 12});
  CHECK((i64 * 0.5).dtype() == kFloat32);
  CHECK((i64 * 0.5).to_vector<float>() == std::vector<float>{1.5f, 2.0f});
  // A 0-dim tensor of the same category does not widen a dimensioned one (PyTorch's rule).
  CHECK((f16 * scalar_tensor(2.0)).dtype() == kFloat16);
  CHECK((bf16 + scalar_tensor(1.0, {.dtype = kFloat64})).dtype() == kBFloat16);
  CHECK((i32 + scalar_tensor(1, {.dtype = kInt64})).dtype() == kInt32);
  // ... but a higher category does: an int tensor times a float 0-dim tensor is floating.
  CHECK((i64 * scalar_tensor(0.5, {.dtype = kFloat64})).dtype() == kFloat64);
  CHECK((scalar_tensor(1.0, {.dtype = kFloat64}) + scalar_tensor(1.0)).dtype() == kFloat64);
  // where promotes its branches the same way.
  CHECK(where(b, f16, scalar_tensor(0.0)).dtype() == kFloat16);
  CHECK(where(b, i64, f32).dtype() == kFloat32);
  CHECK(where(b, i64, f32).to_vector<float>() == std::vector<float>{3.0f, 1.5f});
  // maximum/minimum propagate NaN, as PyTorch's do.
  Tensor n = from_vector<float>({NAN, 1.0f});
  CHECK(std::isnan(maximum(n, f32).to_vector<float>()[0]));
  CHECK(std::isnan(minimum(f32, n).to_vector<float>()[0]));
}

// ============================================================================ reductions

namespace {

struct ReduceSpec {
  Arg x;
  std::vector<int64_t> dims;
  bool keepdim;
};

std::string dims_str(const std::vector<int64_t>& dims, bool keepdim) {
  std::string s = " dims=(";
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + ")" + (keepdim ? " keepdim" : "");
}

/// Reductions over: all dims, one dim (either sign), several dims, each layout, 0-dim, and
/// sizes large enough for the parallel CPU path.
std::vector<ReduceSpec> reduce_specs(bool allow_empty) {
  std::vector<ReduceSpec> s = {
      {in({3, 4, 5}), {}, false},
      {in({3, 4, 5}), {1}, true},
      {in({3, 4, 5}), {-1}, false},
      {in({3, 4, 5}), {0, 2}, true},
      {in({3, 4, 5}, T), {0}, false},
      {in({3, 4, 5}, S), {2}, true},
      {in({3, 4, 5}, E), {0, 1}, false},
      {in({7}), {0}, false},
      {in({}), {}, false},
      {in({}), {0}, true},
      {in({300, 301}), {0}, false},
      {in({301, 300}, T), {1}, true},
      {in({2, 20000}), {1}, false},
  };
  if (allow_empty) {
    s.push_back({in({0, 3}), {0}, false});
    s.push_back({in({0, 3}), {}, false});
  }
  return s;
}

}  // namespace

TEST_CASE("op sum, mean, max, min over dims with keepdim") {
  struct Spec {
    const char* name;
    Tensor (*fn)(const Tensor&, const std::vector<int64_t>&, bool);
    std::function<double(const std::vector<double>&)> ref;
    bool allow_empty;
  };
  const std::vector<Spec> specs = {
      {"sum", minidl::sum, sum_of, true},
      {"mean", minidl::mean,
       [](const std::vector<double>& v) { return sum_of(v) / static_cast<double>(v.size()); },
       true},
      {"max", minidl::max, max_of, false},
      {"min", minidl::min,
       [](const std::vector<double>& v) {
         double m = INFINITY;
         for (double x : v) m = std::min(m, x);
         return m;
       },
       false},
  };
  for (const auto& sp : specs)
    for (const auto& r : reduce_specs(sp.allow_empty)) {
      auto fn = sp.fn;
      auto ref = sp.ref;
      auto dims = r.dims;
      bool keep = r.keepdim;
      OpCase c{
          sp.name + dims_str(dims, keep),
          {r.x},
          [fn, dims, keep](const std::vector<Tensor>& x) { return fn(x[0], dims, keep); },
          [ref, dims, keep](const std::vector<Ref>& x) { return reduce(x[0], dims, keep, ref); }};
      c.scale = 4;  // sums of thousands of terms: absolute error grows with the count
      check_op(c);
    }
  // Integer and bool sums; the method forms.
  Tensor i = from_vector<int32_t>({1, 2, 3, 4, 5, 6}, {2, 3}, {.dtype = kInt32});
  CHECK(sum(i, {1}).dtype() == kInt32);
  CHECK(sum(i, {1}).to_vector<int32_t>() == std::vector<int32_t>{6, 15});
  CHECK(max(i, {0}).to_vector<int32_t>() == std::vector<int32_t>{4, 5, 6});
  Tensor b = from_vector<bool>({true, false, true, true}, {2, 2}, {.dtype = kBool});
  CHECK(sum(b).dtype() == kInt64);
  CHECK(sum(b).item() == 3);
  CHECK(sum(b, {0}).to_vector<int64_t>() == std::vector<int64_t>{2, 1});
  Tensor f = from_vector<float>({1, 2, 3, 4}, {2, 2});
  CHECK(f.sum({0}, true).shape() == Shape{1, 2});
  CHECK(f.mean().item() == 2.5);
  // Long float32 rows keep their digits (sums accumulate in double).
  CHECK(sum(full({1 << 20}, 0.1f)).item() == doctest::Approx(104857.6).epsilon(1e-6));
}

TEST_CASE("op max/min gradient is shared among ties") {
  Tensor x = from_vector<double>({1, 3, 3, 2}, {}, {.dtype = kFloat64, .requires_grad = true});
  max(x).backward();
  CHECK(x.grad().to_vector<double>() == std::vector<double>{0, 0.5, 0.5, 0});
  Tensor y = from_vector<double>({2, 1, 1, 2}, {2, 2}, {.dtype = kFloat64, .requires_grad = true});
  min(y, {1}).sum().backward();
  CHECK(y.grad().to_vector<double>() == std::vector<double>{0, 1, 1, 0});
  Tensor a = from_vector<double>({1, 2}, {}, {.dtype = kFloat64, .requires_grad = true});
  Tensor b = from_vector<double>({1, 3}, {}, {.dtype = kFloat64, .requires_grad = true});
  maximum(a, b).sum().backward();
  CHECK(a.grad().to_vector<double>() == std::vector<double>{0.5, 0});
  CHECK(b.grad().to_vector<double>() == std::vector<double>{0.5, 1});
}

TEST_CASE("op argmax over a dim") {
  struct Spec {
    Arg x;
    int64_t dim;
    bool keepdim;
  };
  const std::vector<Spec> specs = {
      {in({3, 4, 5}), 0, false},   {in({3, 4, 5}, T), 1, true}, {in({3, 4, 5}, S), -1, false},
      {in({7}), 0, false},         {in({}), 0, false},          {in({300, 301}), 1, false},
      {in({301, 300}, T), 0, true}};
  for (const auto& s : specs) {
    int64_t dim = s.dim;
    bool keep = s.keepdim;
    OpCase c{"argmax" + dims_str({dim}, keep),
             {s.x},
             [dim, keep](const std::vector<Tensor>& x) { return argmax(x[0], dim, keep); },
             [dim, keep](const std::vector<Ref>& x) {
               if (x[0].shape.empty()) return Ref{{}, {0}};
               return reduce(x[0], {dim}, keep, [](const std::vector<double>& v) {
                 size_t best = 0;  // the first maximum
                 for (size_t i = 1; i < v.size(); ++i)
                   if (v[i] > v[best]) best = i;
                 return static_cast<double>(best);
               });
             }};
    c.differentiable = false;
    c.out_dtype = kInt64;
    c.dtypes = {kFloat32, kFloat16, kBFloat16, kInt32, kInt64};
    check_op(c);
  }
  // Ties give the first index.
  CHECK(argmax(from_vector<float>({1, 5, 5, 2}), 0).item() == 1);
}

TEST_CASE("op var with correction and keepdim") {
  struct Spec {
    Arg x;
    std::vector<int64_t> dims;
    int64_t correction;
    bool keepdim;
  };
  const std::vector<Spec> specs = {
      {in({3, 4, 5}), {}, 1, false},        {in({3, 4, 5}), {1}, 0, true},
      {in({3, 4, 5}, T), {0, 2}, 1, false}, {in({7}), {0}, 1, false},
      {in({4, 6}, S), {-1}, 0, false},      {in({200, 301}), {1}, 1, false}};
  for (const auto& s : specs) {
    auto dims = s.dims;
    int64_t corr = s.correction;
    bool keep = s.keepdim;
    OpCase c{
        "var correction=" + std::to_string(corr) + dims_str(dims, keep),
        {s.x},
        [dims, corr, keep](const std::vector<Tensor>& x) { return var(x[0], dims, corr, keep); },
        [dims, corr, keep](const std::vector<Ref>& x) {
          return reduce(x[0], dims, keep, [corr](const std::vector<double>& v) {
            const double m = sum_of(v) / static_cast<double>(v.size());
            double s2 = 0;
            for (double e : v) s2 += (e - m) * (e - m);
            return s2 / static_cast<double>(static_cast<int64_t>(v.size()) - corr);
          });
        }};
    c.tol16 = 3e-2;  // composite: each step rounds to 16 bits
    check_op(c);
  }
}

TEST_CASE("op mean and var of 16-bit rows whose sum and length exceed float16's 65504") {
  // Rows of 2, 4, 2, 4, ...: sum 210000, sum of squared deviations 70000, both beyond 65504,
  // as is the count (a float16 scalar of 70000 is inf).
  constexpr int64_t n = 70000;
  std::vector<double> v(2 * n);
  for (size_t i = 0; i < v.size(); ++i) v[i] = i % 2 ? 4 : 2;
  const double var_ref = static_cast<double>(n) / static_cast<double>(n - 1);
  for (Device dev : test_devices())
    for (DType t : {kFloat16, kBFloat16}) {
      const std::string where = std::string(dtype_name(t)) + " on " + dev.str();
      CAPTURE(where);
      const double tol = t == kFloat16 ? 2e-3 : 1e-2;
      auto near = [&](const Tensor& got, const std::vector<double>& want, const char* what) {
        const std::vector<double> g = got.to_vector<double>();
        REQUIRE(g.size() == want.size());
        for (size_t i = 0; i < g.size(); ++i)
          CHECK_MESSAGE(std::abs(g[i] - want[i]) <= tol * std::abs(want[i]), std::string(what),
                        " [", i, "]: ", g[i], " vs ", want[i]);
      };
      Tensor x = from_vector<double>(v, {2, n}).to(t).to(dev).requires_grad_();
      near(mean(x, {1}), {3, 3}, "mean");
      near(var(x, {1}), {var_ref, var_ref}, "var");
      near(var(x, {1}, 0, true), {1, 1}, "var correction=0");
      mean(x, {1}).sum().backward();
      near(x.grad().slice(1, 0, 2), {1.0 / n, 1.0 / n, 1.0 / n, 1.0 / n}, "mean backward");
      x.zero_grad();
      var(x, {1}).sum().backward();
      const double d = 2.0 / static_cast<double>(n - 1);
      near(x.grad().slice(1, 0, 2), {-d, d, -d, d}, "var backward");
    }
}

// ============================================================================ row ops

namespace {

std::vector<double> softmax_row(const std::vector<double>& r, bool log) {
  const double m = max_of(r);
  double s = 0;
  for (double x : r) s += std::exp(x - m);
  std::vector<double> out;
  for (double x : r) out.push_back(log ? x - m - std::log(s) : std::exp(x - m) / s);
  return out;
}

}  // namespace

TEST_CASE("op softmax and log_softmax") {
  struct Spec {
    Arg x;
    int64_t dim;
  };
  const std::vector<Spec> specs = {
      {in({3, 5}), -1},     {in({3, 5}), 0},       {in({2, 3, 4}, T), 1},    {in({4, 6}, S), -1},
      {in({3, 4}, E), 0},   {in({}), 0},           {in({7}, C, -20, 20), 0}, {in({0, 4}), 1},
      {in({64, 1000}), -1}, {in({1000, 64}, T), 0}};
  for (bool log : {false, true})
    for (const auto& s : specs) {
      int64_t dim = s.dim;
      check_op({std::string(log ? "log_softmax" : "softmax") + " dim=" + std::to_string(dim),
                {s.x},
                [dim, log](const std::vector<Tensor>& x) {
                  return log ? log_softmax(x[0], dim) : softmax(x[0], dim);
                },
                [dim, log](const std::vector<Ref>& x) {
                  return along(x[0], dim,
                               [log](const std::vector<double>& r) { return softmax_row(r, log); });
                }});
    }
  // Masked entries (-inf, as causal attention makes them) get probability 0.
  OpCase masked{"softmax with -inf entries",
                {values({2, 3}, {1, -INFINITY, 2, -INFINITY, 0.5, -INFINITY})},
                [](const std::vector<Tensor>& x) { return softmax(x[0], -1); },
                [](const std::vector<Ref>& x) {
                  return along(x[0], -1,
                               [](const std::vector<double>& r) { return softmax_row(r, false); });
                }};
  masked.differentiable = false;
  check_op(masked);
  // Large logits do not overflow.
  Tensor big = from_vector<float>({1000, 1001});
  CHECK(softmax(big, 0).to_vector<float>()[1] == doctest::Approx(0.7310585786));
  CHECK(log_softmax(big, 0).to_vector<float>()[0] == doctest::Approx(-1.3132616875));
}

TEST_CASE("op softmax, log_softmax and their backward keep float32's digits on rows of 1048577") {
  manual_seed(21);
  const Tensor x = randn({1, 1048577}, {.dtype = kFloat64}) * 3.0,
               g = randn({1, 1048577}, {.dtype = kFloat64});
  const Tensor x32 = x.to(kFloat32), g32 = g.to(kFloat32);
  const Tensor x64 = x32.to(kFloat64), g64 = g32.to(kFloat64);
  for (Device dev : test_devices())
    for (bool log : {false, true}) {
      const std::string op = std::string(log ? "log_softmax" : "softmax") + " on " + dev.str();
      CAPTURE(op);
      auto f = [log](const Tensor& t) { return log ? log_softmax(t, -1) : softmax(t, -1); };
      const Tensor y = f(x32.to(dev)), y64 = f(x64);
      CHECK(minidl::testing::rel_error(y, y64) <= 3e-5);
      const Tensor gx = softmax_backward(g32.to(dev), y, -1, log);
      CHECK(minidl::testing::rel_error(gx, softmax_backward(g64, y64, -1, log)) <= 3e-5);
    }
}

TEST_CASE("op layer_norm with and without affine") {
  struct Spec {
    Arg x;
    bool affine;
    Layout wl;
  };
  const std::vector<Spec> specs = {{in({3, 5}), false, C},      {in({3, 5}), true, C},
                                   {in({2, 3, 8}, T), true, S}, {in({4, 6}, S), true, C},
                                   {in({3, 4}, E), false, C},   {in({7}), true, C},
                                   {in({0, 5}), true, C},       {in({64, 257}), true, C}};
  const double eps = 1e-5;
  for (const auto& s : specs) {
    const int64_t c = s.x.shape.back();
    std::vector<Arg> args = {s.x};
    if (s.affine) {
      args.push_back(in({c}, s.wl, 0.5, 1.5));
      args.push_back(in({c}));
    }
    const bool affine = s.affine;
    check_op({std::string("layer_norm") + (affine ? " affine" : ""), args,
              [affine, eps](const std::vector<Tensor>& x) {
                return affine ? layer_norm(x[0], x[1], x[2], eps) : layer_norm(x[0], {}, {}, eps);
              },
              [affine, eps](const std::vector<Ref>& x) {
                Ref out = along(x[0], -1, [eps](const std::vector<double>& r) {
                  const double m = sum_of(r) / static_cast<double>(r.size());
                  double v = 0;
                  for (double e : r) v += (e - m) * (e - m);
                  v /= static_cast<double>(r.size());
                  std::vector<double> o;
                  for (double e : r) o.push_back((e - m) / std::sqrt(v + eps));
                  return o;
                });
                if (affine)
                  out = map2(map2(out, x[1], [](double a, double w) { return a * w; }), x[2],
                             [](double a, double b) { return a + b; });
                return out;
              }});
  }
}

// ============================================================================ matmul

TEST_CASE("op matmul: batched, broadcast batch dims, transposed views, 1-D operands") {
  struct Spec {
    Arg a, b;
  };
  const std::vector<Spec> specs = {
      {in({3, 4}), in({4, 5})},
      {in({3, 4}, T), in({4, 5})},
      {in({3, 4}), in({4, 5}, T)},
      {in({3, 4}, T), in({4, 5}, T)},
      {in({3, 4}, S), in({4, 5}, S)},
      {in({2, 3, 4}), in({2, 4, 5})},
      {in({2, 1, 3, 4}), in({3, 4, 5}, T)},
      {in({3, 4}), in({2, 4, 5})},
      {in({2, 3, 4}, E), in({4, 5})},
      {in({2, 3, 4}), in({2, 4, 5}, E)},
      {in({4}), in({4, 5})},
      {in({3, 4}), in({4})},
      {in({4}), in({4})},
      {in({4}), in({2, 4, 5})},
      {in({2, 3, 4}), in({4})},
      {in({3, 0}), in({0, 4})},
      {in({0, 3}), in({3, 4})},
      {in({1, 1}), in({1, 1})},
      {in({3, 4}), no_grad(in({4, 5}, T))},
      {no_grad(in({2, 3, 4})), in({4, 5})},
      {in({70, 300}), in({300, 260})},
      {in({3, 65, 257}, T), in({257, 70})},
      {in({130, 70}), in({2, 70, 129}, T)},
  };
  for (const auto& s : specs) {
    OpCase c{"matmul",
             {s.a, s.b},
             [](const std::vector<Tensor>& x) { return matmul(x[0], x[1]); },
             [](const std::vector<Ref>& x) { return ref_matmul(x[0], x[1]); }};
    c.scale = 8;  // sums of up to 300 products
    check_op(c);
  }
  // Hand-computed, and the method form.
  Tensor a = from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor b = from_vector<float>({7, 8, 9, 10, 11, 12}, {3, 2});
  CHECK(a.matmul(b).to_vector<float>() == std::vector<float>{58, 64, 139, 154});
  CHECK(matmul(a, a.t()).to_vector<float>() == std::vector<float>{14, 32, 32, 77});
}

// ============================================================================ indexing

TEST_CASE("op embedding gathers rows and scatter-adds gradients") {
  struct Spec {
    Arg weight, ids;
  };
  const std::vector<Spec> specs = {
      {in({10, 4}), ids({5}, 0, 10)},
      {in({10, 4}, T), ids({2, 3}, 0, 10, kInt32)},
      {in({7, 3}), explicit_ids({5}, {2, 2, 5, 2, 0})},
      {in({6, 5}, S), ids({4}, 0, 6)},
      {in({5, 3}), ids({}, 0, 5)},
      {in({5, 3}), ids({0}, 0, 5)},
      {in({1000, 64}), ids({4, 300}, 0, 1000)},
  };
  for (const auto& s : specs)
    check_op({"embedding",
              {s.weight, s.ids},
              [](const std::vector<Tensor>& x) { return embedding(x[0], x[1]); },
              [](const std::vector<Ref>& x) {
                const int64_t d = x[0].shape[1];
                Ref out{x[1].shape, {}};
                out.shape.push_back(d);
                for (double id : x[1].v)
                  for (int64_t j = 0; j < d; ++j)
                    out.v.push_back(x[0].v[static_cast<int64_t>(id) * d + j]);
                return out;
              }});
}

TEST_CASE("op cat along any dim") {
  struct Spec {
    std::vector<Arg> xs;
    int64_t dim;
  };
  const std::vector<Spec> specs = {
      {{in({2, 3}), in({4, 3})}, 0},
      {{in({2, 3}), in({2, 1}), in({2, 0})}, -1},
      {{in({2, 3, 4}, T), in({2, 1, 4}, S), in({2, 2, 4}, E)}, 1},
      {{in({3}), in({2})}, 0},
      {{in({0, 2}), in({3, 2})}, 0},
      {{in({100, 300}), in({100, 7}, T)}, 1},
  };
  for (const auto& s : specs) {
    int64_t dim = s.dim;
    check_op({"cat dim=" + std::to_string(dim), s.xs,
              [dim](const std::vector<Tensor>& x) { return cat(x, dim); },
              [dim](const std::vector<Ref>& x) {
                const int64_t d = dim < 0 ? dim + static_cast<int64_t>(x[0].shape.size()) : dim;
                Ref out{x[0].shape, {}};
                out.shape[d] = 0;
                for (const Ref& r : x) out.shape[d] += r.shape[d];
                int64_t outer = 1;
                for (int64_t k = 0; k < d; ++k) outer *= out.shape[k];
                for (int64_t o = 0; o < outer; ++o)
                  for (const Ref& r : x) {
                    const int64_t chunk = count(r.shape) / std::max<int64_t>(outer, 1);
                    for (int64_t j = 0; j < chunk; ++j) out.v.push_back(r.v[o * chunk + j]);
                  }
                return out;
              }});
  }
  // Mixed dtypes promote; one tensor is returned as is.
  Tensor c = cat({from_vector<int64_t>({1}, {1}, {.dtype = kInt64}), from_vector<float>({2.5f})});
  CHECK(c.dtype() == kFloat32);
  CHECK(c.to_vector<float>() == std::vector<float>{1, 2.5f});
}

TEST_CASE("op one_hot") {
  Tensor ids = from_vector<int64_t>({2, 0, 3}, {}, {.dtype = kInt64});
  for (Device dev : test_devices()) {
    for (DType t : {kFloat32, kInt64, kBool}) {
      INFO(dev.str(), " ", dtype_name(t));
      Tensor h = one_hot(ids.to(dev), 4, t);
      CHECK(h.shape() == Shape{3, 4});
      CHECK(h.dtype() == t);
      CHECK(h.device() == dev);
      CHECK(h.cpu().to_vector<double>() == std::vector<double>{0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 1});
    }
    Tensor h2 = one_hot(from_vector<int32_t>({1, 0, 1, 1}, {2, 2}, {.dtype = kInt32}).to(dev), 2);
    CHECK(h2.shape() == Shape{2, 2, 2});
    CHECK(h2.cpu().to_vector<float>() == std::vector<float>{0, 1, 1, 0, 0, 1, 0, 1});
  }
}

// ============================================================================ losses

TEST_CASE("op cross_entropy with ignore_index") {
  struct Spec {
    Arg logits, target;
    int64_t ignore;
  };
  const std::vector<Spec> specs = {
      {in({5, 4}), ids({5}, 0, 4), -100},
      {in({4, 5}, T), explicit_ids({4}, {1, -100, 3, -100}), -100},
      {in({6, 3}, S), ids({6}, 0, 3, kInt32), -100},
      {in({5, 4}), explicit_ids({5}, {2, 0, 2, 3, 1}), 2},
      {in({1, 7}, C, -20, 20), ids({1}, 0, 7), -100},
      {in({256, 1000}), ids({256}, 0, 1000), -100},
      {in({0, 4}), ids({0}, 0, 4), -100},  // no rows: NaN, as PyTorch's mean over nothing
  };
  for (const auto& s : specs) {
    int64_t ignore = s.ignore;
    OpCase c{"cross_entropy ignore_index=" + std::to_string(ignore),
             {s.logits, s.target},
             [ignore](const std::vector<Tensor>& x) { return cross_entropy(x[0], x[1], ignore); },
             [ignore](const std::vector<Ref>& x) {
               const int64_t n = x[0].shape[0], cls = x[0].shape[1];
               double total = 0;
               int64_t valid = 0;
               for (int64_t i = 0; i < n; ++i) {
                 const int64_t t = static_cast<int64_t>(x[1].v[i]);
                 if (t == ignore) continue;
                 std::vector<double> row(x[0].v.begin() + i * cls, x[0].v.begin() + (i + 1) * cls);
                 total -= softmax_row(row, true)[t];
                 ++valid;
               }
               return Ref{{}, {total / static_cast<double>(valid)}};
             }};
    check_op(c);
  }
  // Hand-computed: logits (0, 0) and target 0 give log 2; every target ignored gives NaN.
  Tensor z = zeros({3, 2});
  CHECK(cross_entropy(z, from_vector<int64_t>({0, 1, -100}, {}, {.dtype = kInt64})).item() ==
        doctest::Approx(std::log(2.0)));
  CHECK(std::isnan(cross_entropy(z, full({3}, -100, {.dtype = kInt64})).item()));
  // Ignored rows get no gradient.
  Tensor l = zeros({2, 2}, {.dtype = kFloat64, .requires_grad = true});
  cross_entropy(l, from_vector<int64_t>({1, -100}, {}, {.dtype = kInt64})).backward();
  CHECK(l.grad().to_vector<double>() == std::vector<double>{0.5, -0.5, 0, 0});
}

TEST_CASE("op dropout: seeded, scaled, identity when not training") {
  const double p = 0.3;
  for (Device dev : test_devices())
    for (DType t : {kFloat32, kFloat16, kBFloat16}) {
      INFO(dev.str(), " ", dtype_name(t));
      Tensor x = ones({4000}, {.dtype = t, .device = dev});
      Generator g1(123), g2(123), g3(124);
      Tensor a = dropout(x, p, true, &g1);
      CHECK(a.dtype() == t);
      CHECK(a.device() == dev);
      std::vector<double> va = a.cpu().to_vector<double>();
      int64_t zeros_seen = 0;
      for (double v : va) {
        if (v == 0)
          ++zeros_seen;
        else
          CHECK(v == doctest::Approx(1 / (1 - p)).epsilon(4e-3));  // 16-bit rounding of 1/0.7
      }
      CHECK(static_cast<double>(zeros_seen) / 4000 == doctest::Approx(p).epsilon(0.15));
      // Same seed, same mask; another seed, another mask; the stream advances between calls.
      CHECK(dropout(x, p, true, &g2).cpu().to_vector<double>() == va);
      CHECK(dropout(x, p, true, &g3).cpu().to_vector<double>() != va);
      CHECK(dropout(x, p, true, &g1).cpu().to_vector<double>() != va);
      // The mask is the Philox stream's: identical on every device.
      Generator gc(123);
      CHECK(dropout(ones({4000}, {.dtype = t}), p, true, &gc).to_vector<double>() == va);
      CHECK(dropout(x, p, false).is_same(x));
      CHECK(dropout(x, 0.0).is_same(x));
    }
  // With a generator made afresh on every call, dropout is a fixed function: gradcheck it.
  GradcheckResult r = gradcheck(
      [p](const std::vector<Tensor>& in) {
        Generator fixed(3);
        return dropout(in[0] * in[0], p, true, &fixed);
      },
      {randn({4, 5}, {.dtype = kFloat64, .requires_grad = true})});
  CHECK_MESSAGE(r.ok, r.message);
  // The gradient is the mask scaled by 1/(1-p): for x = 1 it equals the output.
  Tensor x = ones({500}, {.dtype = kFloat64, .requires_grad = true});
  Generator g(7);
  Tensor y = dropout(x, p, true, &g);
  y.sum().backward();
  CHECK(x.grad().to_vector<double>() == y.detach().to_vector<double>());
  // The default generator is seeded by manual_seed.
  manual_seed(99);
  std::vector<float> d1 = dropout(ones({64}), 0.5).to_vector<float>();
  manual_seed(99);
  CHECK(dropout(ones({64}), 0.5).to_vector<float>() == d1);
}

// ============================================================================ views and copies

TEST_CASE(
    "op views: reshape view permute transpose slice expand squeeze unsqueeze select flatten") {
  struct Spec {
    std::string name;
    Arg x;
    std::function<Tensor(const Tensor&)> fn;
    std::function<Ref(const Ref&)> ref;
  };
  const std::vector<Spec> specs = {
      {"reshape (2, 6)", in({3, 4}),
       [](const Tensor& x) {
         return x.reshape({2, 6});
       },
       [](const Ref& x) {
         return reshaped(x, {2, 6});
       }},
      {"reshape (4, -1)", in({3, 4}, T),
       [](const Tensor& x) {
         return x.reshape({4, -1});
       },
       [](const Ref& x) {
         return reshaped(x, {4, 3});
       }},
      {"reshape (12,) of a strided view (copies)", in({3, 4}, S),
       [](const Tensor& x) { return x.reshape({12}); },
       [](const Ref& x) { return reshaped(x, {12}); }},
      {"reshape (6, 4)", in({2, 3, 4}, E),
       [](const Tensor& x) {
         return x.reshape({6, 4});
       },
       [](const Ref& x) {
         return reshaped(x, {6, 4});
       }},
      {"reshape () of one element", in({1, 1}), [](const Tensor& x) { return x.reshape({}); },
       [](const Ref& x) { return reshaped(x, {}); }},
      {"reshape (0, 5)", in({5, 0}),
       [](const Tensor& x) {
         return x.reshape({0, 5});
       },
       [](const Ref& x) {
         return reshaped(x, {0, 5});
       }},
      {"view (2, 2, 3)", in({3, 4}),
       [](const Tensor& x) {
         return x.view({2, 2, 3});
       },
       [](const Ref& x) {
         return reshaped(x, {2, 2, 3});
       }},
      {"view (2, 2, 3) of a transposed view", in({4, 3}, T),
       [](const Tensor& x) {
         return x.view({2, 2, 3});
       },
       [](const Ref& x) {
         return reshaped(x, {2, 2, 3});
       }},
      {"permute (2, 0, 1)", in({2, 3, 4}),
       [](const Tensor& x) {
         return x.permute({2, 0, 1});
       },
       [](const Ref& x) {
         return permuted(x, {2, 0, 1});
       }},
      {"permute (-2, -1, 0)", in({2, 3, 4}, T),
       [](const Tensor& x) {
         return x.permute({-2, -1, 0});
       },
       [](const Ref& x) {
         return permuted(x, {1, 2, 0});
       }},
      {"transpose (0, 2)", in({2, 3, 4}, S), [](const Tensor& x) { return x.transpose(0, 2); },
       [](const Ref& x) {
         return permuted(x, {2, 1, 0});
       }},
      {"t()", in({3, 5}), [](const Tensor& x) { return x.t(); },
       [](const Ref& x) {
         return permuted(x, {1, 0});
       }},
      {"slice(1, 1, 5, 2)", in({5, 6}), [](const Tensor& x) { return x.slice(1, 1, 5, 2); },
       [](const Ref& x) { return sliced(x, 1, 1, 5, 2); }},
      {"slice(0, -3, -1)", in({5, 6}, T), [](const Tensor& x) { return x.slice(0, -3, -1); },
       [](const Ref& x) { return sliced(x, 0, 2, 4, 1); }},
      {"slice(-1, 2, 100, 3)", in({4, 9}, S),
       [](const Tensor& x) { return x.slice(-1, 2, 100, 3); },
       [](const Ref& x) { return sliced(x, 1, 2, 9, 3); }},
      {"slice(0, 3, 3) (empty)", in({5, 2}), [](const Tensor& x) { return x.slice(0, 3, 3); },
       [](const Ref& x) { return sliced(x, 0, 3, 3, 1); }},
      {"expand (2, 3, 4)", in({3, 1}),
       [](const Tensor& x) {
         return x.expand({2, 3, 4});
       },
       [](const Ref& x) {
         return pointwise({x, Ref{{2, 3, 4}, std::vector<double>(24)}},
                          [](const std::vector<double>& v) { return v[0]; });
       }},
      {"expand (3, -1)", in({1, 4}, S),
       [](const Tensor& x) {
         return x.expand({3, -1});
       },
       [](const Ref& x) {
         return pointwise({x, Ref{{3, 4}, std::vector<double>(12)}},
                          [](const std::vector<double>& v) { return v[0]; });
       }},
      {"expand (5,) of a 0-dim", in({}), [](const Tensor& x) { return x.expand({5}); },
       [](const Ref& x) {
         return Ref{{5}, std::vector<double>(5, x.v[0])};
       }},
      {"squeeze(1)", in({3, 1, 4}), [](const Tensor& x) { return x.squeeze(1); },
       [](const Ref& x) {
         return reshaped(x, {3, 4});
       }},
      {"squeeze(0) of a dim > 1 (no-op)", in({3, 4}), [](const Tensor& x) { return x.squeeze(0); },
       [](const Ref& x) { return x; }},
      {"squeeze()", in({1, 3, 1}), [](const Tensor& x) { return x.squeeze(); },
       [](const Ref& x) { return reshaped(x, {3}); }},
      {"unsqueeze(0)", in({3, 4}, T), [](const Tensor& x) { return x.unsqueeze(0); },
       [](const Ref& x) {
         return reshaped(x, {1, 3, 4});
       }},
      {"unsqueeze(-1)", in({3, 4}, S), [](const Tensor& x) { return x.unsqueeze(-1); },
       [](const Ref& x) {
         return reshaped(x, {3, 4, 1});
       }},
      {"unsqueeze(0) of a 0-dim", in({}), [](const Tensor& x) { return x.unsqueeze(0); },
       [](const Ref& x) { return reshaped(x, {1}); }},
      {"select(1, 2)", in({3, 4, 5}), [](const Tensor& x) { return x.select(1, 2); },
       [](const Ref& x) {
         return reshaped(sliced(x, 1, 2, 3, 1), {3, 5});
       }},
      {"select(-1, -1)", in({3, 4}, T), [](const Tensor& x) { return x.select(-1, -1); },
       [](const Ref& x) { return reshaped(sliced(x, 1, 3, 4, 1), {3}); }},
      {"select(0, 0) of a 1-D", in({4}), [](const Tensor& x) { return x.select(0, 0); },
       [](const Ref& x) {
         return Ref{{}, {x.v[0]}};
       }},
      {"flatten()", in({2, 3, 4}), [](const Tensor& x) { return x.flatten(); },
       [](const Ref& x) { return reshaped(x, {24}); }},
      {"flatten(1)", in({2, 3, 4}, T), [](const Tensor& x) { return x.flatten(1); },
       [](const Ref& x) {
         return reshaped(x, {2, 12});
       }},
      {"flatten(0, 1)", in({2, 3, 4}, S), [](const Tensor& x) { return x.flatten(0, 1); },
       [](const Ref& x) {
         return reshaped(x, {6, 4});
       }},
      {"flatten() of a 0-dim", in({}), [](const Tensor& x) { return x.flatten(); },
       [](const Ref& x) { return reshaped(x, {1}); }},
      {"contiguous()", in({3, 4}, T), [](const Tensor& x) { return x.contiguous(); },
       [](const Ref& x) { return x; }},
      {"clone()", in({3, 4}, S), [](const Tensor& x) { return x.clone(); },
       [](const Ref& x) { return x; }},
      {"a chain of views", in({4, 6}, T),
       [](const Tensor& x) {
         return x.slice(0, 1, 4).t().reshape({2, 3, 3}).permute({2, 0, 1}).select(0, 1);
       },
       [](const Ref& x) {
         Ref r = permuted(reshaped(permuted(sliced(x, 0, 1, 4, 1), {1, 0}), {2, 3, 3}), {2, 0, 1});
         return reshaped(sliced(r, 0, 1, 2, 1), {2, 3});
       }},
  };
  for (const auto& s : specs) {
    auto fn = s.fn;
    auto ref = s.ref;
    check_op({s.name,
              {s.x},
              [fn](const std::vector<Tensor>& x) { return fn(x[0]); },
              [ref](const std::vector<Ref>& x) { return ref(x[0]); }});
  }
}

TEST_CASE("op to(dtype): every pair of dtypes, rounding to 16 bits") {
  const std::vector<DType> all = {kFloat64, kFloat32, kFloat16, kBFloat16, kInt64, kInt32, kBool};
  // Values every dtype holds exactly (bool holds their != 0).
  const std::vector<double> v = {0, 1, -2, 3, 100, -7};
  for (Device dev : test_devices())
    for (DType from : all)
      for (DType to : all) {
        INFO(dtype_name(from), " -> ", dtype_name(to), " on ", dev.str());
        Tensor x = from_vector(v, {2, 3}, {.dtype = kFloat64}).to(from).to(dev);
        Tensor y = x.to(to);
        CHECK(y.dtype() == to);
        CHECK(y.device() == dev);
        std::vector<double> want = v;
        if (from == kBool || to == kBool)
          for (auto& w : want) w = w != 0;
        CHECK(y.cpu().to_vector<double>() == want);
        // A transposed source converts element by element too.
        CHECK(x.t().to(to).cpu().to_vector<double>() ==
              Tensor(from_vector(want, {2, 3}, {.dtype = kFloat64}))
                  .t()
                  .contiguous()
                  .to_vector<double>());
      }
  // Floats to 16 bits round to nearest even; floats to integers truncate toward zero.
  Tensor f = from_vector<double>({1.0 + 1.0 / 2048, 1.0 + 3.0 / 2048, 65519.0, 65520.0, 1e-8,
                                  1.0 + 1.0 / 256, 1.0 + 3.0 / 256, -2.7, 2.7},
                                 {}, {.dtype = kFloat64});
  std::vector<double> h = f.to(kFloat16).to_vector<double>();
  CHECK(h[0] == 1.0);                                     // tie -> even
  CHECK(h[1] == 1.0 + 4.0 / 2048);                        // tie -> even (up)
  CHECK(h[2] == 65504.0);                                 // largest half
  CHECK(std::isinf(h[3]));                                // rounds past the largest half
  CHECK(h[4] == doctest::Approx(5.960464477539063e-08));  // smallest subnormal
  std::vector<double> bf = f.to(kBFloat16).to_vector<double>();
  CHECK(bf[5] == 1.0);
  CHECK(bf[6] == 1.0 + 4.0 / 256);
  CHECK(f.to(kInt64).to_vector<int64_t>()[7] == -2);
  CHECK(f.to(kInt32).to_vector<int32_t>()[8] == 2);
  // NaN and infinities survive 16-bit round trips.
  Tensor special = from_vector<float>({NAN, INFINITY, -INFINITY});
  for (DType t : {kFloat16, kBFloat16}) {
    std::vector<float> r = special.to(t).to(kFloat32).to_vector<float>();
    CHECK(std::isnan(r[0]));
    CHECK(r[1] == INFINITY);
    CHECK(r[2] == -INFINITY);
  }
  // to(dtype) is differentiable between floating dtypes.
  Tensor x = from_vector<double>({1, 2}, {}, {.dtype = kFloat64, .requires_grad = true});
  (x.to(kFloat32) * 3.0).sum().backward();
  CHECK(x.grad().dtype() == kFloat64);
  CHECK(x.grad().to_vector<double>() == std::vector<double>{3, 3});
  CHECK(x.to(kFloat64).is_same(x));
}

// ============================================================================ composite graphs

namespace {

/// A graph of several ops: gradcheck and device backward only (each op's forward is tested above).
OpCase composite(std::string name, std::vector<Arg> args, OpFn fn) {
  OpCase c{std::move(name), std::move(args), std::move(fn), nullptr};
  c.dtypes = {};
  return c;
}

void check_composite(const OpCase& c) { check_gradients(c, case_data(c)); }

}  // namespace

TEST_CASE("gradcheck composite graphs") {
  check_composite(
      composite("attention softmax(q k^T / sqrt(d)) v",
                {in({2, 5, 3}), in({2, 5, 3}), in({2, 5, 3})}, [](const std::vector<Tensor>& x) {
                  Tensor s = matmul(x[0], x[1].transpose(-2, -1)) * (1.0 / std::sqrt(3.0));
                  return matmul(softmax(s, -1), x[2]);
                }));
  check_composite(composite("causal attention with a triu mask",
                            {in({4, 3}), in({4, 3}), in({4, 3}, T)},
                            [](const std::vector<Tensor>& x) {
                              Tensor s = matmul(x[0], x[1].t()) / std::sqrt(3.0);
                              Tensor m = triu(ones({4, 4}, {.dtype = kBool, .device = s.device()}), 1);
                              return matmul(softmax(masked_fill(s, m, -INFINITY), -1), x[2]);
                            }));
  check_composite(composite("mlp: layer_norm, matmul, gelu, cross_entropy",
                            {in({4, 3}), in({3, 5}), in({5}), in({5}, C, 0.5, 1.5), in({5}),
                             in({5, 4}, T), ids({4}, 0, 4)},
                            [](const std::vector<Tensor>& x) {
                              Tensor h = gelu(layer_norm(matmul(x[0], x[1]) + x[2], x[3], x[4]));
                              return cross_entropy(matmul(h, x[5]), x[6]);
                            }));
  check_composite(composite("embedding, sum over positions, tanh, log_softmax",
                            {in({6, 4}), explicit_ids({2, 3}, {1, 1, 5, 0, 2, 1})},
                            [](const std::vector<Tensor>& x) {
                              return log_softmax(tanh(sum(embedding(x[0], x[1]), {1})), -1);
                            }));
  check_composite(composite("a diamond: x reused by several paths", {in({3, 4})},
                            [](const std::vector<Tensor>& x) {
                              Tensor y = x[0] * x[0] * x[0] + sigmoid(x[0]) * exp(-x[0]);
                              return y / (1.0 + x[0] * x[0]) - silu(x[0]).mean({0}, true);
                            }));
  check_composite(composite(
      "statistics: var, mean, max, sqrt", {in({3, 5}, S)}, [](const std::vector<Tensor>& x) {
        return sqrt(var(x[0], {1}, 1, true) + 1.0) * (x[0] - mean(x[0], {1}, true)) +
               max(x[0], {0});
      }));
  check_composite(composite(
      "broadcast: bias add, where, cat, views", {in({2, 3}), in({3}), in({2, 1}), mask({2, 3})},
      [](const std::vector<Tensor>& x) {
        Tensor a = where(x[3], x[0] + x[1], x[2] * 2.0);
        return cat({a, a.t().reshape({2, 3}), x[2]}, 1).unsqueeze(0).expand({2, 2, 7}).sum({0});
      }));
}
