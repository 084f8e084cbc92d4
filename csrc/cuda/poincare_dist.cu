// CUDA kernels of the Poincare-ball distances (formulas in poincare_dist.h).
//
// pairwise forward: one thread per output element, 16 x 16 tiles with the coordinates of the
// tile's 16 rows of x and 16 rows of y staged in shared memory, 16 at a time. The backward
// writes the weights u and u |x - y|^2 of every pair to two (N, M) buffers (no (N, M, D) tensor),
// then one thread per element of grad_x (grad_y) sums over the columns (rows) directly from the
// coordinate differences, as the CPU kernel does, so nearby points do not cancel.
// gather: one thread per (row, k); the backward scatters with atomics (order not deterministic).
// c is read on the device (a 1-element tensor), so no call synchronises with the host except
// the index-range check of the gather ops.
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "checks.h"
#include "poincare_dist.h"

namespace geolayers {
namespace {

constexpr int kTile = 16;
constexpr int kThreads = 256;

template <typename T>
__device__ __forceinline__ T floor_value() {
  return sizeof(T) == 4 ? T(1.4210854715202004e-14) : T(4.930380657631324e-32);  // eps^2 of T
}

// 1 - c |x|^2 accumulated in double and rounded once to T, floored at eps^2; 1 / sqrt(a) and
// c / a (0 where floored) per row.
template <typename T>
__global__ void row_terms_kernel(const T* __restrict__ x, int64_t rows, int64_t D, const T* __restrict__ c_ptr,
                                 T* __restrict__ inv_sqrt_a, T* __restrict__ c_over_a) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= rows) return;
  const T c = *c_ptr;
  double sq = 0;
  for (int64_t d = 0; d < D; ++d) {
    const double v = static_cast<double>(x[i * D + d]);
    sq += v * v;
  }
  const T a = static_cast<T>(1.0 - static_cast<double>(c) * sq);
  const bool floored = !(a >= floor_value<T>());
  const T af = floored ? floor_value<T>() : a;
  inv_sqrt_a[i] = T(1) / sqrt(af);
  if (c_over_a != nullptr) c_over_a[i] = floored ? T(0) : c / af;
}

// |x_i - y_j|^2 for the thread's (i, j) = (i_base + ty, j_base + tx) of a 16 x 16 tile, coordinates staged in shared memory.
template <typename T>
__device__ __forceinline__ T tile_squared_chord(const T* __restrict__ x, const T* __restrict__ y, int64_t N,
                                                int64_t M, int64_t D, T (*xs)[kTile + 1],
                                                T (*ys)[kTile + 1]) {
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t i_base = int64_t(blockIdx.y) * kTile, j_base = int64_t(blockIdx.x) * kTile;
  T acc = 0;
  for (int64_t d0 = 0; d0 < D; d0 += kTile) {
    // Thread (ty, tx) loads coordinate d0 + tx of row i_base + ty of x and of row j_base + ty of y.
    const int64_t d = d0 + tx;
    const int64_t xi = i_base + ty, yj = j_base + ty;
    xs[ty][tx] = (xi < N && d < D) ? x[xi * D + d] : T(0);
    ys[ty][tx] = (yj < M && d < D) ? y[yj * D + d] : T(0);
    __syncthreads();
    const int64_t width = D - d0 < kTile ? D - d0 : kTile;
    for (int64_t k = 0; k < width; ++k) {
      const T t = xs[ty][k] - ys[tx][k];
      acc += t * t;
    }
    __syncthreads();
  }
  return acc;
}

template <typename T>
__global__ void pairwise_forward_kernel(const T* __restrict__ x, const T* __restrict__ y, const T* __restrict__ isa,
                                        const T* __restrict__ isb, const T* __restrict__ c_ptr, T* __restrict__ out,
                                        int64_t N, int64_t M, int64_t D) {
  __shared__ T xs[kTile][kTile + 1];
  __shared__ T ys[kTile][kTile + 1];
  const int64_t i = int64_t(blockIdx.y) * kTile + threadIdx.y;
  const int64_t j = int64_t(blockIdx.x) * kTile + threadIdx.x;
  const T acc = tile_squared_chord<T>(x, y, N, M, D, xs, ys);
  if (i >= N || j >= M) return;
  const T sqrt_c = sqrt(*c_ptr);
  out[i * M + j] = T(2) / sqrt_c * asinh(sqrt_c * isa[i] * sqrt(acc) * isb[j]);
}

