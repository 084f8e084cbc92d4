r"""Layers on the Poincare ball of curvature :math:`-c` (``c > 0``).

* :class:`ToPoincare`: lift Euclidean features to the ball, with the feature clipping of
  `"Clipped Hyperbolic Classifiers Are Super-Hyperbolic Classifiers"
  <https://arxiv.org/abs/2107.11472>`_ (Guo et al., CVPR 2022), as in HypCD;
* :class:`MobiusLinear`: the hyperbolic linear layer of `"Hyperbolic Neural Networks"
  <https://arxiv.org/abs/1805.09112>`_ (Ganea, Becigneul, Hofmann, NeurIPS 2018) [1];
* :class:`HyperbolicMLR`: hyperbolic multinomial logistic regression ([1], eq. 25);
* :class:`HyperbolicPrototypeHead`: logits from negative distances to learnable prototypes.

Every layer takes the curvature as a positive float, fixed, or learnable
(``learn_curvature=True``): then ``c = softplus(raw_c)`` with ``raw_c`` an
:class:`~torch.nn.Parameter`, so that gradient steps can never make it non-positive. The
parameters are plain :class:`~torch.nn.Parameter` tensors (points of the ball are stored as
tangent vectors at the origin and mapped with :func:`~geolayers.hyperbolic.poincare.expmap0`),
so any Euclidean optimizer applies. The layers run in float32 or float64, the dtype of their
parameters (``module.double()``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from geolayers._checks import check_positive_int, describe
from geolayers.hyperbolic import poincare as P
from geolayers.hyperbolic.poincare import _check_point, _conformal, _safe_norm

__all__ = ["ToPoincare", "MobiusLinear", "HyperbolicMLR", "HyperbolicPrototypeHead"]


def _check_positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a positive float, got {type(value).__name__}")
    if not (0 < value < math.inf):
        raise ValueError(f"{name} must be positive and finite, got {value}")
    return float(value)


class _Curved(nn.Module):
    """Holds the curvature magnitude ``c``, a float or a softplus-parametrised parameter."""

    raw_c: nn.Parameter | None

    def _init_curvature(self, c: object, learn_curvature: bool) -> None:
        c = _check_positive("c", c)
        self.learn_curvature = bool(learn_curvature)
        if self.learn_curvature:
            # Inverse of softplus, c + log(1 - exp(-c)), written so that it neither overflows
            # for large c nor loses digits for small c.
            self.raw_c = nn.Parameter(torch.tensor(c + math.log(-math.expm1(-c))))
            self._c = None
        else:
            self.register_parameter("raw_c", None)
            self._c = c

    @property
    def c(self) -> float | Tensor:
        """The curvature magnitude: a float, or a 0-dim tensor when it is learnt."""
        return F.softplus(self.raw_c) if self.raw_c is not None else self._c

    def _c_repr(self) -> str:
        c = float(self.c) if self.raw_c is None else float(self.c.detach())
        return f"c={c:.4g}" + (", learn_curvature=True" if self.learn_curvature else "")

    def _check_input(self, x: object, features: int, like: Tensor, slot: str) -> Tensor:
        x = _check_point("x", x, slot)
        if x.shape[-1] != features:
            raise ValueError(
                f"x must have {features} features in its last dimension ({slot}), got shape "
                f"{tuple(x.shape)}"
            )
        if x.dtype != like.dtype:
            raise TypeError(
                f"x must have the dtype of the layer's parameters ({like.dtype}), got "
                f"{describe(x)}; convert the layer with .to(dtype)"
            )
        return x

    def _ball_input(self, x: object, like: Tensor, slot: str) -> tuple[Tensor, Tensor]:
        """The checked input of a layer on the ball and the curvature as a tensor of its dtype;
        ``(N, in_features)`` inputs (``slot`` starting with ``N``) must be 2-D, and ``strict``
        layers reject points outside the ball."""
        x = self._check_input(x, self.in_features, like, slot)
        if slot.startswith("N") and x.dim() != 2:
            raise ValueError(f"x must have shape ({slot}), got {tuple(x.shape)}")
        c = P._curvature(self.c, x)
        if self.strict:
            self._check_in_ball(x, c)
        return x, c

    def _check_in_ball(self, x: Tensor, c: Tensor) -> None:
        # Unclamped 1 - c|x|^2 (the clamped _conformal would hide points outside the ball).
        if bool((P._one_minus_unclamped(x, c) <= 0).any()):
            worst = float((c * x.detach().square().sum(-1)).max())
            raise ValueError(
                f"x must lie inside the Poincare ball (c |x|^2 < 1) with strict=True, got "
                f"max c |x|^2 = {worst:.6g}"
            )


class ToPoincare(_Curved):
    r"""Lift Euclidean features to the Poincare ball: clip, then :math:`\exp_0`.

    .. math::
        \tilde x = \min\Big(1, \frac{r}{\lVert x\rVert}\Big)\, x, \qquad
        y = \operatorname{proj}\big(\exp_0^c(\tilde x)\big)

    The clipping to the norm ``clip_r`` is that of `"Clipped Hyperbolic Classifiers Are
    Super-Hyperbolic Classifiers" <https://arxiv.org/abs/2107.11472>`_ (Guo et al., CVPR 2022),
    used by HypCD: without it, features of large norm are mapped next to the boundary, where
    :math:`\exp_0` saturates and the gradients vanish. The final projection keeps the point
    :data:`~geolayers.hyperbolic.poincare.PROJECT_EPS` away from the boundary.

    Args:
        c: curvature magnitude, ``c > 0``. (default: ``1.0``)
        clip_r: largest Euclidean norm of a feature before the map, or ``None`` for no
            clipping. (default: ``2.3``)
        learn_curvature: learn ``c`` (softplus-parametrised). (default: ``False``)

    Shapes:
        ``(..., D)`` -> ``(..., D)``.

    Example:
        >>> geolayers.hyperbolic.ToPoincare()(torch.zeros(2, 3))
        tensor([[0., 0., 0.],
                [0., 0., 0.]])
    """

    def __init__(
        self, c: float = 1.0, clip_r: float | None = 2.3, learn_curvature: bool = False
    ) -> None:
        super().__init__()
        self._init_curvature(c, learn_curvature)
        self.clip_r = None if clip_r is None else _check_positive("clip_r", clip_r)

    def forward(self, x: Tensor) -> Tensor:
        """``(..., D)`` Euclidean features -> ``(..., D)`` points of the ball."""
        x = _check_point("x", x)
        if self.clip_r is not None:
            norm = _safe_norm(x)
            over = norm > self.clip_r
            # where() on both sides: the ratio is never formed for norm 0 (NaN gradient).
            x = x * torch.where(over, self.clip_r / torch.where(over, norm, 1), 1)
        c = self.c
        return P.project(P.expmap0(x, c), c)

    def extra_repr(self) -> str:
        return f"{self._c_repr()}, clip_r={self.clip_r}"


class MobiusLinear(_Curved):
    r"""Hyperbolic linear layer of `"Hyperbolic Neural Networks"
    <https://arxiv.org/abs/1805.09112>`_ (Ganea et al., NeurIPS 2018, eqs. 26-28).

    .. math::
        y = \operatorname{proj}\big((W \otimes_c x) \oplus_c \exp_0^c(b)\big)

    The bias is stored as a tangent vector :math:`b` at the origin and mapped to the ball
    with :math:`\exp_0^c`, so it stays an ordinary parameter. For ``c -> 0`` the layer tends to
    the Euclidean ``x @ W.T + b``.

    Args:
        in_features: ``D_in``.
        out_features: ``D_out``.
        bias: add a hyperbolic bias. (default: ``True``)
        c: curvature magnitude, ``c > 0``. (default: ``1.0``)
        learn_curvature: learn ``c`` (softplus-parametrised). (default: ``False``)
        strict: raise a :class:`ValueError` for inputs outside the ball instead of
            computing with them. (default: ``False``)

    Shapes:
        ``(..., D_in)`` -> ``(..., D_out)``.

    Example:
        >>> geolayers.hyperbolic.MobiusLinear(4, 3)(torch.zeros(2, 4)).shape
        torch.Size([2, 3])
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        c: float = 1.0,
        learn_curvature: bool = False,
        strict: bool = False,
    ) -> None:
        super().__init__()
        self.in_features = check_positive_int("in_features", in_features)
        self.out_features = check_positive_int("out_features", out_features)
        self._init_curvature(c, learn_curvature)
        self.strict = bool(strict)
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.empty(out_features)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # nn.Linear's initialisation: the layer starts close to its Euclidean counterpart
        # for features near the origin.
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features)
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        """``(..., D_in)`` points of the ball -> ``(..., D_out)`` points of the ball."""
        x, c = self._ball_input(x, self.weight, "..., in_features")
        y = P.mobius_matvec(self.weight, x, c)
        if self.bias is not None:
            y = P.mobius_add(y, P.expmap0(self.bias, c), c)
        return P.project(y, c)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}, {self._c_repr()}, strict={self.strict}"
        )


