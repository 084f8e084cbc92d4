// Fused training of Poincare embeddings (Nickel and Kiela 2017), CPU.
//
// One item is a positive pair (u, v) with K negatives n_k. Its loss is the softmax
// cross-entropy of negative distances with the positive at index 0 (eq. 6 of the paper):
//
//   L = d(u, v) + log(exp(-d(u, v)) + sum_k exp(-d(u, n_k))),
//
// dL/dd_0 = 1 - p_0 and dL/dd_k = -p_k with p the softmax of -d, chained to the points by the
// distance gradient of poincare_dist.h. A batch averages its items' losses; all gradients of a
// batch are computed at the old points, summed per row, then every touched row takes one
// Riemannian SGD step (eq. 5 / 6 of the paper, geoopt's RiemannianSGD on PoincareBall(c)):
//
//   x <- proj(x - lr (1 - c |x|^2)^2 / 4 * grad),   proj: rescale to (1 - eps) / sqrt(c) if past it,
//
// with geoopt's eps (4e-3 float32, 1e-5 float64), so the step equals the autograd + geoopt path.
// The epoch kernel samples negatives itself (Philox keyed by seed, epoch and the item's position
// in the epoch, so the draws do not depend on the thread count) and runs batches on all threads
// without locks (Hogwild, as the paper and its reference code do): with more than one thread
// concurrent batches may read rows that another is writing.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>
#include <torch/types.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <mutex>
#include <vector>

#include "checks.h"
#include "philox.h"

