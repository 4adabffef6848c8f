#include "core/tensor.h"

#include <array>
#include <cmath>
#include <cstdint>
#include <mutex>
#include <ostream>

#include "core/autograd_hook.h"
#include "core/grad_mode.h"
#include "core/ops.h"

namespace minidl {

namespace {

const TensorImpl& checked(const Tensor& t) {
  if (!t.defined()) throw ValueError("[tensor] use of an undefined tensor");
  return *t.impl();
}

}  // namespace

const Shape& Tensor::shape() const { return checked(*this).sizes; }
const Strides& Tensor::strides() const { return checked(*this).strides; }
DType Tensor::dtype() const { return checked(*this).dtype; }
Device Tensor::device() const { return checked(*this).device; }
int64_t Tensor::numel() const { return minidl::numel(shape()); }

int64_t Tensor::size(int64_t d) const {
  MINIDL_CHECK(dim() > 0, ShapeError, "[size] a 0-dim tensor has no dim {}", d);
  return shape()[normalize_dim(d, dim(), "size", shape())];
}

bool Tensor::is_contiguous() const {
  if (numel() == 0) return true;  // no element has an address to be out of order
  const auto& s = shape();
  const auto& st = strides();
  int64_t expected = 1;
  for (int64_t d = dim() - 1; d >= 0; --d) {
    if (s[d] != 1 && st[d] != expected) return false;
    expected *= s[d];
  }
  return true;
}

void* Tensor::data_ptr() const {
  const TensorImpl& i = checked(*this);
  if (!i.storage) {
    if (i.tracer)
      throw ValueError(fmt::format(
          "[data] tensor {} is a tracer inside compile(): its values do not exist while the "
          "function is traced (avoid item()/to_vector() in compiled functions)",
          shape_str(i.sizes)));
    throw ValueError(fmt::format(
        "[data] tensor {} is a placeholder without data (autograd did not save it)",
        shape_str(i.sizes)));
  }
  return static_cast<char*>(i.storage->data()) + i.offset * static_cast<int64_t>(itemsize(i.dtype));
}

double Tensor::item() const {
  MINIDL_CHECK(numel() == 1, ValueError,
               "[item] only one-element tensors can be converted to a number, got shape {}",
               shape_str(shape()));
  return to_vector<double>()[0];
}

template <class T>
std::vector<T> Tensor::to_vector() const {
  Tensor c = detach();
  if (!c.device().is_cpu()) c = c.to(kCPU);
  c = c.contiguous();
  std::vector<T> out(static_cast<size_t>(c.numel()));
  MINIDL_DISPATCH_ALL(c.dtype(), "to_vector", [&] {
    const scalar_t* p = static_cast<const scalar_t*>(c.data_ptr());
    for (size_t i = 0; i < out.size(); ++i) {
      if constexpr (std::is_same_v<T, bool>)
        out[i] = static_cast<double>(static_cast<compute_t<scalar_t>>(p[i])) != 0.0;
      else
        out[i] = static_cast<T>(static_cast<compute_t<scalar_t>>(p[i]));
    }
  });
  return out;
}
template std::vector<float> Tensor::to_vector<float>() const;
template std::vector<double> Tensor::to_vector<double>() const;
template std::vector<int32_t> Tensor::to_vector<int32_t>() const;
template std::vector<int64_t> Tensor::to_vector<int64_t>() const;
template std::vector<bool> Tensor::to_vector<bool>() const;

// ---- views and conversions: thin wrappers over the ops

Tensor Tensor::transpose(int64_t d0, int64_t d1) const {
  const int64_t n = dim();
  d0 = normalize_dim(d0, n, "transpose", shape());
  d1 = normalize_dim(d1, n, "transpose", shape());
  std::vector<int64_t> dims(n);
  for (int64_t i = 0; i < n; ++i) dims[i] = i;
  if (n > 0) std::swap(dims[d0], dims[d1]);
  return permute(dims);
}

Tensor Tensor::t() const {
  MINIDL_CHECK(dim() >= 2, ShapeError, "[t] expects a tensor of at least 2 dims, got {}",
               shape_str(shape()));
  return transpose(-2, -1);
}

Tensor Tensor::select(int64_t d, int64_t i) const {
  MINIDL_CHECK(dim() > 0, ShapeError, "[select] cannot index a 0-dim tensor");
  d = normalize_dim(d, dim(), "select", shape());
  const int64_t n = shape()[d];
  MINIDL_CHECK(i >= -n && i < n, IndexError,
               "[select] index {} out of range for dim {} of size {} (shape {})", i, d, n,
               shape_str(shape()));
  if (i < 0) i += n;
  return slice(d, i, i + 1).squeeze(d);
}

Tensor Tensor::flatten(int64_t start, int64_t end) const {
  if (dim() == 0) return reshape({1});
  start = normalize_dim(start, dim(), "flatten", shape());
  end = normalize_dim(end, dim(), "flatten", shape());
  MINIDL_CHECK(start <= end, ShapeError, "[flatten] start dim {} is after end dim {} for a tensor of shape {}",
               start, end, shape_str(shape()));
  Shape s(shape().begin(), shape().begin() + start);
  int64_t m = 1;
  for (int64_t d = start; d <= end; ++d) m *= shape()[d];
  s.push_back(m);
  s.insert(s.end(), shape().begin() + end + 1, shape().end());
  return reshape(s);
}

Tensor Tensor::unsqueeze(int64_t d) const {
  d = normalize_dim(d, dim() + 1, "unsqueeze", shape());
  Shape s = shape();
  s.insert(s.begin() + d, 1);
  return view(s);
}

Tensor Tensor::squeeze(int64_t d) const {
  if (dim() == 0) return *this;
  d = normalize_dim(d, dim(), "squeeze", shape());
  if (shape()[d] != 1) return *this;
  Shape s = shape();
  s.erase(s.begin() + d);
  return view(s);
}

Tensor Tensor::squeeze() const {
  Shape s;
  for (int64_t v : shape())
    if (v != 1) s.push_back(v);
  return s == shape() ? *this : view(s);
}

Tensor Tensor::contiguous() const { return is_contiguous() ? *this : clone(); }

Tensor Tensor::sum(const std::vector<int64_t>& dims, bool keepdim) const {
  return minidl::sum(*this, dims, keepdim);
}
Tensor Tensor::mean(const std::vector<int64_t>& dims, bool keepdim) const {
  return minidl::mean(*this, dims, keepdim);
}
Tensor Tensor::exp() const { return minidl::exp(*this); }
Tensor Tensor::log() const { return minidl::log(*this); }
Tensor Tensor::softmax(int64_t d) const { return minidl::softmax(*this, d); }
Tensor Tensor::matmul(const Tensor& o) const { return minidl::matmul(*this, o); }
Tensor Tensor::triu(int64_t k) const { return minidl::triu(*this, k); }
Tensor Tensor::tril(int64_t k) const { return minidl::tril(*this, k); }
Tensor Tensor::masked_fill(const Tensor& mask, double v) const {
  return minidl::masked_fill(*this, mask, v);
}

// ---- autograd

std::mutex& autograd_mutex(const TensorImpl* t) {
  static auto* mutexes = new std::array<std::mutex, 64>();  // leaked: tensors may outlive statics
  const auto h = (reinterpret_cast<uintptr_t>(t) >> 4) * 0x9e3779b97f4a7c15ull;  // Fibonacci hash
  return (*mutexes)[h >> 58];
}

bool Tensor::requires_grad() const {
  const TensorImpl& i = checked(*this);
  return i.requires_grad || i.grad_fn != nullptr;
}

Tensor& Tensor::requires_grad_(bool on) {
  TensorImpl& i = const_cast<TensorImpl&>(checked(*this));
  if (i.grad_fn && on) return *this;  // a non-leaf with history already requires grad
  MINIDL_CHECK(i.grad_fn == nullptr, ValueError,
               "[requires_grad_] can only be changed on leaf tensors; this one was produced by "
               "'{}' (use detach() to get a tensor without history)",
               autograd_hook::node_name(*i.grad_fn));
  MINIDL_CHECK(!on || is_floating(i.dtype), DTypeError,
               "[requires_grad_] only floating-point tensors can require grad, got {} {}",
               dtype_name(i.dtype), shape_str(i.sizes));
  i.requires_grad = on;
  return *this;
}

bool Tensor::is_leaf() const { return checked(*this).grad_fn == nullptr; }

Tensor Tensor::grad() const {
  const TensorImpl& i = checked(*this);
  std::lock_guard<std::mutex> lock(autograd_mutex(&i));
  return i.grad ? Tensor(i.grad) : Tensor();
}

void Tensor::set_grad(const Tensor& g) const {
  checked(*this);
  if (g.defined())
    MINIDL_CHECK(g.shape() == shape(), ShapeError,
                 "[set_grad] gradient of shape {} for a tensor of shape {}", shape_str(g.shape()),
                 shape_str(shape()));
  std::shared_ptr<TensorImpl> old = g.impl_ptr();  // the replaced grad is freed after unlocking
  std::lock_guard<std::mutex> lock(autograd_mutex(impl()));
  impl()->grad.swap(old);
}

void Tensor::zero_grad() const { set_grad(Tensor()); }

void Tensor::backward(const Tensor& gradient, bool retain_graph, bool create_graph) const {
  autograd_hook::backward(*this, gradient, retain_graph, create_graph);
}

Tensor Tensor::detach() const {
  const TensorImpl& i = checked(*this);
  auto d = std::make_shared<TensorImpl>();
  d->sizes = i.sizes;
  d->strides = i.strides;
  d->offset = i.offset;
  d->dtype = i.dtype;
  d->device = i.device;
  d->storage = i.storage;
  d->tracer = i.tracer;
  d->trace_id = i.trace_id;
  return Tensor(d);
}

// ---- creation helpers

Tensor empty(const Shape& shape, DType dtype, Device device, const char* op) {
  const int64_t n = minidl::numel(shape, op);
  MINIDL_CHECK(n <= INT64_MAX / static_cast<int64_t>(itemsize(dtype)), ShapeError,
               "[{}] a {} tensor of shape {} is too large: its size in bytes passes 2^63 - 1", op,
               dtype_name(dtype), shape_str(shape));
  auto i = std::make_shared<TensorImpl>();
  i->sizes = shape;
  i->strides = contiguous_strides(shape);
  i->dtype = dtype;
  i->device = device;
  i->storage = std::make_shared<Storage>(static_cast<size_t>(n) * itemsize(dtype), device, op);
  return Tensor(i);
}

Tensor make_view(const Tensor& base, Shape sizes, Strides strides, int64_t offset) {
  auto i = std::make_shared<TensorImpl>();
  i->sizes = std::move(sizes);
  i->strides = std::move(strides);
  i->offset = offset;
  i->dtype = base.dtype();
  i->device = base.device();
  i->storage = base.impl()->storage;
  return Tensor(i);
}

Tensor placeholder(const TensorMeta& m) {
  auto i = std::make_shared<TensorImpl>();
  i->sizes = m.shape;
  i->strides = contiguous_strides(m.shape);
  i->dtype = m.dtype;
  i->device = m.device;
  return Tensor(i);
}

std::string describe(const Tensor& t) {
  if (!t.defined()) return "undefined tensor";
  return fmt::format("{} {} on {}", dtype_name(t.dtype()), shape_str(t.shape()), t.device().str());
}

// ---- printing, in PyTorch's format
// NOTE [Printing like PyTorch]
// The algorithm of torch/_tensor_str.py with its default options (precision 4, line width 80,
// summary above 1000 elements with 3 edge items): one formatter chooses, from the values shown,
// between integer-valued floats ("1."), fixed ("1.5000") and scientific ("1.0000e-05") and the
// width every element is padded to; rows wrap at the line width; suffixes (dtype=..., device=...,
// grad_fn=<...> or requires_grad=True) follow, on a new line when the line would get too long.
// dtype names are minidl's ("dtype=float64", not "dtype=torch.float64"), grad_fn names are the
// ops' names ("grad_fn=<mul>").

namespace {

constexpr int kPrintLineWidth = 80;
constexpr int64_t kPrintThreshold = 1000, kPrintEdgeItems = 3;

// The values of a tensor, row-major, with the dims it is printed by.
struct PrintValues {
  const Shape& shape;
  Strides strides;             // contiguous strides of shape
  std::vector<double> v;       // floating and bool values
  std::vector<int64_t> ints;   // integer values (exact beyond 2^53)
  DType dtype;
};

// Flat indices of the elements printed: all of them, or the edge items of every dim.
void shown_indices(const PrintValues& p, size_t dim, int64_t base, bool summarize,
                   std::vector<int64_t>& out) {
  if (dim == p.shape.size()) {
    out.push_back(base);
    return;
  }
  const int64_t n = p.shape[dim];
  for (int64_t i = 0; i < n; ++i) {
    if (summarize && n > 2 * kPrintEdgeItems && i == kPrintEdgeItems) i = n - kPrintEdgeItems;
    shown_indices(p, dim + 1, base + i * p.strides[dim], summarize, out);
  }
}

// PyTorch's _Formatter: one format and width for every element shown.
class Formatter {
 public:
  Formatter(const PrintValues& p, const std::vector<int64_t>& shown) : p_(p) {
    if (!is_floating(p.dtype)) {
      for (int64_t i : shown) width_ = std::max(width_, static_cast<int>(raw(i).size()));
      return;
    }
    double lo = INFINITY, hi = 0;
    bool any = false;
    for (int64_t i : shown) {
      const double x = p.v[i];
      if (!std::isfinite(x) || x == 0) continue;
      any = true;
      lo = std::min(lo, std::abs(x));
      hi = std::max(hi, std::abs(x));
      if (x != std::ceil(x)) int_mode_ = false;
    }
    if (!any) return;
    sci_ = hi / lo > 1000.0 || hi > 1e8 || (!int_mode_ && lo < 1e-4);
    for (int64_t i : shown) {
      const double x = p.v[i];
      if (!std::isfinite(x) || x == 0) continue;
      width_ = std::max(width_, static_cast<int>(raw(i).size()));
    }
  }
  int width() const { return width_; }
  /// Element i, padded on the left to the common width.
  std::string format(int64_t i) const {
    std::string s = raw(i);
    return std::string(std::max(0, width_ - static_cast<int>(s.size())), ' ') + s;
  }

