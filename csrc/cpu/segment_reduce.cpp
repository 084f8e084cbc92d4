// CPU kernels of segment_reduce_csr: one parallel pass over segments, each segment reduced
// row by row into a per-thread accumulator of F values, so every input row is read once and
// every output element is written once (no zero-fill, no atomics, no sort).
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "cpu_alloc.h"
#include "segment_reduce.h"

namespace geolayers {
namespace {

// O(S) validation of the offsets. Cheap next to the O(N F) reduction, and it is what keeps a
// direct call of torch.ops.geolayers.segment_reduce_csr with bad offsets from reading out of bounds.
void check_ptr_contents(const at::Tensor& ptr, int64_t num_rows) {
  const int64_t* p = ptr.data_ptr<int64_t>();
  const int64_t S = ptr.numel() - 1;
  TORCH_CHECK_VALUE(p[0] == 0, "segment_reduce_csr: ptr[0] must be 0, got ", p[0]);
  TORCH_CHECK_VALUE(p[S] == num_rows, "segment_reduce_csr: ptr[-1] must equal the number of rows of src (",
                    num_rows, "), got ", p[S]);
  for (int64_t s = 0; s < S; ++s) {
    TORCH_CHECK_VALUE(p[s] <= p[s + 1], "segment_reduce_csr: ptr must be non-decreasing, but ptr[", s, "] = ", p[s],
                      " > ptr[", s + 1, "] = ", p[s + 1]);
  }
}

// Segments per parallel task: about GRAIN_SIZE elements of work each, at least one segment.
int64_t segment_grain(int64_t num_rows, int64_t num_segments, int64_t F) {
  const int64_t work = std::max<int64_t>(1, num_rows * std::max<int64_t>(F, 1));
  const int64_t per_segment = std::max<int64_t>(1, work / std::max<int64_t>(num_segments, 1));
  return std::max<int64_t>(1, at::internal::GRAIN_SIZE / per_segment);
}

template <typename scalar_t>
void sum_forward(const scalar_t* src, const int64_t* ptr, scalar_t* out, int64_t S, int64_t F, bool mean,
                 int64_t grain) {
  using acc_t = at::opmath_type<scalar_t>;
  at::parallel_for(0, S, grain, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> acc(F);
    for (int64_t s = begin; s < end; ++s) {
      const int64_t p0 = ptr[s], p1 = ptr[s + 1];
      std::fill(acc.begin(), acc.end(), acc_t(0));
      acc_t* a = acc.data();
      for (int64_t i = p0; i < p1; ++i) {
        const scalar_t* row = src + i * F;
        for (int64_t f = 0; f < F; ++f) a[f] += static_cast<acc_t>(row[f]);
      }
      const acc_t scale = (mean && p1 > p0) ? acc_t(1) / acc_t(p1 - p0) : acc_t(1);
      scalar_t* o = out + s * F;
      for (int64_t f = 0; f < F; ++f) o[f] = static_cast<scalar_t>(a[f] * scale);
    }
  });
}

// NaN propagates, as in torch.amax / torch.amin. Two passes over each segment, both written as
// same-width selects so that the compiler vectorises them: the extremum first (with a separate
// NaN flag), then the first row attaining it, scanning backwards so that the last write wins
// and keeping row offsets in a 32-bit buffer. The segment is still in cache for the second pass.
template <typename scalar_t, bool IsMax>
void arg_forward(const scalar_t* src, const int64_t* ptr, scalar_t* out, int64_t* arg, int64_t S, int64_t F,
                 int64_t grain) {
  using offset_t = std::conditional_t<sizeof(scalar_t) == 8, int64_t, int32_t>;
  at::parallel_for(0, S, grain, [&](int64_t begin, int64_t end) {
    std::vector<scalar_t> nan_flag(F);
    std::vector<offset_t> offset(F);
    for (int64_t s = begin; s < end; ++s) {
      const int64_t p0 = ptr[s], p1 = ptr[s + 1];
      scalar_t* __restrict__ o = out + s * F;
      int64_t* __restrict__ a = arg + s * F;
      if (p1 == p0) {
        for (int64_t f = 0; f < F; ++f) {
          o[f] = scalar_t(0);
          a[f] = -1;
        }
        continue;
      }
      TORCH_CHECK_VALUE(p1 - p0 <= std::numeric_limits<offset_t>::max(),
                        "segment_reduce_csr: a max/min segment of float32 or narrower holds at most 2^31 - 1 rows");
      scalar_t* __restrict__ flag = nan_flag.data();
      offset_t* __restrict__ off = offset.data();
      const scalar_t* first = src + p0 * F;
      for (int64_t f = 0; f < F; ++f) {
        o[f] = first[f];
        flag[f] = first[f];
      }
      for (int64_t i = p0 + 1; i < p1; ++i) {
        const scalar_t* __restrict__ row = src + i * F;
        for (int64_t f = 0; f < F; ++f) {
          const scalar_t v = row[f];
          o[f] = (IsMax ? (v > o[f]) : (v < o[f])) ? v : o[f];
          flag[f] = v != v ? v : flag[f];
        }
      }
      for (int64_t f = 0; f < F; ++f) o[f] = flag[f] != flag[f] ? flag[f] : o[f];
      for (int64_t i = p1 - 1; i >= p0; --i) {
        const scalar_t* __restrict__ row = src + i * F;
        const offset_t rel = static_cast<offset_t>(i - p0);
        for (int64_t f = 0; f < F; ++f) {
          const scalar_t v = row[f], best = o[f];
          off[f] = ((v == best) || (v != v && best != best)) ? rel : off[f];
        }
      }
      for (int64_t f = 0; f < F; ++f) a[f] = p0 + static_cast<int64_t>(off[f]);
    }
  });
}

std::tuple<at::Tensor, at::Tensor> segment_reduce_csr_cpu(const at::Tensor& src_in, const at::Tensor& ptr_in,
                                                          c10::string_view reduce_name) {
  check_segment_inputs(src_in, ptr_in);
  const SegmentReduce reduce = parse_segment_reduce(std::string(reduce_name));
  const at::Tensor src = src_in.contiguous();
  const at::Tensor ptr = ptr_in.contiguous();
  const int64_t N = src.size(0), F = src.size(1), S = ptr.numel() - 1;
  check_ptr_contents(ptr, N);

  at::Tensor out = empty_large({S, F}, src.options());
  at::Tensor arg = has_arg(reduce) ? at::empty({S, F}, ptr.options()) : at::empty({0}, ptr.options());
  if (S == 0 || F == 0) return {out, arg};
  const int64_t grain = segment_grain(N, S, F);
  const int64_t* p = ptr.data_ptr<int64_t>();

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, src.scalar_type(), "segment_reduce_csr_cpu", [&] {
    const scalar_t* x = src.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    switch (reduce) {
      case SegmentReduce::Sum:
        sum_forward<scalar_t>(x, p, o, S, F, false, grain);
        break;
      case SegmentReduce::Mean:
        sum_forward<scalar_t>(x, p, o, S, F, true, grain);
        break;
      case SegmentReduce::Max:
        arg_forward<scalar_t, true>(x, p, o, arg.data_ptr<int64_t>(), S, F, grain);
        break;
      case SegmentReduce::Min:
        arg_forward<scalar_t, false>(x, p, o, arg.data_ptr<int64_t>(), S, F, grain);
        break;
    }
  });
  return {out, arg};
}

