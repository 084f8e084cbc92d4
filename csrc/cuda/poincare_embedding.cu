// CUDA twin of the fused Poincare-embedding training (formulas and semantics in
// csrc/cpu/poincare_embedding.cpp). Negatives are drawn by the same Philox counters as on the CPU,
// so both devices train on the same negatives. A batch runs as two launches: one thread per item
// adds its scaled gradients into a dense (N, D) buffer (atomics: rows shared by items sum), then
// one thread per row occurrence of the batch; the first to stamp the row (atomicExch of the
// batch's stamp) takes the projected Riemannian SGD step and clears the row's gradient. Batches
// run in order, so an epoch is the sequence of steps (the CPU kernel's one-thread result up to
// the order of floating-point additions), not Hogwild.
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>
#include <torch/types.h>

#include <algorithm>

#include "checks.h"
#include "philox.h"

namespace geolayers {
namespace {

constexpr int kThreads = 128;
constexpr int64_t kNegativeAttempts = 64;  // as on the CPU

__device__ __forceinline__ bool sorted_contains(const int64_t* lo, const int64_t* hi, int64_t value) {
  while (lo < hi) {
    const int64_t* mid = lo + (hi - lo) / 2;
    if (*mid < value) lo = mid + 1; else hi = mid;
  }
  return lo != hi && *lo == value;
}

__device__ __forceinline__ int64_t upper_bound_index(const double* cdf, int64_t n, double target) {
  int64_t lo = 0, hi = n;
  while (lo < hi) {
    const int64_t mid = (lo + hi) / 2;
    if (cdf[mid] <= target) lo = mid + 1; else hi = mid;
  }
  return lo < n ? lo : n - 1;
}

// Negatives of `count` items starting at position `first` of the epoch (see the CPU sampler).
__global__ void negatives_kernel(const int64_t* __restrict__ pairs, int64_t first, int64_t count, int64_t epoch,
                                 uint64_t seed, int64_t N, int64_t K, const int64_t* __restrict__ adj_ptr,
                                 const int64_t* __restrict__ adj_idx, const double* __restrict__ cdf,
                                 int64_t* __restrict__ neg) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= count) return;
  const int64_t item = first + i;
  const int64_t u = pairs[2 * item];
  const int64_t* lo = adj_idx + adj_ptr[u];
  const int64_t* hi = adj_idx + adj_ptr[u + 1];
  for (int64_t k = 0; k < K; ++k) {
    int64_t chosen = -1;
    for (int64_t attempt = 0; attempt < kNegativeAttempts; ++attempt) {
      const uint64_t q = static_cast<uint64_t>(attempt * K + k);
      const PhiloxOut draw =
          philox4x32(seed, static_cast<uint64_t>(item), (static_cast<uint64_t>(epoch) << 32) | (q / 2));
      const int w0 = q % 2 == 0 ? 0 : 2;
      const uint64_t bits = (static_cast<uint64_t>(draw.w[w0]) << 32) | draw.w[w0 + 1];
      const int64_t cand = cdf != nullptr ? upper_bound_index(cdf, N, uniform_unit(bits) * cdf[N - 1])
                                          : static_cast<int64_t>(uniform_below(bits, static_cast<uint64_t>(N)));
      if (cand != u && !sorted_contains(lo, hi, cand)) {
        chosen = cand;
        break;
      }
    }
    neg[i * K + k] = chosen;
  }
}

template <typename T>
__device__ __forceinline__ T floor_value() {
  return sizeof(T) == 4 ? T(1.4210854715202004e-14) : T(4.930380657631324e-32);
}

// |x_u - x_w|^2 and the unclamped 1 - c |x_w|^2 (accumulated in double) of one candidate.
template <typename T>
__device__ __forceinline__ void pair_terms(const T* xu, const T* xw, int64_t D, T c, T& r2, T& a) {
  T acc = 0;
  double sq = 0;
  for (int64_t d = 0; d < D; ++d) {
    const T t = xu[d] - xw[d];
    acc += t * t;
    sq += static_cast<double>(xw[d]) * static_cast<double>(xw[d]);
  }
  r2 = acc;
  a = static_cast<T>(1.0 - static_cast<double>(c) * sq);
}

