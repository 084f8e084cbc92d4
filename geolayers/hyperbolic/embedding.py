r"""Poincare embeddings of hierarchies: :class:`PoincareEmbedding` and :func:`fit_hierarchy`.

The method of `"Poincare Embeddings for Learning Hierarchical Representations"
<https://arxiv.org/abs/1705.08039>`_ (Nickel and Kiela, NeurIPS 2017) [1]: every node of a
hierarchy gets a point of the Poincare ball, trained so that related nodes (pairs of the
transitive closure) are closer than unrelated ones. Loss ([1], eq. 6): the softmax
cross-entropy of negative distances over the positive and ``K`` negatives, nodes that are
not partners of the anchor (in a closure of ``(child, ancestor)`` pairs: not its ancestors;
its descendants can be negatives, as in the reference code, since the evaluation ranks a
node's ancestors before its descendants); optimiser ([1], sec. 3): Riemannian SGD,
:math:`x \leftarrow \mathrm{proj}(x - \eta\,\tfrac{(1 - \lVert x\rVert^2)^2}{4}\nabla_x)`,
after a burn-in of a few epochs at a reduced learning rate with negatives drawn by frequency
to the power 0.75; initial points uniform in :math:`(-10^{-3}, 10^{-3})^D`.

:func:`fit_hierarchy` runs it on the fused kernel :func:`geolayers.ops.poincare_embedding_epoch`
(no Python work per item, Hogwild over threads) or, with ``backend="reference"``, on autograd
and ``geoopt.optim.RiemannianSGD``, the same update one batch at a time. The Lorentz model
(``manifold="lorentz"``, `"Learning Continuous Hierarchies in the Lorentz Model"
<https://arxiv.org/abs/1806.03417>`_, Nickel and Kiela 2018) trains on the reference path.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from geolayers._checks import check_positive_int, describe
from geolayers.hyperbolic import lorentz as L
from geolayers.hyperbolic import poincare as P
from geolayers.ops import embedding as E
from geolayers.ops.embedding import relation_csr

__all__ = ["PoincareEmbedding", "FitResult", "fit_hierarchy", "relation_csr"]

_MANIFOLDS = ("poincare", "lorentz")


class PoincareEmbedding(nn.Module):
    r"""An embedding table on a hyperbolic manifold, a ``geoopt.ManifoldParameter``.

    ``weight`` lives on ``geoopt.PoincareBall(c)`` (``(N, D)`` points of the ball) or on
    ``geoopt.Lorentz(k=1/c)`` (``(N, D + 1)`` points of the hyperboloid, time first), so any
    geoopt Riemannian optimizer trains it. Initial points are uniform in
    :math:`(-r, r)^D` (``init_range``, [1]: :math:`10^{-3}`), mapped to the hyperboloid by
    :math:`\exp_0` for the Lorentz model.

    Args:
        num_nodes: ``N``.
        dim: ``D``, the dimension of the manifold.
        manifold: ``"poincare"`` or ``"lorentz"``. (default: ``"poincare"``)
        c: curvature magnitude, ``c > 0``. (default: ``1.0``)
        init_range: half-width of the initial uniform box. (default: ``1e-3``)
        dtype: float32 or float64. (default: ``torch.float64``, as [1])
        generator: random source of the initial points. (default: ``None``)

    Shapes:
        ``index: (...)`` int64 -> ``(..., D)`` (``(..., D + 1)`` for the Lorentz model).

    Example:
        >>> emb = geolayers.hyperbolic.PoincareEmbedding(5, 2)
        >>> emb(torch.tensor([0, 3])).shape, emb.distance(torch.tensor([0]), torch.tensor([3])).shape
        (torch.Size([2, 2]), torch.Size([1]))
    """

    def __init__(
        self,
        num_nodes: int,
        dim: int,
        manifold: str = "poincare",
        c: float = 1.0,
        init_range: float = 1e-3,
        dtype: torch.dtype = torch.float64,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        import geoopt

        self.num_nodes = check_positive_int("num_nodes", num_nodes)
        self.dim = check_positive_int("dim", dim)
        if manifold not in _MANIFOLDS:
            raise ValueError(f"manifold must be one of {_MANIFOLDS}, got {manifold!r}")
        if isinstance(c, bool) or not isinstance(c, (int, float)) or not 0 < c < math.inf:
            raise ValueError(f"c must be a positive finite float, got {describe(c)}")
        if dtype not in (torch.float32, torch.float64):
            raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        self.manifold_name = manifold
        self.c = float(c)
        box = torch.rand(num_nodes, dim, generator=generator, dtype=torch.float64) * 2 - 1
        box = box * init_range
        if manifold == "poincare":
            point, mf = box, geoopt.PoincareBall(c=self.c)
        else:
            point, mf = (
                L.expmap0(torch.cat([torch.zeros(num_nodes, 1), box], 1), self.c),
                (geoopt.Lorentz(k=1 / self.c)),
            )
        self.weight = geoopt.ManifoldParameter(point.to(dtype).contiguous(), manifold=mf)

    def forward(self, index: Tensor) -> Tensor:
        """``(...)`` node indices -> ``(..., D)`` their points."""
        return self.weight[index]

    def distance(self, u: Tensor, v: Tensor) -> Tensor:
        """Geodesic distances ``(...)`` between the nodes ``u`` and ``v`` (broadcast)."""
        x, y = self.weight[u], self.weight[v]
        if self.manifold_name == "poincare":
            return P.dist(x, y, self.c)
        return L.dist(x, y, self.c)

    def poincare(self) -> Tensor:
        """``(N, D)`` the points on the Poincare ball (converted from the Lorentz model)."""
        w = self.weight.detach().as_subclass(Tensor)
        return w if self.manifold_name == "poincare" else P.lorentz_to_poincare(w, self.c)

    def extra_repr(self) -> str:
        return f"{self.num_nodes}, {self.dim}, manifold={self.manifold_name!r}, c={self.c:g}"


class HierarchyPairs(NamedTuple):
    """The training data :func:`fit_hierarchy` derives from ``edges`` (:func:`hierarchy_pairs`).

    Attributes:
        num_nodes: ``N``.
        pairs: ``(P, 2)`` int64 training pairs (``edges``, plus their reverses when symmetric).
        adj_ptr, adj_idx: :func:`relation_csr` of ``pairs`` (one direction): the partners of
            each anchor, which its negatives avoid.
        burn_cdf: ``(N,)`` float64 cumulative ``(1 + count) ** dampening``, ``count`` the
            times a node is the second element of a pair (burn-in negatives).
    """

    num_nodes: int
    pairs: Tensor
    adj_ptr: Tensor
    adj_idx: Tensor
    burn_cdf: Tensor


def hierarchy_pairs(
    edges: Tensor, num_nodes: int | None, *, symmetric: bool, dampening: float
) -> HierarchyPairs:
    """Validate ``edges: (E, 2)`` int64 and derive the training data of :func:`fit_hierarchy`
    (shared with :func:`geolayers.distributed.fit_hierarchy_distributed`, which must train on the
    same pairs and negatives).

    Example:
        >>> hierarchy_pairs(torch.tensor([[1, 0]]), None, symmetric=True, dampening=0.75).pairs
        tensor([[1, 0],
                [0, 1]])
    """
    if not isinstance(edges, Tensor) or edges.dtype != torch.int64 or edges.dim() != 2:
        raise TypeError(f"edges must be an int64 tensor (E, 2), got {describe(edges)}")
    if edges.shape[1] != 2 or edges.shape[0] == 0:
        raise ValueError(f"edges must have shape (E, 2) with E >= 1, got {tuple(edges.shape)}")
    if int(edges.min()) < 0:
        raise ValueError("edges must hold non-negative node indices")
    n = int(edges.max()) + 1 if num_nodes is None else check_positive_int("num_nodes", num_nodes)
    if int(edges.max()) >= n:
        raise ValueError(f"edges index node {int(edges.max())}, but num_nodes is {n}")
    pairs = torch.cat([edges, edges.flip(1)], 0) if symmetric else edges.clone()
    # As the reference code: the negatives of an anchor u avoid only its own partners (its
    # ancestors in a closure), so its descendants are negatives too, which the evaluation's
    # direction asks for (a query ranks its ancestors before its descendants); the burn-in
    # draws by how often a node is a partner, plus one, to the power dampening.
    adj_ptr, adj_idx = relation_csr(pairs, n, both_directions=False)
    counts = 1 + torch.bincount(pairs[:, 1], minlength=n).double()
    return HierarchyPairs(n, pairs.contiguous(), adj_ptr, adj_idx, counts.pow(dampening).cumsum(0))


@dataclass
class FitResult:
    """What :func:`fit_hierarchy` returns: the trained ``model`` and its ``history``, one dict
    per epoch (``epoch``, ``loss``: mean item loss, ``lr``, ``seconds``: wall time since the
    start, plus the callback's entries on evaluated epochs)."""

    model: PoincareEmbedding
    history: list[dict[str, Any]] = field(default_factory=list)


def epoch_order(num_pairs: int, seed: int, epoch: int) -> Tensor:
    """The order ``(P,)`` in which :func:`fit_hierarchy` visits the pairs in ``epoch``.

    A fresh generator per epoch keyed by ``(seed, epoch)``, so a resumed run (and the
    distributed fit of :mod:`geolayers.distributed`) draws the same orders.

    Example:
        >>> epoch_order(4, 0, 1).sort().values.tolist()
        [0, 1, 2, 3]
    """
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(num_pairs, generator=gen)


def epoch_callback(
    record: dict[str, Any],
    callback: Callable[[Any, int], dict[str, Any]] | None,
    model: Any,
    epoch: int,
    epochs: int,
    eval_every: int,
    start: float,
) -> bool:
    """Run ``callback(model, epoch)`` into the epoch's ``record`` when it is due (every
    ``eval_every`` epochs and after the last), with the time including it; returns whether
    ``epoch`` is the last. Shared by the single-process and the distributed trainers."""
    last = epoch == epochs - 1
    if callback is not None and (last or (eval_every and (epoch + 1) % eval_every == 0)):
        record.update(callback(model, epoch))
        record["seconds_with_eval"] = time.perf_counter() - start
    return last


def fit_hierarchy(
    edges: Tensor,
    num_nodes: int | None = None,
    dim: int = 10,
    *,
    manifold: str = "poincare",
    negatives: int = 50,
    batch_size: int = 10,
    epochs: int = 300,
    lr: float = 0.3,
    burn_in: int = 20,
    burn_in_lr_factor: float = 0.1,
    dampening: float = 0.75,
    c: float = 1.0,
    dtype: torch.dtype = torch.float64,
    threads: int | None = None,
    seed: int = 0,
    symmetric: bool = False,
    backend: str = "fused",
    checkpoint: str | os.PathLike[str] | None = None,
    checkpoint_every: int = 10,
    resume: bool = False,
    callback: Callable[[PoincareEmbedding, int], dict[str, Any]] | None = None,
    eval_every: int = 0,
    progress: bool = True,
) -> FitResult:
    r"""Train Poincare embeddings of a hierarchy as Nickel and Kiela 2017 ([1] in the module).

    Every epoch visits the positive pairs ``edges`` (the transitive closure, ``(child,
    ancestor)``) in a fresh random order, in batches of ``batch_size``, each item with
    ``negatives`` nodes that are not the anchor or one of its partners (its ancestors; with
    ``symmetric``, its descendants too). The first ``burn_in`` epochs use ``lr *
    burn_in_lr_factor`` and draw negatives with probability proportional to ``1 +`` the times
    a node is a partner (the second element of a pair), to the power ``dampening``; later
    epochs draw them uniformly. Randomness is keyed by ``(seed, epoch)``, so a run resumed
    from a checkpoint equals an uninterrupted one (with one thread; more threads update rows
    concurrently, Hogwild).

    Args:
        edges: ``(E, 2)`` int64 relations ``(u, v)``.
        num_nodes: ``N``. (default: ``edges.max() + 1``)
        dim: ``D``. (default: ``10``)
        manifold: ``"poincare"`` (fused kernel) or ``"lorentz"`` (reference path).
            (default: ``"poincare"``)
        negatives: ``K`` per positive. (default: ``50``)
        batch_size: positives per step. (default: ``10``)
        epochs: epochs in total, burn-in included. (default: ``300``)
        lr: learning rate after the burn-in. (default: ``0.3``)
        burn_in: burn-in epochs. (default: ``20``)
        burn_in_lr_factor: learning-rate factor during the burn-in. (default: ``0.1``)
        dampening: exponent of the burn-in negative distribution. (default: ``0.75``)
        c: curvature magnitude. (default: ``1.0``)
        dtype: float32 or float64. (default: ``torch.float64``)
        threads: torch threads during the fit. (default: ``None``: unchanged)
        seed: seed of the initial points, orders and negatives. (default: ``0``)
        symmetric: also train each pair as ``(v, u)``. (default: ``False``)
        backend: ``"fused"`` or ``"reference"`` (autograd + geoopt). (default: ``"fused"``)
        checkpoint: file to save the state to every ``checkpoint_every`` epochs and at the
            end. (default: ``None``)
        checkpoint_every: epochs between checkpoints. (default: ``10``)
        resume: continue from ``checkpoint`` if it exists. (default: ``False``)
        callback: ``callback(model, epoch) -> dict`` run every ``eval_every`` epochs and after
            the last; its entries join that epoch's history (e.g. MAP). (default: ``None``)
        eval_every: epochs between callbacks, 0 for the last only. (default: ``0``)
        progress: tqdm bar with the running loss. (default: ``True``)

    Returns:
        :class:`FitResult`.

    Example:
        >>> fit = fit_hierarchy(torch.tensor([[1, 0], [2, 0], [3, 1], [3, 0]]), dim=2,
        ...                     negatives=2, epochs=5, burn_in=1, progress=False)
        >>> fit.model.weight.shape, len(fit.history)
        (torch.Size([4, 2]), 5)
    """
    n, pairs, adj_ptr, adj_idx, burn_cdf = hierarchy_pairs(
        edges, num_nodes, symmetric=symmetric, dampening=dampening
    )
    for name, value in (("negatives", negatives), ("batch_size", batch_size)):
        check_positive_int(name, value)
    check_positive_int("epochs", epochs)
    if backend not in ("fused", "reference"):
        raise ValueError(f"backend must be 'fused' or 'reference', got {backend!r}")
    if manifold == "lorentz":
        backend = "reference"
    if not 0 <= burn_in <= epochs:
        raise ValueError(f"burn_in must lie in [0, epochs = {epochs}], got {burn_in}")
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr}")

    gen = torch.Generator().manual_seed(seed)
    model = PoincareEmbedding(n, dim, manifold=manifold, c=c, dtype=dtype, generator=gen)

    history: list[dict[str, Any]] = []
    start_epoch = 0
    if resume and checkpoint is not None and os.path.exists(checkpoint):
        state = torch.load(checkpoint, weights_only=False)
        with torch.no_grad():
            model.weight.copy_(state["weight"])
        history, start_epoch = state["history"], state["epoch"] + 1

    def save(epoch: int) -> None:
        if checkpoint is not None:
            tmp = f"{checkpoint}.tmp"
            torch.save(
                {"weight": model.weight.detach().clone(), "epoch": epoch, "history": history}, tmp
            )
            os.replace(tmp, checkpoint)  # a crash mid-write leaves the previous checkpoint

    threads_before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(check_positive_int("threads", threads))
    elapsed = history[-1]["seconds"] if history else 0.0
    start = time.perf_counter() - elapsed
    bar = tqdm(range(start_epoch, epochs), disable=not progress, desc="poincare embedding")
    try:
        for epoch in bar:
            burning = epoch < burn_in
            epoch_lr = lr * burn_in_lr_factor if burning else lr
            ordered = pairs[epoch_order(pairs.shape[0], seed, epoch)]
            weight = model.weight.data
            if manifold == "poincare":
                run_epoch = (
                    E.poincare_embedding_epoch
                    if backend == "fused"
                    else E.poincare_embedding_epoch_reference
                )
                total = run_epoch(
                    weight,
                    ordered,
                    adj_ptr,
                    adj_idx,
                    negatives,
                    batch_size,
                    epoch_lr,
                    c,
                    seed,
                    epoch,
                    burn_cdf if burning else None,
                )
            else:
                total = _lorentz_epoch(
                    model,
                    ordered,
                    adj_ptr,
                    adj_idx,
                    negatives,
                    batch_size,
                    epoch_lr,
                    seed,
                    epoch,
                    burn_cdf if burning else None,
                )
            record: dict[str, Any] = {
                "epoch": epoch,
                "loss": float(total) / pairs.shape[0],
                "lr": epoch_lr,
                "seconds": time.perf_counter() - start,
            }
            last = epoch_callback(record, callback, model, epoch, epochs, eval_every, start)
            history.append(record)
            bar.set_postfix(loss=f"{record['loss']:.4f}")
            if last or (epoch + 1) % checkpoint_every == 0:
                save(epoch)
    finally:
        torch.set_num_threads(threads_before)
    return FitResult(model, history)


def _lorentz_epoch(model, ordered, adj_ptr, adj_idx, negatives, batch_size, lr, seed, epoch, cdf):
    import geoopt

    neg = E.poincare_embedding_negatives(
        ordered, adj_ptr, adj_idx, model.num_nodes, negatives, seed, epoch, cdf
    )
    opt = geoopt.optim.RiemannianSGD([model.weight], lr=lr)
    total = torch.zeros((), dtype=torch.float64)
    for s in range(0, ordered.shape[0], batch_size):
        u, v, k = (
            ordered[s : s + batch_size, 0],
            ordered[s : s + batch_size, 1],
            neg[s : s + batch_size],
        )
        cand = torch.cat([v.unsqueeze(1), k], 1)
        d = model.distance(u.unsqueeze(1), cand.clamp_min(0))
        logits = torch.where(cand >= 0, -d, torch.full_like(d, float("-inf")))
        loss = torch.nn.functional.cross_entropy(logits, torch.zeros_like(u))
        opt.zero_grad()
        loss.backward()
        opt.step()
        total += loss.detach().double() * u.shape[0]
    return total
