r"""Fused training of Poincare embeddings: ``poincare_embedding_step`` / ``_epoch`` / ``_negatives``.

The model of `"Poincare Embeddings for Learning Hierarchical Representations"
<https://arxiv.org/abs/1705.08039>`_ (Nickel and Kiela, NeurIPS 2017) [1]: one item is a
positive pair ``(u, v)`` of the hierarchy with ``K`` negatives :math:`n_k` (nodes not related
to ``u``), and its loss is the softmax cross-entropy of negative distances ([1], eq. 6)

.. math::
    L(u, v) = -\log\frac{e^{-d(u, v)}}{e^{-d(u, v)} + \sum_k e^{-d(u, n_k)}}.

A batch averages its items' losses, and every row it touches takes one Riemannian SGD step
([1], eq. 5 and 6): :math:`x \leftarrow \mathrm{proj}(x - \eta\,\tfrac{(1 - c\lVert
x\rVert^2)^2}{4}\nabla_x)`, the projection being geoopt's (norm at most :math:`(1 -
\epsilon)/\sqrt c`, :math:`\epsilon` = 4e-3 in float32, 1e-5 in float64). This is exactly
``geoopt.optim.RiemannianSGD`` on a ``ManifoldParameter`` of ``geoopt.PoincareBall(c)``, which
:func:`poincare_embedding_step_reference` runs with autograd; the kernels compute the loss, its
gradient and the update in one pass without Python per item, and the epoch kernel samples the
negatives too (Philox keyed by seed, epoch and position, so the draws do not depend on the
number of threads) and runs batches on all threads without locks (Hogwild, as [1]). The CUDA
twin draws the same negatives and runs the batches of an epoch in order (each batch in
parallel), which is the CPU kernel's one-thread result up to the order of additions.
"""

from __future__ import annotations

import torch
from torch import Tensor

from geolayers._checks import describe, safe_sqrt
from geolayers.ops._extension import EXTENSION_LOADED, use_kernel
from geolayers.ops.poincare import ball_denominator, chord_dist

#: geoopt's projection margin per dtype (``PoincareBall.projx``).
PROJECTION_EPS = {torch.float32: 4e-3, torch.float64: 1e-5}


def relation_csr(
    edges: Tensor, num_nodes: int, *, both_directions: bool = True
) -> tuple[Tensor, Tensor]:
    """A relation as sorted CSR rows: ``(ptr, idx)``.

    ``idx[ptr[u]:ptr[u + 1]]`` lists, sorted and once each, the nodes ``v`` with ``(u, v)`` in
    ``edges``, and with ``both_directions`` also those with ``(v, u)``.

    Example:
        >>> relation_csr(torch.tensor([[1, 0], [2, 0]]), 3)
        (tensor([0, 2, 3, 4]), tensor([1, 2, 0, 0]))
        >>> relation_csr(torch.tensor([[1, 0], [2, 0]]), 3, both_directions=False)
        (tensor([0, 0, 1, 2]), tensor([0, 0]))
    """
    both = torch.cat([edges, edges.flip(1)], 0) if both_directions else edges
    key = torch.unique(both[:, 0] * num_nodes + both[:, 1])  # sorted by (row, col)
    rows, cols = key // num_nodes, key % num_nodes
    ptr = torch.zeros(num_nodes + 1, dtype=torch.long)
    ptr[1:] = torch.bincount(rows, minlength=num_nodes).cumsum(0)
    return ptr, cols


def _check_weight(op: str, weight: object) -> Tensor:
    if not isinstance(weight, Tensor) or weight.dtype not in (torch.float32, torch.float64):
        raise TypeError(
            f"{op}: weight must be a float32 or float64 tensor (N, D), got {describe(weight)}"
        )
    if weight.dim() != 2:
        raise ValueError(f"{op}: weight must have shape (N, D), got {tuple(weight.shape)}")
    if not weight.is_contiguous():
        raise ValueError(f"{op}: weight must be contiguous (it is updated in place)")
    return weight


