r"""Poincare-ball distances: ``poincare_pairwise_dist``, ``poincare_gather_dist`` and references.

Both evaluate the geodesic distance on the ball of curvature :math:`-c` (`"Poincare Embeddings
for Learning Hierarchical Representations" <https://arxiv.org/abs/1705.08039>`_, Nickel and
Kiela 2017, eq. 1, for ``c = 1``) in its stable form

.. math::
    d_c(x, y) = \frac{2}{\sqrt c}\operatorname{arsinh}\frac{\sqrt c\,\lVert x - y\rVert}
        {\sqrt{(1 - c\lVert x\rVert^2)(1 - c\lVert y\rVert^2)}}

(the same number as :math:`\operatorname{arcosh}(1 + 2c\lVert x-y\rVert^2 / (\ldots))`, from
:math:`\cosh 2u = 1 + 2\sinh^2 u`), with the chord taken from the coordinate differences and
:math:`1 - c\lVert x\rVert^2` accumulated in float64. The matrix-product form
:math:`\lVert x\rVert^2 + \lVert y\rVert^2 - 2\langle x, y\rangle` is faster to write but
cancels for nearby points, and near the boundary nearby points are far apart: it loses every
digit there (see ``benchmarks/hyperbolic_ops.py``).

The compiled kernels make one pass over blocks of the output, forward and backward, and never
hold the ``(N, M, D)`` difference tensor; the references hold at most a block of it at a time.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from geolayers._checks import describe, safe_sqrt
from geolayers.ops._extension import EXTENSION_LOADED, use_kernel

# The references work on blocks of rows so that at most this many elements of the (rows, M, D)
# difference tensor exist at once (32 MiB in float64).
_CHUNK_ELEMENTS = 1 << 22


# --------------------------------------------------------------------- numerics shared with
# geolayers.hyperbolic.poincare (promoted here so that the kernels' references and the
# functional ops compute the same numbers)


def one_minus_c_sq_norm(x: Tensor, c: Tensor) -> Tensor:
    r""":math:`1 - c\lVert x\rVert^2`, ``(..., D) -> (..., 1)``, unclamped.

    In float32 the rounding of the sum of squares (a few 1e-8, absolute) would be 1e-4 relative
    to :math:`1 - c\lVert x\rVert^2 = 2\cdot 10^{-3}` at the norm :math:`1 - 10^{-3}`, and every
    distance and conformal factor inherits it; accumulating this one reduction in float64
    costs a cast and keeps the ops within 1e-4 up to that norm.

    Example:
        >>> one_minus_c_sq_norm(torch.tensor([0.6, 0.0]), torch.tensor(1.0))
        tensor([0.6400])
    """
    if x.dtype == torch.float32:
        return (1 - c.double() * x.double().square().sum(-1, keepdim=True)).float()
    return 1 - c * x.square().sum(-1, keepdim=True)


def ball_denominator(x: Tensor, c: Tensor) -> Tensor:
    r""":math:`1 - c\lVert x\rVert^2` of a point of the ball, ``(..., 1)``, floored at
    :math:`\epsilon^2` of the dtype.

    Positive for every point of the ball (the closest float to the boundary has about
    :math:`2\epsilon`), so the floor only catches points outside it, which then get huge but
    finite results instead of NaN.

    Example:
        >>> ball_denominator(torch.tensor([2.0, 0.0]), torch.tensor(1.0)).item() > 0
        True
    """
    return one_minus_c_sq_norm(x, c).clamp_min(torch.finfo(x.dtype).eps ** 2)


def chord_dist(chord: Tensor, ax: Tensor, ay: Tensor, sqrt_c: Tensor) -> Tensor:
    r"""The distance from the chord :math:`\lVert x - y\rVert` and the two
    :func:`ball_denominator`\ s: :math:`2/\sqrt c\,\operatorname{arsinh}(\sqrt c\,\mathrm{chord}
    / \sqrt{a_x a_y})`, every factor a positive quantity computed without cancellation.

    Example:
        >>> one = torch.tensor(1.0)
        >>> chord_dist(torch.tensor(0.5), torch.tensor(1.0), torch.tensor(0.75), one)
        tensor(1.0986)
    """
    return 2 / sqrt_c * torch.asinh(sqrt_c * chord / torch.sqrt(ax * ay))


# --------------------------------------------------------------------- input checks


def _check_inputs(op: str, x: object, y: object, c: object) -> tuple[Tensor, Tensor, Tensor]:
    for name, t, slot in (("x", x, "N, D"), ("y", y, "M, D")):
        if not isinstance(t, Tensor) or t.dtype not in (torch.float32, torch.float64):
            raise TypeError(
                f"{op}: {name} must be a float32 or float64 tensor ({slot}), got {describe(t)}"
            )
        if t.dim() != 2:
            raise ValueError(f"{op}: {name} must have shape ({slot}), got {tuple(t.shape)}")
    if x.shape[1] != y.shape[1]:
        raise ValueError(
            f"{op}: x and y must have the same last dimension, got {x.shape[1]} (x) and "
            f"{y.shape[1]} (y)"
        )
    if x.dtype != y.dtype:
        raise TypeError(f"{op}: x and y must share a dtype, got {x.dtype} (x) and {y.dtype} (y)")
    if x.device != y.device:
        raise ValueError(f"{op}: x and y must be on one device, got {x.device} and {y.device}")
    if isinstance(c, bool) or not isinstance(c, (int, float, Tensor)):
        raise TypeError(f"{op}: c must be a positive float or a 0-dim tensor, got {describe(c)}")
    if isinstance(c, Tensor):
        if not c.is_floating_point() or c.numel() != 1:
            raise ValueError(
                f"{op}: c must be a floating-point tensor with one value, got {describe(c)}"
            )
        c = c.reshape(()).to(dtype=x.dtype, device=x.device)
        if not torch.compiler.is_compiling():
            value = float(c.detach())
            if not (0 < value < float("inf")):
                raise ValueError(f"{op}: c must be positive and finite, got {value}")
    else:
        if not (0 < c < float("inf")):
            raise ValueError(f"{op}: c must be positive and finite, got {c}")
        c = torch.tensor(float(c), dtype=x.dtype, device=x.device)
    return x, y, c


def _check_index(x: Tensor, y: Tensor, index: object) -> Tensor:
    op = "poincare_gather_dist"
    if not isinstance(index, Tensor) or index.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"{op}: index must be an int64 tensor (B, K), got {describe(index)}")
    if index.dim() != 2 or index.shape[0] != x.shape[0]:
        raise ValueError(
            f"{op}: index must have shape (B, K) with B = {x.shape[0]} (the rows of x), got "
            f"{tuple(index.shape)}"
        )
    if index.device != x.device:
        raise ValueError(f"{op}: index must be on the device of x ({x.device}), got {index.device}")
    if index.numel() > 0 and not torch.compiler.is_compiling():
        lo, hi = int(index.min()), int(index.max())
        if lo < 0 or hi >= y.shape[0]:
            raise IndexError(
                f"{op}: index values must lie in [0, {y.shape[0]}) (the rows of y), got the "
                f"range [{lo}, {hi}]"
            )
    return index.long()


# --------------------------------------------------------------------- references


def poincare_pairwise_dist_reference(x: Tensor, y: Tensor, c: Tensor) -> Tensor:
    """Pure-PyTorch reference of :func:`poincare_pairwise_dist` (differentiable by autograd).

    Shapes: ``x: (N, D)``, ``y: (M, D)``, ``c`` 0-dim -> ``(N, M)``. Works on blocks of rows;
    when gradients are needed each block is checkpointed (recomputed in the backward pass), so
    neither pass keeps the whole ``(N, M, D)`` difference tensor.

    Example:
        >>> poincare_pairwise_dist_reference(torch.zeros(1, 2), torch.tensor([[0.0, 0.5]]),
        ...                                  torch.tensor(1.0))
        tensor([[1.0986]])
    """
    return blocked_pairwise_chord_dist(
        x, y, ball_denominator(x, c), ball_denominator(y, c).squeeze(-1), c.sqrt()
    )


def blocked_pairwise_chord_dist(
    x: Tensor, y: Tensor, ax: Tensor, ay: Tensor, sqrt_c: Tensor
) -> Tensor:
    r""":func:`chord_dist` of all pairs of rows, ``(N, D) x (M, D) -> (N, M)``, from given
    denominators ``ax: (N, 1)`` and ``ay: (M,)``, one block of rows at a time.

    The Lorentz model uses it with its exact denominators :math:`2 / (1 + \sqrt c\, x_0)`.
    When gradients are needed each block is checkpointed (recomputed in the backward pass).

    Example:
        >>> one = torch.tensor(1.0)
        >>> blocked_pairwise_chord_dist(torch.zeros(1, 2), torch.tensor([[0.0, 0.5]]),
        ...                             torch.ones(1, 1), torch.tensor([0.75]), one)
        tensor([[1.0986]])
    """

    def block(xb: Tensor, axb: Tensor, y: Tensor, ay: Tensor, sqrt_c: Tensor) -> Tensor:
        chord = safe_sqrt((xb.unsqueeze(1) - y.unsqueeze(0)).square().sum(-1))
        return chord_dist(chord, axb, ay, sqrt_c)

    rows = max(1, _CHUNK_ELEMENTS // max(1, y.shape[0] * y.shape[1]))
    if rows >= x.shape[0]:
        return block(x, ax, y, ay, sqrt_c)
    grad = torch.is_grad_enabled() and any(t.requires_grad for t in (x, y, ax, ay, sqrt_c))
    out = []
    for start in range(0, x.shape[0], rows):
        args = (x[start : start + rows], ax[start : start + rows], y, ay, sqrt_c)
        out.append(checkpoint(block, *args, use_reentrant=False) if grad else block(*args))
    return torch.cat(out, dim=0)


def poincare_gather_dist_reference(x: Tensor, y: Tensor, index: Tensor, c: Tensor) -> Tensor:
    """Pure-PyTorch reference of :func:`poincare_gather_dist` (differentiable by autograd).

    Shapes: ``x: (B, D)``, ``y: (M, D)``, ``index: (B, K)``, ``c`` 0-dim -> ``(B, K)``; builds
    the gathered ``(B, K, D)`` rows.

    Example:
        >>> y = torch.tensor([[0.0, 0.5], [0.0, 0.0]])
        >>> poincare_gather_dist_reference(torch.zeros(1, 2), y, torch.tensor([[0, 1]]),
        ...                                torch.tensor(1.0))
        tensor([[1.0986, 0.0000]])
    """
    yk = y[index]  # (B, K, D)
    chord = safe_sqrt((x.unsqueeze(1) - yk).square().sum(-1))
    return chord_dist(chord, ball_denominator(x, c), ball_denominator(yk, c).squeeze(-1), c.sqrt())


# --------------------------------------------------------------------- public ops


def poincare_pairwise_dist(x: Tensor, y: Tensor, c: float | Tensor = 1.0) -> Tensor:
    r"""All Poincare-ball distances between two point sets, ``(N, D) x (M, D) -> (N, M)``.

    The formula is in the module docstring. Runs the compiled kernel for ``x.device`` when the
    extension has one (see :func:`geolayers.ops.backend`), else
    :func:`poincare_pairwise_dist_reference`. The kernel's backward gives the gradients of
    ``x``, ``y`` and a learnable ``c`` (a tensor with ``requires_grad``); at ``x_i == y_j`` it
    takes the subgradient 0. Double backward is not supported by the kernel.

    Args:
        x: ``(N, D)`` points of the ball, float32 or float64.
        y: ``(M, D)`` points of the ball, same dtype and device.
        c: curvature magnitude, ``c > 0``: a float or a 1-element tensor. (default: ``1.0``)

    Returns:
        ``(N, M)`` distances.

    Example:
        >>> poincare_pairwise_dist(torch.zeros(1, 2), torch.tensor([[0.0, 0.5], [0.0, 0.0]]))
        tensor([[1.0986, 0.0000]])
    """
    x, y, c = _check_inputs("poincare_pairwise_dist", x, y, c)
    if not use_kernel("poincare_pairwise_dist", x.device):
        return poincare_pairwise_dist_reference(x, y, c)
    return torch.ops.geolayers.poincare_pairwise_dist.default(x, y, c)


def poincare_gather_dist(x: Tensor, y: Tensor, index: Tensor, c: float | Tensor = 1.0) -> Tensor:
    r"""Distances from each row of ``x`` to ``K`` rows of ``y`` picked by ``index``.

    .. math:: \mathrm{out}_{bk} = d_c(x_b, y_{\mathrm{index}_{bk}})

    The batched form of embedding training (Nickel and Kiela 2017, eq. 6: one positive and
    ``K - 1`` sampled negatives per row) without materialising the gathered ``(B, K, D)``
    rows. The kernel's backward scatters into ``grad_y`` in a fixed order on CPU (deterministic;
    atomics on CUDA).

    Args:
        x: ``(B, D)`` points of the ball.
        y: ``(M, D)`` points of the ball (e.g. the whole embedding table).
        index: ``(B, K)`` int64 rows of ``y``, each in ``[0, M)``.
        c: curvature magnitude, ``c > 0``. (default: ``1.0``)

    Returns:
        ``(B, K)`` distances.

    Example:
        >>> y = torch.tensor([[0.0, 0.5], [0.0, 0.0]])
        >>> poincare_gather_dist(torch.zeros(1, 2), y, torch.tensor([[1, 0, 0]]))
        tensor([[0.0000, 1.0986, 1.0986]])
    """
    x, y, c = _check_inputs("poincare_gather_dist", x, y, c)
    index = _check_index(x, y, index)
    if not use_kernel("poincare_gather_dist", x.device):
        return poincare_gather_dist_reference(x, y, index, c)
    return torch.ops.geolayers.poincare_gather_dist.default(x, y, index, c)


# --- torch.library registrations: autograd and fake kernels -----------------------------------


def _grad_c(x: Tensor, y: Tensor, gx: Tensor, gy: Tensor, grad: Tensor, d: Tensor, c: Tensor):
    # d_c(x, y) = d_1(sqrt(c) x, sqrt(c) y) / sqrt(c) (the map x -> sqrt(c) x is an isometry onto
    # the unit ball), so dd/dc = (x . dd/dx + y . dd/dy - d) / (2 c): the curvature gradient
    # comes from the two point gradients the kernel computes anyway.
    total = (x * gx).sum() + (y * gy).sum() - (grad * d).sum()
    return (total / (2 * c)).reshape(c.shape)


if EXTENSION_LOADED:

    @torch.library.register_fake("geolayers::poincare_pairwise_dist")
    def _pairwise_fake(x, y, c):
        torch._check(x.dim() == 2 and y.dim() == 2, lambda: "x and y must be 2-D")
        return x.new_empty((x.shape[0], y.shape[0]))

    @torch.library.register_fake("geolayers::poincare_pairwise_dist_backward")
    def _pairwise_backward_fake(grad, x, y, c):
        return torch.empty_like(x), torch.empty_like(y)

    @torch.library.register_fake("geolayers::poincare_gather_dist")
    def _gather_fake(x, y, index, c):
        torch._check(index.dim() == 2, lambda: "index must be 2-D")
        return x.new_empty((x.shape[0], index.shape[1]))

    @torch.library.register_fake("geolayers::poincare_gather_dist_backward")
    def _gather_backward_fake(grad, x, y, index, c):
        return torch.empty_like(x), torch.empty_like(y)

    def _pairwise_setup(ctx, inputs, output):
        x, y, c = inputs
        ctx.save_for_backward(x, y, c, output)

    def _pairwise_backward(ctx, grad):
        x, y, c, d = ctx.saved_tensors
        gx, gy = torch.ops.geolayers.poincare_pairwise_dist_backward.default(
            grad.contiguous(), x, y, c
        )
        gc = _grad_c(x, y, gx, gy, grad, d, c) if ctx.needs_input_grad[2] else None
        return gx, gy, gc

    torch.library.register_autograd(
        "geolayers::poincare_pairwise_dist", _pairwise_backward, setup_context=_pairwise_setup
    )

    def _gather_setup(ctx, inputs, output):
        x, y, index, c = inputs
        ctx.save_for_backward(x, y, index, c, output)

    def _gather_backward(ctx, grad):
        x, y, index, c, d = ctx.saved_tensors
        gx, gy = torch.ops.geolayers.poincare_gather_dist_backward.default(
            grad.contiguous(), x, y, index, c
        )
        gc = _grad_c(x, y, gx, gy, grad, d, c) if ctx.needs_input_grad[3] else None
        return gx, gy, None, gc

    torch.library.register_autograd(
        "geolayers::poincare_gather_dist", _gather_backward, setup_context=_gather_setup
    )
