// Input checks shared by the CPU and CUDA kernels.
#pragma once

#include <c10/util/Exception.h>
#include <torch/types.h>

#include <cstdint>

namespace geolayers {

// Every value of the int64 tensor `t` lies in [lo, n): an IndexError naming the op and the
// argument otherwise. Costs one min and one max (a device synchronisation on CUDA), which is what
// keeps a direct call with bad indices from reading out of bounds.
inline void check_index_values(const char* op, const char* name, const at::Tensor& t, int64_t lo, int64_t n) {
  if (t.numel() == 0) return;
  const int64_t mn = t.min().item<int64_t>(), mx = t.max().item<int64_t>();
  TORCH_CHECK_INDEX(mn >= lo && mx < n, op, ": ", name, " values must lie in [", lo, ", ", n, "), got range [", mn,
                    ", ", mx, "]");
}

}  // namespace geolayers
