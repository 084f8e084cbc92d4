// One step of a first-order or node2vec walk on a CSR graph, shared by the CPU and CUDA kernels.
//
// Second-order steps follow node2vec (Grover and Leskovec, KDD 2016, sec. 3.2.2): from node v,
// reached from t, the next node x is drawn with probability proportional to alpha(t, x) w(v, x),
// alpha = 1/p if x = t, 1 if x is an out-neighbour of t, 1/q otherwise. They are drawn by
// rejection as in KnightKing (Yang et al., SOSP 2019): propose x from the first-order
// distribution w(v, .) / sum w, accept with probability alpha(t, x) / max(1/p, 1, 1/q). The
// acceptance test first compares the uniform against the bounds that need no lookup (alpha is
// at least min(1, 1/q) and at most max(1, 1/q) when x != t), so the binary search of x in t's
// sorted neighbour list runs only for draws that fall between them. Memory stays O(E).
//
// Random numbers: a walk is a pure function of the seed and its global index, whatever the thread
// count or device. A first-order step takes 64 bits of the Philox4x32-10 block keyed by (seed;
// walk index, step / 2) (even steps the first half, odd steps the second, so the CPU kernel
// computes one block per two steps); a second-order attempt takes a whole block keyed by (seed;
// walk index, step, attempt).
#pragma once

#include <torch/types.h>

#include <cmath>
#include <cstdint>

#include "checks.h"
#include "philox.h"

