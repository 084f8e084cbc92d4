r"""Functional ops on the Poincare ball of curvature :math:`-c` (``c > 0``).

The ball is :math:`\mathbb{D}^D_c = \{x \in \mathbb{R}^D : c\lVert x\rVert^2 < 1\}` with the
conformal factor :math:`\lambda_x = 2 / (1 - c\lVert x\rVert^2)`. The formulas are those of
`"Hyperbolic Neural Networks" <https://arxiv.org/abs/1805.09112>`_ (Ganea, Becigneul, Hofmann,
NeurIPS 2018) [1] and `"Poincare Embeddings for Learning Hierarchical Representations"
<https://arxiv.org/abs/1705.08039>`_ / `"Learning Continuous Hierarchies in the Lorentz Model"
<https://arxiv.org/abs/1806.03417>`_ (Nickel and Kiela, 2017 and 2018) [2]; conventions (the
matrix of :func:`mobius_matvec` acts as ``x @ m.T``, the order of arguments of the transport)
follow geoopt's ``PoincareBall``.

Numerics. Every op is written in a form that does not subtract nearly equal quantities near
the boundary, where geoopt's artanh-of-a-clamped-ratio loses digits (DESIGN.md, pitfalls):

* the conformal denominators :math:`1 - c\lVert x\rVert^2` are computed once per point and
  never recovered from a difference of two large numbers;
* the gyro-difference :math:`(-x) \oplus_c y` uses :math:`(1 - c\lVert x\rVert^2)(y - x) -
  c\lVert y - x\rVert^2 x` in its numerator, and the distance uses ``asinh`` of the exact chord
  :math:`\lVert x - y\rVert` (no artanh of a number close to 1);
* ``t -> f(t)/t`` ratios use a Taylor branch near 0 behind a guarded ``torch.where``, and norms
  take the subgradient 0 at the origin, so values *and* gradients are finite everywhere on the
  ball, at the origin and at ``x == y`` included.

``c`` is a positive Python float or a 0-dim float tensor (a learnable curvature gets a
gradient). Points are ``(..., D)`` float32 or float64 tensors; the ops broadcast over the
leading dimensions.
"""

from __future__ import annotations

import torch
from torch import Tensor

from geolayers._checks import describe, safe_sqrt
from geolayers.ops.poincare import (
    ball_denominator,
    chord_dist,
    one_minus_c_sq_norm,
    poincare_pairwise_dist,
)

__all__ = [
    "mobius_add",
    "mobius_matvec",
    "expmap0",
    "logmap0",
    "expmap",
    "logmap",
    "dist",
    "pairwise_dist",
    "parallel_transport",
    "project",
    "einstein_midpoint",
    "poincare_to_lorentz",
    "lorentz_to_poincare",
    "poincare_to_klein",
    "klein_to_poincare",
    "PROJECT_EPS",
]

_FLOAT_DTYPES = (torch.float32, torch.float64)

#: Margin of :func:`project`: points are pulled back to the norm ``(1 - eps) / sqrt(c)``. The
#: values are geoopt's (``PoincareBall``), so a point projected here is left alone by geoopt.
PROJECT_EPS = {torch.float32: 4e-3, torch.float64: 1e-5}

# Below this value of t = sqrt(c) |v| the ratios tanh(t)/t, artanh(t)/t, sinh(t)/t and
# asinh(t)/t use their two-term Taylor series: the next term, O(t^4), is below the dtype's eps,
# and the closed form would divide 0 by 0 at the origin (NaN value and gradient).
_TAYLOR_CUTOFF = {torch.float32: 1e-2, torch.float64: 1e-4}

# ----------------------------------------------------------------------------- shared helpers
# (also used by geolayers.hyperbolic.lorentz)


def _check_point(name: str, value: object, slot: str = "..., D") -> Tensor:
    if not isinstance(value, Tensor) or value.dtype not in _FLOAT_DTYPES:
        raise TypeError(
            f"{name} must be a float32 or float64 tensor ({slot}), got {describe(value)}"
        )
    if value.dim() == 0:
        raise ValueError(f"{name} must have at least one dimension ({slot}), got a 0-dim tensor")
    return value


