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
  TORCH_CHECK(rowptr.dtype() == at::kLong && col.dtype() == at::kLong && start.dtype() == at::kLong,
              "random_walk: rowptr, col and start must be int64");
  TORCH_CHECK(rowptr.dim() == 1 && rowptr.numel() >= 1 && col.dim() == 1 && start.dim() == 1,
              "random_walk: rowptr (N + 1,), col (E,) and start (S,) must be 1-D");
  TORCH_CHECK(rowptr.is_contiguous() && col.is_contiguous() && start.is_contiguous(),
              "random_walk: rowptr, col and start must be contiguous");
  TORCH_CHECK(col.device() == rowptr.device() && start.device() == rowptr.device(),
              "random_walk: rowptr, col and start must be on one device");
  TORCH_CHECK(walk_length >= 1, "random_walk: walk_length must be >= 1, got ", walk_length);
  TORCH_CHECK(p > 0 && q > 0 && p < INFINITY && q < INFINITY, "random_walk: p and q must be positive and finite");
  const c10::cuda::CUDAGuard guard(rowptr.device());
  const int64_t n = rowptr.numel() - 1;
  check_index_values("random_walk", "start", start, 0, n);
  check_index_values("random_walk", "col", col, 0, n);
  TORCH_CHECK(rowptr[0].item<int64_t>() == 0 && rowptr[n].item<int64_t>() == col.numel(),
              "random_walk: rowptr must start at 0 and end at E = ", col.numel());
  auto stream = at::cuda::getCurrentCUDAStream();
  at::Tensor cum;
  if (weight.has_value() && weight->defined()) {
    TORCH_CHECK(weight->dim() == 1 && weight->numel() == col.numel(), "random_walk: weight must have shape (E,)");
    TORCH_CHECK(weight->device() == rowptr.device(), "random_walk: weight must be on the device of rowptr");
    at::Tensor w = weight->to(at::kDouble).contiguous();
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
