r"""Poincare embeddings (Nickel and Kiela 2017) trained on several processes.

One step of :func:`geolayers.ops.poincare_embedding_step` on a global batch of ``B`` items
(mean loss, every touched row one Riemannian SGD step from the gradient at its old point)
splits over ranks exactly: rank ``r`` holds ``B_r`` of the items, fetches the rows they touch,
and computes by autograd the gradient of :math:`\tfrac{B_r}{B}` times the mean loss of its
items (:func:`geolayers.ops.poincare_embedding_loss`) with respect to those rows; the
owners (sharded) or every replica (replicated) sum the Euclidean gradients of each row over
ranks, which gives the gradient of the global mean loss, and take the Riemannian step
(:func:`riemannian_sgd_rows`, geoopt's ``RiemannianSGD`` on ``PoincareBall``) at the old point.
So one distributed step equals ``poincare_embedding_step`` on the concatenated batch, and
:func:`fit_hierarchy_distributed` on ``R`` ranks with ``batch_size`` ``b`` equals
:func:`geolayers.hyperbolic.fit_hierarchy` with ``batch_size = R * b`` on one thread.
"""

from __future__ import annotations

import functools
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor
from tqdm.auto import tqdm

from geolayers._checks import check_positive_int, describe
from geolayers.distributed.launch import collective, get_rank, get_world_size
from geolayers.distributed.sharded import ReplicatedEmbedding, ShardedEmbedding, embedding_table
from geolayers.ops.embedding import (
    PROJECTION_EPS,
    poincare_embedding_loss,
    poincare_embedding_negatives,
)

__all__ = [
    "DistributedFitResult",
    "fit_hierarchy_distributed",
    "poincare_step_distributed",
    "riemannian_sgd_rows",
]

Table = ShardedEmbedding | ReplicatedEmbedding


def riemannian_sgd_rows(points: Tensor, egrad: Tensor, *, lr: float, c: float = 1.0) -> Tensor:
    r"""One Riemannian SGD step on points of the Poincare ball, as ``geoopt.optim.RiemannianSGD``.

    :math:`x \leftarrow \mathrm{proj}\big(x - \eta\, \nabla_x / \lambda_x^2\big)`,
    :math:`\lambda_x = 2 / (1 - c\lVert x\rVert^2)`, the projection keeping norms at most
    :math:`(1 - \epsilon)/\sqrt c` (:data:`geolayers.ops.embedding.PROJECTION_EPS`).

    Args:
        points: ``(M, D)`` points of the ball.
        egrad: ``(M, D)`` Euclidean gradients at ``points``.
        lr: learning rate.
        c: curvature magnitude. (default: ``1.0``)

    Returns:
        ``(M, D)`` the new points.

    Example:
        >>> riemannian_sgd_rows(torch.zeros(1, 2), torch.tensor([[1.0, 0.0]]), lr=0.4).tolist()
        [[-0.10000000149011612, 0.0]]
    """
    sq = points.pow(2).sum(-1, keepdim=True)
    # geoopt: lambda_x = 2 / (1 + k |x|^2).clamp_min(1e-15) with k = -c.
    lam = 2 / (1 - c * sq).clamp_min(1e-15)
    moved = points + (-lr) * (egrad / lam**2)
    maxnorm = (1 - PROJECTION_EPS[points.dtype]) / (c**0.5)
    norm = moved.norm(dim=-1, keepdim=True, p=2).clamp_min(1e-15)
    return torch.where(norm > maxnorm, moved / norm * maxnorm, moved)


def _check_items(u: object, v: object, negatives: object) -> tuple[Tensor, Tensor, Tensor]:
    for name, t in (("u", u), ("v", v)):
        if not isinstance(t, Tensor) or t.dtype != torch.int64 or t.dim() != 1:
            raise TypeError(f"{name} must be an int64 tensor (B,), got {describe(t)}")
    if v.shape != u.shape:
        raise ValueError(
            f"u and v must have one shape (B,), got {tuple(u.shape)} and {tuple(v.shape)}"
        )
    if not isinstance(negatives, Tensor) or negatives.dtype != torch.int64 or negatives.dim() != 2:
        raise TypeError(f"negatives must be an int64 tensor (B, K), got {describe(negatives)}")
    if negatives.shape[0] != u.shape[0]:
        raise ValueError(
            f"negatives must have shape (B, K) with B = {u.shape[0]}, got {tuple(negatives.shape)}"
        )
    return u, v, negatives