namespace geolayers {

struct WalkGraph {
  const int64_t* rowptr;  // (N + 1,)
  const int64_t* col;     // (E,) neighbours, sorted within each row
  const double* cum;      // (E,) inclusive prefix sums of the weights within each row, or null
};

struct WalkBias {
  double inv_p, inv_q, alpha_max, alpha_low, alpha_high;  // low/high: bounds of alpha for x != t
  bool biased;                                             // false when p = q = 1
};

inline WalkBias make_walk_bias(double p, double q) {
  WalkBias b;
  b.inv_p = 1.0 / p;
  b.inv_q = 1.0 / q;
  b.alpha_max = b.inv_p > 1.0 ? b.inv_p : 1.0;
  if (b.inv_q > b.alpha_max) b.alpha_max = b.inv_q;
  b.alpha_low = b.inv_q < 1.0 ? b.inv_q : 1.0;
  b.alpha_high = b.inv_q > 1.0 ? b.inv_q : 1.0;
  b.biased = !(p == 1.0 && q == 1.0);
  return b;
}

// Position in col of a neighbour of v drawn from the first-order distribution; -1 when v has no
// out-edge of positive weight (a dead end).
GEOLAYERS_HOST_DEVICE int64_t draw_neighbour(const WalkGraph& g, int64_t v, uint64_t bits) {
  const int64_t lo = g.rowptr[v], hi = g.rowptr[v + 1];
  if (hi == lo) return -1;
  if (g.cum == nullptr) return lo + static_cast<int64_t>(uniform_below(bits, static_cast<uint64_t>(hi - lo)));
  const double total = g.cum[hi - 1];
  if (!(total > 0.0)) return -1;
  const double target = uniform_unit(bits) * total;
  // First position whose inclusive prefix sum exceeds target: zero-weight edges are never drawn.
  int64_t a = lo, b = hi - 1;
  while (a < b) {
    const int64_t mid = a + (b - a) / 2;
    if (g.cum[mid] > target) b = mid; else a = mid + 1;
  }
  return a;
}

GEOLAYERS_HOST_DEVICE bool has_edge(const WalkGraph& g, int64_t t, int64_t x) {
  int64_t a = g.rowptr[t], b = g.rowptr[t + 1];
  while (a < b) {
    const int64_t mid = a + (b - a) / 2;
    const int64_t c = g.col[mid];
    if (c == x) return true;
    if (c < x) a = mid + 1; else b = mid;
  }
  return false;
}

// Counters of first-order steps carry the top bit, second-order attempts never do.
constexpr uint64_t kFirstOrderTag = uint64_t(1) << 63;

GEOLAYERS_HOST_DEVICE PhiloxOut first_order_block(uint64_t seed, uint64_t walk, uint64_t step) {
  return philox4x32(seed, walk, (step >> 1) | kFirstOrderTag);
}

GEOLAYERS_HOST_DEVICE uint64_t first_order_bits(const PhiloxOut& r, uint64_t step) {
  return (step & 1) ? (static_cast<uint64_t>(r.w[2]) << 32) | r.w[3] : (static_cast<uint64_t>(r.w[0]) << 32) | r.w[1];
}

// The node after cur (reached from prev, -1 at the first step): -1 at a dead end.
GEOLAYERS_HOST_DEVICE int64_t walk_step(const WalkGraph& g, const WalkBias& bias, int64_t prev, int64_t cur,
                                       uint64_t seed, uint64_t walk, uint64_t step) {
  if (!bias.biased || prev < 0) {
    const int64_t pos = draw_neighbour(g, cur, first_order_bits(first_order_block(seed, walk, step), step));
    return pos < 0 ? -1 : g.col[pos];
  }
  for (uint64_t attempt = 0;; ++attempt) {
    const PhiloxOut r = philox4x32(seed, walk, step | (attempt << 32));
    const int64_t pos = draw_neighbour(g, cur, (static_cast<uint64_t>(r.w[0]) << 32) | r.w[1]);
    if (pos < 0) return -1;
    const int64_t x = g.col[pos];
    const double u = uniform_unit((static_cast<uint64_t>(r.w[2]) << 32) | r.w[3]) * bias.alpha_max;
    if (x == prev) {
      if (u < bias.inv_p) return x;
      continue;
    }
    if (u < bias.alpha_low) return x;
    if (u >= bias.alpha_high) continue;
    if (u < (has_edge(g, prev, x) ? 1.0 : bias.inv_q)) return x;
  }
}

// The kernels' own checks of a direct op call (the Python wrapper checks first, with friendlier
// messages); returns the defined weight, or an undefined tensor for an unweighted walk.
inline at::Tensor check_random_walk_args(const at::Tensor& rowptr, const at::Tensor& col,
                                         const c10::optional<at::Tensor>& weight, const at::Tensor& start,
                                         int64_t walk_length, double p, double q) {
  TORCH_CHECK(rowptr.dtype() == at::kLong && col.dtype() == at::kLong && start.dtype() == at::kLong,
              "random_walk: rowptr, col and start must be int64");
  TORCH_CHECK(rowptr.dim() == 1 && rowptr.numel() >= 1 && col.dim() == 1 && start.dim() == 1,
              "random_walk: rowptr (N + 1,), col (E,) and start (S,) must be 1-D");
  TORCH_CHECK(rowptr.is_contiguous() && col.is_contiguous() && start.is_contiguous(),
              "random_walk: rowptr, col and start must be contiguous");
  TORCH_CHECK(col.device() == rowptr.device() && start.device() == rowptr.device(),
              "random_walk: rowptr, col and start must be on one device");
  TORCH_CHECK(walk_length >= 1, "random_walk: walk_length must be >= 1, got ", walk_length);
  TORCH_CHECK(p > 0 && q > 0 && std::isfinite(p) && std::isfinite(q), "random_walk: p and q must be positive and finite");
  const int64_t n = rowptr.numel() - 1;
  check_index_values("random_walk", "start", start, 0, n);
  check_index_values("random_walk", "col", col, 0, n);
  TORCH_CHECK(rowptr[0].item<int64_t>() == 0 && rowptr[n].item<int64_t>() == col.numel(),
              "random_walk: rowptr must start at 0 and end at E = ", col.numel());
  if (!weight.has_value() || !weight->defined()) return at::Tensor();
  TORCH_CHECK(weight->dim() == 1 && weight->numel() == col.numel(), "random_walk: weight must have shape (E,)");
  TORCH_CHECK(weight->device() == rowptr.device(), "random_walk: weight must be on the device of rowptr");
  return *weight;
}

}  // namespace geolayers
