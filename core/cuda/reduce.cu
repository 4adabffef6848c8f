// Reductions over any dims of a strided tensor: sum, mean, max, min and argmax, one kernel
// family. The kept dims index the outputs, the reduced dims the elements of each output. A block
// is a 2-D grid of threads: along one axis threads take different outputs, along the other they
// share one output's elements; the axis along which memory is contiguous is the one whose
// neighbouring threads read neighbouring elements (row mode: the reduced elements are
// contiguous, as in a sum over the last dim; column mode: the outputs are, as in a sum over
// dim 0). Shared memory combines a block's partial results; long reductions with few outputs
// also split each output's elements over several blocks (grid.y), whose partials a second
// kernel combines.
#include <algorithm>
#include <limits>

#include "core/cuda/common.cuh"
#include "core/cuda/kernels.h"

namespace minidl::cuda {

namespace {

// ============================================================================ reducers
// init() / accumulate(acc, value, index) / combine(acc, acc) / finish(acc) -> out_t.

/// sum (mean when `mean`): accumulates in Acc (float for 16-bit types, int64 for integers).
template <class C, class Acc, class Out>
struct SumReducer {
  using acc_t = Acc;
  using out_t = Out;
  Acc count;  // elements per output, for the mean
  bool mean;
  __device__ Acc init() const { return Acc(0); }
  __device__ Acc accumulate(Acc a, C v, int64_t) const { return a + static_cast<Acc>(v); }
  __device__ Acc combine(Acc a, Acc b) const { return a + b; }
  __device__ Out finish(Acc a) const { return narrow<Out>(mean ? a / count : a); }
};

/// max / min with NaN propagation (the functors of core/scalar_ops.h).
template <class C, class Out, bool kMax>
struct ExtremumReducer {
  using acc_t = C;
  using out_t = Out;
  __device__ C init() const {
    if constexpr (std::is_floating_point_v<C>) {
      return kMax ? C(-INFINITY) : C(INFINITY);
    } else {
      return kMax ? std::numeric_limits<C>::lowest() : std::numeric_limits<C>::max();
    }
  }
  __device__ C accumulate(C a, C v, int64_t) const { return combine(a, v); }
  __device__ C combine(C a, C b) const {
    return kMax ? sop::Maximum{}(a, b) : sop::Minimum{}(a, b);
  }
  __device__ Out finish(C a) const { return narrow<Out>(a); }
};

template <class C>
struct ArgAcc {
  C v;
  int64_t i;  // -1: no element yet
};

/// argmax: the first NaN if any, else the first maximum (as the CPU kernel).
template <class C>
struct ArgMaxReducer {
  using acc_t = ArgAcc<C>;
  using out_t = int64_t;
  __device__ acc_t init() const { return {C(0), -1}; }
  __device__ acc_t accumulate(acc_t a, C v, int64_t r) const { return combine(a, {v, r}); }
  __device__ acc_t combine(acc_t a, acc_t b) const {
    if (a.i < 0) return b;
    if (b.i < 0) return a;
    const bool a_nan = a.v != a.v, b_nan = b.v != b.v;
    if (a_nan != b_nan) return a_nan ? a : b;
    if (!a_nan && a.v != b.v) return a.v > b.v ? a : b;
    return a.i < b.i ? a : b;
  }
  __device__ int64_t finish(acc_t a) const { return a.i; }
};

// ============================================================================ kernels

// x: strided input; outer: offsets of the n_out outputs' first elements; inner: offsets of the
// n_in elements of an output. Block (blockDim.x, blockDim.y): in row mode x runs over elements
// and y over outputs, in column mode the reverse (both extents powers of two). Block (bx, by)
// reduces elements [by * chunk, (by + 1) * chunk) of its outputs (group bx, then every
// gridDim.x-th group) into out (one split) or partial[by][o]. Dynamic shared memory:
// blockDim.x * blockDim.y accumulators.
template <class In, class Red, class Index>
__global__ void __launch_bounds__(512)
    reduce_kernel(const In* x, OffsetCalc<1, Index> outer, OffsetCalc<1, Index> inner,
                  int64_t n_out, Index n_in, Index chunk, bool row_mode, Red red,
                  typename Red::out_t* out, typename Red::acc_t* partial) {
  using Acc = typename Red::acc_t;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  Acc* smem = reinterpret_cast<Acc*>(smem_raw);
  const unsigned tr = row_mode ? threadIdx.x : threadIdx.y, nr = row_mode ? blockDim.x : blockDim.y;
  const unsigned to = row_mode ? threadIdx.y : threadIdx.x, no = row_mode ? blockDim.y : blockDim.x;
  const unsigned slot = threadIdx.y * blockDim.x + threadIdx.x;
  const unsigned step = row_mode ? 1u : blockDim.x;  // slot distance between neighbours in r
  const Index r0 = static_cast<Index>(blockIdx.y) * chunk;
  const Index r1 = n_in - r0 < chunk ? n_in : r0 + chunk;
  // Every thread of the block runs the same iterations (the loop synchronizes the block).
  for (int64_t group = blockIdx.x; group * no < n_out; group += gridDim.x) {
    const int64_t o = group * no + to;
    Acc acc = red.init();
    if (o < n_out) {
      const int64_t base = outer.get(static_cast<Index>(o))[0];
      for (Index r = r0 + tr; r < r1; r += nr)
        acc = red.accumulate(acc, widen(x[base + inner.get(r)[0]]), static_cast<int64_t>(r));
    }
    smem[slot] = acc;
    __syncthreads();
    for (unsigned s = nr / 2; s > 0; s >>= 1) {
      if (tr < s) smem[slot] = red.combine(smem[slot], smem[slot + s * step]);
      __syncthreads();
    }
    if (tr == 0 && o < n_out) {
      if (gridDim.y == 1)
        out[o] = red.finish(smem[slot]);
      else
        partial[static_cast<int64_t>(blockIdx.y) * n_out + o] = smem[slot];
    }
  }
}

// partial: (splits, n_out) accumulators -> out (n_out).
template <class Red>
__global__ void reduce_partials_kernel(const typename Red::acc_t* partial, int64_t splits,
                                       int64_t n_out, Red red, typename Red::out_t* out) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t o = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; o < n_out;
       o += step) {
    typename Red::acc_t acc = partial[o];
    for (int64_t s = 1; s < splits; ++s) acc = red.combine(acc, partial[s * n_out + o]);
    out[o] = red.finish(acc);
  }
}