def _check_index(op: str, name: str, t: object, shape: str, low: int, high: int) -> Tensor:
    if not isinstance(t, Tensor) or t.dtype != torch.int64:
        raise TypeError(f"{op}: {name} must be an int64 tensor {shape}, got {describe(t)}")
    if t.numel() and not torch.compiler.is_compiling():
        lo, hi = int(t.min()), int(t.max())
        if lo < low or hi >= high:
            raise IndexError(
                f"{op}: {name} values must lie in [{low}, {high}), got the range [{lo}, {hi}]"
            )
    return t


def _check_scalars(op: str, lr: float, c: float) -> None:
    if not (0 <= lr < float("inf")):
        raise ValueError(f"{op}: lr must be non-negative and finite, got {lr}")
    if not (0 < c < float("inf")):
        raise ValueError(f"{op}: c must be positive and finite, got {c}")


# --------------------------------------------------------------------- one batch


def poincare_embedding_step_reference(
    weight: Tensor, u: Tensor, v: Tensor, negatives: Tensor, lr: float, c: float = 1.0
) -> Tensor:
    """Reference of :func:`poincare_embedding_step`: autograd and ``geoopt.optim.RiemannianSGD``.

    Shapes: ``weight: (N, D)`` (updated in place), ``u, v: (B,)``, ``negatives: (B, K)`` with
    -1 for an empty slot -> the mean loss, float64 0-dim.

    Example:
        >>> w = torch.tensor([[0.1, 0.0], [0.0, 0.2], [-0.3, 0.0]], dtype=torch.float64)
        >>> loss = poincare_embedding_step_reference(w, torch.tensor([0]), torch.tensor([1]),
        ...                                          torch.tensor([[2]]), lr=0.1)
        >>> round(float(loss), 4)
        0.5272
    """
    import geoopt

    param = geoopt.ManifoldParameter(weight.detach().clone(), manifold=geoopt.PoincareBall(c=c))
    opt = geoopt.optim.RiemannianSGD([param], lr=lr)
    loss = poincare_embedding_loss(param, u, v, negatives, c)
    loss.backward()
    opt.step()
    with torch.no_grad():
        weight.copy_(param)
    return loss.detach().double()


def poincare_embedding_loss(
    weight: Tensor, u: Tensor, v: Tensor, negatives: Tensor, c: float = 1.0
) -> Tensor:
    """The mean batch loss of the module docstring, differentiable by autograd.

    Shapes: ``weight: (N, D)``, ``u, v: (B,)``, ``negatives: (B, K)`` (-1: empty slot) -> 0-dim.

    Example:
        >>> w = torch.tensor([[0.1, 0.0], [0.0, 0.2], [-0.3, 0.0]], dtype=torch.float64)
        >>> round(float(poincare_embedding_loss(w, torch.tensor([0]), torch.tensor([1]),
        ...                                     torch.tensor([[2]]))), 4)
        0.5272
    """
    cand = torch.cat([v.unsqueeze(1), negatives], dim=1)  # (B, 1 + K)
    valid = cand >= 0
    rows = weight[cand.clamp_min(0)]  # (B, 1 + K, D)
    anchor = weight[u].unsqueeze(1)  # (B, 1, D)
    cc = torch.tensor(float(c), dtype=weight.dtype, device=weight.device)
    chord = safe_sqrt((anchor - rows).square().sum(-1))
    # The same stable distance as the kernels (geolayers.ops.poincare), differentiated by autograd.
    d = chord_dist(
        chord,
        ball_denominator(anchor, cc).squeeze(-1),
        ball_denominator(rows, cc).squeeze(-1),
        cc.sqrt(),
    )
    logits = torch.where(valid, -d, torch.full_like(d, float("-inf")))
    return torch.nn.functional.cross_entropy(logits, torch.zeros_like(u))


