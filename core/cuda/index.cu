// Indexing: embedding (a gather of rows), its gradient (a scatter-add of rows with atomicAdd,
// accumulated in float32 for 16-bit types), and one_hot. Ids are checked on the device: a bad id
// puts its position into a flag (the smallest position wins), which the launcher reads back
// (synchronizing) to raise the CPU's IndexError.
#include "core/cuda/common.cuh"
#include "core/cuda/kernels.h"
#include "core/primitives.h"

namespace minidl::cuda {

namespace {

constexpr unsigned long long kNoBadId = ~0ull;

// ============================================================================ kernels

// Threads run over (n, width) with width = max(d, 1), so that ids are checked even where d is 0.

// w: (num_rows, d) contiguous rows of raw bits; ids: (n); out: (n, d).
template <class Bits, class Id>
__global__ void embedding_kernel(const Bits* __restrict__ w, const Id* __restrict__ ids,
                                 Bits* __restrict__ out, int64_t n, int64_t d, int64_t num_rows,
                                 unsigned long long* bad) {
  const int64_t width = d > 0 ? d : 1, total = n * width,
                step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += step) {
    const int64_t row = i / width, col = i - row * width;
    const int64_t id = static_cast<int64_t>(ids[row]);
    if (id < 0 || id >= num_rows) {
      if (col == 0) atomicMin(bad, static_cast<unsigned long long>(row));
      if (col < d) out[row * d + col] = Bits(0);
    } else if (col < d) {
      out[row * d + col] = w[id * d + col];
    }
  }
}

// g: (n, d) contiguous; ids: (n); acc: (num_rows, d) zeros on entry.
template <class T, class Acc, class Id>
__global__ void embedding_backward_kernel(const T* __restrict__ g, const Id* __restrict__ ids,
                                          Acc* acc, int64_t n, int64_t d, int64_t num_rows,
                                          unsigned long long* bad) {
  const int64_t width = d > 0 ? d : 1, total = n * width,
                step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += step) {
    const int64_t row = i / width, col = i - row * width;
    const int64_t id = static_cast<int64_t>(ids[row]);
    if (id < 0 || id >= num_rows) {
      if (col == 0) atomicMin(bad, static_cast<unsigned long long>(row));
    } else if (col < d) {
      atomicAdd(acc + id * d + col, static_cast<Acc>(widen(g[row * d + col])));
    }
  }
}

// ids: (n); out: (n, c) zeros on entry.
template <class T, class Id>
__global__ void one_hot_kernel(const Id* __restrict__ ids, T* __restrict__ out, int64_t n,
                               int64_t c, compute_t<T> one, unsigned long long* bad) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step) {
    const int64_t id = static_cast<int64_t>(ids[i]);
    if (id < 0 || id >= c)
      atomicMin(bad, static_cast<unsigned long long>(i));
    else
      out[i * c + id] = narrow<T>(one);
  }
}

// ============================================================================ launchers

/// The flag a kernel sets to the position of the first bad id (kNoBadId: none).
struct BadIdFlag {
  Tensor buffer;
  unsigned long long* ptr;

  BadIdFlag(Device dev, const char* op)
      : buffer(workspace(sizeof(unsigned long long), dev, op)),
        ptr(static_cast<unsigned long long*>(buffer.data_ptr())) {
    MINIDL_CUDA_CHECK(
        cudaMemsetAsync(ptr, 0xff, sizeof(unsigned long long), current_stream(dev.index)), op);
  }

  /// Reads the flag back (synchronizing) and throws the CPU's IndexError for a bad id.
  void check(const Tensor& ids, int64_t size, const char* op, const std::string& range) const {
    unsigned long long pos = 0;
    memcpy(&pos, kCPU, ptr, buffer.device(), sizeof(pos));
    if (pos == kNoBadId) return;
    const int64_t at = static_cast<int64_t>(pos);
    const int64_t id = ids.reshape({-1}).slice(0, at, at + 1).item<int64_t>();
    throw_id_out_of_range(op, id, at, ids.shape(), range, size);
  }
};

void check_ids(const Tensor& ids, const Device& dev, const char* op) {
  MINIDL_CHECK(is_integral(ids.dtype()), DTypeError, "[{}] ids must be int32 or int64, got {}", op,
               describe(ids));
  MINIDL_CHECK(ids.device() == dev || (ids.device().is_cpu() && ids.dim() == 0), DeviceError,
               "[{}] ids {} are not on {}", op, describe(ids), dev.str());
}

}  // namespace

