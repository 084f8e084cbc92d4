"""Canonicalization: make any backbone invariant or equivariant to a group.

A :class:`Canonicalizer` predicts a group element per input equivariantly, the input is brought
to its canonical pose, the backbone runs on it, and equivariant outputs are mapped back
(:class:`CanonicalizedModel`; Kaba et al. 2023, arXiv:2211.06489). :class:`FrameAveraging` is the
exact, ``|G|``-times-costlier alternative for small finite groups.

Example:
    >>> import torch
    >>> from geolayers.canonical import CanonicalizedModel, OrbitCanonicalizer
    >>> from geolayers.groups import Dihedral
    >>> model = CanonicalizedModel(OrbitCanonicalizer(Dihedral(4), torch.nn.Linear(2, 1)),
    ...                            torch.nn.Linear(2, 3))
    >>> model(torch.randn(5, 2)).shape
    torch.Size([5, 3])
"""

from geolayers.canonical.base import (
    CanonicalizedModel,
    Canonicalizer,
    Frame,
    OutTransform,
    transform_output,
)
from geolayers.canonical.image import (
    ContinuousImageCanonicalizer,
    DiscreteImageCanonicalizer,
    rotate_images,
    transform_images,
)
from geolayers.canonical.orbit import FrameAveraging, OrbitCanonicalizer, straight_through_argmax
from geolayers.canonical.permutation import (
    PermutationCanonicalizer,
    PermutationFrame,
    restore_order,
)
from geolayers.canonical.pointcloud import (
    PointCloudCanonicalizer,
    orthonormal_frame,
    restore_points,
)

__all__ = [
    "Canonicalizer",
    "CanonicalizedModel",
    "ContinuousImageCanonicalizer",
    "DiscreteImageCanonicalizer",
    "Frame",
    "FrameAveraging",
    "OrbitCanonicalizer",
    "OutTransform",
    "PermutationCanonicalizer",
    "PermutationFrame",
    "PointCloudCanonicalizer",
    "orthonormal_frame",
    "restore_order",
    "restore_points",
    "rotate_images",
    "straight_through_argmax",
    "transform_images",
    "transform_output",
]
