// Skip-gram with negative sampling over walks, trained in place, CPU (word2vec's update rule;
// gensim's defaults are reproduced by the Python caller). Schedule of one walk, mirrored exactly
// by sgns_train_reference in geolayers/ops/sgns.py (draws from sgns.h's per-walk stream):
//
//   1. subsampling: token t (until the first -1) is kept when uniform() < keep_prob[t];
//   2. for each kept position i (the center), the window: b = uniform_below(window) when
//      shrink_window (word2vec's reduced window), positions j with 0 < |i - j| <= window - b;
//      with exact_distance, only |i - j| = window (MUSAE's scale r);
//   3. each context j gives outputs: the token itself, or, with a context CSR, its listed
//      features (MUSAE/AE); for each output o, a pair (input row = center, output row = o):
//
//        h = 0;  for o, then `negatives` draws n from the alias table (skipped when n = o):
//          f = <in[center], out[k]>,  g = lr (label - sigmoid(f)),  h += g out[k],  out[k] += g in[center]
//        in[center] += h
//
// lr decays linearly from lr_start to lr_end with the fraction of walks done (all threads share
// the counter, as word2vec's alpha). Threads update rows without locks (Hogwild, as word2vec).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>
#include <torch/types.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <vector>

#include "checks.h"
#include "cpu_schedule.h"
#include "sgns.h"

namespace geolayers {
namespace {

// Eight independent partial sums: GCC keeps in-order reductions scalar otherwise.
template <typename T>
inline T dot(const T* __restrict__ a, const T* __restrict__ b, int64_t D) {
  T acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t d = 0;
  for (; d + 8 <= D; d += 8)
    for (int k = 0; k < 8; ++k) acc[k] += a[d + k] * b[d + k];
  T s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  for (; d < D; ++d) s += a[d] * b[d];
  return s;
}

template <typename T>
inline T log_sigmoid(T f) {  // log(1 / (1 + e^-f)) without overflow
  return f >= 0 ? -std::log1p(std::exp(-f)) : f - std::log1p(std::exp(f));
}


// The per-pair update, run through a target clone: the library is built for baseline x86-64, and
// the 8-wide AVX/FMA arithmetic is 1.3x faster on the reference machine where the CPU has it.
// All K + 1 target rows are drawn first and prefetched, so their cache misses overlap.
template <typename T>
__attribute__((always_inline)) inline void pair_update(T* __restrict__ x, T* __restrict__ out, T* __restrict__ h,
                                                       const int64_t* targets, int64_t count, int64_t D, T lr,
                                                       bool with_loss, double& loss) {
  for (int64_t d = 0; d < D; ++d) h[d] = 0;
  for (int64_t k = 0; k < count; ++k) {
    T* __restrict__ y = out + targets[k] * D;
    const T f = dot(x, y, D);
    const T label = k == 0 ? T(1) : T(0);
    const T g = lr * (label - T(1) / (T(1) + std::exp(-f)));
    if (with_loss) loss -= static_cast<double>(k == 0 ? log_sigmoid(f) : log_sigmoid(-f));
    for (int64_t d = 0; d < D; ++d) {
      const T yd = y[d];
      h[d] += g * yd;
      y[d] = yd + g * x[d];
    }
  }
  for (int64_t d = 0; d < D; ++d) x[d] += h[d];
}

#if defined(__x86_64__) && defined(__GNUC__)
#define GEOLAYERS_SIMD_CLONES __attribute__((target_clones("fma", "default")))
#else
#define GEOLAYERS_SIMD_CLONES
#endif

GEOLAYERS_SIMD_CLONES void pair_update_f32(float* x, float* out, float* h, const int64_t* targets, int64_t count,
                                           int64_t D, float lr, bool with_loss, double& loss) {
  pair_update<float>(x, out, h, targets, count, D, lr, with_loss, loss);
}

GEOLAYERS_SIMD_CLONES void pair_update_f64(double* x, double* out, double* h, const int64_t* targets, int64_t count,
                                           int64_t D, double lr, bool with_loss, double& loss) {
  pair_update<double>(x, out, h, targets, count, D, lr, with_loss, loss);
}

inline void pair_update_any(float* x, float* out, float* h, const int64_t* targets, int64_t count, int64_t D,
                            float lr, bool with_loss, double& loss) {
  pair_update_f32(x, out, h, targets, count, D, lr, with_loss, loss);
}

inline void pair_update_any(double* x, double* out, double* h, const int64_t* targets, int64_t count, int64_t D,
                            double lr, bool with_loss, double& loss) {
  pair_update_f64(x, out, h, targets, count, D, lr, with_loss, loss);
}

template <typename T>
struct Trainer {
  T* in;
  T* out;
  int64_t D;
  const SgnsCorpus& c;
  std::vector<T> h;
  std::vector<int64_t> kept, targets;
  double loss = 0.0;
  int64_t pairs = 0;
  bool with_loss;