namespace geolayers {
namespace {

// Attempts per negative before the slot is left empty (-1): nodes related to (nearly) every
// other node, like the root of the hierarchy, have too few valid negatives to find.
constexpr int64_t kNegativeAttempts = 64;

template <typename T>
T projection_eps() {
  return sizeof(T) == 4 ? T(4e-3) : T(1e-5);
}

template <typename T>
struct Scratch {
  std::vector<T> grad;              // (slots, D) summed gradient of each row the batch touches
  std::vector<int64_t> row;         // (slots,) that row
  std::vector<int32_t> slot_of_row; // (N,) its slot in this batch, -1 when untouched
  std::vector<T> dist, a, r2;       // per candidate of one item (dist holds e^{-d})
  std::vector<int64_t> cand;
  int64_t slots = 0;
  int64_t D = 0;
  void reserve(int64_t num_rows, int64_t max_slots, int64_t dim, int64_t K) {
    D = dim;
    grad.resize(max_slots * dim);
    row.resize(max_slots);
    slot_of_row.assign(num_rows, -1);
    dist.resize(K + 1);
    a.resize(K + 1);
    r2.resize(K + 1);
    cand.resize(K + 1);
  }
  // The gradient accumulator of row r: shared by every occurrence of r in the batch, so the
  // per-row sums need no sort (a dense row -> slot map, reset after the batch).
  T* slot(int64_t r) {
    int32_t k = slot_of_row[r];
    if (k < 0) {
      k = static_cast<int32_t>(slots++);
      slot_of_row[r] = k;
      row[k] = r;
      std::fill(grad.begin() + k * D, grad.begin() + (k + 1) * D, T(0));
    }
    return grad.data() + k * D;
  }
};

// Adds the gradients of one item (scaled by `scale`) to the scratch slots; returns its loss.
template <typename T>
double item_gradients(const T* w, int64_t D, int64_t u, int64_t v, const int64_t* neg, int64_t K, T c, T scale,
                      Scratch<T>& s) {
  const T sqrt_c = std::sqrt(c);
  const T* xu = w + u * D;
  double squ = 0;
  for (int64_t d = 0; d < D; ++d) squ += static_cast<double>(xu[d]) * static_cast<double>(xu[d]);
  const T floor = std::numeric_limits<T>::epsilon() * std::numeric_limits<T>::epsilon();
  const T au_raw = static_cast<T>(1.0 - static_cast<double>(c) * squ);
  const T au = au_raw >= floor ? au_raw : floor;
  const T cu = au_raw >= floor ? c / au : T(0);
  int64_t m = 0;
  s.cand[m++] = v;
  for (int64_t k = 0; k < K; ++k) {
    if (neg[k] >= 0) s.cand[m++] = neg[k];
  }
  // e^{-d} needs no exp: with t = z + sqrt(1 + z^2), d = (2 / sqrt(c)) log t, so e^{-d} =
  // t^{-2 / sqrt(c)}, which is 1 / t^2 on the unit ball of the paper. Its values lie in (0, 1]
  // (d >= 0), so the softmax needs no shift, and only the positive's distance is needed in full.
  const bool unit = c == T(1);
  T total = 0;
  for (int64_t j = 0; j < m; ++j) {
    const T* xw = w + s.cand[j] * D;
    T r2 = 0;
    double sq = 0;
    for (int64_t d = 0; d < D; ++d) {
      const T t = xu[d] - xw[d];
      r2 += t * t;
      sq += static_cast<double>(xw[d]) * static_cast<double>(xw[d]);
    }
    const T a = static_cast<T>(1.0 - static_cast<double>(c) * sq);
    s.a[j] = a;
    s.r2[j] = r2;
    const T af = a >= floor ? a : floor;
    const T z = sqrt_c * std::sqrt(r2) / std::sqrt(au * af);
    const T root = std::sqrt(T(1) + z * z);
    const T t = z + root;
    s.dist[j] = unit ? T(1) / (t * t) : std::pow(t, -T(2) / sqrt_c);  // e^{-d_j}
    total += s.dist[j];
  }
  const T d0 = T(2) / sqrt_c * std::asinh(sqrt_c * std::sqrt(s.r2[0]) /
                                         std::sqrt(au * (s.a[0] >= floor ? s.a[0] : floor)));
  const double loss = static_cast<double>(d0) + std::log(static_cast<double>(total));

  T* gu = s.slot(u);
  T q_u = 0;
  for (int64_t j = 0; j < m; ++j) {
    const T p = s.dist[j] / total;
    const T g = scale * ((j == 0 ? T(1) : T(0)) - p);
    const T* xw = w + s.cand[j] * D;
    const T a = s.a[j];
    const T af = a >= floor ? a : floor;
    const T cw = a >= floor ? c / af : T(0);
    const T r = std::sqrt(s.r2[j]);
    const T sab = std::sqrt(au * af);
    const T z = sqrt_c * r / sab;
    const T U = r > T(0) ? T(2) * g / (r * sab * std::sqrt(T(1) + z * z)) : T(0);
    T* gw = s.slot(s.cand[j]);  // may be gu when a negative is u itself (r = 0, U = 0)
    const T qw = cw * U * s.r2[j];
    for (int64_t d = 0; d < D; ++d) {
      const T diff = xu[d] - xw[d];
      gu[d] += U * diff;
      gw[d] += -U * diff + qw * xw[d];
    }
    q_u += U * s.r2[j];
  }
  for (int64_t d = 0; d < D; ++d) gu[d] += cu * q_u * xu[d];
  return loss;
}

// One projected Riemannian SGD step per touched row, from its summed gradient.
template <typename T>
void apply_updates(T* w, int64_t D, T lr, T c, Scratch<T>& s) {
  const T maxnorm = (T(1) - projection_eps<T>()) / std::sqrt(c);
  for (int64_t k = 0; k < s.slots; ++k) {
    const int64_t r = s.row[k];
    const T* g = s.grad.data() + k * D;
    T* x = w + r * D;
    T sq = 0;
    for (int64_t d = 0; d < D; ++d) sq += x[d] * x[d];
    const T one_minus = T(1) - c * sq;
    const T step = lr * one_minus * one_minus / T(4);
    T norm2 = 0;
    for (int64_t d = 0; d < D; ++d) {
      x[d] -= step * g[d];
      norm2 += x[d] * x[d];
    }
    const T norm = std::max(std::sqrt(norm2), T(1e-15));
    if (norm > maxnorm) {
      for (int64_t d = 0; d < D; ++d) x[d] = x[d] / norm * maxnorm;
    }
    s.slot_of_row[r] = -1;
  }
  s.slots = 0;
}

template <typename T>
double run_batch(T* w, int64_t D, const int64_t* u, const int64_t* v, const int64_t* neg, int64_t B, int64_t K,
                 T lr, T c, Scratch<T>& s) {
  double loss = 0;
  const T scale = T(1) / static_cast<T>(B);
  for (int64_t b = 0; b < B; ++b) {
    loss += item_gradients<T>(w, D, u[b], v[b], neg + b * K, K, c, scale, s);
  }
  apply_updates<T>(w, D, lr, c, s);
  return loss;
}

void check_weight(const char* op, const at::Tensor& weight) {
  TORCH_CHECK_VALUE(weight.dim() == 2, op, ": weight must be 2-D (N, D), got ", weight.dim(), " dims");
  TORCH_CHECK_TYPE(weight.scalar_type() == at::kFloat || weight.scalar_type() == at::kDouble, op,
                   ": weight must be float32 or float64, got ", weight.scalar_type());
  TORCH_CHECK_VALUE(weight.is_contiguous(), op, ": weight must be contiguous (it is updated in place)");
}

void check_lr_c(const char* op, double lr, double c) {
  TORCH_CHECK_VALUE(lr >= 0 && std::isfinite(lr), op, ": lr must be non-negative and finite, got ", lr);
  TORCH_CHECK_VALUE(c > 0 && std::isfinite(c), op, ": c must be positive and finite, got ", c);
}

at::Tensor step_cpu(at::Tensor weight, const at::Tensor& u_in, const at::Tensor& v_in, const at::Tensor& neg_in,
                    double lr, double c) {
  const char* op = "poincare_embedding_step";
  check_weight(op, weight);
  check_lr_c(op, lr, c);
  const int64_t N = weight.size(0), D = weight.size(1);
  TORCH_CHECK_VALUE(u_in.dim() == 1 && v_in.dim() == 1 && u_in.size(0) == v_in.size(0), op,
                    ": u and v must be 1-D of one length (B,), got ", u_in.sizes(), " and ", v_in.sizes());
  const int64_t B = u_in.size(0);
  TORCH_CHECK_VALUE(neg_in.dim() == 2 && neg_in.size(0) == B, op, ": negatives must be (B, K) with B = ", B,
                    ", got ", neg_in.sizes());
  for (const at::Tensor* t : {&u_in, &v_in, &neg_in}) {
    TORCH_CHECK_TYPE(t->scalar_type() == at::kLong, op, ": u, v and negatives must be int64");
  }
  check_index_values(op, "u", u_in, 0, N);
  check_index_values(op, "v", v_in, 0, N);
  check_index_values(op, "negatives", neg_in, -1, N);
  const at::Tensor u = u_in.contiguous(), v = v_in.contiguous(), neg = neg_in.contiguous();
  const int64_t K = neg.size(1);
  double loss = 0;
  if (B > 0) {
    AT_DISPATCH_FLOATING_TYPES(weight.scalar_type(), "poincare_embedding_step_cpu", [&] {
      Scratch<scalar_t> s;
      s.reserve(N, B * (K + 2), D, K);
      loss = run_batch<scalar_t>(weight.data_ptr<scalar_t>(), D, u.data_ptr<int64_t>(), v.data_ptr<int64_t>(),
                                 neg.data_ptr<int64_t>(), B, K, static_cast<scalar_t>(lr),
                                 static_cast<scalar_t>(c), s);
    });
  }
  return at::scalar_tensor(B > 0 ? loss / static_cast<double>(B) : 0.0, at::kDouble);
}

void check_graph(const char* op, const at::Tensor& pairs, const at::Tensor& adj_ptr, const at::Tensor& adj_idx,
                 const at::Tensor& neg_cdf, int64_t N) {
  TORCH_CHECK_VALUE(pairs.dim() == 2 && pairs.size(1) == 2, op, ": pairs must be (P, 2), got ", pairs.sizes());
  TORCH_CHECK_VALUE(adj_ptr.dim() == 1 && adj_ptr.size(0) == N + 1, op, ": adj_ptr must be (N + 1,) = (", N + 1,
                    ",), got ", adj_ptr.sizes());
  TORCH_CHECK_VALUE(adj_idx.dim() == 1, op, ": adj_idx must be 1-D");
  for (const at::Tensor* t : {&pairs, &adj_ptr, &adj_idx}) {
    TORCH_CHECK_TYPE(t->scalar_type() == at::kLong, op, ": pairs, adj_ptr and adj_idx must be int64");
  }
  TORCH_CHECK_VALUE(neg_cdf.numel() == 0 || (neg_cdf.dim() == 1 && neg_cdf.size(0) == N), op,
                    ": neg_cdf must be empty (uniform negatives) or (N,), got ", neg_cdf.sizes());
  TORCH_CHECK_TYPE(neg_cdf.numel() == 0 || neg_cdf.scalar_type() == at::kDouble, op, ": neg_cdf must be float64");
  check_index_values(op, "pairs", pairs, 0, N);
  check_index_values(op, "adj_idx", adj_idx, 0, N);
  const int64_t* p = adj_ptr.data_ptr<int64_t>();
  TORCH_CHECK_VALUE(p[0] == 0 && p[N] == adj_idx.size(0), op, ": adj_ptr must start at 0 and end at len(adj_idx)");
  for (int64_t i = 0; i < N; ++i) {
    TORCH_CHECK_VALUE(p[i] <= p[i + 1], op, ": adj_ptr must be non-decreasing");
  }
}

// Fills neg[0:K] for the item at position `item` of epoch `epoch`: uniform over the N nodes, or
// from the cumulative weights `cdf` when given, rejecting u and every node related to u (listed,
// sorted, in adj_idx[adj_ptr[u] : adj_ptr[u + 1]]); -1 when kNegativeAttempts draws all fail.
void sample_item_negatives(int64_t u, int64_t item, int64_t epoch, uint64_t seed, int64_t N, int64_t K,
                           const int64_t* adj_ptr, const int64_t* adj_idx, const double* cdf, int64_t* neg) {
  const int64_t* lo = adj_idx + adj_ptr[u];
  const int64_t* hi = adj_idx + adj_ptr[u + 1];
  PhiloxOut draw{};
  uint64_t cached_call = ~uint64_t(0);
  for (int64_t k = 0; k < K; ++k) {
    neg[k] = -1;
    for (int64_t attempt = 0; attempt < kNegativeAttempts; ++attempt) {
      // Draw q = attempt * K + k of this item; one Philox call gives 128 bits, the draws 2i and
      // 2i + 1, so first attempts of neighbouring slots share a call.
      const uint64_t q = static_cast<uint64_t>(attempt * K + k);
      if (q / 2 != cached_call) {
        cached_call = q / 2;
        draw = philox4x32(seed, static_cast<uint64_t>(item), (static_cast<uint64_t>(epoch) << 32) | cached_call);
      }
      const int w0 = q % 2 == 0 ? 0 : 2;
      const uint64_t bits = (static_cast<uint64_t>(draw.w[w0]) << 32) | draw.w[w0 + 1];
      int64_t cand;
      if (cdf != nullptr) {
        const double target = uniform_unit(bits) * cdf[N - 1];
        cand = std::upper_bound(cdf, cdf + N, target) - cdf;
        cand = std::min(cand, N - 1);
      } else {
        cand = static_cast<int64_t>(uniform_below(bits, static_cast<uint64_t>(N)));
      }
      if (cand != u && !std::binary_search(lo, hi, cand)) {
        neg[k] = cand;
        break;
      }
    }
  }
}

at::Tensor negatives_cpu(const at::Tensor& pairs_in, const at::Tensor& adj_ptr_in, const at::Tensor& adj_idx_in,
                         const at::Tensor& neg_cdf_in, int64_t num_nodes, int64_t negatives, int64_t seed,
                         int64_t epoch) {
  const char* op = "poincare_embedding_negatives";
  TORCH_CHECK_VALUE(negatives >= 0 && negatives < (int64_t(1) << 24), op, ": negatives must be in [0, 2^24)");
  const at::Tensor pairs = pairs_in.contiguous(), adj_ptr = adj_ptr_in.contiguous();
  const at::Tensor adj_idx = adj_idx_in.contiguous(), cdf = neg_cdf_in.contiguous();
  check_graph(op, pairs, adj_ptr, adj_idx, cdf, num_nodes);
  const int64_t P = pairs.size(0), K = negatives;
  at::Tensor out = at::empty({P, K}, pairs.options());
  const int64_t* pp = pairs.data_ptr<int64_t>();
  const double* cp = cdf.numel() ? cdf.data_ptr<double>() : nullptr;
  int64_t* op_ = out.data_ptr<int64_t>();
  at::parallel_for(0, P, 256, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      sample_item_negatives(pp[2 * i], i, epoch, static_cast<uint64_t>(seed), num_nodes, K,
                            adj_ptr.data_ptr<int64_t>(), adj_idx.data_ptr<int64_t>(), cp, op_ + i * K);
    }
  });
  return out;
}

