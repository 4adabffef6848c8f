// FusedAttention and FusedAttentionBackward: shape rules, CPU kernels (FlashAttention-2 loops),
// CUDA entry points, the vjp, and the unfused compositions they fall back on.
#include "compiler/attention/attention.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/cpu/parallel.h"
#include "core/ops.h"
#if MINIDL_WITH_CUDA
#include "compiler/attention/launch.h"
#endif

namespace minidl {

// NOTE [CPU flash attention]
// The CPU kernels follow FlashAttention-2 so that memory stays linear in the sequence length:
// no buffer ever holds more than one kBr × kBc tile of scores.
// Forward, per (batch, query tile): for each key tile, S = (scale·Q) Kᵀ, then per row the
// running max m and sum l are updated and O is rescaled: O = O·e^(m_old - m) + e^(S - m) V.
// At the end O /= l and LSE = m + log l. Causal rows stop at the diagonal tile.
// Backward: D = rowsum(dO ∘ O); P = e^(S - LSE) is recomputed tile by tile, dP = dO Vᵀ and
// dS = P ∘ (dP - D). It runs in two race-free passes: per (batch, key tile) dV += Pᵀ dO and
// dK += dSᵀ (scale·Q); per (batch, query tile) dQ += scale · dS K. (The GPU kernel does one
// pass with atomics on dQ; on a few CPU cores recomputing S once more is cheaper than locking.)
// Tiles are copied into compute-type buffers, K and V transposed where the product wants
// unit stride, so every inner loop runs over contiguous memory and vectorises.

namespace {

constexpr int64_t kBr = 64;  // query rows per tile
constexpr int64_t kBc = 64;  // key rows per tile

/// Dtype of the LSE for inputs of dtype t.
DType lse_dtype(DType t) { return t == kFloat64 ? kFloat64 : kFloat32; }

Shape without_last(const Shape& s) { return Shape(s.begin(), s.end() - 1); }

// A (..., N, d) operand as matrices with unit-stride rows: element (b, i, c) is at
// data[offset[b] + i * row_stride + c].
template <class T>
struct Rows {
  const T* data;
  std::vector<int64_t> offset;
  int64_t row_stride;
  const T* row(int64_t b, int64_t i) const { return data + offset[b] + i * row_stride; }
};

Tensor with_unit_stride_rows(const Tensor& t) {
  return t.size(-1) <= 1 || t.strides().back() == 1 ? t : t.contiguous();
}

template <class T>
Rows<T> rows_of(const Tensor& t) {
  const int64_t nb = t.dim() - 2;
  int64_t count = 1;
  for (int64_t d = 0; d < nb; ++d) count *= t.shape()[d];
  Rows<T> r{static_cast<const T*>(t.data_ptr()), std::vector<int64_t>(count), t.strides()[nb]};
  for (int64_t b = 0; b < count; ++b) {
    int64_t rem = b;
    for (int64_t d = nb - 1; d >= 0; --d) {
      r.offset[b] += (rem % t.shape()[d]) * t.strides()[d];
      rem /= t.shape()[d];
    }
  }
  return r;
}

// dst[r * d + c] = mul · src(b, i0 + r, c): a tile of rows.
template <class T, class A>
void load_rows(A* dst, const Rows<T>& src, int64_t b, int64_t i0, int64_t rows, int64_t d, A mul) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* p = src.row(b, i0 + r);
    for (int64_t c = 0; c < d; ++c)
      dst[r * d + c] = static_cast<A>(static_cast<compute_t<T>>(p[c])) * mul;
  }
}

// dst[c * kBc + j] = src(b, j0 + j, c): a tile of rows, transposed.
template <class T, class A>
void load_transposed(A* dst, const Rows<T>& src, int64_t b, int64_t j0, int64_t cols, int64_t d) {
  for (int64_t j = 0; j < cols; ++j) {
    const T* p = src.row(b, j0 + j);
    for (int64_t c = 0; c < d; ++c)
      dst[c * kBc + j] = static_cast<A>(static_cast<compute_t<T>>(p[c]));
  }
}

