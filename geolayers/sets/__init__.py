"""Set models: DeepSets, permutation-equivariant layers, pooling, injective element embeddings.

Every layer takes a batch of sets padded ``(B, N, D)`` with ``mask (B, N)`` or ragged
``(M, D)`` with ``ptr (B + 1,)`` or ``batch (M,)``; see :mod:`geolayers.sets.batch`.
"""

from geolayers.sets.base import SetModule
from geolayers.sets.batch import SetLayout, ptr_from_batch, to_ragged
from geolayers.sets.deepsets import DeepSets, DeepSetsEquivariant, PermEquivariantLinear
from geolayers.sets.embeddings import (
    InjectivityReport,
    LEEmbedding,
    LPEmbedding,
    check_sum_injectivity,
    le_width,
    lp_width,
)
from geolayers.sets.pool import AttentionPooling, SetPool, segment_softmax

__all__ = [
    "AttentionPooling",
    "DeepSets",
    "DeepSetsEquivariant",
    "InjectivityReport",
    "LEEmbedding",
    "LPEmbedding",
    "PermEquivariantLinear",
    "SetLayout",
    "SetModule",
    "SetPool",
    "check_sum_injectivity",
    "le_width",
    "lp_width",
    "ptr_from_batch",
    "segment_softmax",
    "to_ragged",
]
