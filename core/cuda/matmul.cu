// matmul through cuBLAS (cublasGemmStridedBatchedEx; its _64 form past 32-bit sizes). minidl
// is row-major, cuBLAS column-major: C = A B (row-major) is computed as Cᵀ = Bᵀ Aᵀ, and a
// row-major operand is a column-major one transposed, so row-major operands go in as they are
// (op N) and column-major ones (transposed views, e.g. k.transpose(-2, -1)) with op T: no
// copies. Batch dims go in as one batch stride per operand (0 for a broadcast operand); a
// broadcast weight against a batch of row-major activations folds the batch into M (one large
// GEMM); batch dims that no single stride describes are looped over (a few) or copied (many).
// float32 computes in exact float32 (CUBLAS_COMPUTE_32F) unless set_allow_tf32(true);
// float16/bfloat16 accumulate in float32; float64 in float64.
#include <algorithm>
#include <optional>

#include "core/cuda/common.cuh"
#include "core/cuda/kernels.h"
#include "runtime/cublas.h"

namespace minidl::cuda {

namespace {

/// A (rows, cols) matrix with element strides (sr, sc), as cuBLAS reads it.
struct MatrixLayout {
  bool col_major;  // true: stored column-major (op T for the row-major product)
  int64_t ld;      // leading dimension
};

std::optional<MatrixLayout> matrix_layout(int64_t rows, int64_t cols, int64_t sr, int64_t sc) {
  // Row-major: a row's elements are adjacent and rows are at least a row apart.
  if ((sc == 1 || cols == 1) && (rows == 1 || sr >= std::max<int64_t>(1, cols)))
    return MatrixLayout{false, rows == 1 ? std::max<int64_t>(1, cols) : sr};
  // Column-major.
  if ((sr == 1 || rows == 1) && (cols == 1 || sc >= std::max<int64_t>(1, rows)))
    return MatrixLayout{true, cols == 1 ? std::max<int64_t>(1, rows) : sc};
  return std::nullopt;
}

/// The strides of dims [from, nb) of a batch, as one stride, if they have one.
std::optional<int64_t> single_stride(const Shape& batch, const Strides& st, size_t from) {
  std::optional<int64_t> stride;
  int64_t inner_size = 1;  // elements of the dims after the current one
  for (size_t d = batch.size(); d-- > from;) {
    if (batch[d] == 1) continue;
    if (!stride) {
      stride = st[d];
    } else if (st[d] != *stride * inner_size) {
      return std::nullopt;
    }
    inner_size *= batch[d];
  }
  return stride.value_or(0);
}

struct Operand {
  Tensor t;    // the operand, broadcast to (batch..., rows, cols)
  Strides st;  // its element strides
  MatrixLayout layout;
};

/// Expands x to (batch..., rows, cols); copies it (contiguous) when cuBLAS cannot read its
/// matrices as they are.
Operand prepare(const Tensor& x, const Shape& batch) {
  Shape full = batch;
  full.push_back(x.size(-2));
  full.push_back(x.size(-1));
  Tensor t = x;
  Strides st = broadcast_strides(t, full);
  const size_t nb = batch.size();
  auto layout = matrix_layout(full[nb], full[nb + 1], st[nb], st[nb + 1]);
  if (!layout) {
    t = x.contiguous();
    st = broadcast_strides(t, full);
    layout = matrix_layout(full[nb], full[nb + 1], st[nb], st[nb + 1]);
  }
  return {t, st, *layout};
}

/// x broadcast to (batch..., rows, cols) as a contiguous copy.
Tensor materialize(const Tensor& x, const Shape& batch) {
  Shape full = batch;
  full.push_back(x.size(-2));
  full.push_back(x.size(-1));
  return x.expand(full).contiguous();
}

cudaDataType_t cuda_type(DType t) {
  switch (t) {
    case kFloat32:
      return CUDA_R_32F;
    case kFloat64:
      return CUDA_R_64F;
    case kFloat16:
      return CUDA_R_16F;
    case kBFloat16:
      return CUDA_R_16BF;
    default:
      throw_unsupported_dtype("matmul", t);
  }
}

/// One strided-batched GEMM: c (count x (m_rows, n)) = a (count x (m_rows, k)) b (count x (k, n)).
struct Gemm {
  const char* a;
  const char* b;
  char* c;
  int64_t m_rows, n, k, count;
  int64_t stride_a, stride_b, stride_c;  // elements
};

void run_gemm(const Gemm& g, const Operand& a, const Operand& b, DType dtype, int device) {
  const cudaDataType_t type = cuda_type(dtype);
  cublasComputeType_t compute = CUBLAS_COMPUTE_32F;
  if (dtype == kFloat64) compute = CUBLAS_COMPUTE_64F;
  if (dtype == kFloat32 && allow_tf32()) compute = CUBLAS_COMPUTE_32F_FAST_TF32;
  const float one_f = 1.0f, zero_f = 0.0f;
  const double one_d = 1.0, zero_d = 0.0;
  const void* alpha =
      dtype == kFloat64 ? static_cast<const void*>(&one_d) : static_cast<const void*>(&one_f);
  const void* beta =
      dtype == kFloat64 ? static_cast<const void*>(&zero_d) : static_cast<const void*>(&zero_f);
  // Cᵀ (n x m_rows, column-major, ld n) = Bᵀ (n x k) Aᵀ (k x m_rows).
  const cublasOperation_t op_b = b.layout.col_major ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_a = a.layout.col_major ? CUBLAS_OP_T : CUBLAS_OP_N;
  Cublas blas(device);
  const int64_t widest = std::max({g.n, g.m_rows, g.k, a.layout.ld, b.layout.ld, g.count});
  if (widest <= INT32_MAX) {
    auto i = [](int64_t v) { return static_cast<int>(v); };
    MINIDL_CUBLAS_CHECK(
        cublasGemmStridedBatchedEx(blas.handle(), op_b, op_a, i(g.n), i(g.m_rows), i(g.k), alpha,
                                   g.b, type, i(b.layout.ld), g.stride_b, g.a, type, i(a.layout.ld),
                                   g.stride_a, beta, g.c, type, i(g.n), g.stride_c, i(g.count),
                                   compute, CUBLAS_GEMM_DEFAULT),
        "matmul");
  } else {
    MINIDL_CUBLAS_CHECK(cublasGemmStridedBatchedEx_64(
                            blas.handle(), op_b, op_a, g.n, g.m_rows, g.k, alpha, g.b, type,
                            b.layout.ld, g.stride_b, g.a, type, a.layout.ld, g.stride_a, beta, g.c,
                            type, g.n, g.stride_c, g.count, compute, CUBLAS_GEMM_DEFAULT),
                        "matmul");
  }
}

}  // namespace

Tensor matmul(const Tensor& a_in, const Tensor& b_in, const TensorMeta& m) {
  MINIDL_CHECK(a_in.device().is_cuda() && b_in.device() == a_in.device() &&
                   a_in.dtype() == b_in.dtype() && a_in.dim() >= 2 && b_in.dim() >= 2,
               DeviceError, "[matmul] expects CUDA operands of one device and dtype, got {} and {}",
               describe(a_in), describe(b_in));
  const Device dev = a_in.device();
  Tensor out = empty(m.shape, m.dtype, dev, "matmul");
  const size_t nb = m.shape.size() - 2;
  const Shape batch(m.shape.begin(), m.shape.begin() + static_cast<int64_t>(nb));
  const int64_t M = m.shape[nb], N = m.shape[nb + 1], K = a_in.size(-1);
  if (out.numel() == 0) return out;
  if (K == 0) {
    fill(out, 0.0);
    return out;
  }
  DeviceGuard guard(dev.index);
  Operand a = prepare(a_in, batch), b = prepare(b_in, batch);
  const int64_t isz = static_cast<int64_t>(itemsize(m.dtype));
  char* pc = static_cast<char*>(out.data_ptr());
  const int64_t nbatch = numel(batch);

  // A weight broadcast over the batch, times row-major activations whose rows continue evenly
  // from one batch entry to the next: one GEMM of nbatch * M rows.
  const std::optional<int64_t> a_all = single_stride(batch, a.st, 0),
                               b_all = single_stride(batch, b.st, 0);
  if (nbatch > 1 && b_all && *b_all == 0 && a_all && !a.layout.col_major &&
      *a_all == M * a.layout.ld) {
    run_gemm({static_cast<const char*>(a.t.data_ptr()), static_cast<const char*>(b.t.data_ptr()),
              pc, nbatch * M, N, K, 1, 0, 0, 0},
             a, b, m.dtype, dev.index);
    return out;
  }

  // The longest run of trailing batch dims with one stride per operand goes to one call; the
  // leading dims are looped over, or, when that would take many calls, copied away.
  auto split = [&](const Operand& x, const Operand& y) {
    size_t from = 0;
    while (from < nb && !(single_stride(batch, x.st, from) && single_stride(batch, y.st, from)))
      ++from;
    return from;
  };
  size_t from = split(a, b);
  int64_t loops = 1;
  for (size_t d = 0; d < from; ++d) loops *= batch[d];
  if (loops > 64) {
    if (!a_all) a = prepare(materialize(a_in, batch), batch);
    if (!b_all) b = prepare(materialize(b_in, batch), batch);
    from = 0;
    loops = 1;
  }
  int64_t count = 1;
  for (size_t d = from; d < nb; ++d) count *= batch[d];
  const int64_t stride_a = *single_stride(batch, a.st, from),
                stride_b = *single_stride(batch, b.st, from);
  for (int64_t l = 0; l < loops; ++l) {
    // Offsets of loop iteration l over dims [0, from).
    int64_t off_a = 0, off_b = 0, rem = l;
    for (size_t d = from; d-- > 0;) {
      const int64_t i = rem % batch[d];
      rem /= batch[d];
      off_a += i * a.st[d];
      off_b += i * b.st[d];
    }
    run_gemm({static_cast<const char*>(a.t.data_ptr()) + off_a * isz,
              static_cast<const char*>(b.t.data_ptr()) + off_b * isz, pc + l * count * M * N * isz,
              M, N, K, count, stride_a, stride_b, M * N},
             a, b, m.dtype, dev.index);
  }
  return out;
}

}  // namespace minidl::cuda