def poincare_step_distributed(
    table: Table,
    u: Tensor,
    v: Tensor,
    negatives: Tensor,
    lr: float,
    c: float = 1.0,
    *,
    global_batch_size: int | None = None,
) -> Tensor:
    """One step of :func:`geolayers.ops.poincare_embedding_step` on the global batch, each
    rank holding its part of it.

    Collective. This rank fetches the rows of its items ``(u, v, negatives)``, computes the
    gradient of ``B_r / B`` times their mean loss on them, and pushes it; the sums over ranks
    take one Riemannian SGD step per row (module docstring).

    Args:
        table: ``(N, D)`` distributed table of points of the ball.
        u, v: ``(B_r,)`` int64 anchors and positives of this rank's items (may be empty).
        negatives: ``(B_r, K)`` int64, ``-1`` for an empty slot.
        lr: learning rate.
        c: curvature magnitude. (default: ``1.0``)
        global_batch_size: ``B``, the items over all ranks; ``None`` sums ``B_r`` over ranks
            (one more small ``all_reduce``). (default: ``None``)

    Returns:
        This rank's summed item loss before the step, float64 0-dim.

    Example:
        >>> from geolayers.distributed import ShardedEmbedding
        >>> t = ShardedEmbedding(3, 2, dtype=torch.float64, init=torch.tensor(
        ...     [[0.1, 0.0], [0.0, 0.2], [-0.3, 0.0]], dtype=torch.float64))
        >>> loss = poincare_step_distributed(t, torch.tensor([0]), torch.tensor([1]),
        ...                                  torch.tensor([[2]]), lr=0.1)
        >>> round(float(loss), 4), bool(t.local_rows[0, 0] > 0.1)
        (0.5272, True)
    """
    u, v, negatives = _check_items(u, v, negatives)
    count = u.shape[0]
    if global_batch_size is None:
        total = torch.tensor([count], dtype=torch.long)
        if table.world_size > 1:
            with collective(
                "poincare_step_distributed (all_reduce of the batch size)", table.group
            ):
                dist.all_reduce(total, group=table.group)
        global_batch_size = int(total)
    if global_batch_size < count:
        raise ValueError(
            f"global_batch_size must be at least this rank's {count} items, got {global_batch_size}"
        )
    valid = negatives >= 0
    fetch = table.fetch(torch.cat([u, v, negatives[valid]]))
    loss = torch.zeros((), dtype=torch.float64)
    grad = torch.zeros_like(fetch.values)
    if count:
        # Items in terms of the fetched rows: u, v, then the valid negatives, as concatenated.
        local_neg = torch.full_like(negatives, -1)
        local_neg[valid] = fetch.inverse[2 * count :]
        rows = fetch.values.clone().requires_grad_(True)
        mean = poincare_embedding_loss(
            rows, fetch.inverse[:count], fetch.inverse[count : 2 * count], local_neg, c
        )
        (mean * (count / global_batch_size)).backward()
        grad = rows.grad
        loss = mean.detach().double() * count
    table.push(fetch, grad, functools.partial(riemannian_sgd_rows, lr=lr, c=c))
    return loss


# --------------------------------------------------------------------- training


@dataclass
class DistributedFitResult:
    """What :func:`fit_hierarchy_distributed` returns: the trained ``table`` (``table.full()``
    gathers the points, collective) and the ``history``, one dict per epoch (``epoch``,
    ``loss``: mean item loss over all ranks, ``lr``, ``seconds``, ``steps``, plus the
    callback's entries)."""

    table: Table
    history: list[dict[str, Any]] = field(default_factory=list)