at::Tensor segment_reduce_csr_backward_cpu(const at::Tensor& grad_in, const at::Tensor& ptr_in,
                                           const at::Tensor& arg_in, int64_t num_rows,
                                           c10::string_view reduce_name) {
  const SegmentReduce reduce = parse_segment_reduce(std::string(reduce_name));
  TORCH_CHECK_VALUE(grad_in.dim() == 2, "segment_reduce_csr_backward: grad_out must be 2-D (S, F)");
  TORCH_CHECK_VALUE(ptr_in.dim() == 1 && ptr_in.size(0) >= 1 && ptr_in.scalar_type() == at::kLong,
                    "segment_reduce_csr_backward: ptr must be a non-empty 1-D int64 tensor");
  TORCH_CHECK_TYPE(at::isFloatingType(grad_in.scalar_type()),
                   "segment_reduce_csr_backward: grad_out must be floating point");
  const at::Tensor grad = grad_in.contiguous();
  const at::Tensor ptr = ptr_in.contiguous();
  const int64_t S = ptr.numel() - 1, F = grad.size(1);
  TORCH_CHECK_VALUE(grad.size(0) == S, "segment_reduce_csr_backward: grad_out must have ", S, " rows, got ",
                    grad.size(0));
  check_ptr_contents(ptr, num_rows);
  at::Tensor arg;
  if (has_arg(reduce)) {
    TORCH_CHECK_VALUE(arg_in.sizes() == grad.sizes() && arg_in.scalar_type() == at::kLong,
                      "segment_reduce_csr_backward: arg must be int64 of shape ", grad.sizes());
    arg = arg_in.contiguous();
  }

  at::Tensor grad_src = empty_large({num_rows, F}, grad.options());
  if (num_rows == 0 || F == 0) return grad_src;
  const int64_t grain = segment_grain(num_rows, S, F);
  const int64_t* p = ptr.data_ptr<int64_t>();

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "segment_reduce_csr_backward_cpu",
                                  [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* g = grad.data_ptr<scalar_t>();
    scalar_t* gs = grad_src.data_ptr<scalar_t>();
    if (!has_arg(reduce)) {
      const bool mean = reduce == SegmentReduce::Mean;
      at::parallel_for(0, S, grain, [&](int64_t begin, int64_t end) {
        for (int64_t s = begin; s < end; ++s) {
          const int64_t p0 = p[s], p1 = p[s + 1];
          const acc_t scale = (mean && p1 > p0) ? acc_t(1) / acc_t(p1 - p0) : acc_t(1);
          const scalar_t* gr = g + s * F;
          for (int64_t i = p0; i < p1; ++i) {
            scalar_t* row = gs + i * F;
            for (int64_t f = 0; f < F; ++f) row[f] = static_cast<scalar_t>(static_cast<acc_t>(gr[f]) * scale);
          }
        }
      });
    } else {
      // Each element of grad_src is written exactly once: the selected row of its segment gets
      // the output gradient, every other row zero. No separate zero-fill pass.
      const int64_t* a = arg.data_ptr<int64_t>();
      at::parallel_for(0, S, grain, [&](int64_t begin, int64_t end) {
        for (int64_t s = begin; s < end; ++s) {
          const scalar_t* gr = g + s * F;
          const int64_t* ar = a + s * F;
          for (int64_t i = p[s]; i < p[s + 1]; ++i) {
            scalar_t* row = gs + i * F;
            for (int64_t f = 0; f < F; ++f) row[f] = ar[f] == i ? gr[f] : scalar_t(0);
          }
        }
      });
    }
  });
  return grad_src;
}

}  // namespace

TORCH_LIBRARY_IMPL(geolayers, CPU, m) {
  m.impl("segment_reduce_csr", &segment_reduce_csr_cpu);
  m.impl("segment_reduce_csr_backward", &segment_reduce_csr_backward_cpu);
}

}  // namespace geolayers