def poincare_embedding_step(
    weight: Tensor, u: Tensor, v: Tensor, negatives: Tensor, lr: float, c: float = 1.0
) -> Tensor:
    r"""One training step of Poincare embeddings on one batch, in place.

    The batch loss is the mean over the items ``(u_b, v_b, negatives[b])`` of the softmax loss
    in the module docstring; every row it touches takes one projected Riemannian SGD step
    computed from the gradients at the old points (so rows shared by several items get the sum
    of their gradients). Runs the compiled kernel when there is one for ``weight.device``, else
    :func:`poincare_embedding_step_reference`; both give the same update.

    Args:
        weight: ``(N, D)`` points of the ball, contiguous, float32 or float64; updated in place.
        u: ``(B,)`` int64 anchors.
        v: ``(B,)`` int64 positives.
        negatives: ``(B, K)`` int64 negatives, ``-1`` for an empty slot.
        lr: learning rate, ``>= 0``.
        c: curvature magnitude of the ball, ``c > 0``. (default: ``1.0``)

    Returns:
        The mean loss of the batch before the step, float64 0-dim.

    Example:
        >>> w = torch.tensor([[0.1, 0.0], [0.0, 0.2], [-0.3, 0.0]], dtype=torch.float64)
        >>> loss = poincare_embedding_step(w, torch.tensor([0]), torch.tensor([1]),
        ...                                torch.tensor([[2]]), lr=0.1)
        >>> round(float(loss), 4), w[0, 0] > 0.1
        (0.5272, tensor(True))
    """
    op = "poincare_embedding_step"
    weight = _check_weight(op, weight)
    n = weight.shape[0]
    u = _check_index(op, "u", u, "(B,)", 0, n)
    v = _check_index(op, "v", v, "(B,)", 0, n)
    negatives = _check_index(op, "negatives", negatives, "(B, K)", -1, n)
    if u.dim() != 1 or v.shape != u.shape:
        raise ValueError(
            f"{op}: u and v must be 1-D of one length (B,), got {tuple(u.shape)} "
            f"and {tuple(v.shape)}"
        )
    if negatives.dim() != 2 or negatives.shape[0] != u.shape[0]:
        raise ValueError(
            f"{op}: negatives must have shape (B, K) with B = {u.shape[0]}, got "
            f"{tuple(negatives.shape)}"
        )
    _check_scalars(op, lr, c)
    if not use_kernel(op, weight.device):
        return poincare_embedding_step_reference(weight, u, v, negatives, lr, c)
    return torch.ops.geolayers.poincare_embedding_step.default(
        weight, u, v, negatives, float(lr), float(c)
    )


# --------------------------------------------------------------------- a whole epoch


def _check_graph(op: str, pairs, adj_ptr, adj_idx, neg_cdf, n: int):
    pairs = _check_index(op, "pairs", pairs, "(P, 2)", 0, n)
    if pairs.dim() != 2 or pairs.shape[1] != 2:
        raise ValueError(f"{op}: pairs must have shape (P, 2), got {tuple(pairs.shape)}")
    adj_ptr = _check_index(op, "adj_ptr", adj_ptr, "(N + 1,)", 0, 2**62)
    if adj_ptr.shape != (n + 1,):
        raise ValueError(
            f"{op}: adj_ptr must have shape (N + 1,) = ({n + 1},), got {tuple(adj_ptr.shape)}"
        )
    adj_idx = _check_index(op, "adj_idx", adj_idx, "(E,)", 0, n)
    if neg_cdf is None:
        neg_cdf = torch.empty(0, dtype=torch.float64, device=pairs.device)
    elif not isinstance(neg_cdf, Tensor) or neg_cdf.dtype != torch.float64 or neg_cdf.shape != (n,):
        raise ValueError(
            f"{op}: neg_cdf must be None or a float64 tensor of shape ({n},), got "
            f"{describe(neg_cdf)}"
        )
    return pairs, adj_ptr, adj_idx, neg_cdf


