// Uniform, weighted and node2vec random walks on a CSR graph, CPU. The step rule and the random
// numbers are in random_walk.h, shared with the CUDA kernel, so both produce the same walks.
#include <ATen/Parallel.h>
#include <torch/library.h>
#include <torch/types.h>

#include <cstdint>

#include "checks.h"
#include "cpu_alloc.h"
#include "cpu_schedule.h"
#include "random_walk.h"

namespace geolayers {
namespace {

// Walks advanced together by one thread: their memory accesses are independent, so the
// out-of-order core overlaps the cache misses of one walk's lookups with the others'.
constexpr int64_t kLanes = 8;

at::Tensor row_prefix_sums(const at::Tensor& rowptr, const at::Tensor& weight) {
  const int64_t n = rowptr.numel() - 1;
  at::Tensor w = weight.to(at::kDouble).contiguous();
  at::Tensor cum = at::empty_like(w);
  const int64_t* rp = rowptr.data_ptr<int64_t>();
  const double* wp = w.data_ptr<double>();
  double* cp = cum.data_ptr<double>();
  at::parallel_for(0, n, 1024, [&](int64_t begin, int64_t end) {
    for (int64_t v = begin; v < end; ++v) {
      double acc = 0.0;
      for (int64_t e = rp[v]; e < rp[v + 1]; ++e) cp[e] = (acc += wp[e]);
    }
  });
  return cum;
}

at::Tensor random_walk_cpu(const at::Tensor& rowptr, const at::Tensor& col, const c10::optional<at::Tensor>& weight,
                           const at::Tensor& start, int64_t walk_length, double p, double q, int64_t seed,
                           int64_t offset) {
  const at::Tensor w = check_random_walk_args(rowptr, col, weight, start, walk_length, p, q);
  const at::Tensor cum = w.defined() ? row_prefix_sums(rowptr, w) : at::Tensor();
  const int64_t* rp = rowptr.data_ptr<int64_t>();
  const WalkGraph g{rp, col.data_ptr<int64_t>(), cum.defined() ? cum.data_ptr<double>() : nullptr};
  const WalkBias bias = make_walk_bias(p, q);
  const int64_t S = start.numel(), L = walk_length;
  at::Tensor out = empty_large({S, L + 1}, rowptr.options());
  int64_t* op = out.data_ptr<int64_t>();
  const int64_t* sp = start.data_ptr<int64_t>();
  const uint64_t key = static_cast<uint64_t>(seed);
  const int64_t num_groups = (S + kLanes - 1) / kLanes;
  for_each_chunk(num_groups, [&](int64_t begin, int64_t end) {
    for (int64_t group = begin; group < end; ++group) {
      const int64_t s0 = group * kLanes, lanes = S - s0 < kLanes ? S - s0 : kLanes;
      int64_t prev[kLanes], cur[kLanes];
      for (int64_t i = 0; i < lanes; ++i) {
        prev[i] = -1;
        cur[i] = sp[s0 + i];
        op[(s0 + i) * (L + 1)] = cur[i];
      }
      if (!bias.biased) {
        // First-order walks: one Philox block serves two steps (see random_walk.h).
        PhiloxOut block[kLanes];
        for (int64_t step = 1; step <= L; ++step) {
          for (int64_t i = 0; i < lanes; ++i) {
            if ((step & 1) == 0 || step == 1)
              block[i] = first_order_block(key, static_cast<uint64_t>(offset + s0 + i), static_cast<uint64_t>(step));
            int64_t next = -1;
            if (cur[i] >= 0) {
              const int64_t pos = draw_neighbour(g, cur[i], first_order_bits(block[i], static_cast<uint64_t>(step)));
              next = pos < 0 ? -1 : g.col[pos];
            }
            cur[i] = next;
            op[(s0 + i) * (L + 1) + step] = next;
          }
        }
        continue;
      }
      for (int64_t step = 1; step <= L; ++step) {
        for (int64_t i = 0; i < lanes; ++i) {
          int64_t next = -1;
          if (cur[i] >= 0) {
            next = walk_step(g, bias, prev[i], cur[i], key, static_cast<uint64_t>(offset + s0 + i),
                             static_cast<uint64_t>(step));
          }
          prev[i] = cur[i];
          cur[i] = next;
          op[(s0 + i) * (L + 1) + step] = next;
        }
      }
    }
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(geolayers, CPU, m) { m.impl("random_walk", &random_walk_cpu); }

}  // namespace geolayers
