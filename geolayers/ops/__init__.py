"""Compiled ops of geolayers and their pure-PyTorch references.

Every op ``NAME`` has a public function ``NAME`` (validates inputs, picks kernel or reference),
a reference ``NAME_reference``, and, when the extension is built, a schema
``torch.ops.geolayers.NAME`` with CPU (and CUDA) kernels, autograd and a fake kernel.
:func:`backend` reports which of the two runs.
"""

from __future__ import annotations

import torch

from geolayers.ops._extension import EXTENSION_LOADED, force_reference, has_kernel
from geolayers.ops.embedding import (
    poincare_embedding_epoch,
    poincare_embedding_epoch_reference,
    poincare_embedding_negatives,
    poincare_embedding_step,
    poincare_embedding_step_reference,
)
from geolayers.ops.poincare import (
    poincare_gather_dist,
    poincare_gather_dist_reference,
    poincare_pairwise_dist,
    poincare_pairwise_dist_reference,
)
from geolayers.ops.segment import segment_reduce_csr, segment_reduce_csr_reference
from geolayers.ops.sgns import alias_table, sgns_train, sgns_train_reference, subsample_keep_prob
from geolayers.ops.walk import random_walk, random_walk_reference

#: Public op name -> (compiled-path function, reference function).
OPS = {
    "segment_reduce_csr": (segment_reduce_csr, segment_reduce_csr_reference),
    "poincare_pairwise_dist": (poincare_pairwise_dist, poincare_pairwise_dist_reference),
    "poincare_gather_dist": (poincare_gather_dist, poincare_gather_dist_reference),
    # In-place training ops: compared with their references by tests/ops/test_poincare_embedding.py
    # (check_op_against_reference compares outputs and gradients, which they do not have).
    "poincare_embedding_step": (poincare_embedding_step, poincare_embedding_step_reference),
    "poincare_embedding_epoch": (poincare_embedding_epoch, poincare_embedding_epoch_reference),
    # Samplers: compared in distribution by tests/ops/test_random_walk.py.
    "random_walk": (random_walk, random_walk_reference),
    "sgns_train": (sgns_train, sgns_train_reference),
}


def backend(device: str | torch.device = "cpu") -> dict[str, str]:
    """Which implementation each op runs on ``device``: ``"compiled"`` or ``"reference"``.

    Example:
        >>> geolayers.ops.backend("cpu")["segment_reduce_csr"]
        'compiled'
    """
    device_type = torch.device(device).type
    report = {}
    for name in OPS:
        compiled = not force_reference() and has_kernel(name, device_type)
        report[name] = "compiled" if compiled else "reference"
    return report


__all__ = [
    "EXTENSION_LOADED",
    "OPS",
    "alias_table",
    "backend",
    "poincare_embedding_epoch",
    "poincare_embedding_epoch_reference",
    "poincare_embedding_negatives",
    "poincare_embedding_step",
    "poincare_embedding_step_reference",
    "poincare_gather_dist",
    "poincare_gather_dist_reference",
    "poincare_pairwise_dist",
    "poincare_pairwise_dist_reference",
    "random_walk",
    "random_walk_reference",
    "segment_reduce_csr",
    "sgns_train",
    "sgns_train_reference",
    "subsample_keep_prob",
    "segment_reduce_csr_reference",
]