def _check_same(names: tuple[str, ...], *tensors: Tensor) -> None:
    dims = [t.shape[-1] for t in tensors]
    if len(set(dims)) > 1:
        got = ", ".join(f"{d} ({n})" for n, d in zip(names, dims, strict=True))
        raise ValueError(f"{' and '.join(names)} must have the same last dimension, got {got}")
    if len({t.dtype for t in tensors}) > 1:
        got = ", ".join(f"{t.dtype} ({n})" for n, t in zip(names, tensors, strict=True))
        raise TypeError(f"{' and '.join(names)} must share a dtype, got {got}")


def _curvature(c: object, like: Tensor, name: str = "c") -> Tensor:
    # A tensor keeps its autograd history (learnable curvature); a number becomes a constant.
    if isinstance(c, bool) or not isinstance(c, (int, float, Tensor)):
        raise TypeError(
            f"{name} must be a positive float or a 0-dim float tensor, got {describe(c)}"
        )
    if isinstance(c, Tensor):
        if not c.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got {describe(c)}")
        if c.numel() != 1:
            raise ValueError(f"{name} must hold a single value, got shape {tuple(c.shape)}")
        value = float(c.detach().reshape(()).item())
        if not (0 < value < float("inf")):
            raise ValueError(f"{name} must be positive and finite (curvature -c < 0), got {value}")
        return c.reshape(()).to(dtype=like.dtype, device=like.device)
    if not (0 < c < float("inf")):
        raise ValueError(f"{name} must be positive and finite (curvature -c < 0), got {c}")
    return torch.tensor(float(c), dtype=like.dtype, device=like.device)


def _sq_norm(x: Tensor, keepdim: bool = True) -> Tensor:
    return x.square().sum(-1, keepdim=keepdim)


def _dot(x: Tensor, y: Tensor, keepdim: bool = True) -> Tensor:
    return (x * y).sum(-1, keepdim=keepdim)


def _safe_norm(x: Tensor, keepdim: bool = True) -> Tensor:
    return safe_sqrt(_sq_norm(x, keepdim=keepdim))


def _ratio(t: Tensor, fn: str) -> Tensor:
    # f(t) / t for t >= 0 with f one of tanh, artanh, sinh, asinh; series 1 + a t^2 near 0.
    small = t < _TAYLOR_CUTOFF[t.dtype]
    ts = torch.where(small, torch.ones_like(t), t)
    if fn == "tanh":
        big, a = torch.tanh(ts) / ts, -1.0 / 3.0
    elif fn == "artanh":
        big, a = torch.atanh(ts) / ts, 1.0 / 3.0
    elif fn == "sinh":
        big, a = torch.sinh(ts) / ts, 1.0 / 6.0
    else:
        big, a = torch.asinh(ts) / ts, -1.0 / 6.0
    return torch.where(small, 1 + a * t.square(), big)


# 1 - c|x|^2 (floored / unclamped) and the chord form of the distance are shared with the
# compiled distance kernels and their references (geolayers.ops.poincare, which explains them).
_conformal = ball_denominator
_one_minus_unclamped = one_minus_c_sq_norm


def _atanh_arg(t: Tensor) -> Tensor:
    # artanh(t) is finite only for t < 1; rounding can put a point of the ball at t == 1.
    return t.clamp_max(1 - torch.finfo(t.dtype).eps)


def _inside(x: Tensor, c: Tensor) -> Tensor:
    # Rounding guard for results that are mathematically inside the ball (tanh(t) == 1.0 in
    # floating point for large t): the largest norm kept is (1 - eps)/sqrt(c).
    return _clip(x, c, torch.finfo(x.dtype).eps)


def _clip(x: Tensor, c: Tensor, eps: float) -> Tensor:
    maxnorm = (1 - eps) / c.sqrt()
    norm = _safe_norm(x)
    scale = torch.where(norm > maxnorm, maxnorm / torch.where(norm > maxnorm, norm, 1), 1)
    return x * scale


_chord_dist = chord_dist


# ----------------------------------------------------------------------------- public ops