// c[i·ldc + j] (+)= Σ_p a[i·sa0 + p·sa1] · b[p·ldb + j] for i < m, j < n, p < k. Four rows of
// c at a time, so each element of b loaded feeds four multiply-adds; the j loop vectorises.
template <class A>
void tile_product(int64_t m, int64_t n, int64_t k, const A* a, int64_t sa0, int64_t sa1, const A* b,
                  int64_t ldb, A* c, int64_t ldc, bool accumulate) {
  if (!accumulate)
    for (int64_t i = 0; i < m; ++i) std::fill(c + i * ldc, c + i * ldc + n, A(0));
  int64_t i = 0;
  for (; i + 4 <= m; i += 4) {
    A* __restrict c0 = c + i * ldc;
    A* __restrict c1 = c0 + ldc;
    A* __restrict c2 = c1 + ldc;
    A* __restrict c3 = c2 + ldc;
    for (int64_t p = 0; p < k; ++p) {
      const A* a0 = a + i * sa0 + p * sa1;
      const A x0 = a0[0], x1 = a0[sa0], x2 = a0[2 * sa0], x3 = a0[3 * sa0];
      const A* __restrict bp = b + p * ldb;
      for (int64_t j = 0; j < n; ++j) {
        const A y = bp[j];
        c0[j] += x0 * y;
        c1[j] += x1 * y;
        c2[j] += x2 * y;
        c3[j] += x3 * y;
      }
    }
  }
  for (; i < m; ++i) {
    A* __restrict ci = c + i * ldc;
    for (int64_t p = 0; p < k; ++p) {
      const A x = a[i * sa0 + p * sa1];
      const A* __restrict bp = b + p * ldb;
      for (int64_t j = 0; j < n; ++j) ci[j] += x * bp[j];
    }
  }
}

// Keys of the tile starting at j0 that query i sees: all cols, or those with j <= i.
int64_t visible_keys(bool causal, int64_t i, int64_t j0, int64_t cols) {
  return causal ? std::clamp<int64_t>(i - j0 + 1, 0, cols) : cols;
}

// Turns a tile of scores into probabilities P = e^(S - lse) (0 for masked keys).
template <class A>
void probabilities(A* s, const A* lse, int64_t rows, int64_t cols, int64_t i0, int64_t j0,
                   bool causal) {
  for (int64_t r = 0; r < rows; ++r) {
    A* sr = s + r * kBc;
    const int64_t n = visible_keys(causal, i0 + r, j0, cols);
    for (int64_t j = 0; j < n; ++j) sr[j] = std::exp(sr[j] - lse[r]);
    std::fill(sr + n, sr + cols, A(0));
  }
}

template <class T>
void forward_cpu(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& o,
                 const Tensor& lse, double scale, bool causal) {
  using A = compute_t<T>;
  const Rows<T> Q = rows_of<T>(q), K = rows_of<T>(k), V = rows_of<T>(v);
  const int64_t batch = static_cast<int64_t>(Q.offset.size());
  const int64_t nq = q.size(-2), nk = k.size(-2), d = q.size(-1);
  const int64_t tiles = (nq + kBr - 1) / kBr;
  T* po = o.data<T>();
  A* pl = lse.data<A>();
  cpu::parallel_for(batch * tiles, kBr * nk * d * 4, [&](int64_t begin, int64_t end) {
    std::vector<A> qt(kBr * d), kt(d * kBc), vt(kBc * d), s(kBr * kBc), acc(kBr * d), m(kBr),
        l(kBr);
    for (int64_t w = begin; w < end; ++w) {
      const int64_t b = w / tiles, i0 = (w % tiles) * kBr, rows = std::min(kBr, nq - i0);
      load_rows(qt.data(), Q, b, i0, rows, d, static_cast<A>(scale));
      std::fill(acc.begin(), acc.end(), A(0));
      std::fill(m.begin(), m.end(), -std::numeric_limits<A>::infinity());
      std::fill(l.begin(), l.end(), A(0));
      const int64_t j_end = causal ? std::min(nk, i0 + rows) : nk;
      for (int64_t j0 = 0; j0 < j_end; j0 += kBc) {
        const int64_t cols = std::min(kBc, j_end - j0);
        load_transposed(kt.data(), K, b, j0, cols, d);
        load_rows(vt.data(), V, b, j0, cols, d, A(1));
        tile_product(rows, cols, d, qt.data(), d, 1, kt.data(), kBc, s.data(), kBc, false);
        for (int64_t r = 0; r < rows; ++r) {
          A* sr = s.data() + r * kBc;
          const int64_t n = visible_keys(causal, i0 + r, j0, cols);
          if (n == 0) {
            std::fill(sr, sr + cols, A(0));
            continue;
          }
          A mx = m[r];
          for (int64_t j = 0; j < n; ++j) mx = std::max(mx, sr[j]);
          const A alpha = std::exp(m[r] - mx);
          A sum = 0;
          for (int64_t j = 0; j < n; ++j) {
            sr[j] = std::exp(sr[j] - mx);
            sum += sr[j];
          }
          std::fill(sr + n, sr + cols, A(0));
          l[r] = l[r] * alpha + sum;
          m[r] = mx;
          A* ar = acc.data() + r * d;
          for (int64_t c = 0; c < d; ++c) ar[c] *= alpha;
        }
        tile_product(rows, d, cols, s.data(), kBc, 1, vt.data(), d, acc.data(), d, true);
      }
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t i = b * nq + i0 + r;
        const A inv = l[r] > 0 ? A(1) / l[r] : A(0);  // no keys at all (nk == 0): O = 0
        for (int64_t c = 0; c < d; ++c) po[i * d + c] = T(acc[r * d + c] * inv);
        pl[i] = m[r] + std::log(l[r]);
      }
    }
  });
}