class HyperbolicMLR(_Curved):
    r"""Hyperbolic multinomial logistic regression of `"Hyperbolic Neural Networks"
    <https://arxiv.org/abs/1805.09112>`_ (Ganea et al., NeurIPS 2018, eq. 25).

    Class ``k`` has a point :math:`p_k` of the ball and a normal :math:`a_k \in T_{p_k}`; its
    logit is the signed distance of ``x`` to the hyperplane through :math:`p_k` orthogonal to
    :math:`a_k`, scaled by the Riemannian norm of :math:`a_k`:

    .. math::
        \ell_k(x) = \frac{\lambda_{p_k}\lVert a_k\rVert}{\sqrt c}\operatorname{arsinh}\Big(
            \frac{2\sqrt c\,\langle z_k, a_k\rangle}{(1 - c\lVert z_k\rVert^2)\lVert a_k\rVert}
            \Big), \qquad z_k = (-p_k) \oplus_c x

    Parametrisation (as in common implementations): :math:`p_k = \exp_0^c(u_k)` and
    :math:`a_k = (1 - c\lVert p_k\rVert^2)\, a'_k` with plain Euclidean parameters
    :math:`u_k, a'_k`, i.e. :math:`a_k` is :math:`a'_k` transported from the origin to
    :math:`p_k`. Stable form: then :math:`\lambda_{p_k}\lVert a_k\rVert = 2\lVert a'_k\rVert`
    and the ratio only needs the direction :math:`\hat a_k = a'_k/\lVert a'_k\rVert`, taken as
    0 when :math:`a'_k = 0` (logit 0, finite gradients); :math:`1 - c\lVert z_k\rVert^2` is
    accumulated as in :mod:`~geolayers.hyperbolic.poincare`.

    Args:
        in_features: ``D``.
        num_classes: ``K``.
        c: curvature magnitude, ``c > 0``. (default: ``1.0``)
        learn_curvature: learn ``c`` (softplus-parametrised). (default: ``False``)
        strict: raise a :class:`ValueError` for inputs outside the ball. (default: ``False``)

    Shapes:
        ``(N, D)`` -> ``(N, K)``.

    Example:
        >>> geolayers.hyperbolic.HyperbolicMLR(4, 3)(torch.zeros(2, 4)).shape
        torch.Size([2, 3])
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        c: float = 1.0,
        learn_curvature: bool = False,
        strict: bool = False,
    ) -> None:
        super().__init__()
        self.in_features = check_positive_int("in_features", in_features)
        self.num_classes = check_positive_int("num_classes", num_classes)
        self._init_curvature(c, learn_curvature)
        self.strict = bool(strict)
        #: ``(K, D)`` tangent vectors at the origin of the points :math:`p_k`.
        self.p_tangent = nn.Parameter(torch.empty(num_classes, in_features))
        #: ``(K, D)`` Euclidean normals :math:`a'_k` (transported to :math:`p_k`).
        self.a = nn.Parameter(torch.empty(num_classes, in_features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1 / math.sqrt(self.in_features)
        nn.init.uniform_(self.a, -bound, bound)
        # Points start near the origin, where the hyperplanes are those of a Euclidean MLR.
        nn.init.uniform_(self.p_tangent, -1e-2, 1e-2)

    def points(self) -> Tensor:
        """``(K, D)`` the points :math:`p_k` of the ball."""
        return P.expmap0(self.p_tangent, P._curvature(self.c, self.p_tangent))

    def normals(self) -> Tensor:
        r"""``(K, D)`` the normals :math:`a_k \in T_{p_k}` (Euclidean coordinates)."""
        c = P._curvature(self.c, self.p_tangent)
        return _conformal(self.points(), c) * self.a

    def forward(self, x: Tensor) -> Tensor:
        """``(N, D)`` points of the ball -> ``(N, K)`` logits."""
        x, c = self._ball_input(x, self.a, "N, in_features")
        sqrt_c = c.sqrt()
        p = P.expmap0(self.p_tangent, c)  # (K, D)
        z = P.mobius_add(-p.unsqueeze(0), x.unsqueeze(1), c)  # (N, K, D)
        norm_a = _safe_norm(self.a, keepdim=False)  # (K,)
        unit_a = self.a / torch.where(norm_a > 0, norm_a, 1).unsqueeze(-1)
        arg = 2 * sqrt_c * (z * unit_a).sum(-1) / _conformal(z, c).squeeze(-1)
        return 2 * norm_a / sqrt_c * torch.asinh(arg)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, num_classes={self.num_classes}, "
            f"{self._c_repr()}, strict={self.strict}"
        )


class HyperbolicPrototypeHead(_Curved):
    r"""Distance-to-prototype classifier on the Poincare ball, with the optional angle term of
    `"Hyperbolic Category Discovery" <https://arxiv.org/abs/2504.06120>`_ (HypCD; Liu, He and
    Han, CVPR 2025).

    .. math::
        \ell_k(x) = \frac{1}{\tau}\Big(-(1 - w)\, d_c(x, \mu_k)
            + w \cos\angle(x, \mu_k)\Big)

    :math:`d_c` is the stable :func:`~geolayers.hyperbolic.poincare.pairwise_dist` (the fused
    kernel: no ``(N, K, D)`` tensor), :math:`\angle(x, \mu_k)` the angle at the origin between
    the geodesics to ``x`` and to :math:`\mu_k` (the ball is conformal, so it is the Euclidean
    angle of the two vectors; 0 contributes cosine 0), and :math:`w` = ``angle_weight``. HypCD
    mixes the two because the distance alone is dominated by the norms near the boundary.
    With ``angle_weight=0`` any isometry of the ball applied to both inputs and prototypes
    leaves the logits unchanged; the angle term is invariant under rotations only.

    Prototypes are stored either as tangent vectors :math:`u_k` at the origin,
    :math:`\mu_k = \exp_0^c(u_k)`, for any Euclidean optimizer (the default), or, with
    ``riemannian=True``, as a :class:`geoopt.ManifoldParameter` on
    ``geoopt.PoincareBall(c)`` holding the points themselves, for geoopt's Riemannian
    optimizers (``geoopt.optim.RiemannianAdam``; fixed ``c`` only).

    Args:
        in_features: ``D``.
        num_classes: ``K``.
        c: curvature magnitude, ``c > 0``. (default: ``1.0``)
        temperature: :math:`\tau > 0`. (default: ``1.0``)
        angle_weight: :math:`w \in [0, 1]`. (default: ``0.0``)
        learn_curvature: learn ``c`` (softplus-parametrised). (default: ``False``)
        riemannian: store the prototypes as a geoopt ``ManifoldParameter``. (default: ``False``)
        strict: raise a :class:`ValueError` for inputs outside the ball. (default: ``False``)

    Shapes:
        ``(N, D)`` -> ``(N, K)``.

    Example:
        >>> geolayers.hyperbolic.HyperbolicPrototypeHead(4, 3)(torch.zeros(2, 4)).shape
        torch.Size([2, 3])
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        c: float = 1.0,
        temperature: float = 1.0,
        angle_weight: float = 0.0,
        learn_curvature: bool = False,
        riemannian: bool = False,
        strict: bool = False,
    ) -> None:
        super().__init__()
        self.in_features = check_positive_int("in_features", in_features)
        self.num_classes = check_positive_int("num_classes", num_classes)
        self._init_curvature(c, learn_curvature)
        self.temperature = _check_positive("temperature", temperature)
        if isinstance(angle_weight, bool) or not isinstance(angle_weight, (int, float)):
            raise TypeError(f"angle_weight must be a float in [0, 1], got {describe(angle_weight)}")
        if not 0 <= angle_weight <= 1:
            raise ValueError(f"angle_weight must lie in [0, 1], got {angle_weight}")
        self.angle_weight = float(angle_weight)
        self.riemannian = bool(riemannian)
        if self.riemannian and self.learn_curvature:
            raise ValueError(
                "riemannian=True needs a fixed curvature (learn_curvature=False): the manifold "
                "of a geoopt ManifoldParameter is fixed"
            )
        self.strict = bool(strict)
        if self.riemannian:
            import geoopt

            #: ``(K, D)`` the prototypes, points of ``geoopt.PoincareBall(c)``.
            self.prototype_points = geoopt.ManifoldParameter(
                torch.empty(num_classes, in_features), manifold=geoopt.PoincareBall(c=self._c)
            )
            self.register_parameter("prototype_tangent", None)
        else:
            #: ``(K, D)`` tangent vectors at the origin of the prototypes.
            self.prototype_tangent = nn.Parameter(torch.empty(num_classes, in_features))
            self.register_parameter("prototype_points", None)
        self.reset_parameters()

    @property
    def _param(self) -> Tensor:
        return self.prototype_points if self.riemannian else self.prototype_tangent

    def reset_parameters(self) -> None:
        with torch.no_grad():
            tangent = torch.randn_like(self._param) / math.sqrt(self.in_features)
            if self.riemannian:
                self.prototype_points.copy_(P.expmap0(tangent, self._c))
            else:
                self.prototype_tangent.copy_(tangent)

    def prototypes(self) -> Tensor:
        """``(K, D)`` the prototypes on the ball."""
        if self.riemannian:
            return self.prototype_points
        return P.expmap0(self.prototype_tangent, P._curvature(self.c, self.prototype_tangent))

    def forward(self, x: Tensor) -> Tensor:
        """``(N, D)`` points of the ball -> ``(N, K)`` logits."""
        x, c = self._ball_input(x, self._param, "N, in_features")
        mu = self.prototypes() if self.riemannian else P.expmap0(self.prototype_tangent, c)
        # A ManifoldParameter is a tensor subclass; the kernel takes plain tensors.
        mu = mu.as_subclass(Tensor)
        logits = -P.pairwise_dist(x, mu, c)
        if self.angle_weight > 0:
            # Zero vectors have no direction: their unit vector is taken as 0 (cosine 0).
            def unit(v: Tensor) -> Tensor:
                norm = _safe_norm(v)
                return v / torch.where(norm > 0, norm, 1)

            cosine = unit(x) @ unit(mu).T
            logits = (1 - self.angle_weight) * logits + self.angle_weight * cosine
        return logits / self.temperature

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, num_classes={self.num_classes}, "
            f"{self._c_repr()}, temperature={self.temperature}, "
            f"angle_weight={self.angle_weight}, riemannian={self.riemannian}, "
            f"strict={self.strict}"
        )