def mobius_add(x: Tensor, y: Tensor, c: float | Tensor = 1.0) -> Tensor:
    r"""Mobius addition :math:`x \oplus_c y` ([1], eq. 3).

    .. math::
        x \oplus_c y = \frac{(1 + 2c\langle x, y\rangle + c\lVert y\rVert^2)\,x
            + (1 - c\lVert x\rVert^2)\,y}{1 + 2c\langle x, y\rangle + c^2\lVert x\rVert^2
            \lVert y\rVert^2}

    Stable form: with :math:`s = x + y`, the numerator is :math:`(1 - c\lVert x\rVert^2)\,s +
    c\lVert s\rVert^2 x` and the denominator :math:`\big((1 - c\lVert x\rVert^2) + (1 -
    c\lVert y\rVert^2) + c\lVert s\rVert^2\big)^2/4 + c^2(\lVert x\rVert^2\lVert s\rVert^2 -
    \langle x, s\rangle^2)`, both sums of non-negative terms, so :math:`x \oplus_c (-x) = 0`
    exactly and :math:`(-x) \oplus_c y` is accurate for nearby points near the boundary. The
    result is not projected (see :func:`project`).

    Args:
        x: ``(..., D)`` points of the ball.
        y: ``(..., D)`` points of the ball, broadcast against ``x``.
        c: curvature magnitude, ``c > 0``. (default: ``1.0``)

    Returns:
        ``(..., D)`` the broadcast Mobius sum.

    Example:
        >>> mobius_add(torch.tensor([0.1, 0.2]), torch.zeros(2))
        tensor([0.1000, 0.2000])
    """
    x = _check_point("x", x)
    y = _check_point("y", y)
    _check_same(("x", "y"), x, y)
    return _mobius_add(x, y, _curvature(c, x))


def _mobius_add(x: Tensor, y: Tensor, c: Tensor) -> Tensor:
    s = x + y
    x2, s2 = _sq_norm(x), _sq_norm(s)
    ax = _one_minus_unclamped(x, c)  # float64 accumulation in float32, see _conformal
    ay = _one_minus_unclamped(y, c)
    num = ax * s + c * s2 * x
    wedge = (x2 * s2 - _dot(x, s).square()).clamp_min(0)  # |x ^ y|^2 = |x ^ s|^2 (Lagrange)
    den = (ax + ay + c * s2).square() / 4 + c.square() * wedge
    return num / den.clamp_min(torch.finfo(x.dtype).tiny)


def mobius_matvec(m: Tensor, x: Tensor, c: float | Tensor = 1.0) -> Tensor:
    r"""Mobius matrix-vector product :math:`M \otimes_c x` ([1], eq. 27).

    .. math::
        M \otimes_c x = \frac{1}{\sqrt c}\tanh\!\Big(\frac{\lVert Mx\rVert}{\lVert x\rVert}
            \operatorname{artanh}(\sqrt c\lVert x\rVert)\Big)\frac{Mx}{\lVert Mx\rVert}

    Stable form: with :math:`r = \operatorname{artanh}(t)/t`, :math:`t = \sqrt c\lVert x\rVert`
    and :math:`a = \sqrt c\, r\lVert Mx\rVert`, the product is :math:`(\tanh(a)/a)\, r\, Mx`: no
    division by :math:`\lVert x\rVert` or :math:`\lVert Mx\rVert`, so ``x = 0`` and ``Mx = 0``
    give 0 with finite gradients.

    Args:
        m: ``(D_out, D)`` matrix, applied as ``x @ m.T``.
        x: ``(..., D)`` points of the ball.
        c: curvature magnitude, ``c > 0``. (default: ``1.0``)

    Returns:
        ``(..., D_out)`` points of the ball.

    Example:
        >>> mobius_matvec(torch.eye(2), torch.tensor([0.3, 0.4]))
        tensor([0.3000, 0.4000])
    """
    x = _check_point("x", x)
    if not isinstance(m, Tensor) or m.dtype != x.dtype:
        raise TypeError(f"m must be a {x.dtype} tensor (D_out, D) like x, got {describe(m)}")
    if m.dim() != 2:
        raise ValueError(f"m must have shape (D_out, D), got {tuple(m.shape)}")
    if m.shape[1] != x.shape[-1]:
        raise ValueError(
            f"m must have as many columns as x has features, got m {tuple(m.shape)} and x "
            f"{tuple(x.shape)}"
        )
    c = _curvature(c, x)
    sqrt_c = c.sqrt()
    r = _ratio(_atanh_arg(sqrt_c * _safe_norm(x)), "artanh")
    mx = x @ m.transpose(-1, -2)
    a = sqrt_c * r * _safe_norm(mx)
    return _inside(_ratio(a, "tanh") * r * mx, c)


