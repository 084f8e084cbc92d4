"""Invariant projections and nonparametric heads.

Cheap routes to invariance that need no equivariant architecture: relative representations
and their product of invariances (similarities to anchor latents, for zero-shot stitching),
transformation-invariant initial coordinates of point clouds (TinvNN) and a Nadaraya-Watson
head whose support can be restricted per environment.
"""

from geolayers.invariant.anchors import select_anchors
from geolayers.invariant.nadaraya_watson import NadarayaWatsonHead, compress_support
from geolayers.invariant.relative import (
    ProductOfInvariances,
    RelativeProjection,
    relative_projection,
)
from geolayers.invariant.tinv import TinvInitialRepresentation, classical_mds, tinv_coordinates

__all__ = [
    "NadarayaWatsonHead",
    "ProductOfInvariances",
    "RelativeProjection",
    "TinvInitialRepresentation",
    "classical_mds",
    "compress_support",
    "relative_projection",
    "select_anchors",
    "tinv_coordinates",
]
