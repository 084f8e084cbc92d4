// Shared by the CPU and CUDA segment reduction kernels.
#pragma once

#include <c10/util/Exception.h>
#include <torch/types.h>

#include <string>

namespace geolayers {

enum class SegmentReduce { Sum = 0, Mean = 1, Max = 2, Min = 3 };

inline SegmentReduce parse_segment_reduce(const std::string& reduce) {
  if (reduce == "sum") return SegmentReduce::Sum;
  if (reduce == "mean") return SegmentReduce::Mean;
  if (reduce == "max") return SegmentReduce::Max;
  if (reduce == "min") return SegmentReduce::Min;
  TORCH_CHECK_VALUE(false, "segment_reduce_csr: reduce must be one of 'sum', 'mean', 'max', 'min' (got '",
                    reduce, "')");
}

inline bool has_arg(SegmentReduce r) { return r == SegmentReduce::Max || r == SegmentReduce::Min; }

// Shape and dtype checks that must hold before any kernel touches memory. They are O(1); the
// O(S) content checks of ptr (monotone, ends at N) are done by the CPU kernel, and by the Python
// wrapper for every device.
inline void check_segment_inputs(const at::Tensor& src, const at::Tensor& ptr) {
  TORCH_CHECK_VALUE(src.dim() == 2, "segment_reduce_csr: src must be 2-D (N, F), got ", src.dim(), " dims");
  TORCH_CHECK_VALUE(ptr.dim() == 1 && ptr.size(0) >= 1,
                    "segment_reduce_csr: ptr must be 1-D with at least one entry, got shape ", ptr.sizes());
  TORCH_CHECK_TYPE(ptr.scalar_type() == at::kLong, "segment_reduce_csr: ptr must be int64, got ",
                   ptr.scalar_type());
  TORCH_CHECK_TYPE(at::isFloatingType(src.scalar_type()), "segment_reduce_csr: src must be floating point, got ",
                   src.scalar_type());
  TORCH_CHECK_VALUE(src.device() == ptr.device(), "segment_reduce_csr: src and ptr must be on the same device");
}

}  // namespace geolayers
