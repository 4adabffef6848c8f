// Tensor core: factories and seeded random streams, element access, dtype conversions, views
// that share storage, in-place copies, and printing in PyTorch's format.
#include <doctest/doctest.h>

#include <cmath>
#include <set>
#include <sstream>

#include "test_utils.h"

using namespace minidl;
using minidl::testing::test_devices;

namespace {

std::vector<double> values(const Tensor& t) { return t.cpu().to_vector<double>(); }

/// Element address of t at its first element, relative to base's first element, in elements.
int64_t elem_offset(const Tensor& t, const Tensor& base) {
  return (static_cast<const char*>(t.data_ptr()) - static_cast<const char*>(base.data_ptr())) /
         static_cast<int64_t>(itemsize(t.dtype()));
}

}  // namespace

TEST_CASE("factories: zeros, ones, full, *_like, scalar_tensor, arange") {
  for (Device dev : test_devices())
    for (DType t : {kFloat32, kFloat64, kFloat16, kBFloat16, kInt32, kInt64, kBool}) {
      INFO(dev.str(), " ", dtype_name(t));
      Tensor z = zeros({2, 3}, {.dtype = t, .device = dev});
      CHECK(z.shape() == Shape{2, 3});
      CHECK(z.dtype() == t);
      CHECK(z.device() == dev);
      CHECK(z.is_contiguous());
      CHECK(values(z) == std::vector<double>(6, 0));
      CHECK(values(ones({4}, {.dtype = t, .device = dev})) == std::vector<double>(4, 1));
      CHECK(values(full({2}, t == kBool ? 1.0 : 3.0, {.dtype = t, .device = dev})) ==
            std::vector<double>(2, t == kBool ? 1.0 : 3.0));
      Tensor o = ones_like(z);
      CHECK(o.dtype() == t);
      CHECK(o.device() == dev);
      CHECK(values(full_like(z, 1)) == std::vector<double>(6, 1));
      CHECK(zeros_like(o).shape() == Shape{2, 3});
    }
  CHECK(values(full({2}, 2.7, {.dtype = kInt64})) == std::vector<double>{2, 2});  // truncates
  Tensor s = scalar_tensor(2.5);
  CHECK(s.dim() == 0);
  CHECK(s.numel() == 1);
  CHECK(s.item() == 2.5);
  CHECK(zeros({0, 3}).numel() == 0);
  CHECK(zeros({}).shape() == Shape{});
  Tensor g = zeros({2}, {.dtype = kFloat64, .requires_grad = true});
  CHECK(g.requires_grad());
  CHECK(g.is_leaf());

  CHECK(arange(5).dtype() == kInt64);
  CHECK(arange(5).to_vector<int64_t>() == std::vector<int64_t>{0, 1, 2, 3, 4});
  CHECK(arange(1, 2, 0.25, {.dtype = kFloat32}).to_vector<float>() ==
        std::vector<float>{1, 1.25, 1.5, 1.75});
  CHECK(arange(5, 0, -2).to_vector<int64_t>() == std::vector<int64_t>{5, 3, 1});
  CHECK(arange(3, 3).numel() == 0);
  CHECK(arange(0, 1, 0.1, {.dtype = kFloat64}).numel() == 10);
}