def poincare_embedding_negatives(
    pairs: Tensor,
    adj_ptr: Tensor,
    adj_idx: Tensor,
    num_nodes: int,
    negatives: int,
    seed: int,
    epoch: int,
    neg_cdf: Tensor | None = None,
) -> Tensor:
    """The negatives :func:`poincare_embedding_epoch` draws for ``pairs`` in epoch ``epoch``.

    For the item at position ``i`` of ``pairs`` (anchor ``u = pairs[i, 0]``), ``K`` draws,
    uniform over the ``num_nodes`` nodes or from the cumulative weights ``neg_cdf``, each
    redrawn (up to 64 times, then ``-1``) while it is ``u`` or a node ``u`` must avoid: listed
    in ``adj_idx[adj_ptr[u]:adj_ptr[u + 1]]``, sorted. Needs the compiled extension.

    Args:
        pairs: ``(P, 2)`` int64 positive pairs.
        adj_ptr: ``(N + 1,)`` int64 CSR offsets of the nodes each anchor avoids.
        adj_idx: ``(E,)`` int64 avoided nodes, sorted within each row (in
            :func:`geolayers.hyperbolic.fit_hierarchy`: the anchor's ancestors).
        num_nodes: ``N``.
        negatives: ``K``.
        seed: the sampling key.
        epoch: the epoch (part of the counter).
        neg_cdf: ``(N,)`` float64 cumulative weights, or ``None`` for uniform. (default: ``None``)

    Returns:
        ``(P, K)`` int64.

    Example:
        >>> ptr, idx = torch.tensor([0, 1, 2, 2, 2]), torch.tensor([1, 0])
        >>> neg = poincare_embedding_negatives(torch.tensor([[0, 1]]), ptr, idx, 4, 5, 0, 0)
        >>> bool(((neg == 2) | (neg == 3)).all())
        True
    """
    op = "poincare_embedding_negatives"
    pairs, adj_ptr, adj_idx, neg_cdf = _check_graph(op, pairs, adj_ptr, adj_idx, neg_cdf, num_nodes)
    if not use_kernel(op, pairs.device):
        raise RuntimeError(f"{op} needs the compiled extension geolayers._C")
    return torch.ops.geolayers.poincare_embedding_negatives.default(
        pairs, adj_ptr, adj_idx, neg_cdf, int(num_nodes), int(negatives), int(seed), int(epoch)
    )


def poincare_embedding_epoch(
    weight: Tensor,
    pairs: Tensor,
    adj_ptr: Tensor,
    adj_idx: Tensor,
    negatives: int,
    batch_size: int,
    lr: float,
    c: float = 1.0,
    seed: int = 0,
    epoch: int = 0,
    neg_cdf: Tensor | None = None,
) -> Tensor:
    r"""One epoch of Poincare-embedding training over ``pairs`` in their given order, in place.

    Batches of ``batch_size`` consecutive pairs, each with ``negatives`` negatives drawn as
    :func:`poincare_embedding_negatives` draws them, each taking one
    :func:`poincare_embedding_step`. The batches run on all of torch's threads without locks
    (Hogwild); with one thread the result is exactly that of the steps in sequence.

    Args:
        weight: ``(N, D)`` points of the ball, contiguous; updated in place.
        pairs: ``(P, 2)`` int64 positive pairs ``(u, v)``, in the order to train them.
        adj_ptr: ``(N + 1,)`` int64 CSR offsets of the nodes each anchor avoids.
        adj_idx: ``(E,)`` int64 avoided nodes, sorted within each row.
        negatives: ``K``.
        batch_size: pairs per step.
        lr: learning rate.
        c: curvature magnitude. (default: ``1.0``)
        seed: sampling key. (default: ``0``)
        epoch: epoch number (part of the sampling counter). (default: ``0``)
        neg_cdf: ``(N,)`` float64 cumulative sampling weights of negatives, or ``None`` for
            uniform. (default: ``None``)

    Returns:
        The sum of the item losses, float64 0-dim.

    Example:
        >>> w = 1e-3 * torch.randn(4, 2, dtype=torch.float64)
        >>> ptr, idx = torch.tensor([0, 1, 2, 2, 2]), torch.tensor([1, 0])
        >>> float(poincare_embedding_epoch(w, torch.tensor([[0, 1]]), ptr, idx, 2, 1, 0.1)) > 0
        True
    """
    op = "poincare_embedding_epoch"
    weight = _check_weight(op, weight)
    n = weight.shape[0]
    pairs, adj_ptr, adj_idx, neg_cdf = _check_graph(op, pairs, adj_ptr, adj_idx, neg_cdf, n)
    if batch_size < 1:
        raise ValueError(f"{op}: batch_size must be positive, got {batch_size}")
    if negatives < 0:
        raise ValueError(f"{op}: negatives must be non-negative, got {negatives}")
    _check_scalars(op, lr, c)
    if use_kernel(op, weight.device):
        return torch.ops.geolayers.poincare_embedding_epoch.default(
            weight,
            pairs,
            adj_ptr,
            adj_idx,
            neg_cdf,
            int(negatives),
            int(batch_size),
            float(lr),
            float(c),
            int(seed),
            int(epoch),
        )
    return poincare_embedding_epoch_reference(
        weight, pairs, adj_ptr, adj_idx, negatives, batch_size, lr, c, seed, epoch, neg_cdf
    )


