r"""Layers on the Lorentz model (hyperboloid) of curvature :math:`-c` (``c > 0``).

Points are full ``D + 1`` coordinates, time first, on :math:`\{x : \langle x, x\rangle_L =
-1/c,\ x_0 > 0\}`, as in :mod:`geolayers.hyperbolic.lorentz`.

* :class:`ToLorentz`: lift Euclidean features with a learnable scale and :math:`\exp_o`, as
  `"Hyperbolic Image-Text Representations" <https://arxiv.org/abs/2304.09172>`_ (MERU, Desai
  et al., ICML 2023) [1];
* :class:`LorentzLinear`: the Lorentz linear layer of `"Fully Hyperbolic Neural Networks"
  <https://arxiv.org/abs/2105.14686>`_ (Chen et al., ACL 2022) [2].

The curvature is a positive float, fixed, or learnable (``learn_curvature=True``, then
``c = softplus(raw_c)``), as for the Poincare layers of :mod:`geolayers.hyperbolic.layers`.
The layers run in float32 or float64, the dtype of their parameters (``module.double()``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from geolayers._checks import check_positive_int
from geolayers.hyperbolic import lorentz as L
from geolayers.hyperbolic.layers import _check_positive, _Curved
from geolayers.hyperbolic.poincare import _curvature, _safe_norm

__all__ = ["ToLorentz", "LorentzLinear"]

# MERU caps sqrt(c) |v| at asinh(2^15) before its exponential map ([1], code release): the
# coordinates then stay below about 2^15 / sqrt(c), so float32 Minkowski products of two
# points (about x_0 y_0 ~ 2^30) keep a few correct digits and cosh never overflows (it does
# for arguments above 89 in float32).
_MAX_SQRT_C_NORM = math.asinh(2.0**15)


class ToLorentz(_Curved):
    r"""Lift Euclidean features to the hyperboloid: learnable scale, then :math:`\exp_o`, as
    MERU's image and text encoders [1].

    .. math::
        v = \alpha x, \qquad y = \exp_o^c\big((0, v)\big) = \Big(\frac{\cosh(\sqrt c
            \lVert v\rVert)}{\sqrt c},\ \frac{\sinh(\sqrt c\lVert v\rVert)}{\sqrt c\lVert v
            \rVert}\, v\Big)

    The scale :math:`\alpha > 0` is stored as :math:`\log\alpha` and starts at MERU's
    :math:`1/\sqrt D` (``alpha=None``): features of per-coordinate scale 1 then have a norm
    near 1, neither collapsed to the origin nor pushed to where :math:`\cosh` grows
    exponentially. As MERU's implementation, :math:`\sqrt c\lVert v\rVert` is capped at
    :math:`\operatorname{arsinh}(2^{15}) \approx 11.09` (the direction is kept), so the
    coordinates stay below about :math:`2^{15}/\sqrt c` and float32 does not overflow. MERU
    also clamps :math:`\alpha \le 1` after each optimizer step; that belongs in the training
    loop (``layer.log_alpha.data.clamp_(max=0)``) and is not done here.

    Args:
        in_features: ``D``, the width of the Euclidean features.
        c: curvature magnitude, ``c > 0``. (default: ``1.0``)
        alpha: initial scale :math:`\alpha > 0`, or ``None`` for :math:`1/\sqrt D`.
            (default: ``None``)
        learn_alpha: learn :math:`\log\alpha` (a buffer otherwise). (default: ``True``)
        learn_curvature: learn ``c`` (softplus-parametrised). (default: ``False``)

    Shapes:
        ``(..., D)`` -> ``(..., D + 1)``, time coordinate first.

    Example:
        >>> ToLorentz(3)(torch.zeros(1, 3)).detach()
        tensor([[1., 0., 0., 0.]])
    """

    log_alpha: Tensor

    def __init__(
        self,
        in_features: int,
        c: float = 1.0,
        alpha: float | None = None,
        learn_alpha: bool = True,
        learn_curvature: bool = False,
    ) -> None:
        super().__init__()
        self.in_features = check_positive_int("in_features", in_features)
        self._init_curvature(c, learn_curvature)
        self.alpha_init = (
            1 / math.sqrt(in_features) if alpha is None else _check_positive("alpha", alpha)
        )
        self.learn_alpha = bool(learn_alpha)
        log_alpha = torch.tensor(math.log(self.alpha_init))
        if self.learn_alpha:
            self.log_alpha = nn.Parameter(log_alpha)
        else:
            self.register_buffer("log_alpha", log_alpha)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.log_alpha.fill_(math.log(self.alpha_init))

    @property
    def alpha(self) -> Tensor:
        """The scale :math:`\\alpha = \\exp(\\log\\alpha)`, a 0-dim tensor."""
        return self.log_alpha.exp()

    def forward(self, x: Tensor) -> Tensor:
        """``(..., D)`` Euclidean features -> ``(..., D + 1)`` points of the hyperboloid."""
        x = self._check_input(x, self.in_features, self.log_alpha, "..., in_features")
        c = _curvature(self.c, x)
        v = self.log_alpha.exp() * x
        max_norm = _MAX_SQRT_C_NORM / c.sqrt()
        norm = _safe_norm(v)
        over = norm > max_norm
        # where() on both sides: the ratio is never formed for norm 0 (NaN gradient).
        v = v * torch.where(over, max_norm / torch.where(over, norm, 1), 1)
        # lorentz.expmap0 takes (..., D + 1) tangent vectors at the origin and ignores v_0.
        return L.expmap0(torch.cat([torch.zeros_like(v[..., :1]), v], dim=-1), c)

    def extra_repr(self) -> str:
        alpha = float(self.alpha.detach())
        return (
            f"in_features={self.in_features}, {self._c_repr()}, alpha={alpha:.4g}, "
            f"learn_alpha={self.learn_alpha}"
        )


class LorentzLinear(_Curved):
    r"""Lorentz linear layer of `"Fully Hyperbolic Neural Networks"
    <https://arxiv.org/abs/2105.14686>`_ (Chen et al., ACL 2022, Sec. 3.1).

    The space part of the output is an affine map of the *whole* input, time coordinate
    included; the time part is then the one that puts the output on the hyperboloid:

    .. math::
        s = W x + b \in \mathbb{R}^{D_\text{out}}, \qquad
        y = \Big(\sqrt{1/c + \lVert s\rVert^2},\ s\Big), \qquad
        W \in \mathbb{R}^{D_\text{out} \times (D_\text{in} + 1)}

    so :math:`\langle y, y\rangle_L = -1/c` by construction. This is the "fully hyperbolic"
    form, chosen over the tangent-space form :math:`\exp_o(W\log_o(x))`: it needs no
    logarithmic or exponential map (no :math:`\cosh` that overflows, no loss of digits far
    from the origin), and because :math:`W` also sees :math:`x_0` it contains every Lorentz
    boost and rotation ([2], Sec. 3.1), which a map through the tangent space at the origin
    cannot express. The bias :math:`b` is Euclidean (an ordinary parameter), as in [2].
    Chen et al. also give a variant that normalises the time coordinate with a learnable
    scale; it is not implemented here.

    Args:
        in_features: ``D_in`` (the input has ``D_in + 1`` coordinates).
        out_features: ``D_out`` (the output has ``D_out + 1`` coordinates).
        bias: add the bias :math:`b`. (default: ``True``)
        c: curvature magnitude, ``c > 0``. (default: ``1.0``)
        learn_curvature: learn ``c`` (softplus-parametrised). (default: ``False``)

    Shapes:
        ``(..., D_in + 1)`` -> ``(..., D_out + 1)``, time coordinate first.

    Example:
        >>> LorentzLinear(3, 2)(torch.tensor([[1.0, 0.0, 0.0, 0.0]])).shape
        torch.Size([1, 3])
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        c: float = 1.0,
        learn_curvature: bool = False,
    ) -> None:
        super().__init__()
        self.in_features = check_positive_int("in_features", in_features)
        self.out_features = check_positive_int("out_features", out_features)
        self._init_curvature(c, learn_curvature)
        self.weight = nn.Parameter(torch.empty(out_features, in_features + 1))
        self.bias = nn.Parameter(torch.empty(out_features)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # nn.Linear's initialisation over the D_in + 1 input coordinates.
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features + 1)
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        """``(..., D_in + 1)`` points of the hyperboloid -> ``(..., D_out + 1)`` points."""
        x = self._check_input(x, self.in_features + 1, self.weight, "..., in_features + 1")
        c = _curvature(self.c, x)
        space = nn.functional.linear(x, self.weight, self.bias)
        time = torch.sqrt(1 / c + space.square().sum(-1, keepdim=True))
        return torch.cat([time, space], dim=-1)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}, {self._c_repr()}"
        )
