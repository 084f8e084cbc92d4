r"""Hyperbolic geometry: functional ops on the Poincare ball and the Lorentz model.

Two namespaced modules with the same vocabulary, curvature :math:`-c` with ``c > 0`` (a float
or a 0-dim, possibly learnable, tensor), float32 and float64, finite values and gradients
everywhere on the manifold:

* :mod:`~geolayers.hyperbolic.poincare`: ``mobius_add``, ``mobius_matvec``, ``expmap0``,
  ``logmap0``, ``expmap``, ``logmap``, ``dist``, ``pairwise_dist``, ``parallel_transport``,
  ``project``, ``einstein_midpoint`` and the conversions Poincare <-> Lorentz <-> Klein;
* :mod:`~geolayers.hyperbolic.lorentz`: ``minkowski_dot``, ``expmap0``, ``logmap0``,
  ``expmap``, ``logmap``, ``dist``, ``pairwise_dist``, ``parallel_transport``, ``project``,
  ``centroid`` (full ``D + 1`` coordinates, time first, as geoopt's ``Lorentz(k=1/c)``);
* :mod:`~geolayers.hyperbolic.layers`: Poincare-ball modules ``ToPoincare``, ``MobiusLinear``,
  ``HyperbolicMLR`` and ``HyperbolicPrototypeHead`` (fixed or learnable curvature).

Example:
    >>> from geolayers.hyperbolic import poincare
    >>> poincare.dist(torch.zeros(2), torch.tensor([0.0, 0.5])).round(decimals=4)
    tensor(1.0986)
"""

from geolayers.hyperbolic import lorentz, poincare
from geolayers.hyperbolic.layers import (
    HyperbolicMLR,
    HyperbolicPrototypeHead,
    MobiusLinear,
    ToPoincare,
)

__all__ = [
    "HyperbolicMLR",
    "HyperbolicPrototypeHead",
    "MobiusLinear",
    "ToPoincare",
    "lorentz",
    "poincare",
]
