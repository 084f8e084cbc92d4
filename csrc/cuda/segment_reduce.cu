// CUDA kernels of segment_reduce_csr. Forward: one block per (segment, 32-feature tile); the 8
// thread rows of a block stride over the segment's rows and are combined in shared memory.
// Backward: one thread per element of grad_src, finding its segment by binary search in ptr.
// Offsets are clamped to [0, N] inside the kernels, so a bad ptr cannot read out of bounds
// (the Python wrapper reports it with a clear error before launch).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "segment_reduce.h"

namespace geolayers {
namespace {

constexpr int kTileF = 32;
constexpr int kRowsPerBlock = 8;

__device__ __forceinline__ void clamp_range(const int64_t* ptr, int64_t s, int64_t N, int64_t& p0, int64_t& p1) {
  p0 = min(max(ptr[s], int64_t(0)), N);
  p1 = min(max(ptr[s + 1], p0), N);
}

template <typename scalar_t>
__global__ void sum_forward_kernel(const scalar_t* __restrict__ src, const int64_t* __restrict__ ptr,
                                   scalar_t* __restrict__ out, int64_t N, int64_t F, bool mean) {
  using acc_t = at::opmath_type<scalar_t>;
  __shared__ acc_t partial[kRowsPerBlock][kTileF];
  const int64_t s = blockIdx.x;
  const int64_t f = int64_t(blockIdx.y) * kTileF + threadIdx.x;
  int64_t p0, p1;
  clamp_range(ptr, s, N, p0, p1);
  acc_t acc = 0;
  if (f < F) {
    for (int64_t i = p0 + threadIdx.y; i < p1; i += kRowsPerBlock) acc += static_cast<acc_t>(src[i * F + f]);
  }
  partial[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && f < F) {
    for (int r = 1; r < kRowsPerBlock; ++r) acc += partial[r][threadIdx.x];
    // Multiply by the reciprocal, as the CPU kernel does, so both round the same way.
    if (mean && p1 > p0) acc *= acc_t(1) / static_cast<acc_t>(p1 - p0);
    out[s * F + f] = static_cast<scalar_t>(acc);
  }
}

// (value, index) pairs combined so that the result equals the sequential CPU scan: the first
// NaN wins; otherwise the strictly better value wins, ties going to the lower row index.
template <typename scalar_t, bool IsMax>
__device__ __forceinline__ bool prefer(scalar_t v, int64_t i, scalar_t best, int64_t bi) {
  if (bi < 0) return i >= 0;
  if (i < 0) return false;
  const bool v_nan = v != v, b_nan = best != best;
  if (v_nan || b_nan) return v_nan && (!b_nan || i < bi);
  if (v == best) return i < bi;
  return IsMax ? (v > best) : (v < best);
}

template <typename scalar_t, bool IsMax>
__global__ void arg_forward_kernel(const scalar_t* __restrict__ src, const int64_t* __restrict__ ptr,
                                   scalar_t* __restrict__ out, int64_t* __restrict__ arg, int64_t N, int64_t F) {
  __shared__ scalar_t vals[kRowsPerBlock][kTileF];
  __shared__ int64_t idxs[kRowsPerBlock][kTileF];
  const int64_t s = blockIdx.x;
  const int64_t f = int64_t(blockIdx.y) * kTileF + threadIdx.x;
  int64_t p0, p1;
  clamp_range(ptr, s, N, p0, p1);
  scalar_t best = scalar_t(0);
  int64_t bi = -1;
  if (f < F) {
    for (int64_t i = p0 + threadIdx.y; i < p1; i += kRowsPerBlock) {
      const scalar_t v = src[i * F + f];
      if (prefer<scalar_t, IsMax>(v, i, best, bi)) {
        best = v;
        bi = i;
      }
    }
  }
  vals[threadIdx.y][threadIdx.x] = best;
  idxs[threadIdx.y][threadIdx.x] = bi;
  __syncthreads();
  if (threadIdx.y == 0 && f < F) {
    for (int r = 1; r < kRowsPerBlock; ++r) {
      if (prefer<scalar_t, IsMax>(vals[r][threadIdx.x], idxs[r][threadIdx.x], best, bi)) {
        best = vals[r][threadIdx.x];
        bi = idxs[r][threadIdx.x];
      }
    }
    out[s * F + f] = bi < 0 ? scalar_t(0) : best;
    arg[s * F + f] = bi;
  }
}

__device__ __forceinline__ int64_t segment_of_row(const int64_t* ptr, int64_t S, int64_t row) {
  // Last s with ptr[s] <= row, i.e. upper_bound(ptr, row) - 1, restricted to [0, S - 1].
  int64_t lo = 0, hi = S;
  while (hi - lo > 1) {
    const int64_t mid = (lo + hi) / 2;
    if (ptr[mid] <= row) lo = mid; else hi = mid;
  }
  return lo;
}

template <typename scalar_t>
__global__ void backward_kernel(const scalar_t* __restrict__ grad, const int64_t* __restrict__ ptr,
                                const int64_t* __restrict__ arg, scalar_t* __restrict__ grad_src, int64_t N,
                                int64_t S, int64_t F, int mode) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t total = N * F;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += int64_t(blockDim.x) * gridDim.x) {
    const int64_t i = e / F, f = e - i * F;
    const int64_t s = segment_of_row(ptr, S, i);
    int64_t p0, p1;
    clamp_range(ptr, s, N, p0, p1);
    scalar_t value = scalar_t(0);
    if (i >= p0 && i < p1) {
      if (mode == 0) {
        value = grad[s * F + f];
      } else if (mode == 1) {
        value = static_cast<scalar_t>(static_cast<acc_t>(grad[s * F + f]) * (acc_t(1) / static_cast<acc_t>(p1 - p0)));
      } else {
        value = arg[s * F + f] == i ? grad[s * F + f] : scalar_t(0);
      }
    }
    grad_src[e] = value;
  }
}