at::Tensor epoch_cpu(at::Tensor weight, const at::Tensor& pairs_in, const at::Tensor& adj_ptr_in,
                     const at::Tensor& adj_idx_in, const at::Tensor& neg_cdf_in, int64_t negatives,
                     int64_t batch_size, double lr, double c, int64_t seed, int64_t epoch) {
  const char* op = "poincare_embedding_epoch";
  check_weight(op, weight);
  check_lr_c(op, lr, c);
  TORCH_CHECK_VALUE(batch_size >= 1, op, ": batch_size must be positive, got ", batch_size);
  TORCH_CHECK_VALUE(negatives >= 0 && negatives < (int64_t(1) << 24), op, ": negatives must be in [0, 2^24)");
  const at::Tensor pairs = pairs_in.contiguous(), adj_ptr = adj_ptr_in.contiguous();
  const at::Tensor adj_idx = adj_idx_in.contiguous(), cdf = neg_cdf_in.contiguous();
  const int64_t N = weight.size(0), D = weight.size(1);
  check_graph(op, pairs, adj_ptr, adj_idx, cdf, N);
  const int64_t P = pairs.size(0), K = negatives, B = batch_size;
  const int64_t num_batches = (P + B - 1) / B;
  double total = 0;
  std::mutex total_mutex;
  AT_DISPATCH_FLOATING_TYPES(weight.scalar_type(), "poincare_embedding_epoch_cpu", [&] {
    using T = scalar_t;
    T* w = weight.data_ptr<T>();
    const int64_t* pp = pairs.data_ptr<int64_t>();
    const double* cp = cdf.numel() ? cdf.data_ptr<double>() : nullptr;
    at::parallel_for(0, num_batches, 1, [&](int64_t b0, int64_t b1) {
      Scratch<T> s;
      s.reserve(N, B * (K + 2), D, K);
      std::vector<int64_t> u(B), v(B), neg(B * K);
      double local = 0;
      for (int64_t batch = b0; batch < b1; ++batch) {
        const int64_t first = batch * B, size = std::min(B, P - first);
        for (int64_t i = 0; i < size; ++i) {
          u[i] = pp[2 * (first + i)];
          v[i] = pp[2 * (first + i) + 1];
          sample_item_negatives(u[i], first + i, epoch, static_cast<uint64_t>(seed), N, K,
                                adj_ptr.data_ptr<int64_t>(), adj_idx.data_ptr<int64_t>(), cp, neg.data() + i * K);
        }
        local += run_batch<T>(w, D, u.data(), v.data(), neg.data(), size, K, static_cast<T>(lr), static_cast<T>(c), s);
      }
      std::lock_guard<std::mutex> lock(total_mutex);
      total += local;
    });
  });
  return at::scalar_tensor(total, at::kDouble);
}

}  // namespace

TORCH_LIBRARY_IMPL(geolayers, CPU, m) {
  m.impl("poincare_embedding_step", &step_cpu);
  m.impl("poincare_embedding_negatives", &negatives_cpu);
  m.impl("poincare_embedding_epoch", &epoch_cpu);
}

}  // namespace geolayers
