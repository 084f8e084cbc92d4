// CUDA twin of the skip-gram kernel (schedule and update in csrc/cpu/sgns.cpp). One warp per walk:
// every lane replays the walk's random stream (the draws are identical, so no lane waits on
// another for them), the lanes split the D coordinates of each row, and dot products are reduced
// with warp shuffles. Warps run walks concurrently without locks (Hogwild, as on the CPU). The
// learning rate of walk w is fixed by its index, lr_start + (lr_end - lr_start) w / W.
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>
#include <torch/types.h>

#include <algorithm>

#include "checks.h"
#include "sgns.h"

namespace geolayers {
namespace {

constexpr int kWarpsPerBlock = 4;
constexpr int kMaxNegatives = 64;


template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

template <typename T>
__device__ __forceinline__ T log_sigmoid_dev(T f) {
  return f >= T(0) ? -log1p(exp(-f)) : f - log1p(exp(f));
}

template <typename T>
__device__ void train_pair(T* __restrict__ in, T* __restrict__ out, T* __restrict__ h, int64_t D, const SgnsCorpus& c,
                           int64_t center, int64_t o, T lr, WalkStream& rng, bool with_loss, double& loss,
                           int64_t& pairs) {
  const int lane = threadIdx.x & 31;
  int64_t targets[kMaxNegatives + 1];
  int count = 0;
  targets[count++] = o;
  for (int64_t k = 0; k < c.negatives; ++k) {
    const int64_t t = alias_draw(rng.next(), c.alias_prob, c.alias_idx, c.V_out);
    if (t != o) targets[count++] = t;
  }
  T* x = in + center * D;
  for (int64_t d = lane; d < D; d += 32) h[d] = T(0);
  for (int k = 0; k < count; ++k) {
    T* y = out + targets[k] * D;
    T part = T(0);
    for (int64_t d = lane; d < D; d += 32) part += x[d] * y[d];
    const T f = warp_sum(part);
    const T label = k == 0 ? T(1) : T(0);
    const T g = lr * (label - T(1) / (T(1) + exp(-f)));
    if (with_loss && lane == 0) loss -= static_cast<double>(k == 0 ? log_sigmoid_dev(f) : log_sigmoid_dev(-f));
    for (int64_t d = lane; d < D; d += 32) {
      const T yd = y[d];
      h[d] += g * yd;
      y[d] = yd + g * x[d];
    }
    __syncwarp();
  }
  for (int64_t d = lane; d < D; d += 32) x[d] += h[d];
  __syncwarp();
  ++pairs;
}

template <typename T>
__global__ void sgns_kernel(T* __restrict__ in, T* __restrict__ out, SgnsCorpus c, int64_t D, int64_t* kept_all,
                            T* h_all, double lr_start, double lr_end, uint64_t seed, int64_t offset, bool with_loss,
                            double* result) {
  const int64_t warp = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int64_t num_warps = static_cast<int64_t>(gridDim.x) * blockDim.x / 32;
  int64_t* kept = kept_all + warp * c.L;
  T* h = h_all + warp * D;
  double loss = 0.0;
  int64_t pairs = 0;
  for (int64_t w = warp; w < c.W; w += num_warps) {
    const T lr = static_cast<T>(lr_start + (lr_end - lr_start) * (static_cast<double>(w) / c.W));
    WalkStream rng = sgns_stream(seed, static_cast<uint64_t>(offset + w));
    const int64_t* row = c.walks + w * c.L;
    int64_t n = 0;
    for (int64_t i = 0; i < c.L && row[i] >= 0; ++i) {
      if (c.keep != nullptr && !(uniform_unit(rng.next()) < c.keep[row[i]])) continue;
      kept[n++] = row[i];  // every lane writes the same value
    }
    __syncwarp();
    for (int64_t i = 0; i < n; ++i) {
      int64_t lo, hi, stride = 1;
      if (c.exact) {
        lo = i - c.window;
        hi = i + c.window;
        stride = c.window;
      } else {
        const int64_t reach =
            c.window - (c.shrink ? static_cast<int64_t>(uniform_below(rng.next(), static_cast<uint64_t>(c.window))) : 0);
        lo = i - reach;
        hi = i + reach;
      }
      for (int64_t j = lo; j <= hi; j += stride) {
        if (j == i || j < 0 || j >= n) continue;
        const int64_t token = kept[j];
        if (c.ctx_ptr == nullptr) {
          train_pair(in, out, h, D, c, kept[i], token, lr, rng, with_loss, loss, pairs);
        } else {
          for (int64_t e = c.ctx_ptr[token]; e < c.ctx_ptr[token + 1]; ++e)
            train_pair(in, out, h, D, c, kept[i], c.ctx_idx[e], lr, rng, with_loss, loss, pairs);
        }
      }
    }
  }
  if ((threadIdx.x & 31) == 0) {
    atomicAdd(result, loss);
    atomicAdd(result + 1, static_cast<double>(pairs));
  }
}

at::Tensor sgns_train_cuda(at::Tensor& input, at::Tensor& output, const at::Tensor& walks, const at::Tensor& ctx_ptr,
                           const at::Tensor& ctx_idx, const at::Tensor& alias_prob, const at::Tensor& alias_idx,
                           const at::Tensor& keep_prob, int64_t window, bool shrink_window, bool exact_distance,
                           int64_t negatives, double lr_start, double lr_end, int64_t seed, int64_t offset,
                           bool compute_loss) {
  TORCH_CHECK(negatives <= kMaxNegatives, "sgns_train: the CUDA kernel takes at most ", kMaxNegatives, " negatives");
  const c10::cuda::CUDAGuard guard(input.device());
  const SgnsCorpus c = check_sgns_args(input, output, walks, ctx_ptr, ctx_idx, alias_prob, alias_idx, keep_prob,
                                       window, shrink_window, exact_distance, negatives);
  at::Tensor result = at::zeros({2}, input.options().dtype(at::kDouble));
  const int64_t W = walks.size(0);
  if (W == 0) return result;
  const int sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  const int64_t blocks = std::min<int64_t>((W + kWarpsPerBlock - 1) / kWarpsPerBlock, static_cast<int64_t>(sms) * 16);
  const int64_t warps = blocks * kWarpsPerBlock;
  at::Tensor kept = at::empty({warps, std::max<int64_t>(walks.size(1), 1)}, walks.options());
  at::Tensor h = at::empty({warps, input.size(1)}, input.options());
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "sgns_train_cuda", [&] {
    sgns_kernel<scalar_t><<<blocks, kWarpsPerBlock * 32, 0, stream>>>(
        input.data_ptr<scalar_t>(), output.data_ptr<scalar_t>(), c, input.size(1), kept.data_ptr<int64_t>(),
        h.data_ptr<scalar_t>(), lr_start, lr_end, static_cast<uint64_t>(seed), offset, compute_loss,
        result.data_ptr<double>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return result;
}

}  // namespace

TORCH_LIBRARY_IMPL(geolayers, CUDA, m) { m.impl("sgns_train", &sgns_train_cuda); }

}  // namespace geolayers