Tensor embedding(const Tensor& weight, const Tensor& ids_in) {
  MINIDL_CHECK(weight.device().is_cuda() && weight.dim() == 2, DeviceError,
               "[embedding] expects a 2-D CUDA weight, got {}", describe(weight));
  check_ids(ids_in, weight.device(), "embedding");
  const Device dev = weight.device();
  const Tensor w = weight.contiguous();
  const Tensor ids = ids_in.to(dev).contiguous();
  const int64_t num_rows = w.size(0), d = w.size(1), n = ids.numel();
  Shape s = ids.shape();
  s.push_back(d);
  Tensor out = empty(s, w.dtype(), dev, "embedding");
  if (n == 0) return out;
  DeviceGuard guard(dev.index);
  BadIdFlag flag(dev, "embedding");
  const unsigned blocks = grid_blocks(n * std::max<int64_t>(d, 1), 256, dev.index);
  cudaStream_t stream = current_stream(dev.index);
  auto run = [&](auto bits) {
    using Bits = decltype(bits);
    const Bits* pw = static_cast<const Bits*>(w.data_ptr());
    Bits* po = static_cast<Bits*>(out.data_ptr());
    if (ids.dtype() == kInt64)
      embedding_kernel<Bits, int64_t><<<blocks, 256, 0, stream>>>(
          pw, static_cast<const int64_t*>(ids.data_ptr()), po, n, d, num_rows, flag.ptr);
    else
      embedding_kernel<Bits, int32_t><<<blocks, 256, 0, stream>>>(
          pw, static_cast<const int32_t*>(ids.data_ptr()), po, n, d, num_rows, flag.ptr);
  };
  switch (itemsize(w.dtype())) {
    case 1:
      run(uint8_t{});
      break;
    case 2:
      run(uint16_t{});
      break;
    case 4:
      run(uint32_t{});
      break;
    case 8:
      run(uint64_t{});
      break;
    default:
      throw_unsupported_dtype("embedding", w.dtype());
  }
  MINIDL_CUDA_CHECK_LAUNCH("embedding");
  flag.check(ids, num_rows, "embedding", "a weight of shape " + shape_str(w.shape()));
  return out;
}

Tensor embedding_backward(const Tensor& g_in, const Tensor& ids_in, int64_t num_rows) {
  MINIDL_CHECK(g_in.device().is_cuda() && g_in.dim() >= 1, DeviceError,
               "[embedding_backward] expects a CUDA gradient, got {}", describe(g_in));
  check_ids(ids_in, g_in.device(), "embedding_backward");
  const Device dev = g_in.device();
  const Tensor g = g_in.contiguous();
  const Tensor ids = ids_in.to(dev).contiguous();
  const int64_t d = g.shape().back(), n = ids.numel();
  MINIDL_CHECK(n * d == g.numel() && num_rows >= 0, ShapeError,
               "[embedding_backward] gradient {} does not match ids {}", shape_str(g.shape()),
               shape_str(ids.shape()));
  DeviceGuard guard(dev.index);
  cudaStream_t stream = current_stream(dev.index);
  BadIdFlag flag(dev, "embedding_backward");
  const unsigned blocks =
      grid_blocks(std::max<int64_t>(n * std::max<int64_t>(d, 1), 1), 256, dev.index);
  Tensor out;
  MINIDL_DISPATCH_FLOAT(g.dtype(), "embedding_backward", [&] {
    using T = device_t<scalar_t>;
    // float32 and float64 accumulate in place; 16-bit types in a float32 buffer.
    using Acc = std::conditional_t<std::is_same_v<T, double>, double, float>;
    Tensor acc = empty({num_rows, d}, std::is_same_v<T, Acc> ? g.dtype() : kFloat32, dev,
                       "embedding_backward");
    fill(acc, 0.0);
    if (ids.dtype() == kInt64)
      embedding_backward_kernel<T, Acc, int64_t><<<blocks, 256, 0, stream>>>(
          dptr<scalar_t>(g), static_cast<const int64_t*>(ids.data_ptr()),
          static_cast<Acc*>(acc.data_ptr()), n, d, num_rows, flag.ptr);
    else
      embedding_backward_kernel<T, Acc, int32_t><<<blocks, 256, 0, stream>>>(
          dptr<scalar_t>(g), static_cast<const int32_t*>(ids.data_ptr()),
          static_cast<Acc*>(acc.data_ptr()), n, d, num_rows, flag.ptr);
    MINIDL_CUDA_CHECK_LAUNCH("embedding_backward");
    if (acc.dtype() == g.dtype()) {
      out = acc;
    } else {
      out = empty({num_rows, d}, g.dtype(), dev, "embedding_backward");
      convert(out, acc);
    }
  });
  flag.check(ids, num_rows, "embedding_backward", fmt::format("a weight of {} rows", num_rows));
  return out;
}

Tensor one_hot(const Tensor& ids_in, int64_t num_classes, DType dtype) {
  MINIDL_CHECK(ids_in.device().is_cuda(), DeviceError, "[one_hot] expects CUDA ids, got {}",
               describe(ids_in));
  check_ids(ids_in, ids_in.device(), "one_hot");
  const Device dev = ids_in.device();
  const Tensor ids = ids_in.contiguous();
  const int64_t n = ids.numel();
  Shape s = ids.shape();
  s.push_back(num_classes);
  Tensor out = empty(s, dtype, dev, "one_hot");
  fill(out, 0.0);
  if (n == 0) return out;
  DeviceGuard guard(dev.index);
  cudaStream_t stream = current_stream(dev.index);
  BadIdFlag flag(dev, "one_hot");
  const unsigned blocks = grid_blocks(n, 256, dev.index);
  MINIDL_DISPATCH_ALL(dtype, "one_hot", [&] {
    using T = device_t<scalar_t>;
    const compute_t<scalar_t> one(1);
    if (ids.dtype() == kInt64)
      one_hot_kernel<T, int64_t>
          <<<blocks, 256, 0, stream>>>(static_cast<const int64_t*>(ids.data_ptr()),
                                       dptr<scalar_t>(out), n, num_classes, one, flag.ptr);
    else
      one_hot_kernel<T, int32_t>
          <<<blocks, 256, 0, stream>>>(static_cast<const int32_t*>(ids.data_ptr()),
                                       dptr<scalar_t>(out), n, num_classes, one, flag.ptr);
  });
  MINIDL_CUDA_CHECK_LAUNCH("one_hot");
  flag.check(ids, num_classes, "one_hot", fmt::format("{} classes", num_classes));
  return out;
}

}  // namespace minidl::cuda
