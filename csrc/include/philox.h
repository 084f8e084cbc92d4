// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011): a
// counter-based generator. Every random number is a pure function of (key, counter), so a
// sampler that keys its counters by (seed, epoch, item) draws the same numbers whatever the
// number of threads or the order in which items are processed. Host and device.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define GEOLAYERS_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define GEOLAYERS_HOST_DEVICE inline
#endif

namespace geolayers {

struct PhiloxOut {
  uint32_t w[4];
};

GEOLAYERS_HOST_DEVICE PhiloxOut philox4x32(uint64_t key, uint64_t c0, uint64_t c1) {
  uint32_t k0 = static_cast<uint32_t>(key), k1 = static_cast<uint32_t>(key >> 32);
  uint32_t x0 = static_cast<uint32_t>(c0), x1 = static_cast<uint32_t>(c0 >> 32);
  uint32_t x2 = static_cast<uint32_t>(c1), x3 = static_cast<uint32_t>(c1 >> 32);
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = static_cast<uint64_t>(0xD2511F53u) * x0;
    const uint64_t p1 = static_cast<uint64_t>(0xCD9E8D57u) * x2;
    const uint32_t y0 = static_cast<uint32_t>(p1 >> 32) ^ x1 ^ k0;
    const uint32_t y2 = static_cast<uint32_t>(p0 >> 32) ^ x3 ^ k1;
    x1 = static_cast<uint32_t>(p1);
    x3 = static_cast<uint32_t>(p0);
    x0 = y0;
    x2 = y2;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return PhiloxOut{{x0, x1, x2, x3}};
}

// 64 random bits from the first two words.
GEOLAYERS_HOST_DEVICE uint64_t philox_u64(uint64_t key, uint64_t c0, uint64_t c1) {
  const PhiloxOut r = philox4x32(key, c0, c1);
  return (static_cast<uint64_t>(r.w[0]) << 32) | r.w[1];
}

// Uniform integer in [0, n) by the multiply-shift method (Lemire 2019); the bias is below
// n / 2^64, far under anything a sampler could see.
GEOLAYERS_HOST_DEVICE uint64_t uniform_below(uint64_t bits, uint64_t n) {
#if defined(__CUDA_ARCH__)
  return __umul64hi(bits, n);
#else
  return static_cast<uint64_t>((static_cast<unsigned __int128>(bits) * n) >> 64);
#endif
}

// Uniform double in [0, 1) from the top 53 bits.
GEOLAYERS_HOST_DEVICE double uniform_unit(uint64_t bits) { return static_cast<double>(bits >> 11) * 0x1.0p-53; }

}  // namespace geolayers
