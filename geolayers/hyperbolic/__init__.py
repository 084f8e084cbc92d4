r"""Hyperbolic geometry: functional ops, layers and losses on the Poincare ball and the Lorentz
model.

Two namespaced modules with the same vocabulary, curvature :math:`-c` with ``c > 0`` (a float
or a 0-dim, possibly learnable, tensor), float32 and float64, finite values and gradients
everywhere on the manifold:

* :mod:`~geolayers.hyperbolic.poincare`: ``mobius_add``, ``mobius_matvec``, ``expmap0``,
  ``logmap0``, ``expmap``, ``logmap``, ``dist``, ``pairwise_dist`` (the fused compiled
  kernel), ``parallel_transport``, ``project``, ``einstein_midpoint`` and the conversions
  Poincare <-> Lorentz <-> Klein;
* :mod:`~geolayers.hyperbolic.lorentz`: ``minkowski_dot``, ``expmap0``, ``logmap0``,
  ``expmap``, ``logmap``, ``dist``, ``pairwise_dist``, ``parallel_transport``, ``project``,
  ``centroid`` (full ``D + 1`` coordinates, time first, as geoopt's ``Lorentz(k=1/c)``);
* layers: ``ToPoincare``, ``MobiusLinear``, ``HyperbolicMLR``, ``HyperbolicPrototypeHead``
  (Poincare ball), ``ToLorentz``, ``LorentzLinear`` (Lorentz model) and the graph layer
  ``HGCNConv`` (loaded on first use: it imports torch_geometric);
* :mod:`~geolayers.hyperbolic.losses`: MERU's contrastive and entailment-cone losses and the
  Poincare embedding loss;
* :mod:`~geolayers.hyperbolic.embedding`: ``PoincareEmbedding`` and ``fit_hierarchy``, Poincare
  embeddings of hierarchies (Nickel and Kiela 2017) trained by the fused kernel;
* :mod:`~geolayers.hyperbolic.trees`: exact tree constructions of Sala et al. 2018
  (combinatorial construction in arbitrary precision, h-MDS).

Example:
    >>> from geolayers.hyperbolic import poincare
    >>> poincare.dist(torch.zeros(2), torch.tensor([0.0, 0.5])).round(decimals=4)
    tensor(1.0986)
"""

from typing import Any

from geolayers.hyperbolic import lorentz, losses, poincare, trees
from geolayers.hyperbolic.embedding import FitResult, PoincareEmbedding, fit_hierarchy
from geolayers.hyperbolic.layers import (
    HyperbolicMLR,
    HyperbolicPrototypeHead,
    MobiusLinear,
    ToPoincare,
)
from geolayers.hyperbolic.lorentz_layers import LorentzLinear, ToLorentz
from geolayers.hyperbolic.losses import (
    MERUContrastiveLoss,
    entailment_loss,
    exterior_angle,
    half_aperture,
    meru_contrastive_loss,
    poincare_embedding_loss,
    poincare_embedding_loss_from_distances,
)


def __getattr__(name: str) -> Any:
    # HGCNConv subclasses torch_geometric's MessagePassing; importing torch_geometric costs
    # about 1.6 s, which users of the ops and the other layers should not pay.
    if name == "HGCNConv":
        from geolayers.hyperbolic.hgcn import HGCNConv

        globals()["HGCNConv"] = HGCNConv
        return HGCNConv
    raise AttributeError(f"module 'geolayers.hyperbolic' has no attribute {name!r}")


__all__ = [
    "FitResult",
    "HGCNConv",
    "HyperbolicMLR",
    "HyperbolicPrototypeHead",
    "LorentzLinear",
    "MERUContrastiveLoss",
    "MobiusLinear",
    "PoincareEmbedding",
    "ToLorentz",
    "ToPoincare",
    "entailment_loss",
    "exterior_angle",
    "fit_hierarchy",
    "half_aperture",
    "lorentz",
    "losses",
    "meru_contrastive_loss",
    "poincare",
    "poincare_embedding_loss",
    "poincare_embedding_loss_from_distances",
    "trees",
]