def poincare_embedding_epoch_reference(
    weight: Tensor,
    pairs: Tensor,
    adj_ptr: Tensor,
    adj_idx: Tensor,
    negatives: int,
    batch_size: int,
    lr: float,
    c: float = 1.0,
    seed: int = 0,
    epoch: int = 0,
    neg_cdf: Tensor | None = None,
) -> Tensor:
    """Reference of :func:`poincare_embedding_epoch`: one autograd + geoopt step per batch.

    Without the extension the negatives are drawn from torch's generator (seeded with ``seed``
    and ``epoch``; the same distribution as the kernel's, other numbers); with it, from the
    kernel's sampler, so that both paths train on the same negatives.

    Example:
        >>> w = 1e-3 * torch.randn(4, 2, dtype=torch.float64)
        >>> ptr, idx = torch.tensor([0, 1, 2, 2, 2]), torch.tensor([1, 0])
        >>> float(poincare_embedding_epoch_reference(w, torch.tensor([[0, 1]]), ptr, idx, 2, 1,
        ...                                          0.1)) > 0
        True
    """
    n = weight.shape[0]
    if EXTENSION_LOADED:
        neg = poincare_embedding_negatives(
            pairs, adj_ptr, adj_idx, n, negatives, seed, epoch, neg_cdf
        )
    else:  # pragma: no cover - exercised only without the extension
        neg = _torch_negatives(pairs, adj_ptr, adj_idx, n, negatives, seed, epoch, neg_cdf)
    total = torch.zeros((), dtype=torch.float64)
    for start in range(0, pairs.shape[0], batch_size):
        sl = slice(start, start + batch_size)
        loss = poincare_embedding_step_reference(weight, pairs[sl, 0], pairs[sl, 1], neg[sl], lr, c)
        total += loss * pairs[sl].shape[0]
    return total


def _torch_negatives(pairs, adj_ptr, adj_idx, n, k, seed, epoch, neg_cdf):  # pragma: no cover
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    p = pairs.shape[0]
    out = torch.full((p, k), -1, dtype=torch.long)
    for _ in range(64):
        todo = out < 0
        if not bool(todo.any()):
            break
        if neg_cdf is None:
            draw = torch.randint(0, n, (p, k), generator=gen)
        else:
            weights = torch.diff(neg_cdf, prepend=neg_cdf.new_zeros(1))
            draw = torch.multinomial(weights, p * k, replacement=True, generator=gen).view(p, k)
        u = pairs[:, :1].expand(p, k)
        related = torch.zeros_like(todo)
        for i in range(p):  # the no-extension fallback only; the kernel does this in C++
            row = adj_idx[adj_ptr[pairs[i, 0]] : adj_ptr[pairs[i, 0] + 1]]
            related[i] = torch.isin(draw[i], row)
        ok = todo & (draw != u) & ~related
        out = torch.where(ok, draw, out)
    return out


if EXTENSION_LOADED:

    @torch.library.register_fake("geolayers::poincare_embedding_step")
    def _step_fake(weight, u, v, negatives, lr, c):
        return weight.new_empty((), dtype=torch.float64)

    @torch.library.register_fake("geolayers::poincare_embedding_negatives")
    def _negatives_fake(pairs, adj_ptr, adj_idx, neg_cdf, num_nodes, negatives, seed, epoch):
        return pairs.new_empty((pairs.shape[0], negatives))

    @torch.library.register_fake("geolayers::poincare_embedding_epoch")
    def _epoch_fake(
        weight, pairs, adj_ptr, adj_idx, neg_cdf, negatives, batch_size, lr, c, seed, epoch
    ):
        return weight.new_empty((), dtype=torch.float64)
