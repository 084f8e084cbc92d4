// CUDA twin of the random walks (rules and random numbers in random_walk.h): one thread per
// walk, the same Philox counters as the CPU kernel, so both devices return the same walks.
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>
#include <torch/types.h>

#include <cmath>

#include "checks.h"
#include "random_walk.h"

namespace geolayers {
namespace {

constexpr int kThreads = 128;

// Row-local inclusive prefix sums, one thread per row: the same sums, in the same order, as the
// CPU kernel, so a weighted draw picks the same edge on both devices.
__global__ void row_prefix_sums_kernel(const int64_t* __restrict__ rowptr, const double* __restrict__ w,
                                       double* __restrict__ cum, int64_t n) {
  const int64_t v = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (v >= n) return;
  double acc = 0.0;
  for (int64_t e = rowptr[v]; e < rowptr[v + 1]; ++e) cum[e] = (acc += w[e]);
}

__global__ void random_walk_kernel(WalkGraph g, WalkBias bias, const int64_t* __restrict__ start,
                                   int64_t* __restrict__ out, int64_t S, int64_t L, uint64_t seed, int64_t offset) {
  const int64_t s = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (s >= S) return;
  int64_t* row = out + s * (L + 1);
  int64_t prev = -1, cur = start[s];
  row[0] = cur;
  for (int64_t step = 1; step <= L; ++step) {
    const int64_t next =
        cur < 0 ? -1 : walk_step(g, bias, prev, cur, seed, static_cast<uint64_t>(offset + s), static_cast<uint64_t>(step));
    prev = cur;
    cur = next;
    row[step] = next;
  }
}

at::Tensor random_walk_cuda(const at::Tensor& rowptr, const at::Tensor& col, const c10::optional<at::Tensor>& weight,
                            const at::Tensor& start, int64_t walk_length, double p, double q, int64_t seed,
                            int64_t offset) {
  const c10::cuda::CUDAGuard guard(rowptr.device());
  const at::Tensor weight_in = check_random_walk_args(rowptr, col, weight, start, walk_length, p, q);
  const int64_t n = rowptr.numel() - 1;
  auto stream = at::cuda::getCurrentCUDAStream();
  at::Tensor cum;
  if (weight_in.defined()) {
    at::Tensor w = weight_in.to(at::kDouble).contiguous();
    cum = at::empty_like(w);
    if (n > 0) {
      row_prefix_sums_kernel<<<(n + kThreads - 1) / kThreads, kThreads, 0, stream>>>(
          rowptr.data_ptr<int64_t>(), w.data_ptr<double>(), cum.data_ptr<double>(), n);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  }
  const WalkGraph g{rowptr.data_ptr<int64_t>(), col.data_ptr<int64_t>(), cum.defined() ? cum.data_ptr<double>() : nullptr};
  const int64_t S = start.numel();
  at::Tensor out = at::empty({S, walk_length + 1}, rowptr.options());
  if (S > 0) {
    random_walk_kernel<<<(S + kThreads - 1) / kThreads, kThreads, 0, stream>>>(
        g, make_walk_bias(p, q), start.data_ptr<int64_t>(), out.data_ptr<int64_t>(), S, walk_length,
        static_cast<uint64_t>(seed), offset);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(geolayers, CUDA, m) { m.impl("random_walk", &random_walk_cuda); }

}  // namespace geolayers
