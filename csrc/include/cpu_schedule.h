// Dynamic scheduling of CPU work over torch's threads.
//
// at::parallel_for gives each thread one fixed share of the range: on a shared machine, a thread
// that loses its core for a while holds up the whole call. Here every thread claims small chunks
// from a shared counter until none is left, so a slowed thread simply takes fewer. Results that
// depend only on the item index (walks, per-walk random streams) are unchanged.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cstdint>

namespace geolayers {

// Chunk size: about 64 chunks per thread, at least 1 item.
inline int64_t schedule_chunk(int64_t n) {
  const int64_t threads = std::max<int64_t>(at::get_num_threads(), 1);
  return std::max<int64_t>(n / (64 * threads), 1);
}

// fn(thread, next_chunk): next_chunk(begin, end) claims the next chunk [begin, end), false when
// the range is exhausted. One call of fn per thread.
template <typename F>
void for_each_chunk_per_thread(int64_t n, const F& fn) {
  if (n <= 0) return;
  const int64_t chunk = schedule_chunk(n);
  std::atomic<int64_t> next{0};
  auto next_chunk = [&](int64_t& begin, int64_t& end) {
    begin = next.fetch_add(chunk, std::memory_order_relaxed);
    if (begin >= n) return false;
    end = std::min(begin + chunk, n);
    return true;
  };
  const int64_t threads = std::max<int64_t>(at::get_num_threads(), 1);
  at::parallel_for(0, threads, 1, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) fn(t, next_chunk);
  });
}

// fn(begin, end) over dynamically claimed chunks of [0, n).
template <typename F>
void for_each_chunk(int64_t n, const F& fn) {
  for_each_chunk_per_thread(n, [&](int64_t, auto&& next_chunk) {
    int64_t begin, end;
    while (next_chunk(begin, end)) fn(begin, end);
  });
}

}  // namespace geolayers