template <class T>
void backward_cpu(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& o,
                  const Tensor& lse_in, const Tensor& dout, const Tensor& dq, const Tensor& dk,
                  const Tensor& dv, double scale, bool causal) {
  using A = compute_t<T>;
  const Rows<T> Q = rows_of<T>(q), K = rows_of<T>(k), V = rows_of<T>(v), O = rows_of<T>(o),
                dO = rows_of<T>(dout);
  const int64_t batch = static_cast<int64_t>(Q.offset.size());
  const int64_t nq = q.size(-2), nk = k.size(-2), d = q.size(-1);
  const Tensor lse_t = lse_in.contiguous();
  const A* lse = lse_t.data<A>();  // (batch, nq)
  const A sc = static_cast<A>(scale);

  std::vector<A> D(static_cast<size_t>(batch * nq));  // rowsum(dO ∘ O)
  cpu::parallel_for(batch * nq, d * 2, [&](int64_t begin, int64_t end) {
    for (int64_t w = begin; w < end; ++w) {
      const T* x = dO.row(w / nq, w % nq);
      const T* y = O.row(w / nq, w % nq);
      A s = 0;
      for (int64_t c = 0; c < d; ++c)
        s += static_cast<A>(static_cast<compute_t<T>>(x[c])) *
             static_cast<A>(static_cast<compute_t<T>>(y[c]));
      D[w] = s;
    }
  });

  // dS for a (query tile, key tile) pair, left in s: S, P, dP = dO Vᵀ, dS = P ∘ (dP - D).
  auto scores_grad = [&](A* s, A* dp, const A* qt, const A* kt, const A* dot, const A* vtt,
                         int64_t b, int64_t i0, int64_t rows, int64_t j0, int64_t cols) {
    tile_product(rows, cols, d, qt, d, 1, kt, kBc, s, kBc, false);
    probabilities(s, lse + b * nq + i0, rows, cols, i0, j0, causal);
    tile_product(rows, cols, d, dot, d, 1, vtt, kBc, dp, kBc, false);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = 0; j < cols; ++j)
        dp[r * kBc + j] = s[r * kBc + j] * (dp[r * kBc + j] - D[b * nq + i0 + r]);
  };

  // Pass 1, per (batch, key tile): dV = Σ Pᵀ dO, dK = Σ dSᵀ (scale·Q).
  const int64_t key_tiles = (nk + kBc - 1) / kBc;
  T* pdk = dk.data<T>();
  T* pdv = dv.data<T>();
  cpu::parallel_for(batch * key_tiles, kBc * nq * d * 8, [&](int64_t begin, int64_t end) {
    std::vector<A> qt(kBr * d), dot(kBr * d), kt(d * kBc), vtt(d * kBc), s(kBr * kBc),
        ds(kBr * kBc), acc_k(kBc * d), acc_v(kBc * d);
    for (int64_t w = begin; w < end; ++w) {
      const int64_t b = w / key_tiles, j0 = (w % key_tiles) * kBc, cols = std::min(kBc, nk - j0);
      load_transposed(kt.data(), K, b, j0, cols, d);
      load_transposed(vtt.data(), V, b, j0, cols, d);
      std::fill(acc_k.begin(), acc_k.end(), A(0));
      std::fill(acc_v.begin(), acc_v.end(), A(0));
      for (int64_t i0 = causal ? j0 / kBr * kBr : 0; i0 < nq; i0 += kBr) {
        const int64_t rows = std::min(kBr, nq - i0);
        load_rows(qt.data(), Q, b, i0, rows, d, sc);
        load_rows(dot.data(), dO, b, i0, rows, d, A(1));
        scores_grad(s.data(), ds.data(), qt.data(), kt.data(), dot.data(), vtt.data(), b, i0, rows,
                    j0, cols);
        tile_product(cols, d, rows, s.data(), 1, kBc, dot.data(), d, acc_v.data(), d, true);
        tile_product(cols, d, rows, ds.data(), 1, kBc, qt.data(), d, acc_k.data(), d, true);
      }
      for (int64_t j = 0; j < cols; ++j)
        for (int64_t c = 0; c < d; ++c) {
          const int64_t at = (b * nk + j0 + j) * d + c;
          pdk[at] = T(acc_k[j * d + c]);
          pdv[at] = T(acc_v[j * d + c]);
        }
    }
  });

  // Pass 2, per (batch, query tile): dQ = scale · Σ dS K.
  const int64_t query_tiles = (nq + kBr - 1) / kBr;
  T* pdq = dq.data<T>();
  cpu::parallel_for(batch * query_tiles, kBr * nk * d * 6, [&](int64_t begin, int64_t end) {
    std::vector<A> qt(kBr * d), dot(kBr * d), kt(d * kBc), vtt(d * kBc), kr(kBc * d), s(kBr * kBc),
        ds(kBr * kBc), acc(kBr * d);
    for (int64_t w = begin; w < end; ++w) {
      const int64_t b = w / query_tiles, i0 = (w % query_tiles) * kBr,
                    rows = std::min(kBr, nq - i0);
      load_rows(qt.data(), Q, b, i0, rows, d, sc);
      load_rows(dot.data(), dO, b, i0, rows, d, A(1));
      std::fill(acc.begin(), acc.end(), A(0));
      const int64_t j_end = causal ? std::min(nk, i0 + rows) : nk;
      for (int64_t j0 = 0; j0 < j_end; j0 += kBc) {
        const int64_t cols = std::min(kBc, j_end - j0);
        load_transposed(kt.data(), K, b, j0, cols, d);
        load_transposed(vtt.data(), V, b, j0, cols, d);
        load_rows(kr.data(), K, b, j0, cols, d, A(1));
        scores_grad(s.data(), ds.data(), qt.data(), kt.data(), dot.data(), vtt.data(), b, i0, rows,
                    j0, cols);
        tile_product(rows, d, cols, ds.data(), kBc, 1, kr.data(), d, acc.data(), d, true);
      }
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < d; ++c) pdq[((b * nq) + i0 + r) * d + c] = T(acc[r * d + c] * sc);
    }
  });
}