template <typename T>
__global__ void pairwise_weights_kernel(const T* __restrict__ grad, const T* __restrict__ x, const T* __restrict__ y,
                                        const T* __restrict__ isa, const T* __restrict__ isb,
                                        const T* __restrict__ c_ptr, T* __restrict__ u_out, T* __restrict__ q_out,
                                        int64_t N, int64_t M, int64_t D) {
  __shared__ T xs[kTile][kTile + 1];
  __shared__ T ys[kTile][kTile + 1];
  const int64_t i = int64_t(blockIdx.y) * kTile + threadIdx.y;
  const int64_t j = int64_t(blockIdx.x) * kTile + threadIdx.x;
  const T acc = tile_squared_chord<T>(x, y, N, M, D, xs, ys);
  if (i >= N || j >= M) return;
  const T sqrt_c = sqrt(*c_ptr);
  const T r = sqrt(acc);
  const T z = sqrt_c * isa[i] * r * isb[j];
  const T u = r > T(0) ? T(2) * grad[i * M + j] * isa[i] * isb[j] / (r * sqrt(T(1) + z * z)) : T(0);
  u_out[i * M + j] = u;
  q_out[i * M + j] = u * acc;
}

// grad_x[i, d] = sum_j u_ij (x_id - y_jd) + (c / a_i) x_id sum_j u_ij |x_i - y_j|^2; with
// transpose = true the same for grad_y (rows of y, summing over i with u_ij read as u^T).
template <typename T, bool Transpose>
__global__ void point_gradient_kernel(const T* __restrict__ u, const T* __restrict__ q, const T* __restrict__ self,
                                      const T* __restrict__ other, const T* __restrict__ c_over_a,
                                      T* __restrict__ grad, int64_t rows, int64_t others, int64_t D) {
  const int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= rows * D) return;
  const int64_t i = e / D, d = e - i * D;
  const T s_id = self[e];
  T s = 0, qs = 0;
  for (int64_t j = 0; j < others; ++j) {
    const int64_t pair = Transpose ? j * rows + i : i * others + j;
    s += u[pair] * (s_id - other[j * D + d]);
    qs += q[pair];
  }
  grad[e] = s + c_over_a[i] * qs * s_id;
}

template <typename T>
__global__ void gather_forward_kernel(const T* __restrict__ x, const T* __restrict__ y,
                                      const int64_t* __restrict__ index, const T* __restrict__ isa,
                                      const T* __restrict__ c_ptr, T* __restrict__ out, int64_t B, int64_t K,
                                      int64_t D) {
  const int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= B * K) return;
  const int64_t b = e / K;
  const T* xb = x + b * D;
  const T* yj = y + index[e] * D;
  const T c = *c_ptr, sqrt_c = sqrt(c);
  T chord = 0;
  double sq = 0;
  for (int64_t d = 0; d < D; ++d) {
    const T t = xb[d] - yj[d];
    chord += t * t;
    sq += static_cast<double>(yj[d]) * static_cast<double>(yj[d]);
  }
  const T a = static_cast<T>(1.0 - static_cast<double>(c) * sq);
  const T ib = T(1) / sqrt(a >= floor_value<T>() ? a : floor_value<T>());
  out[e] = T(2) / sqrt_c * asinh(sqrt_c * isa[b] * sqrt(chord) * ib);
}

template <typename T>
__global__ void gather_backward_kernel(const T* __restrict__ grad, const T* __restrict__ x, const T* __restrict__ y,
                                       const int64_t* __restrict__ index, const T* __restrict__ isa,
                                       const T* __restrict__ cxa, const T* __restrict__ c_ptr, T* __restrict__ gx,
                                       T* __restrict__ gy, int64_t B, int64_t K, int64_t D) {
  const int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= B * K) return;
  const int64_t b = e / K, j = index[e];
  const T* xb = x + b * D;
  const T* yj = y + j * D;
  const T c = *c_ptr, sqrt_c = sqrt(c);
  T chord = 0;
  double sq = 0;
  for (int64_t d = 0; d < D; ++d) {
    const T t = xb[d] - yj[d];
    chord += t * t;
    sq += static_cast<double>(yj[d]) * static_cast<double>(yj[d]);
  }
  const T a = static_cast<T>(1.0 - static_cast<double>(c) * sq);
  const bool floored = !(a >= floor_value<T>());
  const T af = floored ? floor_value<T>() : a;
  const T ib = T(1) / sqrt(af);
  const T r = sqrt(chord);
  const T z = sqrt_c * isa[b] * r * ib;
  const T u = r > T(0) ? T(2) * grad[e] * isa[b] * ib / (r * sqrt(T(1) + z * z)) : T(0);
  const T q = u * chord;
  const T wx = cxa[b] * q, wy = floored ? T(0) : c / af * q;
  for (int64_t d = 0; d < D; ++d) {
    const T diff = xb[d] - yj[d];
    atomicAdd(gx + b * D + d, u * diff + wx * xb[d]);
    atomicAdd(gy + j * D + d, -u * diff + wy * yj[d]);
  }
}

