// Shared by the CPU and CUDA kernels of the Poincare-ball distances.
//
// Both kernels evaluate the stable form of the distance on the ball of curvature -c
// (Nickel and Kiela 2017; the arsinh form follows from cosh 2u = 1 + 2 sinh^2 u):
//
//   d(x, y) = 2 / sqrt(c) * asinh(z),   z = sqrt(c) |x - y| / sqrt(a_x a_y),   a_x = 1 - c |x|^2,
//
// with |x - y| taken from the coordinate differences (never from |x|^2 + |y|^2 - 2 x.y, which
// cancels for nearby points) and a_x accumulated in double, floored at eps^2 of the dtype,
// exactly as the reference geolayers.ops.poincare_pairwise_dist_reference. With
// u = 2 g / (|x - y| sqrt(a_x a_y) sqrt(1 + z^2)) for an upstream gradient g, the derivatives are
//
//   dd/dx = u (x - y) + (c / a_x) u |x - y|^2 x,   dd/dy = u (y - x) + (c / a_y) u |x - y|^2 y,
//
// and u = 0 at x == y (the subgradient 0 of the reference's safe norm). The (c / a) term is
// dropped where a was floored, as the gradient of the reference's clamp is.
#pragma once

#include <c10/util/Exception.h>
#include <torch/types.h>

namespace geolayers {

inline void check_poincare_pair(const char* op, const at::Tensor& x, const at::Tensor& y, const at::Tensor& c) {
  TORCH_CHECK_VALUE(x.dim() == 2, op, ": x must be 2-D (N, D), got ", x.dim(), " dims");
  TORCH_CHECK_VALUE(y.dim() == 2, op, ": y must be 2-D (M, D), got ", y.dim(), " dims");
  TORCH_CHECK_VALUE(x.size(1) == y.size(1), op, ": x and y must have the same last dimension, got ", x.size(1),
                    " and ", y.size(1));
  TORCH_CHECK_TYPE(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble, op,
                   ": x must be float32 or float64, got ", x.scalar_type());
  TORCH_CHECK_TYPE(y.scalar_type() == x.scalar_type() && c.scalar_type() == x.scalar_type(), op,
                   ": x, y and c must share a dtype, got ", x.scalar_type(), ", ", y.scalar_type(), " and ",
                   c.scalar_type());
  TORCH_CHECK_VALUE(c.numel() == 1, op, ": c must hold a single value, got shape ", c.sizes());
  TORCH_CHECK_VALUE(x.device() == y.device() && x.device() == c.device(), op,
                    ": x, y and c must be on the same device");
}

inline void check_poincare_index(const char* op, const at::Tensor& x, const at::Tensor& index) {
  TORCH_CHECK_VALUE(index.dim() == 2 && index.size(0) == x.size(0), op, ": index must be (B, K) with B = ",
                    x.size(0), " rows of x, got shape ", index.sizes());
  TORCH_CHECK_TYPE(index.scalar_type() == at::kLong, op, ": index must be int64, got ", index.scalar_type());
  TORCH_CHECK_VALUE(index.device() == x.device(), op, ": index must be on the device of x");
}

}  // namespace geolayers