def expmap0(v: Tensor, c: float | Tensor = 1.0) -> Tensor:
    r"""Exponential map at the origin ([1], lemma 2).

    .. math::
        \exp_0^c(v) = \tanh(\sqrt c\lVert v\rVert)\,\frac{v}{\sqrt c\lVert v\rVert}

    Stable form: :math:`\tanh(t)/t` with a Taylor branch at :math:`t \to 0`; the result is
    kept strictly inside the ball (``tanh`` rounds to 1 for large arguments).

    Args:
        v: ``(..., D)`` tangent vectors at the origin.
        c: curvature magnitude, ``c > 0``. (default: ``1.0``)

    Returns:
        ``(..., D)`` points of the ball.

    Example:
        >>> expmap0(torch.zeros(3))
        tensor([0., 0., 0.])
    """
    v = _check_point("v", v)
    c = _curvature(c, v)
    return _inside(_ratio(c.sqrt() * _safe_norm(v), "tanh") * v, c)


def logmap0(y: Tensor, c: float | Tensor = 1.0) -> Tensor:
    r"""Logarithmic map at the origin, the inverse of :func:`expmap0` ([1], lemma 2).

    .. math::
        \log_0^c(y) = \operatorname{artanh}(\sqrt c\lVert y\rVert)\,
            \frac{y}{\sqrt c\lVert y\rVert}

    Stable form: :math:`\operatorname{artanh}(t)/t` with a Taylor branch at 0, its argument
    clamped below 1 only against rounding.

    Args:
        y: ``(..., D)`` points of the ball.
        c: curvature magnitude, ``c > 0``. (default: ``1.0``)

    Returns:
        ``(..., D)`` tangent vectors at the origin.

    Example:
        >>> logmap0(torch.zeros(2))
        tensor([0., 0.])
    """
    y = _check_point("y", y)
    c = _curvature(c, y)
    return _logmap0(y, c)


def _logmap0(y: Tensor, c: Tensor) -> Tensor:
    return _ratio(_atanh_arg(c.sqrt() * _safe_norm(y)), "artanh") * y


def expmap(x: Tensor, v: Tensor, c: float | Tensor = 1.0) -> Tensor:
    r"""Exponential map at ``x`` ([1], lemma 2).

    .. math::
        \exp_x^c(v) = x \oplus_c \Big(\tanh\!\Big(\frac{\sqrt c\,\lambda_x\lVert v\rVert}{2}
            \Big)\frac{v}{\sqrt c\lVert v\rVert}\Big), \qquad
        \lambda_x = \frac{2}{1 - c\lVert x\rVert^2}

    Stable form: :math:`\tanh(t)/t` with a Taylor branch, then the stable :func:`mobius_add`;
    the result is kept strictly inside the ball.

    Args:
        x: ``(..., D)`` base points.
        v: ``(..., D)`` tangent vectors at ``x``.
        c: curvature magnitude, ``c > 0``. (default: ``1.0``)

    Returns:
        ``(..., D)`` points of the ball.

    Example:
        >>> expmap(torch.zeros(2), torch.zeros(2))
        tensor([0., 0.])
    """
    x = _check_point("x", x)
    v = _check_point("v", v)
    _check_same(("x", "v"), x, v)
    c = _curvature(c, x)
    half_lambda = 1 / _conformal(x, c)
    w = _ratio(c.sqrt() * half_lambda * _safe_norm(v), "tanh") * half_lambda * v
    return _inside(_mobius_add(x, w, c), c)