TEST_CASE("random: same seed, same numbers; ranges and moments") {
  Generator g1(42), g2(42), g3(43);
  Tensor a = rand({1000}, {}, &g1), b = rand({1000}, {}, &g2), c = rand({1000}, {}, &g3);
  CHECK(values(a) == values(b));
  CHECK(values(a) != values(c));
  CHECK(values(rand({1000}, {}, &g1)) != values(a));  // the stream advances
  double lo = 1, hi = 0, mean = 0;
  for (double v : values(a)) lo = std::min(lo, v), hi = std::max(hi, v), mean += v / 1000;
  CHECK(lo >= 0);
  CHECK(hi < 1);
  CHECK(mean == doctest::Approx(0.5).epsilon(0.1));

  Generator gn(7);
  std::vector<double> n = values(randn({20000}, {.dtype = kFloat64}, &gn));
  double m = 0, v = 0;
  for (double x : n) m += x / static_cast<double>(n.size());
  for (double x : n) v += (x - m) * (x - m) / static_cast<double>(n.size());
  CHECK(std::abs(m) < 0.03);
  CHECK(v == doctest::Approx(1.0).epsilon(0.05));

  // The default generator, seeded by manual_seed.
  manual_seed(123);
  std::vector<double> d1 = values(randn({16}));
  manual_seed(123);
  CHECK(values(randn({16})) == d1);
  // A 16-bit draw rounds the same stream.
  Generator h1(5), h2(5);
  std::vector<double> f16 = values(rand({64}, {.dtype = kFloat16}, &h1));
  std::vector<double> f32 = values(rand({64}, {}, &h2));
  for (size_t i = 0; i < f16.size(); ++i) CHECK(f16[i] == doctest::Approx(f32[i]).epsilon(1e-3));

  // randint: integers in [low, high), every value drawn, reproducible.
  Generator r1(9), r2(9);
  Tensor ri = randint(-3, 4, {2000}, {.dtype = kInt64}, &r1);
  CHECK(ri.dtype() == kInt64);
  std::set<int64_t> seen;
  for (int64_t x : ri.to_vector<int64_t>()) seen.insert(x);
  CHECK(seen == std::set<int64_t>{-3, -2, -1, 0, 1, 2, 3});
  CHECK(ri.to_vector<int64_t>() ==
        randint(-3, 4, {2000}, {.dtype = kInt64}, &r2).to_vector<int64_t>());
  CHECK(randint(0, 5, {3}, {.dtype = kInt32}).dtype() == kInt32);

  // The stream is the same on every device (Philox is counter-based).
  for (Device dev : test_devices()) {
    Generator ga(77), gb(77);
    CHECK(values(randn({257}, {.device = dev}, &ga)) == values(randn({257}, {}, &gb)));
  }
}

TEST_CASE("from_vector, item and to_vector") {
  Tensor a = from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3});
  CHECK(a.shape() == Shape{2, 3});
  CHECK(a.dtype() == kFloat32);
  CHECK(from_vector<float>({1, 2, 3}).shape() == Shape{3});
  CHECK(from_vector<float>({7}).shape() == Shape{1});  // one value: (1,); a 0-dim is scalar_tensor
  CHECK(from_vector<double>({1.5, 2.5}, {}, {.dtype = kInt32}).to_vector<int32_t>() ==
        std::vector<int32_t>{1, 2});
  CHECK(from_vector<int64_t>({0, 3}, {}, {.dtype = kBool}).to_vector<bool>() ==
        std::vector<bool>{false, true});
  CHECK(from_vector<bool>({true, false}, {}, {.dtype = kFloat32}).to_vector<float>() ==
        std::vector<float>{1, 0});
  CHECK(from_vector<int32_t>({4, 5}, {}, {.dtype = kInt32}).to_vector<int64_t>() ==
        std::vector<int64_t>{4, 5});
  CHECK(from_vector<float>({}, {0, 2}).shape() == Shape{0, 2});
  // Without Options the dtype is T's.
  CHECK(from_vector<int64_t>({1, 2}).dtype() == kInt64);
  CHECK(from_vector<int32_t>({1, 2}).dtype() == kInt32);
  CHECK(from_vector<double>({0.1}).dtype() == kFloat64);
  CHECK(from_vector<double>({0.1}).item() == 0.1);  // no float32 rounding on the way
  CHECK(from_vector<bool>({true}).dtype() == kBool);
  CHECK(from_vector<float>({1}).dtype() == kFloat32);
  CHECK(from_vector<int64_t>({int64_t(1) << 60}).to_vector<int64_t>()[0] == int64_t(1) << 60);

  CHECK(scalar_tensor(-3.25).item() == -3.25);
  CHECK(from_vector<float>({4}, {1, 1}).item() == 4.0);
  CHECK(scalar_tensor(5, {.dtype = kInt64}).item<int64_t>() == 5);
  CHECK(scalar_tensor(1, {.dtype = kBool}).item<bool>());
  CHECK(a.t().to_vector<float>() == std::vector<float>{1, 4, 2, 5, 3, 6});  // row-major of the view
  CHECK(a.to_vector<int32_t>() == std::vector<int32_t>{1, 2, 3, 4, 5, 6});
  CHECK(a.nbytes() == 24);
  CHECK(a.size(-1) == 3);
  CHECK(a.size(0) == 2);
  CHECK(describe(a) == "float32 (2, 3) on cpu");
  CHECK(describe(Tensor()) == "undefined tensor");
}

