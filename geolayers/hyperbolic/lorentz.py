r"""Functional ops on the hyperboloid (Lorentz model) of curvature :math:`-c` (``c > 0``).

.. math::
    \mathbb{L}^D_c = \{x \in \mathbb{R}^{D+1} : \langle x, x\rangle_L = -1/c,\ x_0 > 0\},
    \qquad \langle x, y\rangle_L = -x_0y_0 + \sum_{i \ge 1} x_iy_i

Parametrisation: points are stored with **all** ``D + 1`` coordinates, the time coordinate
``x_0`` first, which is geoopt's ``Lorentz(k=1/c)`` convention (its ``k`` is our ``1/c``), so
the ops work on geoopt ``ManifoldParameter`` s. MERU (`"Hyperbolic Image-Text Representations"
<https://arxiv.org/abs/2304.09172>`_, Desai et al., ICML 2023) stores the space components
only and recomputes the time; :func:`project` is that map (``x_0 = \sqrt{1/c + \lVert
x_{1:}\rVert^2}``), and :func:`expmap0` / :func:`logmap0` read and write only the space part.
Formulas: `"Learning Continuous Hierarchies in the Lorentz Model of Hyperbolic Geometry"
<https://arxiv.org/abs/1806.03417>`_ (Nickel and Kiela, ICML 2018) [1] and `"Lorentzian
Distance Learning for Hyperbolic Representations" <http://proceedings.mlr.press/v97/law19a>`_
(Law et al., ICML 2019) [2].

Numerics: distances go through the exact identity with the Poincare chord (an ``arsinh`` of a
ratio of positive quantities, see :func:`dist`) instead of :math:`\operatorname{arcosh}
(-c\langle x, y\rangle_L)`, whose argument cancels for nearby points far from the origin;
``t -> f(t)/t`` ratios use Taylor branches near 0 and norms the subgradient 0 at 0, so values
and gradients are finite everywhere, the origin and ``x == y`` included. Far from the origin
the coordinates themselves grow like :math:`e^{\sqrt c\, d}`, so the model carries fewer
correct digits than the Poincare ball for nearby points there (an input property, not a
rounding in these ops).
"""

from __future__ import annotations

import torch
from torch import Tensor

from geolayers._checks import describe, safe_sqrt
from geolayers.hyperbolic.poincare import (
    _check_point,
    _check_same,
    _chord_dist,
    _curvature,
    _dot,
    _ratio,
    _safe_norm,
    _sq_norm,
)
from geolayers.ops.poincare import blocked_pairwise_chord_dist

__all__ = [
    "minkowski_dot",
    "expmap0",
    "logmap0",
    "expmap",
    "logmap",
    "dist",
    "pairwise_dist",
    "parallel_transport",
    "project",
    "centroid",
]


def _check_lorentz(name: str, value: object) -> Tensor:
    value = _check_point(name, value, "..., D + 1")
    if value.shape[-1] < 2:
        raise ValueError(
            f"{name} must have shape (..., D + 1) with D >= 1, got {tuple(value.shape)}"
        )
    return value


def _time(space: Tensor, c: Tensor) -> Tensor:
    return torch.sqrt(1 / c + _sq_norm(space))


def minkowski_dot(x: Tensor, y: Tensor, keepdim: bool = False) -> Tensor:
    r"""Minkowski (Lorentzian) inner product.

    .. math::
        \langle x, y\rangle_L = -x_0y_0 + \sum_{i=1}^{D} x_iy_i

    Args:
        x: ``(..., D + 1)`` vectors.
        y: ``(..., D + 1)`` vectors, broadcast against ``x``.
        keepdim: keep the last dimension (size 1). (default: ``False``)

    Returns:
        ``(...)`` inner products.

    Example:
        >>> minkowski_dot(torch.tensor([1.0, 0.0]), torch.tensor([1.0, 0.0]))
        tensor(-1.)
    """
    x = _check_lorentz("x", x)
    y = _check_lorentz("y", y)
    _check_same(("x", "y"), x, y)
    out = _dot(x[..., 1:], y[..., 1:]) - x[..., :1] * y[..., :1]
    return out if keepdim else out.squeeze(-1)


