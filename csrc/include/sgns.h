// Skip-gram with negative sampling (Mikolov et al., "Distributed Representations of Words and
// Phrases and their Compositionality", NeurIPS 2013) over walk corpora: the per-walk random
// stream and the pair schedule, shared by the CPU and CUDA kernels and mirrored by the Python
// reference (geolayers/ops/sgns.py).
#pragma once

#include <cstdint>

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

}  // namespace geolayers