def logmap(x: Tensor, y: Tensor, c: float | Tensor = 1.0) -> Tensor:
    r"""Logarithmic map at ``x``, the inverse of :func:`expmap` ([1], lemma 2).

    .. math::
        \log_x^c(y) = \frac{2}{\sqrt c\,\lambda_x}\operatorname{artanh}(\sqrt c\lVert u\rVert)
            \frac{u}{\lVert u\rVert}, \qquad u = (-x) \oplus_c y

    Stable form: ``u`` from the stable gyro-difference of :func:`mobius_add`, and
    :math:`\operatorname{artanh}(\sqrt c\lVert u\rVert) = \sqrt c\, d_c(x, y)/2` from the
    stable :func:`dist` (artanh of a number close to 1 would amplify the rounding of
    :math:`\lVert u\rVert`), with the Taylor branch of :math:`\operatorname{artanh}(t)/t`
    near ``u = 0``.

    Args:
        x: ``(..., D)`` base points.
        y: ``(..., D)`` points of the ball.
        c: curvature magnitude, ``c > 0``. (default: ``1.0``)

    Returns:
        ``(..., D)`` tangent vectors at ``x``.

    Example:
        >>> logmap(torch.zeros(2), torch.tensor([0.0, 0.5]))
        tensor([0.0000, 0.5493])
    """
    x = _check_point("x", x)
    y = _check_point("y", y)
    _check_same(("x", "y"), x, y)
    c = _curvature(c, x)
    sqrt_c = c.sqrt()
    ax = _conformal(x, c)
    u = _mobius_add(-x, y, c)
    # artanh(sqrt(c)|u|) = sqrt(c) d(x, y) / 2: near the boundary |u| is close to 1/sqrt(c)
    # and artanh would amplify its rounding (1e-4 relative in float32), so take the stable
    # distance instead, and use artanh(t)/t only for its Taylor branch near u = 0.
    t = sqrt_c * _safe_norm(u)
    small = t < _TAYLOR_CUTOFF[t.dtype]
    half_d = sqrt_c * _chord_dist(_safe_norm(x - y), ax, _conformal(y, c), sqrt_c) / 2
    coef = torch.where(small, 1 + t.square() / 3, half_d / torch.where(small, 1, t))
    return ax * coef * u


def dist(x: Tensor, y: Tensor, c: float | Tensor = 1.0, keepdim: bool = False) -> Tensor:
    r"""Geodesic distance ([1], eq. 5; [2]).

    .. math::
        d_c(x, y) = \frac{2}{\sqrt c}\operatorname{artanh}\big(\sqrt c\,
            \lVert (-x) \oplus_c y\rVert\big)
        = \frac{1}{\sqrt c}\operatorname{arcosh}\Big(1 + \frac{2c\lVert x - y\rVert^2}
            {(1 - c\lVert x\rVert^2)(1 - c\lVert y\rVert^2)}\Big)

    Stable form (the same number, from :math:`\cosh 2u = 1 + 2\sinh^2 u`):

    .. math::
        d_c(x, y) = \frac{2}{\sqrt c}\operatorname{arsinh}\frac{\sqrt c\lVert x - y\rVert}
            {\sqrt{(1 - c\lVert x\rVert^2)(1 - c\lVert y\rVert^2)}}

    The chord :math:`\lVert x - y\rVert` is taken from the difference itself and ``arsinh`` is
    well conditioned everywhere, so neither the clamped artanh near the boundary nor the
    :math:`\sqrt{z^2 - 1}` of arcosh near ``x == y`` loses digits; at ``x == y`` the gradient
    is the subgradient 0.

    Args:
        x: ``(..., D)`` points of the ball.
        y: ``(..., D)`` points of the ball, broadcast against ``x``.
        c: curvature magnitude, ``c > 0``. (default: ``1.0``)
        keepdim: keep the last dimension (size 1). (default: ``False``)

    Returns:
        ``(...)`` distances (``(..., 1)`` with ``keepdim``).

    Example:
        >>> dist(torch.zeros(2), torch.tensor([0.0, 0.5]))
        tensor(1.0986)
    """
    x = _check_point("x", x)
    y = _check_point("y", y)
    _check_same(("x", "y"), x, y)
    c = _curvature(c, x)
    ax, ay = _conformal(x, c), _conformal(y, c)
    d = _chord_dist(_safe_norm(x - y), ax, ay, c.sqrt())
    return d if keepdim else d.squeeze(-1)