// Checks q (..., Nq, d), k (..., Nk, d), v (..., Nk, d) of one batch shape, dtype and device.
void check_qkv(const char* op, const TensorMeta& q, const TensorMeta& k, const TensorMeta& v) {
  const size_t n = q.shape.size();
  const bool ok = n >= 2 && k.shape.size() == n && v.shape.size() == n &&
                  std::equal(q.shape.begin(), q.shape.end() - 2, k.shape.begin()) &&
                  std::equal(q.shape.begin(), q.shape.end() - 2, v.shape.begin()) &&
                  k.shape[n - 1] == q.shape[n - 1] && v.shape[n - 1] == q.shape[n - 1] &&
                  v.shape[n - 2] == k.shape[n - 2];
  MINIDL_CHECK(ok, ShapeError,
               "[{}] expects q (..., Nq, d), k and v (..., Nk, d) with one batch shape and head "
               "dim, got q {}, k {}, v {}",
               op, shape_str(q.shape), shape_str(k.shape), shape_str(v.shape));
  MINIDL_CHECK(is_floating(q.dtype) && k.dtype == q.dtype && v.dtype == q.dtype, DTypeError,
               "[{}] expects q, k, v of one floating dtype, got {}, {}, {}", op,
               dtype_name(q.dtype), dtype_name(k.dtype), dtype_name(v.dtype));
}

}  // namespace

