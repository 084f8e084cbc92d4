// CPU kernels of the Poincare-ball distances (formulas in poincare_dist.h).
//
// pairwise: (N, D) x (M, D) -> (N, M) in one pass over blocks of kColBlock columns, with y stored
// transposed (D, M) so that the innermost loop runs over columns and vectorises; a block of y
// stays in cache while a thread walks its rows. No (N, M, D) intermediate exists, forward or
// backward: the backward recomputes |x - y| block by block and accumulates both gradients in
// the same pass (grad_y in one transposed (D, M) buffer per thread, summed at the end).
//
// gather: for each row b of x, the distances to the K rows y[index[b, k]], (B, D) -> (B, K); the
// embedding-training form (one positive and K - 1 negatives per row).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "cpu_alloc.h"
#include "checks.h"
#include "poincare_dist.h"

namespace geolayers {
namespace {

constexpr int64_t kColBlock = 256;

// Natural log of u >= 1 in float32, written without calls or branches so that the column loops
// that use it vectorise (libm's logf is a scalar call, which made the loop 4x slower here).
// u = m 2^e with m in [sqrt(1/2), sqrt(2)); log m = 2 artanh(s), s = (m - 1) / (m + 1), |s| <
// 0.172, by its series to s^9: the first omitted term, 2 s^11 / 11, is below 7e-10.
inline float log_at_least_one(float u) {
  uint32_t bits;
  std::memcpy(&bits, &u, sizeof(bits));
  int32_t e = static_cast<int32_t>(bits >> 23) - 127;
  const uint32_t mbits = (bits & 0x7fffffu) | 0x3f800000u;
  float m;
  std::memcpy(&m, &mbits, sizeof(m));
  const bool high = m > 1.41421356f;
  m = high ? 0.5f * m : m;
  e = high ? e + 1 : e;
  const float s = (m - 1.0f) / (m + 1.0f);
  const float s2 = s * s;
  const float series =
      s * (2.0f + s2 * (0.666666667f + s2 * (0.4f + s2 * (0.285714286f + s2 * 0.222222222f))));
  const float result = static_cast<float>(e) * 0.693147181f + series;
  // inf and NaN pass through (the bit arithmetic above would turn them into finite numbers).
  return u <= std::numeric_limits<float>::max() ? result : u;
}

// asinh(z) for z >= 0. log1p(w) with w = z + z^2 / (1 + sqrt(1 + z^2)) (= z + sqrt(1 + z^2) - 1
// without the cancellation), and log1p(w) = log(u) w / (u - 1), u = fl(1 + w), which keeps full
// relative accuracy for small w (Goldberg 1991, "What every computer scientist should know about
// floating-point arithmetic", thm. 4). Past z = 4096, asinh(z) = log(2 z) to within 1 / (4 z^2).
template <typename T>
inline T asinh_nonneg(T z);

template <>
inline float asinh_nonneg<float>(float z) {
  const bool big = z > 4096.0f;
  const float zs = big ? 0.0f : z;
  const float w = zs + zs * zs / (1.0f + std::sqrt(1.0f + zs * zs));
  const float u = big ? 2.0f * z : 1.0f + w;
  const float log_u = log_at_least_one(u);
  return big ? log_u : (u == 1.0f ? w : log_u * (w / (u - 1.0f)));
}

template <>
inline double asinh_nonneg<double>(double z) {
  return std::asinh(z);
}

// Per row: a = 1 - c |x|^2 accumulated in double and rounded once to T (the reference casts the
// same way), floored at eps^2 of T; 1 / sqrt(a); and c / a for the gradient (0 where floored).
template <typename T>
void row_terms(const T* x, int64_t rows, int64_t D, T c, T* a_out, T* inv_sqrt_a, T* c_over_a) {
  const T floor = std::numeric_limits<T>::epsilon() * std::numeric_limits<T>::epsilon();
  at::parallel_for(0, rows, std::max<int64_t>(1, at::internal::GRAIN_SIZE / std::max<int64_t>(D, 1)),
                   [&](int64_t begin, int64_t end) {
                     for (int64_t i = begin; i < end; ++i) {
                       double sq = 0;
                       const T* xi = x + i * D;
                       for (int64_t d = 0; d < D; ++d) sq += static_cast<double>(xi[d]) * static_cast<double>(xi[d]);
                       const T a = static_cast<T>(1.0 - static_cast<double>(c) * sq);
                       const bool floored = !(a >= floor);
                       const T af = floored ? floor : a;
                       if (a_out != nullptr) a_out[i] = af;
                       inv_sqrt_a[i] = T(1) / std::sqrt(af);
                       if (c_over_a != nullptr) c_over_a[i] = floored ? T(0) : c / af;
                     }
                   });
}

// acc[jj] = |x_i - y_{j0 + jj}|^2 for jj < jb, from the transposed y.
template <typename T>
inline void squared_chords(const T* __restrict__ xi, const T* __restrict__ yT, int64_t M, int64_t D, int64_t j0,
                           int64_t jb, T* __restrict__ acc) noexcept {
  std::fill(acc, acc + jb, T(0));
  for (int64_t d = 0; d < D; ++d) {
    const T xd = xi[d];
    const T* __restrict__ yr = yT + d * M + j0;
    for (int64_t jj = 0; jj < jb; ++jj) {
      const T t = xd - yr[jj];
      acc[jj] += t * t;
    }
  }
}

// The column loops below live in their own noexcept functions with restrict pointers: inside
// the parallel_for lambdas GCC would not vectorise them (it must assume aliasing and keep
// exception edges).

// o[jj] = d(x_i, y_j) from the squared chords of one block.
template <typename T>
inline void distances_from_chords(const T* __restrict__ acc, const T* __restrict__ inv_sqrt_b, T si, T scale,
                                  T* __restrict__ o, int64_t jb) noexcept {
  for (int64_t jj = 0; jj < jb; ++jj) o[jj] = scale * asinh_nonneg<T>(si * std::sqrt(acc[jj]) * inv_sqrt_b[jj]);
}

// Sums over a block are kept in kLanes independent partial sums: a single accumulator makes GCC
// emit an in-order (latency-bound) reduction, which was 3x slower here; the order of the
// additions then differs from a sequential sum by rounding only.
constexpr int64_t kLanes = 8;

template <typename T>
inline T sum_lanes(const T* lanes) noexcept {
  T s = 0;
  for (int64_t l = 0; l < kLanes; ++l) s += lanes[l];
  return s;
}

// u[jj] (see poincare_dist.h; 0 at x == y) for one block; adds u |x - y|^2 to q_cols and
// returns its sum over the block.
template <typename T>
inline T gradient_weights(const T* __restrict__ acc, const T* __restrict__ grad, const T* __restrict__ inv_sqrt_b,
                          T inv_sqrt_a, T si, T* __restrict__ u, T* __restrict__ q_cols, int64_t jb) noexcept {
  T lanes[kLanes] = {};
  for (int64_t jj = 0; jj < jb; ++jj) {
    const T r = std::sqrt(acc[jj]);
    const T z = si * r * inv_sqrt_b[jj];
    const T w = T(2) * grad[jj] * inv_sqrt_a * inv_sqrt_b[jj] / (r * std::sqrt(T(1) + z * z));
    u[jj] = r > T(0) ? w : T(0);
  }
  int64_t jj = 0;
  for (; jj + kLanes <= jb; jj += kLanes) {
    for (int64_t l = 0; l < kLanes; ++l) {
      const T q = u[jj + l] * acc[jj + l];
      lanes[l] += q;
      q_cols[jj + l] += q;
    }
  }
  for (; jj < jb; ++jj) {
    const T q = u[jj] * acc[jj];
    lanes[0] += q;
    q_cols[jj] += q;
  }
  return sum_lanes(lanes);
}

// One coordinate d of both gradients over a block: grad_y^T[d, j] -= u (x_d - y_d), and the
// return value, sum_j u (x_d - y_d), goes to grad_x[i, d].
template <typename T>
inline T accumulate_coordinate(T xd, const T* __restrict__ yr, const T* __restrict__ u, T* __restrict__ gyr,
                               int64_t jb) noexcept {
  T lanes[kLanes] = {};
  int64_t jj = 0;
  for (; jj + kLanes <= jb; jj += kLanes) {
    for (int64_t l = 0; l < kLanes; ++l) {
      const T t = (xd - yr[jj + l]) * u[jj + l];
      lanes[l] += t;
      gyr[jj + l] -= t;
    }
  }
  for (; jj < jb; ++jj) {
    const T t = (xd - yr[jj]) * u[jj];
    lanes[0] += t;
    gyr[jj] -= t;
  }
  return sum_lanes(lanes);
}

template <typename T>
T read_c(const at::Tensor& c) {
  const T value = c.reshape({}).item<T>();
  TORCH_CHECK_VALUE(value > T(0) && std::isfinite(static_cast<double>(value)),
                    "poincare distance: c must be positive and finite, got ", value);
  return value;
}

at::Tensor pairwise_forward_cpu(const at::Tensor& x_in, const at::Tensor& y_in, const at::Tensor& c_in) {
  check_poincare_pair("poincare_pairwise_dist", x_in, y_in, c_in);
  const at::Tensor x = x_in.contiguous();
  const at::Tensor yT = y_in.t().contiguous();  // (D, M)
  const int64_t N = x.size(0), M = y_in.size(0), D = x.size(1);
  at::Tensor out = empty_large({N, M}, x.options());
  if (N == 0 || M == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "poincare_pairwise_dist_cpu", [&] {
    using T = scalar_t;
    const T c = read_c<T>(c_in);
    const T sqrt_c = std::sqrt(c), scale = T(2) / sqrt_c;
    const at::Tensor y = y_in.contiguous();
    at::Tensor isa = at::empty({N}, x.options()), isb = at::empty({M}, x.options());
    row_terms<T>(x.data_ptr<T>(), N, D, c, nullptr, isa.data_ptr<T>(), nullptr);
    row_terms<T>(y.data_ptr<T>(), M, D, c, nullptr, isb.data_ptr<T>(), nullptr);
    const T* xp = x.data_ptr<T>();
    const T* yp = yT.data_ptr<T>();
    const T* ia = isa.data_ptr<T>();
    const T* ib = isb.data_ptr<T>();
    T* op = out.data_ptr<T>();
    const int64_t grain = std::max<int64_t>(1, at::internal::GRAIN_SIZE / std::max<int64_t>(M * D, 1));
    at::parallel_for(0, N, grain, [&](int64_t i0, int64_t i1) {
      alignas(64) T acc[kColBlock];
      for (int64_t j0 = 0; j0 < M; j0 += kColBlock) {
        const int64_t jb = std::min(kColBlock, M - j0);
        for (int64_t i = i0; i < i1; ++i) {
          squared_chords<T>(xp + i * D, yp, M, D, j0, jb, acc);
          distances_from_chords<T>(acc, ib + j0, sqrt_c * ia[i], scale, op + i * M + j0, jb);
        }
      }
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> pairwise_backward_cpu(const at::Tensor& grad_in, const at::Tensor& x_in,
                                                         const at::Tensor& y_in, const at::Tensor& c_in) {
  check_poincare_pair("poincare_pairwise_dist_backward", x_in, y_in, c_in);
  const int64_t N = x_in.size(0), M = y_in.size(0), D = x_in.size(1);
  TORCH_CHECK_VALUE(grad_in.dim() == 2 && grad_in.size(0) == N && grad_in.size(1) == M,
                    "poincare_pairwise_dist_backward: grad must be (", N, ", ", M, "), got ", grad_in.sizes());
  TORCH_CHECK_TYPE(grad_in.scalar_type() == x_in.scalar_type(), "poincare_pairwise_dist_backward: grad must be ",
                   x_in.scalar_type(), ", got ", grad_in.scalar_type());
  const at::Tensor x = x_in.contiguous(), y = y_in.contiguous(), grad = grad_in.contiguous();
  const at::Tensor yT = y.t().contiguous();
  at::Tensor grad_x = at::zeros({N, D}, x.options());
  at::Tensor grad_y = at::zeros({M, D}, x.options());
  if (N == 0 || M == 0 || D == 0) return {grad_x, grad_y};
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "poincare_pairwise_dist_backward_cpu", [&] {
    using T = scalar_t;
    const T c = read_c<T>(c_in);
    const T sqrt_c = std::sqrt(c);
    at::Tensor isa = at::empty({N}, x.options()), isb = at::empty({M}, x.options());
    at::Tensor cxa = at::empty({N}, x.options()), cyb = at::empty({M}, x.options());
    row_terms<T>(x.data_ptr<T>(), N, D, c, nullptr, isa.data_ptr<T>(), cxa.data_ptr<T>());
    row_terms<T>(y.data_ptr<T>(), M, D, c, nullptr, isb.data_ptr<T>(), cyb.data_ptr<T>());
    // One chunk of rows per thread, each with its own grad_y (transposed) and column sums of
    // u |x - y|^2, so that no two threads write the same memory.
    const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), N));
    at::Tensor partial = at::zeros({chunks, D + 1, M}, x.options());
    at::Tensor q_rows = at::zeros({N}, x.options());
    const T* xp = x.data_ptr<T>();
    const T* yp = yT.data_ptr<T>();
    const T* gp = grad.data_ptr<T>();
    const T* ia = isa.data_ptr<T>();
    const T* ib = isb.data_ptr<T>();
    T* gxp = grad_x.data_ptr<T>();
    T* qr = q_rows.data_ptr<T>();
    T* pp = partial.data_ptr<T>();
    at::parallel_for(0, chunks, 1, [&](int64_t ch0, int64_t ch1) {
      alignas(64) T acc[kColBlock];
      alignas(64) T u[kColBlock];
      for (int64_t ch = ch0; ch < ch1; ++ch) {
        const int64_t i0 = ch * N / chunks, i1 = (ch + 1) * N / chunks;
        T* gyT = pp + ch * (D + 1) * M;
        T* q_cols = gyT + D * M;
        for (int64_t j0 = 0; j0 < M; j0 += kColBlock) {
          const int64_t jb = std::min(kColBlock, M - j0);
          for (int64_t i = i0; i < i1; ++i) {
            const T* xi = xp + i * D;
            squared_chords<T>(xi, yp, M, D, j0, jb, acc);
            qr[i] += gradient_weights<T>(acc, gp + i * M + j0, ib + j0, ia[i], sqrt_c * ia[i], u, q_cols + j0, jb);
            T* gxi = gxp + i * D;
            for (int64_t d = 0; d < D; ++d) {
              gxi[d] += accumulate_coordinate<T>(xi[d], yp + d * M + j0, u, gyT + d * M + j0, jb);
            }
          }
        }
      }
    });
    // grad_x += (c / a_x) q_row x;  grad_y = sum of the partial grad_y^T + (c / a_y) q_col y.
    grad_x.add_(x * (cxa * q_rows).unsqueeze(1));
    const at::Tensor summed = partial.sum(0);  // (D + 1, M)
    grad_y.copy_(summed.narrow(0, 0, D).t());
    grad_y.add_(y * (cyb * summed.select(0, D)).unsqueeze(1));
  });
  return {grad_x, grad_y};
}

// |x_b - y_j|^2 and the unclamped 1 - c |y_j|^2 (accumulated in double, as row_terms) of one
// gathered pair.
template <typename T>
inline void gathered_pair(const T* xb, const T* yj, int64_t D, T c, T& chord2, T& a) {
  T chord = 0;
  double sq = 0;
  for (int64_t d = 0; d < D; ++d) {
    const T t = xb[d] - yj[d];
    chord += t * t;
    sq += static_cast<double>(yj[d]) * static_cast<double>(yj[d]);
  }
  chord2 = chord;
  a = static_cast<T>(1.0 - static_cast<double>(c) * sq);
}

at::Tensor gather_forward_cpu(const at::Tensor& x_in, const at::Tensor& y_in, const at::Tensor& index_in,
                              const at::Tensor& c_in) {
  check_poincare_pair("poincare_gather_dist", x_in, y_in, c_in);
  check_poincare_index("poincare_gather_dist", x_in, index_in);
  const at::Tensor x = x_in.contiguous(), y = y_in.contiguous(), index = index_in.contiguous();
  const int64_t B = x.size(0), K = index.size(1), D = x.size(1), M = y.size(0);
  check_index_values("poincare_gather_dist", "index", index, 0, M);
  at::Tensor out = at::empty({B, K}, x.options());
  if (B == 0 || K == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "poincare_gather_dist_cpu", [&] {
    using T = scalar_t;
    const T c = read_c<T>(c_in);
    const T sqrt_c = std::sqrt(c), scale = T(2) / sqrt_c;
    at::Tensor isa = at::empty({B}, x.options());
    row_terms<T>(x.data_ptr<T>(), B, D, c, nullptr, isa.data_ptr<T>(), nullptr);
    const T* xp = x.data_ptr<T>();
    const T* yp = y.data_ptr<T>();
    const int64_t* ip = index.data_ptr<int64_t>();
    const T* ia = isa.data_ptr<T>();
    T* op = out.data_ptr<T>();
    const T floor = std::numeric_limits<T>::epsilon() * std::numeric_limits<T>::epsilon();
    const int64_t grain = std::max<int64_t>(1, at::internal::GRAIN_SIZE / std::max<int64_t>(K * D, 1));
    at::parallel_for(0, B, grain, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        const T* xb = xp + b * D;
        for (int64_t k = 0; k < K; ++k) {
          const T* yj = yp + ip[b * K + k] * D;
          T chord, a;
          gathered_pair<T>(xb, yj, D, c, chord, a);
          const T ib = T(1) / std::sqrt(a >= floor ? a : floor);
          op[b * K + k] = scale * asinh_nonneg<T>(sqrt_c * ia[b] * std::sqrt(chord) * ib);
        }
      }
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> gather_backward_cpu(const at::Tensor& grad_in, const at::Tensor& x_in,
                                                       const at::Tensor& y_in, const at::Tensor& index_in,
                                                       const at::Tensor& c_in) {
  check_poincare_pair("poincare_gather_dist_backward", x_in, y_in, c_in);
  check_poincare_index("poincare_gather_dist_backward", x_in, index_in);
  const at::Tensor x = x_in.contiguous(), y = y_in.contiguous(), index = index_in.contiguous();
  const at::Tensor grad = grad_in.contiguous();
  const int64_t B = x.size(0), K = index.size(1), D = x.size(1), M = y.size(0);
  TORCH_CHECK_VALUE(grad.dim() == 2 && grad.size(0) == B && grad.size(1) == K,
                    "poincare_gather_dist_backward: grad must be (", B, ", ", K, "), got ", grad.sizes());
  TORCH_CHECK_TYPE(grad.scalar_type() == x.scalar_type(), "poincare_gather_dist_backward: grad must be ",
                   x.scalar_type(), ", got ", grad.scalar_type());
  check_index_values("poincare_gather_dist", "index", index, 0, M);
  at::Tensor grad_x = at::zeros({B, D}, x.options());
  at::Tensor grad_y = at::zeros({M, D}, x.options());
  if (B == 0 || K == 0 || D == 0) return {grad_x, grad_y};
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "poincare_gather_dist_backward_cpu", [&] {
    using T = scalar_t;
    const T c = read_c<T>(c_in);
    const T sqrt_c = std::sqrt(c);
    at::Tensor isa = at::empty({B}, x.options()), cxa = at::empty({B}, x.options());
    row_terms<T>(x.data_ptr<T>(), B, D, c, nullptr, isa.data_ptr<T>(), cxa.data_ptr<T>());
    // Per pair: u and (c / a_y) u |x - y|^2, used by the serial scatter into grad_y below.
    at::Tensor u_pairs = at::empty({B, K}, x.options()), w_pairs = at::empty({B, K}, x.options());
    const T* xp = x.data_ptr<T>();
    const T* yp = y.data_ptr<T>();
    const T* gp = grad.data_ptr<T>();
    const int64_t* ip = index.data_ptr<int64_t>();
    const T* ia = isa.data_ptr<T>();
    const T* cx = cxa.data_ptr<T>();
    T* up = u_pairs.data_ptr<T>();
    T* wp = w_pairs.data_ptr<T>();
    T* gxp = grad_x.data_ptr<T>();
    const T floor = std::numeric_limits<T>::epsilon() * std::numeric_limits<T>::epsilon();
    const int64_t grain = std::max<int64_t>(1, at::internal::GRAIN_SIZE / std::max<int64_t>(K * D, 1));
    at::parallel_for(0, B, grain, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        const T* xb = xp + b * D;
        T* gxb = gxp + b * D;
        T q_row = 0;
        for (int64_t k = 0; k < K; ++k) {
          const T* yj = yp + ip[b * K + k] * D;
          T chord, a;
          gathered_pair<T>(xb, yj, D, c, chord, a);
          const bool floored = !(a >= floor);
          const T af = floored ? floor : a;
          const T ib = T(1) / std::sqrt(af);
          const T r = std::sqrt(chord);
          const T z = sqrt_c * ia[b] * r * ib;
          const T u = r > T(0) ? T(2) * gp[b * K + k] * ia[b] * ib / (r * std::sqrt(T(1) + z * z)) : T(0);
          const T q = u * chord;
          up[b * K + k] = u;
          wp[b * K + k] = floored ? T(0) : c / af * q;
          q_row += q;
          for (int64_t d = 0; d < D; ++d) gxb[d] += u * (xb[d] - yj[d]);
        }
        for (int64_t d = 0; d < D; ++d) gxb[d] += cx[b] * q_row * xb[d];
      }
    });
    // Serial scatter: rows of y repeat across (b, k), and a fixed order keeps the sum
    // deterministic. It is O(B K D), the cost of the forward's gather.
    T* gyp = grad_y.data_ptr<T>();
    for (int64_t b = 0; b < B; ++b) {
      const T* xb = xp + b * D;
      for (int64_t k = 0; k < K; ++k) {
        const int64_t j = ip[b * K + k];
        const T* yj = yp + j * D;
        T* gyj = gyp + j * D;
        const T u = up[b * K + k], w = wp[b * K + k];
        for (int64_t d = 0; d < D; ++d) gyj[d] += u * (yj[d] - xb[d]) + w * yj[d];
      }
    }
  });
  return {grad_x, grad_y};
}

}  // namespace

TORCH_LIBRARY_IMPL(geolayers, CPU, m) {
  m.impl("poincare_pairwise_dist", &pairwise_forward_cpu);
  m.impl("poincare_pairwise_dist_backward", &pairwise_backward_cpu);
  m.impl("poincare_gather_dist", &gather_forward_cpu);
  m.impl("poincare_gather_dist_backward", &gather_backward_cpu);
}

}  // namespace geolayers