TEST_CASE("to(dtype): round trips and 16-bit rounding") {
  // Values a float16 and a bfloat16 hold exactly survive the round trip.
  Tensor exact = from_vector<float>({0, 1, -2, 0.5, 1024, -0.125});
  for (DType t : {kFloat16, kBFloat16, kFloat64})
    CHECK(exact.to(t).to(kFloat32).to_vector<float>() == exact.to_vector<float>());
  // 0.1 rounds to the nearest representable value of each.
  Tensor tenth = from_vector<float>({0.1f});
  CHECK(tenth.to(kFloat16).item() == 0.0999755859375);
  CHECK(tenth.to(kBFloat16).item() == 0.10009765625);
  CHECK(tenth.to(kFloat64).item() == static_cast<double>(0.1f));
  // Large integers survive int64 -> float64 -> int64; float -> int truncates toward zero.
  Tensor big = from_vector<int64_t>({int64_t(1) << 40, -(int64_t(1) << 50)}, {}, {.dtype = kInt64});
  CHECK(big.to(kFloat64).to(kInt64).to_vector<int64_t>() == big.to_vector<int64_t>());
  CHECK(from_vector<float>({-1.9f, 1.9f}).to(kInt32).to_vector<int32_t>() ==
        std::vector<int32_t>{-1, 1});
  // bool: nonzero is true, true is 1.
  CHECK(from_vector<float>({0, -0.5, 2}).to(kBool).to_vector<bool>() ==
        std::vector<bool>{false, true, true});
  CHECK(from_vector<bool>({true, false}, {}, {.dtype = kBool}).to(kInt64).to_vector<int64_t>() ==
        std::vector<int64_t>{1, 0});
}

TEST_CASE("views share storage; reshape copies only when it must") {
  Tensor base = arange(12, {.dtype = kFloat32}).reshape({3, 4});
  REQUIRE(base.is_contiguous());
  CHECK(base.strides() == Strides{4, 1});

  Tensor t = base.t();
  CHECK(t.strides() == Strides{1, 4});
  CHECK(elem_offset(t, base) == 0);
  CHECK_FALSE(t.is_contiguous());
  Tensor p = base.reshape({3, 2, 2}).permute({2, 0, 1});
  CHECK(p.shape() == Shape{2, 3, 2});
  CHECK(p.strides() == Strides{1, 4, 2});
  Tensor s = base.slice(1, 1, 4, 2);
  CHECK(s.shape() == Shape{3, 2});
  CHECK(s.strides() == Strides{4, 2});
  CHECK(s.offset() == 1);
  CHECK(elem_offset(s, base) == 1);
  Tensor e = base.slice(0, 1, 2).expand({5, 4});
  CHECK(e.strides() == Strides{0, 1});
  CHECK(elem_offset(e, base) == 4);
  Tensor sel = base.select(1, 2);
  CHECK(sel.shape() == Shape{3});
  CHECK(elem_offset(sel, base) == 2);
  CHECK(elem_offset(base.view({2, 6}), base) == 0);
  CHECK(elem_offset(base.unsqueeze(1).squeeze(1), base) == 0);
  CHECK(elem_offset(base.flatten(), base) == 0);
  CHECK(base.contiguous().is_same(base));
  CHECK(base.reshape({3, 4}).is_same(base));

  // Writes through a view reach the base.
  s.fill_(-1);
  CHECK(values(base) == std::vector<double>{0, -1, 2, -1, 4, -1, 6, -1, 8, -1, 10, -1});
  sel.copy_(from_vector<float>({7, 8, 9}));
  CHECK(values(base.select(1, 2)) == std::vector<double>{7, 8, 9});
  t.select(0, 0).zero_();  // column 0 of base
  CHECK(values(base.select(1, 0)) == std::vector<double>{0, 0, 0});

  // Copies: reshape of a view the strides cannot express, contiguous() of a view, clone().
  Tensor r = t.reshape({12});
  CHECK(r.is_contiguous());
  r.fill_(100);
  CHECK(values(base)[1] == -1);
  Tensor c = t.contiguous();
  CHECK(c.is_contiguous());
  CHECK(values(c) == values(t));
  Tensor cl = base.clone();
  cl.fill_(5);
  CHECK(values(base)[0] == 0);
  // A view keeps the storage alive after the base is gone.
  Tensor v;
  {
    Tensor tmp = arange(6, {.dtype = kFloat32});
    v = tmp.slice(0, 2, 4);
  }
  CHECK(values(v) == std::vector<double>{2, 3});
  // Empty and 0-dim tensors.
  CHECK(zeros({2, 0}).is_contiguous());
  CHECK(zeros({0, 3}).t().is_contiguous());
  CHECK(scalar_tensor(1).is_contiguous());
  CHECK(zeros({1, 3}).expand({1, 3}).is_contiguous());
}