def pairwise_dist(x: Tensor, y: Tensor, c: float | Tensor = 1.0) -> Tensor:
    r"""All distances between two sets of points, ``(N, D) x (M, D) -> (N, M)``.

    The formula and stable form are those of :func:`dist`; the chord :math:`\lVert x_i -
    y_j\rVert` is computed from the differences (the matrix-product form :math:`\lVert x\rVert^2
    + \lVert y\rVert^2 - 2\langle x, y\rangle` cancels for nearby points, which near the boundary
    are at a large hyperbolic distance). Runs the fused compiled op
    :func:`geolayers.ops.poincare_pairwise_dist` (one pass, forward and backward, no ``(N, M,
    D)`` intermediate; the gradient of a learnable ``c`` included), or its blocked pure-PyTorch
    reference where no kernel is built for the device.

    Args:
        x: ``(N, D)`` points of the ball.
        y: ``(M, D)`` points of the ball.
        c: curvature magnitude, ``c > 0``. (default: ``1.0``)

    Returns:
        ``(N, M)`` distances.

    Example:
        >>> pairwise_dist(torch.zeros(2, 3), torch.zeros(4, 3)).shape
        torch.Size([2, 4])
    """
    x = _check_point("x", x, "N, D")
    y = _check_point("y", y, "M, D")
    for name, t, slot in (("x", x, "N"), ("y", y, "M")):
        if t.dim() != 2:
            raise ValueError(f"{name} must have shape ({slot}, D), got {tuple(t.shape)}")
    _check_same(("x", "y"), x, y)
    return poincare_pairwise_dist(x, y, _curvature(c, x))


def parallel_transport(x: Tensor, y: Tensor, v: Tensor, c: float | Tensor = 1.0) -> Tensor:
    r"""Parallel transport of ``v`` from ``T_x`` to ``T_y`` along the geodesic ([1], sec. 2.3,
    with the gyration of Ungar).

    .. math::
        P_{x \to y}(v) = \frac{\lambda_x}{\lambda_y}\operatorname{gyr}[y, -x]\,v
            = \frac{1 - c\lVert y\rVert^2}{1 - c\lVert x\rVert^2}\operatorname{gyr}[y, -x]\,v

    with the closed form of the gyration, :math:`\operatorname{gyr}[u, w]\,v = v + 2(a u +
    b w) / d`, :math:`a = -c^2\langle u, v\rangle\lVert w\rVert^2 + c\langle w, v\rangle +
    2c^2\langle u, w\rangle\langle w, v\rangle`, :math:`b = -c^2\langle w, v\rangle\lVert
    u\rVert^2 - c\langle u, v\rangle`, :math:`d = 1 + 2c\langle u, w\rangle +
    c^2\lVert u\rVert^2\lVert w\rVert^2` (geoopt's ``transp``). ``d`` is that of
    :func:`mobius_add` and uses its stable form.

    Args:
        x: ``(..., D)`` start points.
        y: ``(..., D)`` end points.
        v: ``(..., D)`` tangent vectors at ``x``.
        c: curvature magnitude, ``c > 0``. (default: ``1.0``)

    Returns:
        ``(..., D)`` tangent vectors at ``y``.

    Example:
        >>> parallel_transport(torch.zeros(2), torch.zeros(2), torch.ones(2))
        tensor([1., 1.])
    """
    x = _check_point("x", x)
    y = _check_point("y", y)
    v = _check_point("v", v)
    _check_same(("x", "y", "v"), x, y, v)
    c = _curvature(c, x)
    u, w = y, -x
    u2, w2, uw = _sq_norm(u), _sq_norm(w), _dot(u, w)
    uv, wv = _dot(u, v), _dot(w, v)
    c2 = c.square()
    a = -c2 * uv * w2 + c * wv + 2 * c2 * uw * wv
    b = -c2 * wv * u2 - c * uv
    s = u + w
    s2 = _sq_norm(s)
    au, aw = 1 - c * u2, 1 - c * w2
    d = (au + aw + c * s2).square() / 4 + c2 * (u2 * s2 - _dot(u, s).square()).clamp_min(0)
    gyr = v + 2 * (a * u + b * w) / d.clamp_min(torch.finfo(x.dtype).tiny)
    return gyr * (_conformal(u, c) / _conformal(w, c))


