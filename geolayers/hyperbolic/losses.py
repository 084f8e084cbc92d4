r"""Losses on hyperbolic embeddings: MERU's contrastive and entailment losses (Lorentz model)
and the Poincare embedding loss of Nickel and Kiela.

* :func:`meru_contrastive_loss` / :class:`MERUContrastiveLoss`: CLIP's symmetric
  cross-entropy with negative Lorentz distances as similarities, from `"Hyperbolic Image-Text
  Representations" <https://arxiv.org/abs/2304.09172>`_ (Desai et al., ICML 2023) [1];
* :func:`half_aperture`, :func:`exterior_angle`, :func:`entailment_loss`: MERU's entailment
  cones ([1], "Entailment loss"), the Lorentz-model form of `"Hyperbolic Entailment Cones for Learning
  Hierarchical Embeddings" <https://arxiv.org/abs/1804.01882>`_ (Ganea, Becigneul, Hofmann,
  ICML 2018) [2];
* :func:`poincare_embedding_loss` / :func:`poincare_embedding_loss_from_distances`: the
  softmax loss over one positive and ``K`` negatives of `"Poincare Embeddings for Learning
  Hierarchical Representations" <https://arxiv.org/abs/1705.08039>`_ (Nickel and Kiela,
  NeurIPS 2017, eq. 6) [3].

Conventions: Lorentz points are full ``D + 1`` coordinates, time first, as in
:mod:`~geolayers.hyperbolic.lorentz`; Poincare points are ``D`` coordinates. ``c > 0`` is a
float or a 0-dim (possibly learnable) tensor. Every loss takes ``reduction`` in ``"mean"``,
``"sum"``, ``"none"`` and runs in float32 or float64; values and gradients are finite
everywhere on the manifolds, the origin and coinciding points included.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from geolayers._checks import describe, safe_sqrt
from geolayers.hyperbolic import lorentz as L
from geolayers.hyperbolic import poincare as P
from geolayers.hyperbolic.poincare import _check_point, _check_same, _curvature, _safe_norm

__all__ = [
    "meru_contrastive_loss",
    "MERUContrastiveLoss",
    "half_aperture",
    "exterior_angle",
    "entailment_loss",
    "poincare_embedding_loss",
    "poincare_embedding_loss_from_distances",
    "ASIN_EPS",
]

#: Margin of the argument of ``asin`` in :func:`half_aperture`: it is clamped to at most
#: ``1 - eps``, where the derivative of ``asin`` is finite. MERU uses ``1e-8``, which rounds
#: to 0 next to 1 in float32 (``1 - 1e-8 == 1``, infinite derivative), hence ``1e-6`` there.
ASIN_EPS = {torch.float32: 1e-6, torch.float64: 1e-8}

_REDUCTIONS = ("mean", "sum", "none")

# CLIP's and MERU's initial temperature 0.07, as the log of the logit multiplier.
_LOG_INV_TEMPERATURE = math.log(1 / 0.07)


# ----------------------------------------------------------------------------- helpers


def _check_reduction(reduction: object) -> str:
    if not isinstance(reduction, str) or reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of 'mean', 'sum', 'none', got {reduction!r}")
    return reduction


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _check_lorentz(name: str, value: object, slot: str = "..., D + 1") -> Tensor:
    value = _check_point(name, value, slot)
    if value.shape[-1] < 2:
        raise ValueError(f"{name} must have shape ({slot}) with D >= 1, got {tuple(value.shape)}")
    return value


def _check_min_radius(min_radius: object) -> float:
    if isinstance(min_radius, bool) or not isinstance(min_radius, (int, float)):
        raise TypeError(f"min_radius must be a positive float, got {describe(min_radius)}")
    if not (0 < min_radius < math.inf):
        raise ValueError(f"min_radius must be positive and finite, got {min_radius}")
    return float(min_radius)


def _check_logit_scale(logit_scale: object, like: Tensor) -> Tensor:
    if isinstance(logit_scale, bool) or not isinstance(logit_scale, (int, float, Tensor)):
        raise TypeError(
            f"logit_scale must be a float or a 0-dim float tensor, got {describe(logit_scale)}"
        )
    if isinstance(logit_scale, Tensor):
        if not logit_scale.is_floating_point():
            raise TypeError(
                f"logit_scale must be a floating-point tensor, got {describe(logit_scale)}"
            )
        if logit_scale.numel() != 1:
            raise ValueError(
                f"logit_scale must hold a single value, got shape {tuple(logit_scale.shape)}"
            )
        return logit_scale.reshape(()).to(dtype=like.dtype, device=like.device)
    if not math.isfinite(logit_scale):
        raise ValueError(f"logit_scale must be finite, got {logit_scale}")
    return torch.tensor(float(logit_scale), dtype=like.dtype, device=like.device)


def _check_max_scale(max_scale: object) -> float:
    if isinstance(max_scale, bool) or not isinstance(max_scale, (int, float)):
        raise TypeError(f"max_scale must be a positive float, got {describe(max_scale)}")
    if not (0 < max_scale < math.inf):
        raise ValueError(f"max_scale must be positive and finite, got {max_scale}")
    return float(max_scale)


# ----------------------------------------------------------------------------- MERU contrastive


def meru_contrastive_loss(
    image: Tensor,
    text: Tensor,
    c: float | Tensor = 1.0,
    logit_scale: float | Tensor = _LOG_INV_TEMPERATURE,
    *,
    max_scale: float = 100.0,
    reduction: str = "mean",
) -> Tensor:
    r"""MERU's contrastive loss: symmetric cross-entropy over the batch with negative Lorentz
    distances as similarities ([1], "Contrastive learning").

    .. math::
        s = \exp\big(\min(\texttt{logit\_scale}, \log s_{\max})\big), \qquad
        \ell_{ij} = -s\, d_c(\text{image}_i, \text{text}_j)

    .. math::
        L_i = \tfrac12\Big(-\log\frac{e^{\ell_{ii}}}{\sum_j e^{\ell_{ij}}}
            - \log\frac{e^{\ell_{ii}}}{\sum_j e^{\ell_{ji}}}\Big)

    The pair ``(image_i, text_i)`` is the positive of row ``i`` and of column ``i``; every
    other member of the batch is a negative. ``logit_scale`` is the logarithm of the inverse
    temperature, as in CLIP and MERU (initial value :math:`\log(1/0.07)`), clamped at
    :math:`\log s_{\max}` (MERU: 100); above the clamp it gets no gradient (see
    :class:`MERUContrastiveLoss` for the parameter that is clamped in place instead).
    Distances come from the stable :func:`~geolayers.hyperbolic.lorentz.pairwise_dist`.
    MERU's encoders output space components only; ``lorentz.expmap0`` of the zero-padded
    features (or ``lorentz.project`` of padded space parts) gives the full coordinates. MERU's
    total loss is this plus ``0.2 *`` :func:`entailment_loss` ``(text, image)``.

    Args:
        image: ``(B, D + 1)`` image embeddings on the hyperboloid (time first).
        text: ``(B, D + 1)`` text embeddings on the hyperboloid, ``text[i]`` paired with
            ``image[i]``.
        c: curvature magnitude, ``c > 0``. (default: ``1.0``)
        logit_scale: log of the logit multiplier, a float or a 0-dim tensor (learnable).
            (default: ``log(1 / 0.07)``)
        max_scale: largest multiplier, ``> 0``. (default: ``100.0``)
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (per pair, ``(B,)``).
            (default: ``"mean"``)

    Returns:
        a scalar, or ``(B,)`` with ``reduction="none"``.

    Example:
        >>> o = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
        >>> meru_contrastive_loss(o, o)  # two identical pairs: log 2
        tensor(0.6931)
    """
    image = _check_lorentz("image", image, "B, D + 1")
    text = _check_lorentz("text", text, "B, D + 1")
    for name, t in (("image", image), ("text", text)):
        if t.dim() != 2:
            raise ValueError(f"{name} must have shape (B, D + 1), got {tuple(t.shape)}")
    _check_same(("image", "text"), image, text)
    if image.shape[0] != text.shape[0]:
        raise ValueError(
            f"image and text must hold the same number of pairs B, got {image.shape[0]} "
            f"(image) and {text.shape[0]} (text)"
        )
    reduction = _check_reduction(reduction)
    c = _curvature(c, image)
    scale = _check_logit_scale(logit_scale, image).clamp(max=math.log(_check_max_scale(max_scale)))
    logits = -scale.exp() * L.pairwise_dist(image, text, c)  # (B, B), rows: images
    target = torch.arange(image.shape[0], device=image.device)
    loss = (
        F.cross_entropy(logits, target, reduction="none")
        + F.cross_entropy(logits.T, target, reduction="none")
    ) / 2
    return _reduce(loss, reduction)


class MERUContrastiveLoss(nn.Module):
    r"""MERU's contrastive loss with its learnable temperature ([1], "Contrastive learning").

    Holds ``logit_scale``, the log of the inverse temperature (initial value
    :math:`\log(1/\tau)`), and computes :func:`meru_contrastive_loss`. As in MERU (and CLIP's
    training code), the parameter itself is clamped in place to at most :math:`\log s_{\max}`
    before each forward pass, so it keeps receiving gradients at the cap instead of drifting
    above it.

    Args:
        temperature: initial temperature :math:`\tau > 0`. (default: ``0.07``)
        max_scale: largest logit multiplier :math:`1/\tau`, ``> 0``. (default: ``100.0``)
        learn_scale: learn ``logit_scale``; otherwise it is a buffer. (default: ``True``)
        reduction: ``"mean"``, ``"sum"`` or ``"none"``. (default: ``"mean"``)

    Shapes:
        ``image: (B, D + 1)``, ``text: (B, D + 1)`` -> scalar (``(B,)`` with ``"none"``).

    Example:
        >>> MERUContrastiveLoss()(torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0]]))
        tensor(0., grad_fn=<MeanBackward0>)
    """

    logit_scale: Tensor

    def __init__(
        self,
        temperature: float = 0.07,
        max_scale: float = 100.0,
        learn_scale: bool = True,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
            raise TypeError(f"temperature must be a positive float, got {describe(temperature)}")
        if not (0 < temperature < math.inf):
            raise ValueError(f"temperature must be positive and finite, got {temperature}")
        self.temperature = float(temperature)
        self.max_scale = _check_max_scale(max_scale)
        self.learn_scale = bool(learn_scale)
        self.reduction = _check_reduction(reduction)
        value = torch.tensor(math.log(1 / self.temperature))
        if self.learn_scale:
            self.logit_scale = nn.Parameter(value)
        else:
            self.register_buffer("logit_scale", value)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.logit_scale.fill_(math.log(1 / self.temperature))

    @property
    def scale(self) -> Tensor:
        """The current logit multiplier :math:`\\exp(\\texttt{logit\\_scale})`, capped."""
        return self.logit_scale.detach().clamp(max=math.log(self.max_scale)).exp()

    def forward(self, image: Tensor, text: Tensor, c: float | Tensor = 1.0) -> Tensor:
        """``image, text: (B, D + 1)`` -> the loss (see :func:`meru_contrastive_loss`)."""
        with torch.no_grad():
            self.logit_scale.clamp_(max=math.log(self.max_scale))
        return meru_contrastive_loss(
            image,
            text,
            c,
            self.logit_scale,
            max_scale=self.max_scale,
            reduction=self.reduction,
        )

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature:.4g}, scale={float(self.scale):.4g}, "
            f"max_scale={self.max_scale:.4g}, learn_scale={self.learn_scale}, "
            f"reduction={self.reduction!r}"
        )


# ----------------------------------------------------------------------------- entailment cones


def half_aperture(x: Tensor, c: float | Tensor = 1.0, min_radius: float = 0.1) -> Tensor:
    r"""Half-aperture of the entailment cone at ``x`` ([1], "Entailment loss"; [2], sec. 5 for
    the Poincare ball).

    .. math::
        \operatorname{aper}(x) = \arcsin\Big(\frac{2K}{\sqrt c\,\lVert x_{1:}\rVert}\Big)

    with ``K = min_radius``. The cone is defined for :math:`\sqrt c\lVert x_{1:}\rVert \ge
    2K` only; closer to the origin the argument is clamped to :math:`1 - \epsilon`
    (:data:`ASIN_EPS`, a per-dtype version of MERU's clamp), so the aperture is just below
    :math:`\pi/2` there, with a zero gradient. Only the space part :math:`x_{1:}` is read.

    Args:
        x: ``(..., D + 1)`` points of the hyperboloid (time first).
        c: curvature magnitude, ``c > 0``. (default: ``1.0``)
        min_radius: :math:`K > 0`, MERU's value. (default: ``0.1``)

    Returns:
        ``(...)`` half-apertures in :math:`(0, \pi/2)`.

    Example:
        >>> half_aperture(torch.tensor([[5**0.5, 2.0, 0.0]]))  # asin(0.2 / 2)
        tensor([0.1002])
    """
    x = _check_lorentz("x", x)
    c = _curvature(c, x)
    k = _check_min_radius(min_radius)
    return _half_aperture(x[..., 1:], c, k)


def _half_aperture(space: Tensor, c: Tensor, k: float) -> Tensor:
    eps = ASIN_EPS[space.dtype]
    t = c.sqrt() * _safe_norm(space, keepdim=False)
    # Clamping after the division would form 2K / 0 at the origin (an infinite value and a
    # NaN gradient); selecting before it keeps both finite.
    open_ = t > 2 * k / (1 - eps)
    arg = torch.where(open_, 2 * k / torch.where(open_, t, 1), 1 - eps)
    return torch.asin(arg)


def exterior_angle(x: Tensor, y: Tensor, c: float | Tensor = 1.0) -> Tensor:
    r"""Exterior angle at ``x`` of the geodesic triangle ``(origin, x, y)`` ([1], "Entailment
    loss"; [2], sec. 5 for the Poincare ball): the angle between the geodesic from ``x`` to ``y`` and
    the extension beyond ``x`` of the geodesic from the origin to ``x``.

    MERU's closed form, with :math:`\langle\cdot,\cdot\rangle_L` the Minkowski product:

    .. math::
        \operatorname{ext}(x, y) = \arccos\Big(\frac{y_0 + c\,x_0\langle x, y\rangle_L}
            {\lVert x_{1:}\rVert\sqrt{(c\langle x, y\rangle_L)^2 - 1}}\Big)

    Stable form. The ratio is :math:`0/0` at ``x == y`` and at the origin, its numerator and
    the square root cancel for nearby points, and :math:`\arccos` is ill conditioned next to
    0 and :math:`\pi` (where entailed points lie). The same angle is read off in the Poincare
    ball, which is conformal and where the geodesics through the origin are diameters: with
    :math:`p, q` the Poincare images of ``x`` and ``y``, :math:`\delta = q - p` and
    :math:`\hat x = x_{1:}/\lVert x_{1:}\rVert`, the direction of the geodesic from ``p`` to
    ``q`` is that of :math:`(-p) \oplus_c q`, whose numerator :math:`(1 - c\lVert p\rVert^2)
    \delta - c\lVert\delta\rVert^2 p` gives, after division by the positive
    :math:`(1 - c\lVert p\rVert^2)`,

    .. math::
        \operatorname{ext}(x, y) = \operatorname{atan2}\Big(\lVert\delta - (\delta\cdot\hat x)
            \hat x\rVert,\ \delta\cdot\hat x - \tfrac{c}{2}\lVert x_{1:}\rVert
            \lVert\delta\rVert^2\Big)

    (using :math:`\lVert p\rVert/(1 - c\lVert p\rVert^2) = \lVert x_{1:}\rVert/2`). For ``y``
    in the ball the two terms of the second argument are at most a factor 3 larger than the
    length of the vector, so ``atan2`` gets both components to a few ulps. Conventions at the
    degenerate points: :math:`\operatorname{ext}(x, x) = 0` (the apex belongs to its cone), and
    at the origin, where the radial direction is undefined, :math:`\hat x = 0` and the angle is
    :math:`\pi/2` (MERU's clamped formula gives the same); the gradients there are the
    subgradient 0. The time coordinates are recomputed from the space parts (MERU's
    parametrisation), so ``x_0`` and ``y_0`` are not read.

    Args:
        x: ``(..., D + 1)`` apexes of the cones (MERU: the text embeddings).
        y: ``(..., D + 1)`` points, broadcast against ``x`` (MERU: the image embeddings).
        c: curvature magnitude, ``c > 0``. (default: ``1.0``)

    Returns:
        ``(...)`` angles in :math:`[0, \pi]`.

    Example:
        >>> exterior_angle(torch.tensor([2**0.5, 1.0, 0.0]), torch.tensor([5**0.5, 2.0, 0.0]))
        tensor(0.)
    """
    x = _check_lorentz("x", x)
    y = _check_lorentz("y", y)
    _check_same(("x", "y"), x, y)
    return _exterior_angle(x[..., 1:], y[..., 1:], _curvature(c, x))


def _exterior_angle(xs: Tensor, ys: Tensor, c: Tensor) -> Tensor:
    r = _safe_norm(xs)
    # delta = q - p for the Poincare images p = x_{1:} / (1 + sx), sx = sqrt(1 + c |x_{1:}|^2)
    # (the time coordinate recomputed from the space part), written with the difference
    # d = y_{1:} - x_{1:} of the inputs: subtracting p from q would lose |p| / |q - p| digits
    # for nearby points (1e-9 absolute in the angle at |d| = 1e-6, float64).
    d = ys - xs
    sx = torch.sqrt(1 + c * xs.square().sum(-1, keepdim=True))
    sy = torch.sqrt(1 + c * ys.square().sum(-1, keepdim=True))
    sx_minus_sy = -c * (d * (xs + ys)).sum(-1, keepdim=True) / (sx + sy)
    delta = (d * (1 + sx) + sx_minus_sy * xs) / ((1 + sx) * (1 + sy))
    unit = torch.where(r > 0, xs / torch.where(r > 0, r, 1), 0)
    radial = (delta * unit).sum(-1, keepdim=True)
    across = safe_sqrt((delta - radial * unit).square().sum(-1))
    along = radial.squeeze(-1) - c / 2 * r.squeeze(-1) * delta.square().sum(-1)
    # atan2(0, 0) has a NaN gradient: that point (x == y, or both at the origin) gets the
    # angle 0 with a zero gradient.
    both_zero = (across == 0) & (along == 0)
    angle = torch.atan2(across, torch.where(both_zero, 1, along))
    return torch.where(both_zero, 0, angle)


def entailment_loss(
    x: Tensor,
    y: Tensor,
    c: float | Tensor = 1.0,
    min_radius: float = 0.1,
    *,
    reduction: str = "mean",
) -> Tensor:
    r"""MERU's entailment loss: how far ``y`` lies outside the entailment cone of ``x`` ([1],
    "Entailment loss"; [2], sec. 5).

    .. math::
        L(x, y) = \max\big(0,\ \operatorname{ext}(x, y) - \operatorname{aper}(x)\big)

    with :func:`exterior_angle` and :func:`half_aperture`. It is 0 when ``y`` is inside the cone
    of ``x`` (for instance further out on the geodesic from the origin through ``x``) and grows
    with the angle by which it misses it. In MERU ``x`` is the text and ``y`` the image, the
    general concept entailing the specific one, and the loss is added to the contrastive loss
    with weight 0.2.

    Args:
        x: ``(..., D + 1)`` apexes of the cones (the more general embeddings).
        y: ``(..., D + 1)`` points, broadcast against ``x`` (the more specific embeddings).
        c: curvature magnitude, ``c > 0``. (default: ``1.0``)
        min_radius: :math:`K > 0` of :func:`half_aperture`. (default: ``0.1``)
        reduction: ``"mean"``, ``"sum"`` or ``"none"``. (default: ``"mean"``)

    Returns:
        a scalar, or ``(...)`` with ``reduction="none"``.

    Example:
        >>> entailment_loss(torch.tensor([2**0.5, 1.0, 0.0]), torch.tensor([5**0.5, 2.0, 0.0]))
        tensor(0.)
    """
    x = _check_lorentz("x", x)
    y = _check_lorentz("y", y)
    _check_same(("x", "y"), x, y)
    c = _curvature(c, x)
    k = _check_min_radius(min_radius)
    reduction = _check_reduction(reduction)
    xs, ys = x[..., 1:], y[..., 1:]
    loss = F.relu(_exterior_angle(xs, ys, c) - _half_aperture(xs, c, k))
    return _reduce(loss, reduction)


# ----------------------------------------------------------------------------- Poincare embeddings


def poincare_embedding_loss(
    u: Tensor,
    v_pos: Tensor,
    v_neg: Tensor,
    c: float | Tensor = 1.0,
    *,
    reduction: str = "mean",
) -> Tensor:
    r"""Softmax loss of Poincare embeddings over one positive and ``K`` negatives ([3], eq. 6).

    .. math::
        L(u, v, \{v'_k\}) = -\log\frac{e^{-d_c(u, v)}}{e^{-d_c(u, v)}
            + \sum_{k=1}^{K} e^{-d_c(u, v'_k)}}

    i.e. the cross-entropy of the logits :math:`-d_c` with the positive at index 0 (the paper
    counts the positive among the candidates :math:`\mathcal N(u)`). Distances come from the
    stable :func:`~geolayers.hyperbolic.poincare.dist`, then
    :func:`poincare_embedding_loss_from_distances`. Isometries of the ball leave the loss
    unchanged.

    Args:
        u: ``(B, D)`` anchors in the ball.
        v_pos: ``(B, D)`` positives (``(u_i, v_pos_i)`` is an edge of the hierarchy).
        v_neg: ``(B, K, D)`` negatives of each anchor, ``K >= 1``.
        c: curvature magnitude, ``c > 0``. (default: ``1.0``)
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (``(B,)``). (default: ``"mean"``)

    Returns:
        a scalar, or ``(B,)`` with ``reduction="none"``.

    Example:
        >>> poincare_embedding_loss(torch.zeros(1, 2), torch.zeros(1, 2), torch.zeros(1, 3, 2))
        tensor(1.3863)
    """
    u = _check_point("u", u, "B, D")
    v_pos = _check_point("v_pos", v_pos, "B, D")
    v_neg = _check_point("v_neg", v_neg, "B, K, D")
    if u.dim() != 2:
        raise ValueError(f"u must have shape (B, D), got {tuple(u.shape)}")
    if v_pos.shape != u.shape:
        raise ValueError(
            f"v_pos must have the shape of u {tuple(u.shape)} (B, D), got {tuple(v_pos.shape)}"
        )
    if v_neg.dim() != 3 or v_neg.shape[0] != u.shape[0] or v_neg.shape[2] != u.shape[1]:
        raise ValueError(
            f"v_neg must have shape (B, K, D) = ({u.shape[0]}, K, {u.shape[1]}) to match u, "
            f"got {tuple(v_neg.shape)}"
        )
    if v_neg.shape[1] < 1:
        raise ValueError(
            f"v_neg must hold at least one negative (K >= 1), got {tuple(v_neg.shape)}"
        )
    _check_same(("u", "v_pos", "v_neg"), u, v_pos, v_neg)
    reduction = _check_reduction(reduction)
    c = _curvature(c, u)
    candidates = torch.cat([v_pos.unsqueeze(1), v_neg], dim=1)  # (B, 1 + K, D)
    return _from_distances(P.dist(u.unsqueeze(1), candidates, c), reduction)


def poincare_embedding_loss_from_distances(dist: Tensor, *, reduction: str = "mean") -> Tensor:
    r"""The loss of :func:`poincare_embedding_loss` from precomputed distances ([3], eq. 6).

    .. math::
        L_i = d_{i0} + \log\sum_{j=0}^{K} e^{-d_{ij}}

    computed with ``logsumexp`` (no overflow or underflow for distances in the hundreds). For
    distances produced elsewhere, e.g. by a fused kernel over the ``(B, 1 + K)`` candidates.

    Args:
        dist: ``(B, 1 + K)`` distances, the positive in column 0 and ``K >= 1`` negatives after
            it.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (``(B,)``). (default: ``"mean"``)

    Returns:
        a scalar, or ``(B,)`` with ``reduction="none"``.

    Example:
        >>> poincare_embedding_loss_from_distances(torch.tensor([[0.0, 0.0]]))
        tensor(0.6931)
    """
    dist = _check_point("dist", dist, "B, 1 + K")
    if dist.dim() != 2 or dist.shape[1] < 2:
        raise ValueError(
            f"dist must have shape (B, 1 + K) with K >= 1 (positive first), got {tuple(dist.shape)}"
        )
    return _from_distances(dist, _check_reduction(reduction))


def _from_distances(dist: Tensor, reduction: str) -> Tensor:
    return _reduce(dist[:, 0] + torch.logsumexp(-dist, dim=1), reduction)