def project(x: Tensor, c: float | Tensor = 1.0) -> Tensor:
    r"""Put points on the hyperboloid by recomputing the time coordinate from the space part.

    .. math::
        \operatorname{proj}(x) = \Big(\sqrt{1/c + \lVert x_{1:}\rVert^2},\ x_{1:}\Big)

    This is also the map from MERU's space-only parametrisation to full coordinates. The
    hyperboloid has no boundary, so no margin is needed (unlike
    :func:`geolayers.hyperbolic.poincare.project`).

    Args:
        x: ``(..., D + 1)`` vectors (``x_0`` is ignored).
        c: curvature magnitude, ``c > 0``. (default: ``1.0``)

    Returns:
        ``(..., D + 1)`` points of the hyperboloid.

    Example:
        >>> project(torch.tensor([5.0, 0.0, 0.0]))
        tensor([1., 0., 0.])
    """
    x = _check_lorentz("x", x)
    c = _curvature(c, x)
    return torch.cat([_time(x[..., 1:], c), x[..., 1:]], dim=-1)


def expmap0(v: Tensor, c: float | Tensor = 1.0) -> Tensor:
    r"""Exponential map at the origin :math:`o = (1/\sqrt c, 0, \dots, 0)` ([1], eq. 9).

    .. math::
        \exp_o^c(v) = \Big(\frac{\cosh(\sqrt c\lVert v\rVert)}{\sqrt c},\;
            \frac{\sinh(\sqrt c\lVert v\rVert)}{\sqrt c\lVert v\rVert}\,v_{1:}\Big)

    The tangent space at ``o`` is :math:`\{v : v_0 = 0\}`, so ``v_0`` is ignored (MERU's
    ``exp_map0`` is the space part of this map). Stable form: :math:`\sinh(t)/t` with a Taylor
    branch at 0.

    Args:
        v: ``(..., D + 1)`` tangent vectors at the origin.
        c: curvature magnitude, ``c > 0``. (default: ``1.0``)

    Returns:
        ``(..., D + 1)`` points of the hyperboloid.

    Example:
        >>> expmap0(torch.zeros(3))
        tensor([1., 0., 0.])
    """
    v = _check_lorentz("v", v)
    c = _curvature(c, v)
    sqrt_c = c.sqrt()
    t = sqrt_c * _safe_norm(v[..., 1:])
    return torch.cat([torch.cosh(t) / sqrt_c, _ratio(t, "sinh") * v[..., 1:]], dim=-1)


def logmap0(y: Tensor, c: float | Tensor = 1.0) -> Tensor:
    r"""Logarithmic map at the origin, the inverse of :func:`expmap0`.

    .. math::
        \log_o^c(y) = \Big(0,\; \frac{\operatorname{arsinh}(\sqrt c\lVert y_{1:}\rVert)}
            {\sqrt c\lVert y_{1:}\rVert}\,y_{1:}\Big)

    Stable form: the distance to the origin is taken as :math:`\operatorname{arsinh}(\sqrt c
    \lVert y_{1:}\rVert)/\sqrt c` (from the space part, well conditioned), not as
    :math:`\operatorname{arcosh}(\sqrt c\,y_0)/\sqrt c` (ill conditioned near the origin);
    :math:`\operatorname{arsinh}(t)/t` has a Taylor branch at 0.

    Args:
        y: ``(..., D + 1)`` points of the hyperboloid.
        c: curvature magnitude, ``c > 0``. (default: ``1.0``)

    Returns:
        ``(..., D + 1)`` tangent vectors at the origin (``v_0 = 0``).

    Example:
        >>> logmap0(torch.tensor([1.0, 0.0, 0.0]))
        tensor([0., 0., 0.])
    """
    y = _check_lorentz("y", y)
    c = _curvature(c, y)
    space = _ratio(c.sqrt() * _safe_norm(y[..., 1:]), "asinh") * y[..., 1:]
    return torch.cat([torch.zeros_like(y[..., :1]), space], dim=-1)