def project(x: Tensor, c: float | Tensor = 1.0, eps: float | None = None) -> Tensor:
    r"""Pull points back inside the ball, to the norm :math:`(1 - \epsilon)/\sqrt c` at most.

    .. math::
        \operatorname{proj}(x) = \begin{cases} x & \lVert x\rVert \le (1-\epsilon)/\sqrt c \\
            \frac{1 - \epsilon}{\sqrt c}\frac{x}{\lVert x\rVert} & \text{otherwise}\end{cases}

    The default margin depends on the dtype, :data:`PROJECT_EPS`: ``4e-3`` in float32 and
    ``1e-5`` in float64, geoopt's values. ``4e-3`` leaves :math:`1 - c\lVert x\rVert^2 \approx
    8\cdot10^{-3}`, so a float32 rounding of ``x`` (relative ``6e-8``) changes distances from
    ``x`` by less than ``1e-4`` relative; the distance to the origin is at most about 6.2
    (float32) and 12.2 (float64) over :math:`\sqrt c`.

    Args:
        x: ``(..., D)`` points.
        c: curvature magnitude, ``c > 0``. (default: ``1.0``)
        eps: margin in ``(0, 1)``, or ``None`` for :data:`PROJECT_EPS` of the dtype.
            (default: ``None``)

    Returns:
        ``(..., D)`` points of the ball.

    Example:
        >>> project(torch.tensor([3.0, 4.0]))
        tensor([0.5976, 0.7968])
    """
    x = _check_point("x", x)
    c = _curvature(c, x)
    if eps is None:
        eps = PROJECT_EPS[x.dtype]
    elif not (0 < eps < 1):
        raise ValueError(f"eps must lie in (0, 1), got {eps}")
    return _clip(x, c, eps)


def einstein_midpoint(x: Tensor, c: float | Tensor = 1.0, weights: Tensor | None = None) -> Tensor:
    r"""Weighted Einstein midpoint, computed in the Klein model ([1], sec. 3.5 of Gulcehre et
    al., `"Hyperbolic Attention Networks" <https://arxiv.org/abs/1805.09786>`_).

    .. math::
        k_i = \frac{2x_i}{1 + c\lVert x_i\rVert^2},\quad
        \gamma_i = \frac{1}{\sqrt{1 - c\lVert k_i\rVert^2}},\quad
        m_K = \frac{\sum_i w_i\gamma_i k_i}{\sum_i w_i\gamma_i},\quad
        m = \frac{m_K}{1 + \sqrt{1 - c\lVert m_K\rVert^2}}

    Stable form: the Lorentz factor comes straight from the Poincare point,
    :math:`\gamma_i = (1 + c\lVert x_i\rVert^2)/(1 - c\lVert x_i\rVert^2)`, so
    :math:`\gamma_i k_i = 2x_i/(1 - c\lVert x_i\rVert^2)` needs no square root of a small
    difference.

    Args:
        x: ``(..., N, D)`` points of the ball; the midpoint is taken over ``N``.
        c: curvature magnitude, ``c > 0``. (default: ``1.0``)
        weights: ``(..., N)`` non-negative weights, or ``None`` for equal weights.
            (default: ``None``)

    Returns:
        ``(..., D)`` midpoints.

    Example:
        >>> einstein_midpoint(torch.tensor([[0.5, 0.0], [-0.5, 0.0]]))
        tensor([0., 0.])
    """
    x = _check_point("x", x, "..., N, D")
    if x.dim() < 2:
        raise ValueError(f"x must have shape (..., N, D), got {tuple(x.shape)}")
    c = _curvature(c, x)
    if weights is None:
        weights = torch.ones(x.shape[:-1], dtype=x.dtype, device=x.device)
    elif not isinstance(weights, Tensor) or weights.dtype != x.dtype:
        raise TypeError(f"weights must be a {x.dtype} tensor (..., N), got {describe(weights)}")
    elif weights.shape != x.shape[:-1]:
        raise ValueError(
            f"weights must have shape {tuple(x.shape[:-1])} (x without its last dim), got "
            f"{tuple(weights.shape)}"
        )
    x2 = _sq_norm(x)
    ax = _conformal(x, c)
    w = weights.unsqueeze(-1)
    num = (w * 2 * x / ax).sum(-2)
    den = (w * (1 + c * x2) / ax).sum(-2)
    m_klein = num / den.clamp_min(torch.finfo(x.dtype).tiny)
    return _klein_to_poincare(m_klein, c)