// One thread per item: loss into *loss_sum, scaled gradients into grad (N, D) with atomics.
template <typename T>
__global__ void item_gradient_kernel(const T* __restrict__ w, int64_t D, const int64_t* __restrict__ u_idx,
                                     const int64_t* __restrict__ v_idx, const int64_t* __restrict__ neg, int64_t B,
                                     int64_t K, T c, T* __restrict__ grad, double* __restrict__ loss_sum) {
  const int64_t b = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (b >= B) return;
  const T sqrt_c = sqrt(c), scale = T(1) / static_cast<T>(B), fl = floor_value<T>();
  const int64_t u = u_idx[b];
  const T* xu = w + u * D;
  double squ = 0;
  for (int64_t d = 0; d < D; ++d) squ += static_cast<double>(xu[d]) * static_cast<double>(xu[d]);
  const T au_raw = static_cast<T>(1.0 - static_cast<double>(c) * squ);
  const T au = au_raw >= fl ? au_raw : fl;
  const T cu = au_raw >= fl ? c / au : T(0);
  // Two passes over the candidates: the softmax normaliser first, then the gradients.
  T total = 0, d0 = 0;
  for (int64_t j = -1; j < K; ++j) {
    const int64_t r = j < 0 ? v_idx[b] : neg[b * K + j];
    if (r < 0) continue;
    const T* xw = w + r * D;
    T r2, a;
    pair_terms<T>(xu, xw, D, c, r2, a);
    const T z = sqrt_c * sqrt(r2) / sqrt(au * (a >= fl ? a : fl));
    const T t = z + sqrt(T(1) + z * z);
    total += c == T(1) ? T(1) / (t * t) : pow(t, -T(2) / sqrt_c);
    if (j < 0) d0 = T(2) / sqrt_c * asinh(z);
  }
  atomicAdd(loss_sum, static_cast<double>(d0) + log(static_cast<double>(total)));
  T q_u = 0;
  for (int64_t j = -1; j < K; ++j) {
    const int64_t r = j < 0 ? v_idx[b] : neg[b * K + j];
    if (r < 0) continue;
    const T* xw = w + r * D;
    T r2, a;
    pair_terms<T>(xu, xw, D, c, r2, a);
    const T af = a >= fl ? a : fl;
    const T cw = a >= fl ? c / af : T(0);
    const T rr = sqrt(r2), sab = sqrt(au * af);
    const T z = sqrt_c * rr / sab;
    const T t = z + sqrt(T(1) + z * z);
    const T e = c == T(1) ? T(1) / (t * t) : pow(t, -T(2) / sqrt_c);
    const T g = scale * ((j < 0 ? T(1) : T(0)) - e / total);
    const T U = rr > T(0) ? T(2) * g / (rr * sab * sqrt(T(1) + z * z)) : T(0);
    const T qw = cw * U * r2;
    for (int64_t d = 0; d < D; ++d) {
      const T diff = xu[d] - xw[d];
      atomicAdd(grad + u * D + d, U * diff);
      atomicAdd(grad + r * D + d, -U * diff + qw * xw[d]);
    }
    q_u += U * r2;
  }
  for (int64_t d = 0; d < D; ++d) atomicAdd(grad + u * D + d, cu * q_u * xu[d]);
}

// One thread per row occurrence (u, v and the negatives of every item); the first to stamp a
// row updates it from its summed gradient and clears that gradient for the next batch.
template <typename T>
__global__ void apply_kernel(T* __restrict__ w, int64_t D, const int64_t* __restrict__ u_idx,
                             const int64_t* __restrict__ v_idx, const int64_t* __restrict__ neg, int64_t B, int64_t K,
                             T lr, T c, T eps, T* __restrict__ grad, int* __restrict__ stamp, int batch_stamp) {
  const int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= B * (K + 2)) return;
  const int64_t b = e / (K + 2), j = e % (K + 2);
  const int64_t r = j == 0 ? u_idx[b] : (j == 1 ? v_idx[b] : neg[b * K + (j - 2)]);
  if (r < 0 || atomicExch(stamp + r, batch_stamp) == batch_stamp) return;
  T* x = w + r * D;
  T* g = grad + r * D;
  T sq = 0;
  for (int64_t d = 0; d < D; ++d) sq += x[d] * x[d];
  const T one_minus = T(1) - c * sq;
  const T step = lr * one_minus * one_minus / T(4);
  T norm2 = 0;
  for (int64_t d = 0; d < D; ++d) {
    x[d] -= step * g[d];
    g[d] = T(0);
    norm2 += x[d] * x[d];
  }
  const T norm = max(sqrt(norm2), T(1e-15));
  const T maxnorm = (T(1) - eps) / sqrt(c);
  if (norm > maxnorm) {
    for (int64_t d = 0; d < D; ++d) x[d] = x[d] / norm * maxnorm;
  }
}

unsigned blocks_for(int64_t n) { return static_cast<unsigned>((n + kThreads - 1) / kThreads); }