TEST_CASE("copy_ and fill_: broadcast, dtype conversion, overlap") {
  Tensor x = zeros({3, 4});
  Tensor& ret = x.copy_(from_vector<float>({1, 2, 3, 4}));
  CHECK(ret.is_same(x));
  CHECK(values(x.select(0, 2)) == std::vector<double>{1, 2, 3, 4});
  x.copy_(from_vector<int64_t>({5}, {1}, {.dtype = kInt64}));  // dtype conversion and broadcast
  CHECK(values(x) == std::vector<double>(12, 5));
  // Into a transposed view.
  Tensor y = zeros({2, 3});
  y.t().copy_(from_vector<float>({1, 2, 3, 4, 5, 6}, {3, 2}));
  CHECK(values(y) == std::vector<double>{1, 3, 5, 2, 4, 6});
  // Source overlapping the destination is staged through a copy.
  Tensor sq = arange(9, {.dtype = kFloat32}).reshape({3, 3});
  sq.copy_(sq.t());
  CHECK(values(sq) == std::vector<double>{0, 3, 6, 1, 4, 7, 2, 5, 8});
  // fill_ of a strided view, and of a 16-bit tensor.
  Tensor h = zeros({4}, {.dtype = kFloat16});
  h.slice(0, 0, 4, 2).fill_(0.1);
  CHECK(values(h) == std::vector<double>{0.0999755859375, 0, 0.0999755859375, 0});
  for (Device dev : test_devices()) {
    Tensor d = zeros({2, 2}, {.device = dev});
    d.copy_(from_vector<float>({1, 2, 3, 4}, {2, 2}));
    CHECK(values(d) == std::vector<double>{1, 2, 3, 4});
    d.fill_(6);
    CHECK(values(d) == std::vector<double>(4, 6));
    CHECK(values(d.to(kCPU).to(dev)) == values(d));
  }
}