 private:
  std::string raw(int64_t i) const {
    if (p_.dtype == kBool) return p_.v[i] != 0 ? "True" : "False";
    if (is_integral(p_.dtype)) return fmt::format("{}", p_.ints[i]);
    const double x = p_.v[i];
    if (std::isnan(x)) return "nan";  // as PyTorch: no sign (fmt would print -nan for 0/0)
    if (sci_) return fmt::format("{:.4e}", x);
    if (int_mode_) return fmt::format("{:.0f}", x) + (std::isfinite(x) ? "." : "");
    return fmt::format("{:.4f}", x);
  }

  const PrintValues& p_;
  bool int_mode_ = true, sci_ = false;
  int width_ = 1;
};

std::string vector_str(const PrintValues& p, int64_t base, int indent, bool summarize,
                       const Formatter& f) {
  const int64_t n = p.shape.back(), st = p.strides.back();
  const int64_t per_line = std::max<int64_t>(1, (kPrintLineWidth - indent) / (f.width() + 2));
  std::vector<std::string> items;
  for (int64_t i = 0; i < n; ++i) {
    if (summarize && n > 2 * kPrintEdgeItems && i == kPrintEdgeItems) {
      items.push_back(" ...");
      i = n - kPrintEdgeItems;
    }
    items.push_back(f.format(base + i * st));
  }
  std::string out = "[";
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += i % per_line == 0 ? ",\n" + std::string(indent + 1, ' ') : ", ";
    out += items[i];
  }
  return out + "]";
}

std::string tensor_str(const PrintValues& p, size_t dim, int64_t base, int indent, bool summarize,
                       const Formatter& f) {
  if (dim + 1 == p.shape.size()) return vector_str(p, base, indent, summarize, f);
  const int64_t n = p.shape[dim];
  const std::string sep =
      "," + std::string(p.shape.size() - dim - 1, '\n') + std::string(indent + 1, ' ');
  std::string out = "[";
  for (int64_t i = 0; i < n; ++i) {
    if (i > 0) out += sep;
    if (summarize && n > 2 * kPrintEdgeItems && i == kPrintEdgeItems) {
      out += "..." + sep;
      i = n - kPrintEdgeItems;
    }
    out += tensor_str(p, dim + 1, base + i * p.strides[dim], indent + 1, summarize, f);
  }
  return out + "]";
}

}  // namespace