def poincare_to_klein(x: Tensor, c: float | Tensor = 1.0) -> Tensor:
    r"""Poincare ball to Beltrami-Klein model of the same curvature.

    .. math::
        k = \frac{2x}{1 + c\lVert x\rVert^2}

    Args:
        x: ``(..., D)`` points of the ball.
        c: curvature magnitude, ``c > 0``. (default: ``1.0``)

    Returns:
        ``(..., D)`` points of the Klein ball (also of radius :math:`1/\sqrt c`).

    Example:
        >>> poincare_to_klein(torch.tensor([0.5, 0.0]))
        tensor([0.8000, 0.0000])
    """
    x = _check_point("x", x)
    c = _curvature(c, x)
    return 2 * x / (1 + c * _sq_norm(x))


def klein_to_poincare(k: Tensor, c: float | Tensor = 1.0) -> Tensor:
    r"""Beltrami-Klein model to Poincare ball, the inverse of :func:`poincare_to_klein`.

    .. math::
        x = \frac{k}{1 + \sqrt{1 - c\lVert k\rVert^2}}

    The square root is added to 1, so it does not cancel; its argument is clamped at 0 only
    against rounding.

    Args:
        k: ``(..., D)`` points of the Klein ball.
        c: curvature magnitude, ``c > 0``. (default: ``1.0``)

    Returns:
        ``(..., D)`` points of the Poincare ball.

    Example:
        >>> klein_to_poincare(torch.tensor([0.8, 0.0]))
        tensor([0.5000, 0.0000])
    """
    k = _check_point("k", k)
    return _klein_to_poincare(k, _curvature(c, k))


def _klein_to_poincare(k: Tensor, c: Tensor) -> Tensor:
    return k / (1 + safe_sqrt((1 - c * _sq_norm(k)).clamp_min(0)))


def poincare_to_lorentz(x: Tensor, c: float | Tensor = 1.0) -> Tensor:
    r"""Poincare ball to the hyperboloid :math:`\langle y, y\rangle_L = -1/c`, time first ([2]).

    .. math::
        y = \Big(\frac{1 + c\lVert x\rVert^2}{\sqrt c\,(1 - c\lVert x\rVert^2)},\;
            \frac{2x}{1 - c\lVert x\rVert^2}\Big)

    Args:
        x: ``(..., D)`` points of the ball.
        c: curvature magnitude, ``c > 0``. (default: ``1.0``)

    Returns:
        ``(..., D + 1)`` points of the hyperboloid (see :mod:`geolayers.hyperbolic.lorentz`).

    Example:
        >>> poincare_to_lorentz(torch.zeros(2))
        tensor([1., 0., 0.])
    """
    x = _check_point("x", x)
    c = _curvature(c, x)
    x2 = _sq_norm(x)
    ax = _conformal(x, c)
    return torch.cat([(1 + c * x2) / (c.sqrt() * ax), 2 * x / ax], dim=-1)


def lorentz_to_poincare(y: Tensor, c: float | Tensor = 1.0) -> Tensor:
    r"""Hyperboloid (time first) to Poincare ball, the inverse of :func:`poincare_to_lorentz`.

    .. math::
        x = \frac{y_{1:}}{1 + \sqrt c\, y_0}

    Args:
        y: ``(..., D + 1)`` points of the hyperboloid :math:`\langle y, y\rangle_L = -1/c`.
        c: curvature magnitude, ``c > 0``. (default: ``1.0``)

    Returns:
        ``(..., D)`` points of the ball.

    Example:
        >>> lorentz_to_poincare(torch.tensor([1.0, 0.0, 0.0]))
        tensor([0., 0.])
    """
    y = _check_point("y", y, "..., D + 1")
    if y.shape[-1] < 2:
        raise ValueError(f"y must have shape (..., D + 1) with D >= 1, got {tuple(y.shape)}")
    c = _curvature(c, y)
    return y[..., 1:] / (1 + c.sqrt() * y[..., :1])