// ============================================================================ FusedAttention

std::string AttentionPrimitive::attrs() const { return fmt::format("scale={:g}, causal={}", scale_, causal_); }

std::vector<TensorMeta> FusedAttention::infer(const std::vector<TensorMeta>& in) const {
  MINIDL_CHECK(in.size() == 3, ValueError, "[fused_attention] expects 3 inputs, got {}", in.size());
  check_qkv("fused_attention", in[0], in[1], in[2]);
  const Device dev = common_device("fused_attention", in);
  return {{in[0].shape, in[0].dtype, dev},
          {without_last(in[0].shape), lse_dtype(in[0].dtype), dev}};
}

std::vector<Tensor> FusedAttention::eval_cpu(const std::vector<Tensor>& in) {
  const Tensor q = with_unit_stride_rows(in[0]), k = with_unit_stride_rows(in[1]),
               v = with_unit_stride_rows(in[2]);
  Tensor o = empty(q.shape(), q.dtype(), kCPU, "fused_attention");
  Tensor lse = empty(without_last(q.shape()), lse_dtype(q.dtype()), kCPU, "fused_attention");
  MINIDL_DISPATCH_FLOAT(q.dtype(), "fused_attention",
                        [&] { forward_cpu<scalar_t>(q, k, v, o, lse, scale_, causal_); });
  return {o, lse};
}

#if MINIDL_WITH_CUDA
std::vector<Tensor> FusedAttention::eval_cuda(const std::vector<Tensor>& in) {
  // The generated kernels cover 16- and 32-bit floats; float64 runs the composition.
  if (in[0].dtype() == kFloat64) return attention_composite(in[0], in[1], in[2], scale_, causal_);
  auto flat = [](const Tensor& t) { return t.reshape({-1, t.size(-2), t.size(-1)}); };
  cuda::AttentionOutputs r =
      cuda::fused_attention_forward(flat(in[0]), flat(in[1]), flat(in[2]), scale_, causal_);
  return {r.o.reshape(in[0].shape()), r.lse.reshape(without_last(in[0].shape()))};
}
#endif

std::vector<Tensor> FusedAttention::vjp(const std::vector<Tensor>& primals,
                                        const std::vector<Tensor>& cot,
                                        const std::vector<Tensor>& outputs,
                                        const std::vector<bool>& needs_grad) {
  // LSE is internal (fused_attention() and the matcher expose only O): its cotangent is 0.
  std::vector<Tensor> g =
      apply(std::make_shared<FusedAttentionBackward>(scale_, causal_),
            {primals[0], primals[1], primals[2], outputs[0], outputs[1], cot[0]});
  for (size_t i = 0; i < g.size(); ++i)
    if (!needs_grad[i]) g[i] = Tensor();
  return g;
}

// ============================================================================
// FusedAttentionBackward

std::vector<TensorMeta> FusedAttentionBackward::infer(const std::vector<TensorMeta>& in) const {
  MINIDL_CHECK(in.size() == 6, ValueError,
               "[fused_attention_backward] expects 6 inputs (q, k, v, o, lse, dO), got {}",
               in.size());
  const TensorMeta &q = in[0], &o = in[3], &lse = in[4], &dout = in[5];
  check_qkv("fused_attention_backward", q, in[1], in[2]);
  // o and dO are FusedAttention's O for q, k, v (q's shape and dtype), lse its LSE
  struct Expected {
    const char* name;
    const TensorMeta& got;
    Shape shape;
    DType dtype;
  };
  for (const Expected& e : {Expected{"o", o, q.shape, q.dtype}, Expected{"dO", dout, q.shape, q.dtype},
                            Expected{"lse", lse, without_last(q.shape), lse_dtype(q.dtype)}}) {
    MINIDL_CHECK(e.got.shape == e.shape, ShapeError, "[fused_attention_backward] {} must be {} for q {}, got {}",
                 e.name, shape_str(e.shape), shape_str(q.shape), shape_str(e.got.shape));
    MINIDL_CHECK(e.got.dtype == e.dtype, DTypeError, "[fused_attention_backward] {} must be {} for q of {}, got {}",
                 e.name, dtype_name(e.dtype), dtype_name(q.dtype), dtype_name(e.got.dtype));
  }
  const Device dev = common_device("fused_attention_backward", in);
  return {{q.shape, q.dtype, dev}, {in[1].shape, q.dtype, dev}, {in[2].shape, q.dtype, dev}};
}