// ============================================================================ launchers

/// How a reduction is laid out on the grid.
struct ReducePlan {
  bool row_mode;
  int nr, no;  // threads per block along the elements / the outputs
  int64_t blocks_x, splits, chunk;
};

ReducePlan plan_reduce(int64_t n_out, int64_t n_in, bool inner_unit, bool outer_unit, int device) {
  ReducePlan p{};
  // Neighbouring threads should read neighbouring elements.
  p.row_mode = n_in > 1 && (inner_unit || !outer_unit);
  if (p.row_mode) {
    p.nr = std::clamp(next_pow2(n_in), 32, 512);  // at most 512 threads: see reduce_kernel
    p.no = std::max(1, 256 / p.nr);
  } else {
    p.no = 32;
    p.nr = std::clamp(next_pow2(n_in), 1, 16);
  }
  p.blocks_x = (n_out + p.no - 1) / p.no;
  // Few outputs with many elements each: split the elements over more blocks.
  p.splits = 1;
  const int64_t want = static_cast<int64_t>(sm_count(device)) * 4;
  if (p.blocks_x < want) {
    const int64_t by_work = std::max<int64_t>(1, n_in / (static_cast<int64_t>(p.nr) * 32));
    p.splits = std::min<int64_t>({(want + p.blocks_x - 1) / p.blocks_x, by_work, 1024});
  }
  p.chunk = std::max<int64_t>(1, (n_in + p.splits - 1) / p.splits);
  p.splits = std::max<int64_t>(1, (n_in + p.chunk - 1) / p.chunk);
  return p;
}

template <class Index, class HostT, class Red>
void launch_reduce(const char* op, const Tensor& x, const Shape& os, const Strides& ost,
                   const Shape& is, const Strides& ist, const Tensor& out, Red red) {
  using Acc = typename Red::acc_t;
  const int device = x.device().index;
  const int64_t n_out = numel(os), n_in = numel(is);
  const OffsetCalc<1, Index> outer = make_offset_calc<1, Index>(os, {ost}, op);
  const OffsetCalc<1, Index> inner =
      n_in == 0 ? OffsetCalc<1, Index>{} : make_offset_calc<1, Index>(is, {ist}, op);
  const bool inner_unit = inner.ndim == 0 || inner.strides[0][0] == 1;
  const bool outer_unit = outer.ndim > 0 && outer.strides[0][0] == 1;
  const ReducePlan p = plan_reduce(n_out, n_in, inner_unit, outer_unit, device);
  const dim3 block = p.row_mode ? dim3(p.nr, p.no) : dim3(p.no, p.nr);
  const dim3 grid(static_cast<unsigned>(std::min<int64_t>(p.blocks_x, INT32_MAX)),
                  static_cast<unsigned>(p.splits));
  const size_t smem = sizeof(Acc) * p.nr * p.no;
  cudaStream_t stream = current_stream(device);
  auto* o = static_cast<typename Red::out_t*>(out.data_ptr());
  Tensor ws;
  Acc* partial = nullptr;
  if (p.splits > 1) {
    ws = workspace(sizeof(Acc) * static_cast<size_t>(p.splits * n_out), x.device(), op);
    partial = static_cast<Acc*>(ws.data_ptr());
  }
  reduce_kernel<device_t<HostT>, Red, Index>
      <<<grid, block, smem, stream>>>(dptr<HostT>(x), outer, inner, n_out, static_cast<Index>(n_in),
                                      static_cast<Index>(p.chunk), p.row_mode, red, o, partial);
  MINIDL_CUDA_CHECK_LAUNCH(op);
  if (p.splits > 1) {
    reduce_partials_kernel<Red>
        <<<grid_blocks(n_out, 256, device), 256, 0, stream>>>(partial, p.splits, n_out, red, o);
    MINIDL_CUDA_CHECK_LAUNCH(op);
  }
}