def fit_hierarchy_distributed(
    edges: Tensor,
    num_nodes: int | None = None,
    dim: int = 10,
    *,
    negatives: int = 50,
    batch_size: int = 10,
    epochs: int = 300,
    lr: float = 0.3,
    burn_in: int = 20,
    burn_in_lr_factor: float = 0.1,
    dampening: float = 0.75,
    c: float = 1.0,
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
    symmetric: bool = False,
    mode: str = "sharded",
    group: dist.ProcessGroup | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    callback: Callable[[Table, int], dict[str, Any]] | None = None,
    eval_every: int = 0,
    progress: bool = True,
) -> DistributedFitResult:
    """Poincare embeddings of a hierarchy, :func:`geolayers.hyperbolic.fit_hierarchy`'s training
    on several processes with synchronous steps.

    Collective: every rank calls it with the same arguments. Every epoch orders the pairs
    as ``fit_hierarchy`` does and draws the same negatives
    (:func:`geolayers.ops.poincare_embedding_negatives`, keyed by position, computed for
    the whole epoch on every rank); step ``t`` trains the global batch of pairs
    ``[t R b, (t + 1) R b)``, rank ``r`` its part ``[t R b + r b, t R b + (r + 1) b)``, with
    :func:`poincare_step_distributed`. The result therefore equals ``fit_hierarchy(...,
    batch_size=R * b, threads=1)`` up to rounding. Initial points as ``fit_hierarchy``'s
    (drawn whole on every rank; each keeps its rows).

    Args:
        edges, num_nodes, dim, negatives, epochs, lr, burn_in, burn_in_lr_factor, dampening,
            c, dtype, seed, symmetric: as :func:`geolayers.hyperbolic.fit_hierarchy`.
        batch_size: items per rank per step (``b``). (default: ``10``)
        mode: ``"sharded"`` or ``"replicated"``. (default: ``"sharded"``)
        group: process group. (default: the default group, or one process)
        checkpoint: path prefix: the table is saved per shard
            (:meth:`~geolayers.distributed.ShardedEmbedding.save_sharded`) after the last
            epoch. (default: ``None``)
        callback: ``callback(table, epoch) -> dict`` run on every rank every ``eval_every``
            epochs and after the last (it may call ``table.full()``). (default: ``None``)
        eval_every: epochs between callbacks, 0 for the last only. (default: ``0``)
        progress: tqdm bar on rank 0. (default: ``True``)

    Returns:
        :class:`DistributedFitResult`.

    Example:
        >>> fit = fit_hierarchy_distributed(torch.tensor([[1, 0], [2, 0], [3, 1], [3, 0]]),
        ...                                 dim=2, negatives=2, epochs=2, burn_in=1,
        ...                                 progress=False)
        >>> fit.table.full().shape, len(fit.history)
        (torch.Size([4, 2]), 2)
    """
    # Imported here: geolayers.hyperbolic loads geoopt, which spawned workers that only
    # train node2vec need not pay for.
    from geolayers.hyperbolic.embedding import epoch_callback, epoch_order, hierarchy_pairs

    # fit_hierarchy's pairs, relations and burn-in distribution, so both train on the same items.
    n, pairs, adj_ptr, adj_idx, burn_cdf = hierarchy_pairs(
        edges, num_nodes, symmetric=symmetric, dampening=dampening
    )
    check_positive_int("dim", dim)
    check_positive_int("negatives", negatives)
    check_positive_int("batch_size", batch_size)
    check_positive_int("epochs", epochs)
    if not 0 <= burn_in <= epochs:
        raise ValueError(f"burn_in must lie in [0, epochs = {epochs}], got {burn_in}")
    if not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be positive and finite, got {lr}")
    rank, world = get_rank(group), get_world_size(group)

    gen = torch.Generator().manual_seed(seed)
    # fit_hierarchy's initial points (PoincareEmbedding): uniform in (-1e-3, 1e-3), float64.
    init = ((torch.rand(n, dim, generator=gen, dtype=torch.float64) * 2 - 1) * 1e-3).to(dtype)
    table = embedding_table(mode, n, dim, group, dtype=dtype, init=init)
    del init
    num_pairs = pairs.shape[0]

    step_items = world * batch_size
    steps_per_epoch = -(-num_pairs // step_items)
    history: list[dict[str, Any]] = []
    start = time.perf_counter()
    bar = tqdm(range(epochs), desc="poincare embedding", disable=not progress or rank != 0)
    for epoch in bar:
        burning = epoch < burn_in
        epoch_lr = lr * burn_in_lr_factor if burning else lr
        ordered = pairs[epoch_order(num_pairs, seed, epoch)]  # fit_hierarchy's order
        neg = poincare_embedding_negatives(
            ordered, adj_ptr, adj_idx, n, negatives, seed, epoch, burn_cdf if burning else None
        )
        total = torch.zeros(1, dtype=torch.float64)
        for t in range(steps_per_epoch):
            g0 = t * step_items
            g1 = min(g0 + step_items, num_pairs)
            lo, hi = min(g0 + rank * batch_size, g1), min(g0 + (rank + 1) * batch_size, g1)
            total += poincare_step_distributed(
                table, ordered[lo:hi, 0], ordered[lo:hi, 1], neg[lo:hi], epoch_lr, c,
                global_batch_size=g1 - g0,
            )  # fmt: skip
        if world > 1:
            with collective("fit_hierarchy_distributed (all_reduce of the epoch loss)", group):
                dist.all_reduce(total, group=group)
        record: dict[str, Any] = {
            "epoch": epoch,
            "loss": float(total[0]) / num_pairs,
            "lr": epoch_lr,
            "steps": steps_per_epoch,
            "seconds": time.perf_counter() - start,
        }
        epoch_callback(record, callback, table, epoch, epochs, eval_every, start)
        history.append(record)
        bar.set_postfix(loss=f"{record['loss']:.4f}")
    bar.close()
    if checkpoint is not None:
        table.save_sharded(checkpoint)
    return DistributedFitResult(table, history)