std::string Tensor::str() const {
  if (!defined()) return "tensor(undefined)";
  const std::string prefix = "tensor(";
  const int indent = static_cast<int>(prefix.size());
  std::string body;
  std::vector<std::string> suffixes;
  if (device().is_cuda()) suffixes.push_back("device='" + device().str() + "'");
  const bool default_dtype = dtype() == kFloat32 || dtype() == kInt64 || dtype() == kBool;
  if (!has_storage()) {
    body = std::string(is_tracer() ? "<tracer> " : "<placeholder> ") + shape_str(shape());
    if (!default_dtype) suffixes.push_back(std::string("dtype=") + dtype_name(dtype()));
  } else if (numel() == 0) {
    body = "[]";
    if (dim() != 1) suffixes.push_back("size=" + shape_str(shape()));
    if (dtype() != kFloat32) suffixes.push_back(std::string("dtype=") + dtype_name(dtype()));
  } else {
    PrintValues p{shape(), contiguous_strides(shape()), {}, {}, dtype()};
    if (is_integral(dtype())) p.ints = to_vector<int64_t>();
    else p.v = to_vector<double>();
    const bool summarize = numel() > kPrintThreshold;
    std::vector<int64_t> shown;
    shown_indices(p, 0, 0, summarize, shown);
    const Formatter f(p, shown);
    body = dim() == 0 ? f.format(0) : tensor_str(p, 0, 0, indent, summarize, f);
    if (!default_dtype) suffixes.push_back(std::string("dtype=") + dtype_name(dtype()));
  }
  if (grad_fn()) suffixes.push_back("grad_fn=<" + autograd_hook::node_name(*grad_fn()) + ">");
  else if (requires_grad()) suffixes.push_back("requires_grad=True");

  std::string out = prefix + body;
  const size_t nl = out.rfind('\n');
  size_t line = nl == std::string::npos ? out.size() + 2 : out.size() - nl + 1;
  for (const auto& s : suffixes) {
    if (line + s.size() + 2 > static_cast<size_t>(kPrintLineWidth)) {
      out += ",\n" + std::string(indent, ' ') + s;
      line = indent + s.size();
    } else {
      out += ", " + s;
      line += s.size() + 2;
    }
  }
  return out + ")";
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) { return os << t.str(); }

}  // namespace minidl