std::tuple<at::Tensor, at::Tensor> segment_reduce_csr_cuda(const at::Tensor& src_in, const at::Tensor& ptr_in,
                                                           c10::string_view reduce_name) {
  check_segment_inputs(src_in, ptr_in);
  const SegmentReduce reduce = parse_segment_reduce(std::string(reduce_name));
  const c10::cuda::CUDAGuard guard(src_in.device());
  const at::Tensor src = src_in.contiguous();
  const at::Tensor ptr = ptr_in.contiguous();
  const int64_t N = src.size(0), F = src.size(1), S = ptr.numel() - 1;
  at::Tensor out = at::empty({S, F}, src.options());
  at::Tensor arg = has_arg(reduce) ? at::empty({S, F}, ptr.options()) : at::empty({0}, ptr.options());
  if (S == 0 || F == 0) return {out, arg};
  TORCH_CHECK_VALUE(S < (int64_t(1) << 31), "segment_reduce_csr: at most 2^31 - 1 segments on CUDA");
  const dim3 grid(static_cast<unsigned>(S), static_cast<unsigned>((F + kTileF - 1) / kTileF));
  const dim3 block(kTileF, kRowsPerBlock);
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, src.scalar_type(), "segment_reduce_csr_cuda", [&] {
    const scalar_t* x = src.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    const int64_t* p = ptr.data_ptr<int64_t>();
    switch (reduce) {
      case SegmentReduce::Sum:
      case SegmentReduce::Mean:
        sum_forward_kernel<scalar_t><<<grid, block, 0, stream>>>(x, p, o, N, F, reduce == SegmentReduce::Mean);
        break;
      case SegmentReduce::Max:
        arg_forward_kernel<scalar_t, true><<<grid, block, 0, stream>>>(x, p, o, arg.data_ptr<int64_t>(), N, F);
        break;
      case SegmentReduce::Min:
        arg_forward_kernel<scalar_t, false><<<grid, block, 0, stream>>>(x, p, o, arg.data_ptr<int64_t>(), N, F);
        break;
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {out, arg};
}

at::Tensor segment_reduce_csr_backward_cuda(const at::Tensor& grad_in, const at::Tensor& ptr_in,
                                            const at::Tensor& arg_in, int64_t num_rows,
                                            c10::string_view reduce_name) {
  const SegmentReduce reduce = parse_segment_reduce(std::string(reduce_name));
  TORCH_CHECK_VALUE(grad_in.dim() == 2, "segment_reduce_csr_backward: grad_out must be 2-D (S, F)");
  TORCH_CHECK_VALUE(ptr_in.dim() == 1 && ptr_in.size(0) >= 1 && ptr_in.scalar_type() == at::kLong,
                    "segment_reduce_csr_backward: ptr must be a non-empty 1-D int64 tensor");
  TORCH_CHECK_TYPE(at::isFloatingType(grad_in.scalar_type()),
                   "segment_reduce_csr_backward: grad_out must be floating point");
  const c10::cuda::CUDAGuard guard(grad_in.device());
  const at::Tensor grad = grad_in.contiguous();
  const at::Tensor ptr = ptr_in.contiguous();
  const int64_t S = ptr.numel() - 1, F = grad.size(1);
  TORCH_CHECK_VALUE(grad.size(0) == S, "segment_reduce_csr_backward: grad_out must have ", S, " rows, got ",
                    grad.size(0));
  at::Tensor arg;
  if (has_arg(reduce)) {
    TORCH_CHECK_VALUE(arg_in.sizes() == grad.sizes() && arg_in.scalar_type() == at::kLong,
                      "segment_reduce_csr_backward: arg must be int64 of shape ", grad.sizes());
    arg = arg_in.contiguous();
  }
  at::Tensor grad_src = at::empty({num_rows, F}, grad.options());
  if (num_rows == 0 || F == 0) return grad_src;
  if (S == 0) return grad_src.zero_();
  const int mode = reduce == SegmentReduce::Sum ? 0 : reduce == SegmentReduce::Mean ? 1 : 2;
  const int threads = 256;
  const int64_t blocks = std::min<int64_t>((num_rows * F + threads - 1) / threads, int64_t(1) << 20);
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "segment_reduce_csr_backward_cuda",
                                  [&] {
    backward_kernel<scalar_t><<<static_cast<unsigned>(blocks), threads, 0, stream>>>(
        grad.data_ptr<scalar_t>(), ptr.data_ptr<int64_t>(), mode == 2 ? arg.data_ptr<int64_t>() : nullptr,
        grad_src.data_ptr<scalar_t>(), num_rows, S, F, mode);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return grad_src;
}

}  // namespace

TORCH_LIBRARY_IMPL(geolayers, CUDA, m) {
  m.impl("segment_reduce_csr", &segment_reduce_csr_cuda);
  m.impl("segment_reduce_csr_backward", &segment_reduce_csr_backward_cuda);
}

}  // namespace geolayers