std::vector<Tensor> FusedAttentionBackward::eval_cpu(const std::vector<Tensor>& in) {
  std::vector<Tensor> x;
  for (size_t i = 0; i < 6; ++i) x.push_back(i == 4 ? in[i] : with_unit_stride_rows(in[i]));
  Tensor dq = empty(x[0].shape(), x[0].dtype(), kCPU, "fused_attention_backward");
  Tensor dk = empty(x[1].shape(), x[1].dtype(), kCPU, "fused_attention_backward");
  Tensor dv = empty(x[2].shape(), x[2].dtype(), kCPU, "fused_attention_backward");
  MINIDL_DISPATCH_FLOAT(x[0].dtype(), "fused_attention_backward", [&] {
    backward_cpu<scalar_t>(x[0], x[1], x[2], x[3], x[4], x[5], dq, dk, dv, scale_, causal_);
  });
  return {dq, dk, dv};
}

#if MINIDL_WITH_CUDA
std::vector<Tensor> FusedAttentionBackward::eval_cuda(const std::vector<Tensor>& in) {
  if (in[0].dtype() == kFloat64)
    return attention_backward_composite(in[0], in[1], in[2], in[3], in[4], in[5], scale_, causal_);
  auto flat = [](const Tensor& t) { return t.reshape({-1, t.size(-2), t.size(-1)}); };
  const Tensor lse = in[4].reshape({-1, in[4].size(-1)});
  cuda::AttentionGrads g = cuda::fused_attention_backward(
      flat(in[0]), flat(in[1]), flat(in[2]), flat(in[3]), lse, flat(in[5]), scale_, causal_);
  return {g.dq.reshape(in[0].shape()), g.dk.reshape(in[1].shape()), g.dv.reshape(in[2].shape())};
}
#endif

// ============================================================================ ops and compositions

Tensor fused_attention(const Tensor& q, const Tensor& k, const Tensor& v, double scale,
                       bool causal) {
  return apply(std::make_shared<FusedAttention>(scale, causal), {q, k, v})[0];
}

namespace {

// Scores q kᵀ · scale with keys j > i set to -inf when causal.
Tensor masked_scores(const Tensor& q, const Tensor& k, double scale, bool causal) {
  Tensor s = matmul(q, k.transpose(-2, -1)) * scale;
  if (!causal) return s;
  Tensor mask = triu(ones({q.size(-2), k.size(-2)}, {.dtype = kBool, .device = q.device()}), 1);
  return masked_fill(s, mask, -std::numeric_limits<double>::infinity());
}

}  // namespace

std::vector<Tensor> attention_composite(const Tensor& q, const Tensor& k, const Tensor& v,
                                        double scale, bool causal) {
  Tensor s = masked_scores(q, k, scale, causal);
  Tensor m = max(s, {-1}, true);
  Tensor lse = m + log(sum(exp(s - m), {-1}, true));
  Tensor o = matmul(exp(s - lse), v);
  return {o, lse.squeeze(-1).to(lse_dtype(q.dtype()))};
}

std::vector<Tensor> attention_backward_composite(const Tensor& q, const Tensor& k, const Tensor& v,
                                                 const Tensor& o, const Tensor& lse,
                                                 const Tensor& dout, double scale, bool causal) {
  Tensor p = exp(masked_scores(q, k, scale, causal) - lse.to(q.dtype()).unsqueeze(-1));
  Tensor dv = matmul(p.transpose(-2, -1), dout);
  Tensor dp = matmul(dout, v.transpose(-2, -1));
  Tensor ds = p * (dp - sum(dout * o, {-1}, true));
  return {matmul(ds, k) * scale, matmul(ds.transpose(-2, -1), q) * scale, dv};
}

}  // namespace minidl