/// Reduces `dims` of x into out (contiguous, one element per combination of the kept dims).
template <class HostT, class Red>
void run_reduce(const char* op, const Tensor& x, const std::vector<int64_t>& dims,
                const Tensor& out, Red red) {
  MINIDL_CHECK(x.device().is_cuda() && out.device() == x.device() && out.is_contiguous(),
               DeviceError, "[{}] CUDA reduction of {} into {}", op, describe(x), describe(out));
  Shape os, is;
  Strides ost, ist;
  for (int64_t d = 0; d < x.dim(); ++d) {
    const bool r = std::binary_search(dims.begin(), dims.end(), d);
    (r ? is : os).push_back(x.shape()[d]);
    (r ? ist : ost).push_back(x.strides()[d]);
  }
  const int64_t n_out = numel(os), n_in = numel(is);
  MINIDL_CHECK(n_out == out.numel(), ShapeError, "[{}] reducing {} over dims {} cannot give {}", op,
               shape_str(x.shape()), shape_str(dims), shape_str(out.shape()));
  if (n_out == 0) return;
  DeviceGuard guard(x.device().index);
  if (n_out <= INT32_MAX && n_in <= INT32_MAX)
    launch_reduce<uint32_t, HostT>(op, x, os, ost, is, ist, out, red);
  else
    launch_reduce<uint64_t, HostT>(op, x, os, ost, is, ist, out, red);
}

const char* reduce_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum:
      return "sum";
    case ReduceOp::Mean:
      return "mean";
    case ReduceOp::Max:
      return "max";
    case ReduceOp::Min:
      return "min";
  }
  return "reduce";
}

}  // namespace

Tensor reduce(ReduceOp op, const Tensor& x, const std::vector<int64_t>& dims, const TensorMeta& m) {
  const char* name = reduce_name(op);
  Tensor out = empty(m.shape, m.dtype, x.device(), name);
  int64_t count = 1;
  for (int64_t d : dims) count *= x.shape()[d];
  MINIDL_DISPATCH_ALL(x.dtype(), name, [&] {
    using C = compute_t<scalar_t>;
    using Out = device_t<scalar_t>;
    if constexpr (std::is_same_v<scalar_t, bool>) {
      if (op != ReduceOp::Sum) throw_unsupported_dtype(name, x.dtype());
      run_reduce<bool>(name, x, dims, out, SumReducer<bool, int64_t, int64_t>{1, false});
    } else {
      using Acc = sum_acc_t<scalar_t>;
      switch (op) {
        case ReduceOp::Sum:
          run_reduce<scalar_t>(name, x, dims, out, SumReducer<C, Acc, Out>{Acc(1), false});
          break;
        case ReduceOp::Mean:
          if constexpr (std::is_floating_point_v<C>)
            run_reduce<scalar_t>(name, x, dims, out,
                                 SumReducer<C, Acc, Out>{static_cast<Acc>(count), true});
          else
            throw_unsupported_dtype(name, x.dtype());
          break;
        case ReduceOp::Max:
          run_reduce<scalar_t>(name, x, dims, out, ExtremumReducer<C, Out, true>{});
          break;
        case ReduceOp::Min:
          run_reduce<scalar_t>(name, x, dims, out, ExtremumReducer<C, Out, false>{});
          break;
      }
    }
  });
  return out;
}

Tensor argmax(const Tensor& x, int64_t dim, const TensorMeta& m) {
  Tensor out = empty(m.shape, kInt64, x.device(), "argmax");
  if (x.dim() == 0) {
    fill(out, 0.0);
    return out;
  }
  MINIDL_DISPATCH_ALL(x.dtype(), "argmax", [&] {
    if constexpr (std::is_same_v<scalar_t, bool>)
      throw_unsupported_dtype("argmax", x.dtype());
    else
      run_reduce<scalar_t>("argmax", x, {dim}, out, ArgMaxReducer<compute_t<scalar_t>>{});
  });
  return out;
}

}  // namespace minidl::cuda
