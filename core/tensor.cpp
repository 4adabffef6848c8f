#include "core/tensor.h"

#include <cmath>
#include <ostream>
#include <sstream>

#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "autograd/node.h"
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
  return shape()[normalize_dim(d, dim(), "size", shape())];
}

bool Tensor::is_contiguous() const {
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
  MINIDL_CHECK(start <= end, ShapeError, "[flatten] start dim {} is after end dim {}", start, end);
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

bool Tensor::requires_grad() const {
  const TensorImpl& i = checked(*this);
  return i.requires_grad || i.grad_fn != nullptr;
}

Tensor& Tensor::requires_grad_(bool on) {
  TensorImpl& i = const_cast<TensorImpl&>(checked(*this));
  MINIDL_CHECK(i.grad_fn == nullptr, ValueError,
               "[requires_grad_] can only be set on leaf tensors; this one was produced by '{}' "
               "(use detach() first)",
               i.grad_fn->name());
  MINIDL_CHECK(!on || is_floating(i.dtype), DTypeError,
               "[requires_grad_] only floating-point tensors can require grad, got {} {}",
               dtype_name(i.dtype), shape_str(i.sizes));
  i.requires_grad = on;
  return *this;
}

bool Tensor::is_leaf() const { return checked(*this).grad_fn == nullptr; }

Tensor Tensor::grad() const {
  const auto& g = checked(*this).grad;
  return g ? Tensor(g) : Tensor();
}

void Tensor::set_grad(const Tensor& g) const {
  if (g.defined())
    MINIDL_CHECK(g.shape() == shape(), ShapeError,
                 "[set_grad] gradient of shape {} for a tensor of shape {}", shape_str(g.shape()),
                 shape_str(shape()));
  impl()->grad = g.impl_ptr();
}

void Tensor::zero_grad() const { checked(*this), impl()->grad.reset(); }

void Tensor::backward(const Tensor& gradient, bool retain_graph, bool create_graph) const {
  run_backward({*this}, {gradient}, retain_graph, create_graph);
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
  for (int64_t d : shape)
    MINIDL_CHECK(d >= 0, ShapeError, "[{}] negative dimension in shape {}", op, shape_str(shape));
  auto i = std::make_shared<TensorImpl>();
  i->sizes = shape;
  i->strides = contiguous_strides(shape);
  i->dtype = dtype;
  i->device = device;
  i->storage = std::make_shared<Storage>(static_cast<size_t>(minidl::numel(shape)) * itemsize(dtype),
                                         device, op);
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

namespace {

struct PrintFormat {
  bool integral_values = true;  // all finite values are whole numbers -> "1."
  bool scientific = false;
  int width = 1;
};

std::string format_value(double v, DType dt, const PrintFormat& f) {
  if (dt == kBool) return v != 0 ? "True" : "False";
  if (is_integral(dt)) return fmt::format("{}", static_cast<int64_t>(v));
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  if (f.scientific) return fmt::format("{:.4e}", v);
  if (f.integral_values) return fmt::format("{:.0f}.", v);
  return fmt::format("{:.4f}", v);
}

void print_rec(std::ostringstream& os, const std::vector<double>& v, const Shape& s,
               const Strides& st, int64_t dim, int64_t base, DType dt, const PrintFormat& f,
               bool summarize, int indent) {
  const int64_t n = s[dim];
  const bool cut = summarize && n > 6;
  auto emit = [&](int64_t i) {
    if (dim + 1 == static_cast<int64_t>(s.size())) {
      std::string x = format_value(v[base + i * st[dim]], dt, f);
      os << std::string(std::max<int>(0, f.width - static_cast<int>(x.size())), ' ') << x;
    } else {
      print_rec(os, v, s, st, dim + 1, base + i * st[dim], dt, f, summarize, indent + 1);
    }
  };
  os << '[';
  for (int64_t i = 0; i < n; ++i) {
    if (cut && i == 3) {
      i = n - 3;
      os << (dim + 1 == static_cast<int64_t>(s.size()) ? "..., " : "...,\n" + std::string(indent + 1, ' '));
    }
    emit(i);
    if (i + 1 < n) {
      if (dim + 1 == static_cast<int64_t>(s.size())) {
        os << ", ";
      } else {
        os << ',' << std::string(s.size() - dim - 1, '\n') << std::string(indent + 1, ' ');
      }
    }
  }
  os << ']';
}

}  // namespace

std::string Tensor::str() const {
  if (!defined()) return "tensor(undefined)";
  std::ostringstream os;
  os << "tensor(";
  if (!has_storage()) {
    os << (is_tracer() ? "<tracer> " : "<placeholder> ") << shape_str(shape());
  } else {
    std::vector<double> v = to_vector<double>();
    PrintFormat f;
    double max_abs = 0, min_abs = INFINITY;
    for (double x : v) {
      if (!std::isfinite(x)) continue;
      if (x != std::floor(x)) f.integral_values = false;
      max_abs = std::max(max_abs, std::abs(x));
      if (x != 0) min_abs = std::min(min_abs, std::abs(x));
    }
    if (is_floating(dtype()) && !f.integral_values && (max_abs >= 1e8 || min_abs < 1e-4))
      f.scientific = true;
    if (is_floating(dtype()) && f.integral_values && max_abs >= 1e8) f.scientific = true;
    for (double x : v) f.width = std::max<int>(f.width, static_cast<int>(format_value(x, dtype(), f).size()));
    if (dim() == 0) {
      os << format_value(v[0], dtype(), f);
    } else {
      print_rec(os, v, shape(), contiguous_strides(shape()), 0, 0, dtype(), f, numel() > 1000, 7);
    }
  }
  if (dtype() != kFloat32 && dtype() != kInt64 && dtype() != kBool)
    os << ", dtype=" << dtype_name(dtype());
  if (device().is_cuda()) os << ", device='" << device().str() << "'";
  if (grad_fn()) os << ", grad_fn=<" << grad_fn()->name() << ">";
  else if (requires_grad()) os << ", requires_grad=True";
  os << ')';
  return os.str();
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) { return os << t.str(); }

}  // namespace minidl