void check_all(const char* op, const at::Tensor& weight, std::initializer_list<const at::Tensor*> others) {
  TORCH_CHECK_VALUE(weight.dim() == 2 && weight.is_contiguous(), op, ": weight must be a contiguous (N, D) tensor");
  TORCH_CHECK_TYPE(weight.scalar_type() == at::kFloat || weight.scalar_type() == at::kDouble, op,
                   ": weight must be float32 or float64");
  for (const at::Tensor* t : others) {
    TORCH_CHECK_VALUE(t->numel() == 0 || t->device() == weight.device(), op,
                      ": every tensor must be on the device of weight");
  }
}

template <typename T>
T projection_eps() {
  return sizeof(T) == 4 ? T(4e-3) : T(1e-5);
}

// Runs one batch on the device; stamps must be distinct per batch within a buffer's life.
void run_batch(at::Tensor& weight, const at::Tensor& u, const at::Tensor& v, const at::Tensor& neg, int64_t B,
               int64_t K, double lr, double c, at::Tensor& grad, at::Tensor& stamp, int batch_stamp,
               at::Tensor& loss_sum) {
  auto stream = at::cuda::getCurrentCUDAStream();
  const int64_t D = weight.size(1);
  AT_DISPATCH_FLOATING_TYPES(weight.scalar_type(), "poincare_embedding_batch_cuda", [&] {
    using T = scalar_t;
    item_gradient_kernel<T><<<blocks_for(B), kThreads, 0, stream>>>(
        weight.data_ptr<T>(), D, u.data_ptr<int64_t>(), v.data_ptr<int64_t>(), neg.data_ptr<int64_t>(), B, K,
        static_cast<T>(c), grad.data_ptr<T>(), loss_sum.data_ptr<double>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    apply_kernel<T><<<blocks_for(B * (K + 2)), kThreads, 0, stream>>>(
        weight.data_ptr<T>(), D, u.data_ptr<int64_t>(), v.data_ptr<int64_t>(), neg.data_ptr<int64_t>(), B, K,
        static_cast<T>(lr), static_cast<T>(c), projection_eps<T>(), grad.data_ptr<T>(), stamp.data_ptr<int>(),
        batch_stamp);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

at::Tensor step_cuda(at::Tensor weight, const at::Tensor& u_in, const at::Tensor& v_in, const at::Tensor& neg_in,
                     double lr, double c) {
  const char* op = "poincare_embedding_step";
  check_all(op, weight, {&u_in, &v_in, &neg_in});
  TORCH_CHECK_VALUE(lr >= 0 && c > 0, op, ": lr must be non-negative and c positive");
  const int64_t N = weight.size(0), B = u_in.size(0);
  TORCH_CHECK_VALUE(u_in.dim() == 1 && v_in.sizes() == u_in.sizes() && neg_in.dim() == 2 && neg_in.size(0) == B, op,
                    ": u, v must be (B,) and negatives (B, K)");
  check_index_values(op, "u", u_in, 0, N);
  check_index_values(op, "v", v_in, 0, N);
  check_index_values(op, "negatives", neg_in, -1, N);
  const c10::cuda::CUDAGuard guard(weight.device());
  const at::Tensor u = u_in.contiguous(), v = v_in.contiguous(), neg = neg_in.contiguous();
  at::Tensor loss = at::zeros({}, weight.options().dtype(at::kDouble));
  if (B == 0) return loss;
  at::Tensor grad = at::zeros_like(weight);
  at::Tensor stamp = at::zeros({N}, weight.options().dtype(at::kInt));
  run_batch(weight, u, v, neg, B, neg.size(1), lr, c, grad, stamp, 1, loss);
  return loss / static_cast<double>(B);
}

at::Tensor negatives_cuda(const at::Tensor& pairs_in, const at::Tensor& adj_ptr_in, const at::Tensor& adj_idx_in,
                          const at::Tensor& neg_cdf_in, int64_t num_nodes, int64_t negatives, int64_t seed,
                          int64_t epoch) {
  const char* op = "poincare_embedding_negatives";
  TORCH_CHECK_VALUE(pairs_in.dim() == 2 && pairs_in.size(1) == 2, op, ": pairs must be (P, 2)");
  TORCH_CHECK_VALUE(adj_ptr_in.dim() == 1 && adj_ptr_in.size(0) == num_nodes + 1, op, ": adj_ptr must be (N + 1,)");
  TORCH_CHECK_VALUE(negatives >= 0 && negatives < (int64_t(1) << 24), op, ": negatives must be in [0, 2^24)");
  check_index_values(op, "pairs", pairs_in, 0, num_nodes);
  check_index_values(op, "adj_idx", adj_idx_in, 0, num_nodes);
  const c10::cuda::CUDAGuard guard(pairs_in.device());
  const at::Tensor pairs = pairs_in.contiguous(), adj_ptr = adj_ptr_in.contiguous(), adj_idx = adj_idx_in.contiguous();
  const at::Tensor cdf = neg_cdf_in.contiguous();
  const int64_t P = pairs.size(0);
  at::Tensor out = at::empty({P, negatives}, pairs.options());
  if (P == 0 || negatives == 0) return out;
  negatives_kernel<<<blocks_for(P), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
      pairs.data_ptr<int64_t>(), 0, P, epoch, static_cast<uint64_t>(seed), num_nodes, negatives,
      adj_ptr.data_ptr<int64_t>(), adj_idx.data_ptr<int64_t>(), cdf.numel() ? cdf.data_ptr<double>() : nullptr,
      out.data_ptr<int64_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

at::Tensor epoch_cuda(at::Tensor weight, const at::Tensor& pairs_in, const at::Tensor& adj_ptr_in,
                      const at::Tensor& adj_idx_in, const at::Tensor& neg_cdf_in, int64_t negatives,
                      int64_t batch_size, double lr, double c, int64_t seed, int64_t epoch) {
  const char* op = "poincare_embedding_epoch";
  check_all(op, weight, {&pairs_in, &adj_ptr_in, &adj_idx_in, &neg_cdf_in});
  TORCH_CHECK_VALUE(batch_size >= 1 && lr >= 0 && c > 0, op, ": batch_size must be positive, lr >= 0, c > 0");
  const int64_t N = weight.size(0), K = negatives, B = batch_size;
  TORCH_CHECK_VALUE(adj_ptr_in.dim() == 1 && adj_ptr_in.size(0) == N + 1, op, ": adj_ptr must be (N + 1,)");
  TORCH_CHECK_VALUE(negatives >= 0 && negatives < (int64_t(1) << 24), op, ": negatives must be in [0, 2^24)");
  check_index_values(op, "pairs", pairs_in, 0, N);
  check_index_values(op, "adj_idx", adj_idx_in, 0, N);
  const c10::cuda::CUDAGuard guard(weight.device());
  const at::Tensor pairs = pairs_in.contiguous(), adj_ptr = adj_ptr_in.contiguous(), adj_idx = adj_idx_in.contiguous();
  const at::Tensor cdf = neg_cdf_in.contiguous();
  const int64_t P = pairs.size(0);
  at::Tensor loss = at::zeros({}, weight.options().dtype(at::kDouble));
  if (P == 0) return loss;
  at::Tensor grad = at::zeros_like(weight);
  at::Tensor stamp = at::zeros({N}, weight.options().dtype(at::kInt));
  const at::Tensor u_all = pairs.select(1, 0).contiguous(), v_all = pairs.select(1, 1).contiguous();
  // Negatives for a chunk of batches at a time: bounded memory, few launches.
  const int64_t chunk_batches = std::max<int64_t>(1, (int64_t(1) << 22) / std::max<int64_t>(B * K, 1));
  const int64_t chunk = chunk_batches * B;
  at::Tensor neg = at::empty({std::min(chunk, P), K}, pairs.options());
  auto stream = at::cuda::getCurrentCUDAStream();
  int batch_stamp = 0;
  for (int64_t first = 0; first < P; first += chunk) {
    const int64_t count = std::min(chunk, P - first);
    if (K > 0) {
      negatives_kernel<<<blocks_for(count), kThreads, 0, stream>>>(
          pairs.data_ptr<int64_t>(), first, count, epoch, static_cast<uint64_t>(seed), N, K,
          adj_ptr.data_ptr<int64_t>(), adj_idx.data_ptr<int64_t>(), cdf.numel() ? cdf.data_ptr<double>() : nullptr,
          neg.data_ptr<int64_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    for (int64_t s = 0; s < count; s += B) {
      const int64_t size = std::min(B, count - s);
      if (++batch_stamp == 0x7fffffff) {  // stamps wrap: clear them once
        stamp.zero_();
        batch_stamp = 1;
      }
      run_batch(weight, u_all.narrow(0, first + s, size), v_all.narrow(0, first + s, size),
                neg.narrow(0, s, size), size, K, lr, c, grad, stamp, batch_stamp, loss);
    }
  }
  return loss;
}

}  // namespace

TORCH_LIBRARY_IMPL(geolayers, CUDA, m) {
  m.impl("poincare_embedding_step", &step_cuda);
  m.impl("poincare_embedding_negatives", &negatives_cuda);
  m.impl("poincare_embedding_epoch", &epoch_cuda);
}

}  // namespace geolayers