TEST_CASE("printing like PyTorch") {
  auto f = [](std::vector<float> v, Shape s = {}) { return from_vector<float>(v, s); };
  CHECK(from_vector<int64_t>({1, 2, 3}, {}, {.dtype = kInt64}).str() == "tensor([1, 2, 3])");
  CHECK(from_vector<int64_t>({1, -10}, {}, {.dtype = kInt64}).str() == "tensor([  1, -10])");
  CHECK(f({1, 2, 3, 4}, {2, 2}).str() == "tensor([[1., 2.],\n        [3., 4.]])");
  CHECK(f({1.5, -2.25, 3}).str() == "tensor([ 1.5000, -2.2500,  3.0000])");
  CHECK(f({1e-5f, 1}).str() == "tensor([1.0000e-05, 1.0000e+00])");
  CHECK(f({1, 2000}).str() == "tensor([1.0000e+00, 2.0000e+03])");  // range > 1000: scientific
  CHECK(f({0.5, 1000.5}).str() == "tensor([5.0000e-01, 1.0005e+03])");
  CHECK(f({1e9, 1}).str() == "tensor([1.0000e+09, 1.0000e+00])");
  CHECK(f({0, 0, 0}).str() == "tensor([0., 0., 0.])");
  CHECK(f({0, 10}).str() == "tensor([ 0., 10.])");
  CHECK(f({NAN, 1, INFINITY}).str() == "tensor([nan, 1., inf])");
  CHECK(f({-INFINITY, 0.5}).str() == "tensor([  -inf, 0.5000])");
  // A NaN prints without its sign bit (0/0 gives a negative NaN on x86), in every mode.
  CHECK(f({-NAN, 1}).str() == "tensor([nan, 1.])");
  CHECK(f({-NAN, 1.5}).str() == "tensor([   nan, 1.5000])");
  CHECK(f({-NAN, 1e-5f, 1}).str() == "tensor([       nan, 1.0000e-05, 1.0000e+00])");
  CHECK(scalar_tensor(-NAN).str() == "tensor(nan)");
  CHECK((zeros({2}) / zeros({2})).str() == "tensor([nan, nan])");
  CHECK(scalar_tensor(3.5).str() == "tensor(3.5000)");
  CHECK(scalar_tensor(2).str() == "tensor(2.)");
  CHECK(scalar_tensor(7, {.dtype = kInt64}).str() == "tensor(7)");
  CHECK(from_vector<bool>({true, false}, {}, {.dtype = kBool}).str() == "tensor([ True, False])");
  CHECK(f({1, 2, 3, 4, 5, 6}, {2, 3}).t().str() ==
        "tensor([[1., 4.],\n        [2., 5.],\n        [3., 6.]])");
  CHECK(arange(8).reshape({2, 2, 2}).str() ==
        "tensor([[[0, 1],\n         [2, 3]],\n\n        [[4, 5],\n         [6, 7]]])");
  // dtype suffixes (float32, int64 and bool are the defaults), empty tensors.
  CHECK(from_vector<double>({1, 2}, {}, {.dtype = kFloat64}).str() ==
        "tensor([1., 2.], dtype=float64)");
  CHECK(f({1.5}).to(kFloat16).str() == "tensor([1.5000], dtype=float16)");
  CHECK(f({1}).to(kBFloat16).str() == "tensor([1.], dtype=bfloat16)");
  CHECK(from_vector<int32_t>({3}, {}, {.dtype = kInt32}).str() == "tensor([3], dtype=int32)");
  CHECK(zeros({0}).str() == "tensor([])");
  CHECK(zeros({2, 0}).str() == "tensor([], size=(2, 0))");
  CHECK(zeros({0}, {.dtype = kInt64}).str() == "tensor([], dtype=int64)");
  // Autograd suffixes.
  Tensor x = ones({2}, {.requires_grad = true});
  CHECK(x.str() == "tensor([1., 1.], requires_grad=True)");
  CHECK((x * 2.0).str() == "tensor([2., 2.], grad_fn=<mul>)");
  CHECK(x.sum().str() == "tensor(2., grad_fn=<sum>)");
  CHECK(x.detach().str() == "tensor([1., 1.])");
  // Long rows wrap at 80 columns; suffixes that do not fit go on a new line.
  CHECK(arange(20, {.dtype = kFloat32}).str() ==
        "tensor([ 0.,  1.,  2.,  3.,  4.,  5.,  6.,  7.,  8.,  9., 10., 11., 12., 13.,\n"
        "        14., 15., 16., 17., 18., 19.])");
  CHECK(arange(13, {.dtype = kFloat64, .requires_grad = true}).str() ==
        "tensor([ 0.,  1.,  2.,  3.,  4.,  5.,  6.,  7.,  8.,  9., 10., 11., 12.],\n"
        "       dtype=float64, requires_grad=True)");
  // More than 1000 elements: three edge items per dim, formatted from the shown values only.
  CHECK(arange(2000).str() == "tensor([   0,    1,    2,  ..., 1997, 1998, 1999])");
  CHECK(arange(1200).reshape({40, 30}).str() ==
        "tensor([[   0,    1,    2,  ...,   27,   28,   29],\n"
        "        [  30,   31,   32,  ...,   57,   58,   59],\n"
        "        [  60,   61,   62,  ...,   87,   88,   89],\n"
        "        ...,\n"
        "        [1110, 1111, 1112,  ..., 1137, 1138, 1139],\n"
        "        [1140, 1141, 1142,  ..., 1167, 1168, 1169],\n"
        "        [1170, 1171, 1172,  ..., 1197, 1198, 1199]])");
  Tensor hidden = zeros({1001});
  hidden.slice(0, 500, 501).fill_(0.5);  // not shown, so it does not change the format
  CHECK(hidden.str() == "tensor([0., 0., 0.,  ..., 0., 0., 0.])");
  // Placeholders print their shape; operator<< prints str().
  CHECK(placeholder({{2, 3}, kFloat32, kCPU}).str() == "tensor(<placeholder> (2, 3))");
  std::ostringstream os;
  os << f({1, 2});
  CHECK(os.str() == "tensor([1., 2.])");
  CHECK(Tensor().str() == "tensor(undefined)");
}