unsigned blocks_for(int64_t n) { return static_cast<unsigned>((n + kThreads - 1) / kThreads); }

dim3 tile_grid(int64_t N, int64_t M) {
  return dim3(static_cast<unsigned>((M + kTile - 1) / kTile), static_cast<unsigned>((N + kTile - 1) / kTile));
}

// gridDim.y is limited to 65535 blocks.
void check_sizes(int64_t N) {
  TORCH_CHECK_VALUE((N + kTile - 1) / kTile < 65536, "poincare_pairwise_dist: at most 65535 * 16 rows of x on CUDA");
}

at::Tensor pairwise_forward_cuda(const at::Tensor& x_in, const at::Tensor& y_in, const at::Tensor& c_in) {
  check_poincare_pair("poincare_pairwise_dist", x_in, y_in, c_in);
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.contiguous(), y = y_in.contiguous(), c = c_in.reshape({1}).contiguous();
  const int64_t N = x.size(0), M = y.size(0), D = x.size(1);
  at::Tensor out = at::empty({N, M}, x.options());
  if (N == 0 || M == 0) return out;
  check_sizes(N);
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "poincare_pairwise_dist_cuda", [&] {
    at::Tensor isa = at::empty({N}, x.options()), isb = at::empty({M}, x.options());
    const scalar_t* cp = c.data_ptr<scalar_t>();
    row_terms_kernel<scalar_t><<<blocks_for(N), kThreads, 0, stream>>>(x.data_ptr<scalar_t>(), N, D, cp,
                                                                        isa.data_ptr<scalar_t>(), nullptr);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    row_terms_kernel<scalar_t><<<blocks_for(M), kThreads, 0, stream>>>(y.data_ptr<scalar_t>(), M, D, cp,
                                                                        isb.data_ptr<scalar_t>(), nullptr);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    pairwise_forward_kernel<scalar_t><<<tile_grid(N, M), dim3(kTile, kTile), 0, stream>>>(
        x.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(), isa.data_ptr<scalar_t>(), isb.data_ptr<scalar_t>(), cp,
        out.data_ptr<scalar_t>(), N, M, D);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> pairwise_backward_cuda(const at::Tensor& grad_in, const at::Tensor& x_in,
                                                          const at::Tensor& y_in, const at::Tensor& c_in) {
  check_poincare_pair("poincare_pairwise_dist_backward", x_in, y_in, c_in);
  const int64_t N = x_in.size(0), M = y_in.size(0), D = x_in.size(1);
  TORCH_CHECK_VALUE(grad_in.dim() == 2 && grad_in.size(0) == N && grad_in.size(1) == M,
                    "poincare_pairwise_dist_backward: grad must be (", N, ", ", M, "), got ", grad_in.sizes());
  TORCH_CHECK_TYPE(grad_in.scalar_type() == x_in.scalar_type(), "poincare_pairwise_dist_backward: grad must be ",
                   x_in.scalar_type(), ", got ", grad_in.scalar_type());
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.contiguous(), y = y_in.contiguous(), grad = grad_in.contiguous();
  const at::Tensor c = c_in.reshape({1}).contiguous();
  at::Tensor grad_x = at::zeros({N, D}, x.options()), grad_y = at::zeros({M, D}, x.options());
  if (N == 0 || M == 0 || D == 0) return {grad_x, grad_y};
  check_sizes(N);
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "poincare_pairwise_dist_backward_cuda", [&] {
    using T = scalar_t;
    at::Tensor isa = at::empty({N}, x.options()), isb = at::empty({M}, x.options());
    at::Tensor cxa = at::empty({N}, x.options()), cyb = at::empty({M}, x.options());
    at::Tensor u = at::empty({N, M}, x.options()), q = at::empty({N, M}, x.options());
    const T* cp = c.data_ptr<T>();
    row_terms_kernel<T><<<blocks_for(N), kThreads, 0, stream>>>(x.data_ptr<T>(), N, D, cp, isa.data_ptr<T>(),
                                                                 cxa.data_ptr<T>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    row_terms_kernel<T><<<blocks_for(M), kThreads, 0, stream>>>(y.data_ptr<T>(), M, D, cp, isb.data_ptr<T>(),
                                                                 cyb.data_ptr<T>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    pairwise_weights_kernel<T><<<tile_grid(N, M), dim3(kTile, kTile), 0, stream>>>(
        grad.data_ptr<T>(), x.data_ptr<T>(), y.data_ptr<T>(), isa.data_ptr<T>(), isb.data_ptr<T>(), cp,
        u.data_ptr<T>(), q.data_ptr<T>(), N, M, D);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    point_gradient_kernel<T, false><<<blocks_for(N * D), kThreads, 0, stream>>>(
        u.data_ptr<T>(), q.data_ptr<T>(), x.data_ptr<T>(), y.data_ptr<T>(), cxa.data_ptr<T>(), grad_x.data_ptr<T>(),
        N, M, D);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    point_gradient_kernel<T, true><<<blocks_for(M * D), kThreads, 0, stream>>>(
        u.data_ptr<T>(), q.data_ptr<T>(), y.data_ptr<T>(), x.data_ptr<T>(), cyb.data_ptr<T>(), grad_y.data_ptr<T>(),
        M, N, D);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {grad_x, grad_y};
}

at::Tensor gather_forward_cuda(const at::Tensor& x_in, const at::Tensor& y_in, const at::Tensor& index_in,
                               const at::Tensor& c_in) {
  check_poincare_pair("poincare_gather_dist", x_in, y_in, c_in);
  check_poincare_index("poincare_gather_dist", x_in, index_in);
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.contiguous(), y = y_in.contiguous(), index = index_in.contiguous();
  const at::Tensor c = c_in.reshape({1}).contiguous();
  const int64_t B = x.size(0), K = index.size(1), D = x.size(1);
  check_index_values("poincare_gather_dist", "index", index, 0, y.size(0));
  at::Tensor out = at::empty({B, K}, x.options());
  if (B == 0 || K == 0) return out;
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "poincare_gather_dist_cuda", [&] {
    using T = scalar_t;
    at::Tensor isa = at::empty({B}, x.options());
    row_terms_kernel<T><<<blocks_for(B), kThreads, 0, stream>>>(x.data_ptr<T>(), B, D, c.data_ptr<T>(),
                                                                 isa.data_ptr<T>(), nullptr);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    gather_forward_kernel<T><<<blocks_for(B * K), kThreads, 0, stream>>>(
        x.data_ptr<T>(), y.data_ptr<T>(), index.data_ptr<int64_t>(), isa.data_ptr<T>(), c.data_ptr<T>(),
        out.data_ptr<T>(), B, K, D);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> gather_backward_cuda(const at::Tensor& grad_in, const at::Tensor& x_in,
                                                        const at::Tensor& y_in, const at::Tensor& index_in,
                                                        const at::Tensor& c_in) {
  check_poincare_pair("poincare_gather_dist_backward", x_in, y_in, c_in);
  check_poincare_index("poincare_gather_dist_backward", x_in, index_in);
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.contiguous(), y = y_in.contiguous(), index = index_in.contiguous();
  const at::Tensor grad = grad_in.contiguous(), c = c_in.reshape({1}).contiguous();
  const int64_t B = x.size(0), K = index.size(1), D = x.size(1), M = y.size(0);
  TORCH_CHECK_VALUE(grad.dim() == 2 && grad.size(0) == B && grad.size(1) == K,
                    "poincare_gather_dist_backward: grad must be (", B, ", ", K, "), got ", grad.sizes());
  TORCH_CHECK_TYPE(grad.scalar_type() == x.scalar_type(), "poincare_gather_dist_backward: grad must be ",
                   x.scalar_type(), ", got ", grad.scalar_type());
  check_index_values("poincare_gather_dist", "index", index, 0, M);
  at::Tensor grad_x = at::zeros({B, D}, x.options()), grad_y = at::zeros({M, D}, x.options());
  if (B == 0 || K == 0 || D == 0) return {grad_x, grad_y};
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "poincare_gather_dist_backward_cuda", [&] {
    using T = scalar_t;
    at::Tensor isa = at::empty({B}, x.options()), cxa = at::empty({B}, x.options());
    row_terms_kernel<T><<<blocks_for(B), kThreads, 0, stream>>>(x.data_ptr<T>(), B, D, c.data_ptr<T>(),
                                                                 isa.data_ptr<T>(), cxa.data_ptr<T>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    gather_backward_kernel<T><<<blocks_for(B * K), kThreads, 0, stream>>>(
        grad.data_ptr<T>(), x.data_ptr<T>(), y.data_ptr<T>(), index.data_ptr<int64_t>(), isa.data_ptr<T>(),
        cxa.data_ptr<T>(), c.data_ptr<T>(), grad_x.data_ptr<T>(), grad_y.data_ptr<T>(), B, K, D);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {grad_x, grad_y};
}

}  // namespace

TORCH_LIBRARY_IMPL(geolayers, CUDA, m) {
  m.impl("poincare_pairwise_dist", &pairwise_forward_cuda);
  m.impl("poincare_pairwise_dist_backward", &pairwise_backward_cuda);
  m.impl("poincare_gather_dist", &gather_forward_cuda);
  m.impl("poincare_gather_dist_backward", &gather_backward_cuda);
}

}  // namespace geolayers