def expmap(x: Tensor, v: Tensor, c: float | Tensor = 1.0) -> Tensor:
    r"""Exponential map at ``x`` ([1], eq. 9).

    .. math::
        \exp_x^c(v) = \cosh(\sqrt c\lVert v\rVert_L)\,x + \frac{\sinh(\sqrt c\lVert v\rVert_L)}
            {\sqrt c\lVert v\rVert_L}\,v, \qquad \lVert v\rVert_L = \sqrt{\langle v, v
            \rangle_L}

    Stable form: far from the origin the components of ``x`` and ``v`` are large and
    :math:`\langle v, v\rangle_L = \lVert v_{1:}\rVert^2 - v_0^2` cancels (a relative error of
    about :math:`\epsilon\, c\, x_0^2`). With ``v`` tangent, :math:`v_0 = \langle x_{1:},
    v_{1:}\rangle / x_0`, and splitting :math:`v_{1:} = \alpha\hat x + v_\perp` along
    :math:`\hat x = x_{1:}/\lVert x_{1:}\rVert` gives the sum of non-negative terms

    .. math::
        \langle v, v\rangle_L = \lVert v_\perp\rVert^2 + \frac{\alpha^2}{c\,x_0^2}

    so only the space parts of ``x`` and ``v`` are used (their time parts are taken as
    determined by them). :math:`\sinh(t)/t` has a Taylor branch, and the time of the result is
    recomputed from its space part (:func:`project`), so it lies on the hyperboloid to
    rounding.

    Args:
        x: ``(..., D + 1)`` base points.
        v: ``(..., D + 1)`` tangent vectors at ``x`` (:math:`\langle x, v\rangle_L = 0`).
        c: curvature magnitude, ``c > 0``. (default: ``1.0``)

    Returns:
        ``(..., D + 1)`` points of the hyperboloid.

    Example:
        >>> expmap(torch.tensor([1.0, 0.0]), torch.zeros(2))
        tensor([1., 0.])
    """
    x = _check_lorentz("x", x)
    v = _check_lorentz("v", v)
    _check_same(("x", "v"), x, v)
    c = _curvature(c, x)
    t = c.sqrt() * safe_sqrt(_tangent_sq_norm(x[..., 1:], v[..., 1:], c))
    space = torch.cosh(t) * x[..., 1:] + _ratio(t, "sinh") * v[..., 1:]
    return torch.cat([_time(space, c), space], dim=-1)


def logmap(x: Tensor, y: Tensor, c: float | Tensor = 1.0) -> Tensor:
    r"""Logarithmic map at ``x``, the inverse of :func:`expmap` ([1], eq. 10; [2]).

    .. math::
        \log_x^c(y) = \frac{\sqrt c\, d}{\sinh(\sqrt c\, d)}\big(y - \cosh(\sqrt c\, d)\,x\big),
            \qquad d = d_c(x, y)

    Stable form: :math:`y - \cosh(\sqrt c d)\,x = (y - x) - 2\sinh^2(\sqrt c d/2)\,x`, with ``d``
    from the stable :func:`dist`, so nearby points do not cancel, and :math:`t/\sinh t` has a
    Taylor branch.

    Args:
        x: ``(..., D + 1)`` base points.
        y: ``(..., D + 1)`` points of the hyperboloid.
        c: curvature magnitude, ``c > 0``. (default: ``1.0``)

    Returns:
        ``(..., D + 1)`` tangent vectors at ``x``.

    Example:
        >>> logmap(torch.tensor([1.0, 0.0]), torch.tensor([1.0, 0.0]))
        tensor([0., 0.])
    """
    x = _check_lorentz("x", x)
    y = _check_lorentz("y", y)
    _check_same(("x", "y"), x, y)
    c = _curvature(c, x)
    sqrt_c = c.sqrt()
    t = sqrt_c * _dist(x, y, c)
    u = (y - x) - 2 * torch.sinh(t / 2).square() * x
    return u / _ratio(t, "sinh")


def _tangent_sq_norm(xs: Tensor, vs: Tensor, c: Tensor) -> Tensor:
    # <v, v>_L of the tangent vector at x with space part vs (see expmap's docstring).
    n = _safe_norm(xs)
    unit = torch.where(n > 0, xs / torch.where(n > 0, n, 1), 0)
    alpha = _dot(unit, vs)
    perp = vs - alpha * unit
    return _sq_norm(perp) + alpha.square() / (c * (1 / c + _sq_norm(xs)))


