// Skip-gram with negative sampling (Mikolov et al., "Distributed Representations of Words and
// Phrases and their Compositionality", NeurIPS 2013) over walk corpora: the per-walk random
// stream and the pair schedule, shared by the CPU and CUDA kernels and mirrored by the Python
// reference (geolayers/ops/sgns.py).
#pragma once

#include <torch/types.h>

#include <cstdint>

#include "checks.h"
#include "philox.h"

namespace geolayers {

// SplitMix64 (Steele et al., OOPSLA 2014): a walk's stream of draws, seeded from Philox by
// (seed, global walk index), so each walk's draws are the same whatever thread runs it.
struct WalkStream {
  uint64_t state;
  GEOLAYERS_HOST_DEVICE uint64_t next() {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
};

constexpr uint64_t kSgnsStreamTag = 0x53474E53ull;  // "SGNS": keeps these counters apart from walks'

GEOLAYERS_HOST_DEVICE WalkStream sgns_stream(uint64_t seed, uint64_t walk) {
  return WalkStream{philox_u64(seed, walk, kSgnsStreamTag)};
}

// One negative from Walker's alias table (prob (V,), alias (V,)): column from the high 32 bits,
// coin from the low 32 bits of one draw.
GEOLAYERS_HOST_DEVICE int64_t alias_draw(uint64_t bits, const double* prob, const int64_t* alias, int64_t V) {
  const int64_t col = static_cast<int64_t>(((bits >> 32) * static_cast<uint64_t>(V)) >> 32);
  const double coin = static_cast<double>(bits & 0xFFFFFFFFull) * 0x1.0p-32;
  return coin < prob[col] ? col : alias[col];
}

// Raw view of one sgns_train call's corpus, read by both kernels.
struct SgnsCorpus {
  const int64_t* walks;  // (W, L)
  int64_t W, L;
  const int64_t* ctx_ptr;  // (V_in + 1,) or null: contexts are the tokens themselves
  const int64_t* ctx_idx;
  const double* alias_prob;  // (V_out,)
  const int64_t* alias_idx;
  int64_t V_out;
  const double* keep;  // (V_in,) or null
  int64_t window, negatives;
  bool shrink, exact;
};

// The kernels' own checks of a direct op call (the Python wrapper checks first, with friendlier
// messages): wrong shapes, dtypes or out-of-range ids raise instead of reading out of bounds.
inline SgnsCorpus check_sgns_args(const at::Tensor& input, const at::Tensor& output, const at::Tensor& walks,
                                  const at::Tensor& ctx_ptr, const at::Tensor& ctx_idx, const at::Tensor& alias_prob,
                                  const at::Tensor& alias_idx, const at::Tensor& keep_prob, int64_t window,
                                  bool shrink_window, bool exact_distance, int64_t negatives) {
  const char* op = "sgns_train";
  TORCH_CHECK(input.dim() == 2 && output.dim() == 2 && input.size(1) == output.size(1),
              op, ": input (V_in, D) and output (V_out, D) must be 2-D with one D");
  TORCH_CHECK(input.scalar_type() == output.scalar_type() &&
                  (input.scalar_type() == at::kFloat || input.scalar_type() == at::kDouble),
              op, ": input and output must both be float32 or both float64");
  TORCH_CHECK(input.is_contiguous() && output.is_contiguous(), op, ": input and output must be contiguous");
  TORCH_CHECK(walks.dim() == 2 && walks.scalar_type() == at::kLong && walks.is_contiguous(), op,
              ": walks must be a contiguous int64 (W, L) tensor");
  TORCH_CHECK(window >= 1 && negatives >= 0, op, ": window must be >= 1 and negatives >= 0");
  for (const at::Tensor* t : {&output, &walks, &ctx_ptr, &ctx_idx, &alias_prob, &alias_idx, &keep_prob})
    TORCH_CHECK(t->numel() == 0 || t->device() == input.device(), op, ": every tensor must be on ", input.device());
  const int64_t V_in = input.size(0), V_out = output.size(0);
  check_index_values(op, "walks", walks, -1, V_in);
  const bool has_ctx = ctx_ptr.numel() > 0;
  if (has_ctx) {
    TORCH_CHECK(ctx_ptr.scalar_type() == at::kLong && ctx_idx.scalar_type() == at::kLong && ctx_ptr.dim() == 1 &&
                    ctx_ptr.numel() == V_in + 1 && ctx_ptr.is_contiguous() && ctx_idx.is_contiguous(),
                op, ": context_ptr must be int64 (V_in + 1,) and context_idx int64 (C,), contiguous");
    TORCH_CHECK(ctx_ptr[0].item<int64_t>() == 0 && ctx_ptr[V_in].item<int64_t>() == ctx_idx.numel(), op,
                ": context_ptr must start at 0 and end at C");
    check_index_values(op, "context_idx", ctx_idx, 0, V_out);
  } else {
    TORCH_CHECK(V_out == V_in, op, ": without contexts, input and output need one vocabulary size");
  }
  TORCH_CHECK(alias_prob.scalar_type() == at::kDouble && alias_idx.scalar_type() == at::kLong &&
                  alias_prob.numel() == V_out && alias_idx.numel() == V_out && alias_prob.is_contiguous() &&
                  alias_idx.is_contiguous(),
              op, ": alias_prob float64 (V_out,) and alias_idx int64 (V_out,) expected");
  check_index_values(op, "alias_idx", alias_idx, 0, V_out);
  const bool has_keep = keep_prob.numel() > 0;
  TORCH_CHECK(!has_keep || (keep_prob.scalar_type() == at::kDouble && keep_prob.numel() == V_in &&
                            keep_prob.is_contiguous()),
              op, ": keep_prob must be empty or float64 (V_in,)");
  return SgnsCorpus{walks.data_ptr<int64_t>(), walks.size(0), walks.size(1),
                    has_ctx ? ctx_ptr.data_ptr<int64_t>() : nullptr, has_ctx ? ctx_idx.data_ptr<int64_t>() : nullptr,
                    alias_prob.data_ptr<double>(), alias_idx.data_ptr<int64_t>(), V_out,
                    has_keep ? keep_prob.data_ptr<double>() : nullptr, window, negatives, shrink_window,
                    exact_distance};
}

}  // namespace geolayers