  Trainer(T* in_, T* out_, int64_t D_, const SgnsCorpus& c_, bool with_loss_)
      : in(in_), out(out_), D(D_), c(c_), h(D_), kept(c_.L), targets(c_.negatives + 1), with_loss(with_loss_) {}

  void pair(int64_t center, int64_t o, T lr, WalkStream& rng) {
    int64_t count = 0;
    targets[count++] = o;
    for (int64_t k = 0; k < c.negatives; ++k) {
      const int64_t target = alias_draw(rng.next(), c.alias_prob, c.alias_idx, c.V_out);
      if (target != o) targets[count++] = target;
    }
    const int64_t bytes = D * static_cast<int64_t>(sizeof(T));
    for (int64_t k = 0; k < count; ++k) {
      const char* row = reinterpret_cast<const char*>(out + targets[k] * D);
      for (int64_t b = 0; b < bytes; b += 64) __builtin_prefetch(row + b, 1);
    }
    pair_update_any(in + center * D, out, h.data(), targets.data(), count, D, lr, with_loss, loss);
    ++pairs;
  }

  void context(int64_t center, int64_t token, T lr, WalkStream& rng) {
    if (c.ctx_ptr == nullptr) {
      pair(center, token, lr, rng);
      return;
    }
    for (int64_t e = c.ctx_ptr[token]; e < c.ctx_ptr[token + 1]; ++e) pair(center, c.ctx_idx[e], lr, rng);
  }

  void walk(int64_t w, uint64_t seed, int64_t offset, T lr) {
    WalkStream rng = sgns_stream(seed, static_cast<uint64_t>(offset + w));
    const int64_t* row = c.walks + w * c.L;
    int64_t n = 0;
    for (int64_t i = 0; i < c.L && row[i] >= 0; ++i) {
      if (c.keep != nullptr && !(uniform_unit(rng.next()) < c.keep[row[i]])) continue;
      kept[n++] = row[i];
    }
    for (int64_t i = 0; i < n; ++i) {
      if (c.exact) {
        if (i - c.window >= 0) context(kept[i], kept[i - c.window], lr, rng);
        if (i + c.window < n) context(kept[i], kept[i + c.window], lr, rng);
        continue;
      }
      const int64_t reach =
          c.window - (c.shrink ? static_cast<int64_t>(uniform_below(rng.next(), static_cast<uint64_t>(c.window))) : 0);
      const int64_t lo = i - reach < 0 ? 0 : i - reach, hi = i + reach >= n ? n - 1 : i + reach;
      for (int64_t j = lo; j <= hi; ++j)
        if (j != i) context(kept[i], kept[j], lr, rng);
    }
  }
};

at::Tensor sgns_train_cpu(at::Tensor& input, at::Tensor& output, const at::Tensor& walks, const at::Tensor& ctx_ptr,
                          const at::Tensor& ctx_idx, const at::Tensor& alias_prob, const at::Tensor& alias_idx,
                          const at::Tensor& keep_prob, int64_t window, bool shrink_window, bool exact_distance,
                          int64_t negatives, double lr_start, double lr_end, int64_t seed, int64_t offset,
                          bool compute_loss) {
  const SgnsCorpus c = check_sgns_args(input, output, walks, ctx_ptr, ctx_idx, alias_prob, alias_idx, keep_prob,
                                       window, shrink_window, exact_distance, negatives);
  std::atomic<int64_t> done{0};
  double loss = 0.0;
  int64_t pairs = 0;
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "sgns_train_cpu", [&] {
    scalar_t* in = input.data_ptr<scalar_t>();
    scalar_t* outp = output.data_ptr<scalar_t>();
    const int64_t D = input.size(1);
    std::vector<double> thread_loss(at::get_num_threads(), 0.0);
    std::vector<int64_t> thread_pairs(at::get_num_threads(), 0);
    for_each_chunk_per_thread(c.W, [&](int64_t thread, auto&& next_chunk) {
      Trainer<scalar_t> t(in, outp, D, c, compute_loss);
      int64_t begin, end;
      while (next_chunk(begin, end)) {
        for (int64_t w = begin; w < end; ++w) {
          const double frac = static_cast<double>(done.fetch_add(1, std::memory_order_relaxed)) / c.W;
          const scalar_t lr = static_cast<scalar_t>(lr_start + (lr_end - lr_start) * frac);
          t.walk(w, static_cast<uint64_t>(seed), offset, lr);
        }
      }
      thread_loss[thread] += t.loss;
      thread_pairs[thread] += t.pairs;
    });
    for (size_t i = 0; i < thread_loss.size(); ++i) {
      loss += thread_loss[i];
      pairs += thread_pairs[i];
    }
  });
  at::Tensor result = at::empty({2}, input.options().dtype(at::kDouble));
  result[0] = loss;
  result[1] = static_cast<double>(pairs);
  return result;
}

}  // namespace

TORCH_LIBRARY_IMPL(geolayers, CPU, m) { m.impl("sgns_train", &sgns_train_cpu); }

}  // namespace geolayers