def _poincare_parts(x: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    # Poincare image p = x_{1:} / (1 + sqrt(c) x_0) and its conformal denominator
    # 1 - c|p|^2 = 2 / (1 + sqrt(c) x_0), exact on the hyperboloid and free of cancellation.
    a = 1 + c.sqrt() * x[..., :1]
    return x[..., 1:] / a, 2 / a


def _dist(x: Tensor, y: Tensor, c: Tensor) -> Tensor:
    px, ax = _poincare_parts(x, c)
    py, ay = _poincare_parts(y, c)
    return _chord_dist(_safe_norm(px - py), ax, ay, c.sqrt())


def dist(x: Tensor, y: Tensor, c: float | Tensor = 1.0, keepdim: bool = False) -> Tensor:
    r"""Geodesic distance ([1], eq. 5).

    .. math::
        d_c(x, y) = \frac{1}{\sqrt c}\operatorname{arcosh}\big(-c\langle x, y\rangle_L\big)

    Stable form: with the Poincare images :math:`p = x_{1:}/(1 + \sqrt c x_0)` (whose
    :math:`1 - c\lVert p\rVert^2 = 2/(1 + \sqrt c x_0)` exactly),

    .. math::
        d_c(x, y) = \frac{2}{\sqrt c}\operatorname{arsinh}\frac{\sqrt c\lVert p - q\rVert}
            {\sqrt{(1 - c\lVert p\rVert^2)(1 - c\lVert q\rVert^2)}}

    the same number on the hyperboloid (:math:`\cosh 2u = 1 + 2\sinh^2 u`), without the
    cancellation of :math:`-c\langle x, y\rangle_L - 1` for nearby points and with the
    subgradient 0 at ``x == y`` (arcosh has an infinite derivative at 1).

    Args:
        x: ``(..., D + 1)`` points of the hyperboloid.
        y: ``(..., D + 1)`` points, broadcast against ``x``.
        c: curvature magnitude, ``c > 0``. (default: ``1.0``)
        keepdim: keep the last dimension (size 1). (default: ``False``)

    Returns:
        ``(...)`` distances.

    Example:
        >>> dist(torch.tensor([1.0, 0.0]), torch.tensor([1.0, 0.0]))
        tensor(0.)
    """
    x = _check_lorentz("x", x)
    y = _check_lorentz("y", y)
    _check_same(("x", "y"), x, y)
    d = _dist(x, y, _curvature(c, x))
    return d if keepdim else d.squeeze(-1)


def pairwise_dist(x: Tensor, y: Tensor, c: float | Tensor = 1.0) -> Tensor:
    r"""All distances between two sets of points, ``(N, D + 1) x (M, D + 1) -> (N, M)``.

    Formula and stable form of :func:`dist`, evaluated in blocks of rows as
    :func:`geolayers.hyperbolic.poincare.pairwise_dist` (no full ``(N, M, D)`` tensor at once).

    Args:
        x: ``(N, D + 1)`` points of the hyperboloid.
        y: ``(M, D + 1)`` points of the hyperboloid.
        c: curvature magnitude, ``c > 0``. (default: ``1.0``)

    Returns:
        ``(N, M)`` distances.

    Example:
        >>> pairwise_dist(expmap0(torch.randn(2, 3)), expmap0(torch.randn(4, 3))).shape
        torch.Size([2, 4])
    """
    x = _check_lorentz("x", x)
    y = _check_lorentz("y", y)
    for name, t, slot in (("x", x, "N"), ("y", y, "M")):
        if t.dim() != 2:
            raise ValueError(f"{name} must have shape ({slot}, D + 1), got {tuple(t.shape)}")
    _check_same(("x", "y"), x, y)
    c = _curvature(c, x)
    px, ax = _poincare_parts(x, c)
    py, ay = _poincare_parts(y, c)
    return blocked_pairwise_chord_dist(px, py, ax, ay.squeeze(-1), c.sqrt())


def parallel_transport(x: Tensor, y: Tensor, v: Tensor, c: float | Tensor = 1.0) -> Tensor:
    r"""Parallel transport of ``v`` from ``T_x`` to ``T_y`` along the geodesic.

    .. math::
        P_{x \to y}(v) = v + \frac{c\langle y, v\rangle_L}{1 - c\langle x, y\rangle_L}\,(x + y)

    The denominator is :math:`1 + \cosh(\sqrt c\, d) \ge 2`, so no guard is needed.

    Args:
        x: ``(..., D + 1)`` start points.
        y: ``(..., D + 1)`` end points.
        v: ``(..., D + 1)`` tangent vectors at ``x``.
        c: curvature magnitude, ``c > 0``. (default: ``1.0``)

    Returns:
        ``(..., D + 1)`` tangent vectors at ``y``.

    Example:
        >>> o = torch.tensor([1.0, 0.0])
        >>> parallel_transport(o, o, torch.tensor([0.0, 1.0]))
        tensor([0., 1.])
    """
    x = _check_lorentz("x", x)
    y = _check_lorentz("y", y)
    v = _check_lorentz("v", v)
    _check_same(("x", "y", "v"), x, y, v)
    c = _curvature(c, x)
    yv = _dot(y[..., 1:], v[..., 1:]) - y[..., :1] * v[..., :1]
    xy = _dot(x[..., 1:], y[..., 1:]) - x[..., :1] * y[..., :1]
    return v + c * yv / (1 - c * xy) * (x + y)


def centroid(x: Tensor, c: float | Tensor = 1.0, weights: Tensor | None = None) -> Tensor:
    r"""Lorentzian centroid ([2], eq. 7 and theorem 3.3).

    .. math::
        \mu = \frac{\sum_i w_i x_i}{\sqrt c\,\sqrt{-\langle s, s\rangle_L}}, \qquad
        s = \sum_i w_i x_i

    the minimiser of :math:`\sum_i w_i d_{\mathcal L}^2(x_i, \mu)` for the squared Lorentzian
    distance :math:`d_{\mathcal L}^2(a, b) = -2/c - 2\langle a, b\rangle_L` (a Frechet-style
    mean in closed form; it coincides with the Einstein midpoint of the Klein model). Stable
    form: :math:`-\langle s, s\rangle_L = (s_0 - \lVert s_{1:}\rVert)(s_0 + \lVert
    s_{1:}\rVert)`, and the time coordinate of the result is recomputed from its space part.

    Args:
        x: ``(..., N, D + 1)`` points of the hyperboloid; the centroid is taken over ``N``.
        c: curvature magnitude, ``c > 0``. (default: ``1.0``)
        weights: ``(..., N)`` non-negative weights (not all 0), or ``None`` for equal weights.
            (default: ``None``)

    Returns:
        ``(..., D + 1)`` points of the hyperboloid.

    Example:
        >>> centroid(torch.tensor([[1.0, 0.0], [1.0, 0.0]]))
        tensor([1., 0.])
    """
    x = _check_lorentz("x", x)
    if x.dim() < 2:
        raise ValueError(f"x must have shape (..., N, D + 1), got {tuple(x.shape)}")
    c = _curvature(c, x)
    if weights is None:
        s = x.mean(-2)
    elif not isinstance(weights, Tensor) or weights.dtype != x.dtype:
        raise TypeError(f"weights must be a {x.dtype} tensor (..., N), got {describe(weights)}")
    elif weights.shape != x.shape[:-1]:
        raise ValueError(
            f"weights must have shape {tuple(x.shape[:-1])} (x without its last dim), got "
            f"{tuple(weights.shape)}"
        )
    else:
        s = (weights.unsqueeze(-1) * x).sum(-2)
    space_norm = _safe_norm(s[..., 1:])
    minus_ss = ((s[..., :1] - space_norm) * (s[..., :1] + space_norm)).clamp_min(
        torch.finfo(x.dtype).tiny
    )
    space = s[..., 1:] / (c.sqrt() * torch.sqrt(minus_ss))
    return torch.cat([_time(space, c), space], dim=-1)
