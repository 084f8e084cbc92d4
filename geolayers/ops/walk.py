r"""Random walks on CSR graphs: uniform, weighted and node2vec's second-order walks.

From node :math:`v`, reached from :math:`t`, a node2vec walk moves to :math:`x` with probability
proportional to :math:`\alpha_{pq}(t, x)\, w_{vx}`, where :math:`\alpha = 1/p` if :math:`x = t`,
:math:`1` if :math:`x` is an out-neighbour of :math:`t` and :math:`1/q` otherwise ("node2vec:
Scalable Feature Learning for Networks", Grover and Leskovec, KDD 2016, eq. 2 and sec. 3.2.2).
The first step, and every step when ``p = q = 1``, is first-order: proportional to
:math:`w_{vx}` (uniform without weights).

The kernels draw second-order steps by rejection, as KnightKing does ("KnightKing: A Fast
Distributed Graph Random Walk Engine", Yang et al., SOSP 2019): propose from the first-order
distribution, accept with probability :math:`\alpha / \max(1/p, 1, 1/q)`, test membership
by binary search in ``t``'s sorted neighbour list. Memory stays :math:`O(E)` (node2vec's
alias tables need :math:`O(\sum_v \deg(v)^2)`). Every random number comes from Philox keyed by
``seed`` and the walk's global index ``offset + s``, so the walks do not depend on the thread
count and CPU and CUDA kernels return the same walks.

A walk that reaches a node without out-edges (or whose out-edges all have weight 0) stops there:
the remaining entries of its row are ``-1``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from geolayers._checks import describe
from geolayers.ops._extension import EXTENSION_LOADED, use_kernel

_OP = "random_walk"


def _check_long(name: str, value: object, shape: str) -> Tensor:
    if not isinstance(value, Tensor) or value.dtype != torch.int64:
        raise TypeError(f"{_OP}: {name} must be an int64 tensor {shape}, got {describe(value)}")
    if value.dim() != 1:
        raise ValueError(f"{_OP}: {name} must be 1-D {shape}, got shape {tuple(value.shape)}")
    if not value.is_contiguous():
        raise ValueError(f"{_OP}: {name} must be contiguous")
    return value


def check_walk_inputs(
    rowptr: object,
    col: object,
    start: object,
    walk_length: object,
    weight: object = None,
    p: object = 1.0,
    q: object = 1.0,
    seed: object = 0,
    offset: object = 0,
) -> None:
    """Validate the arguments of :func:`random_walk` (raises TypeError/ValueError/IndexError)."""
    rowptr = _check_long("rowptr", rowptr, "(N + 1,)")
    col = _check_long("col", col, "(E,)")
    start = _check_long("start", start, "(S,)")
    if rowptr.numel() < 1:
        raise ValueError(f"{_OP}: rowptr must have N + 1 >= 1 entries, got 0")
    if not (col.device == rowptr.device == start.device):
        raise ValueError(
            f"{_OP}: rowptr, col and start must be on one device, got {rowptr.device}, "
            f"{col.device} and {start.device}"
        )
    if isinstance(walk_length, bool) or not isinstance(walk_length, int):
        raise TypeError(f"{_OP}: walk_length must be an int, got {type(walk_length).__name__}")
    if walk_length < 1:
        raise ValueError(f"{_OP}: walk_length must be >= 1, got {walk_length}")
    for name, value in (("p", p), ("q", q)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{_OP}: {name} must be a float, got {type(value).__name__}")
        if not (0 < value < math.inf):
            raise ValueError(f"{_OP}: {name} must be positive and finite, got {value}")
    for name, value in (("seed", seed), ("offset", offset)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{_OP}: {name} must be an int, got {type(value).__name__}")
        if not (0 <= value < 2**63):
            raise ValueError(f"{_OP}: {name} must lie in [0, 2**63), got {value}")
    if weight is not None:
        if not isinstance(weight, Tensor) or not weight.is_floating_point():
            raise TypeError(f"{_OP}: weight must be a float tensor (E,), got {describe(weight)}")
        if weight.shape != col.shape:
            raise ValueError(
                f"{_OP}: weight must have the shape of col ({col.numel()},), got "
                f"{tuple(weight.shape)}"
            )
        if weight.device != col.device:
            raise ValueError(f"{_OP}: weight must be on {col.device}, got {weight.device}")
    if torch.compiler.is_compiling():
        return
    n = rowptr.numel() - 1
    if int(rowptr[0]) != 0 or int(rowptr[-1]) != col.numel():
        raise ValueError(
            f"{_OP}: rowptr must start at 0 and end at E = {col.numel()}, got "
            f"{int(rowptr[0])} and {int(rowptr[-1])}"
        )
    if n and bool((rowptr[1:] < rowptr[:-1]).any()):
        raise ValueError(f"{_OP}: rowptr must be non-decreasing")
    for name, t in (("col", col), ("start", start)):
        if t.numel():
            lo, hi = int(t.min()), int(t.max())
            if lo < 0 or hi >= n:
                raise IndexError(
                    f"{_OP}: {name} values must lie in [0, {n}) (N = rowptr.numel() - 1), got "
                    f"the range [{lo}, {hi}]"
                )
    if weight is not None and weight.numel():
        w = weight.detach()
        if not bool(torch.isfinite(w).all()) or bool((w < 0).any()):
            raise ValueError(f"{_OP}: weight must be finite and non-negative")


def random_walk(
    rowptr: Tensor,
    col: Tensor,
    start: Tensor,
    walk_length: int,
    *,
    weight: Tensor | None = None,
    p: float = 1.0,
    q: float = 1.0,
    seed: int = 0,
    offset: int = 0,
) -> Tensor:
    """Random walks from ``start`` on the CSR graph ``(rowptr, col[, weight])``.

    Runs the compiled kernel when there is one for the device, else
    :func:`random_walk_reference` (the same distribution, other random numbers).

    Args:
        rowptr: ``(N + 1,)`` int64 CSR offsets.
        col: ``(E,)`` int64 out-neighbours, sorted within each row (second-order walks look
            them up by binary search; :class:`geolayers.graph.CSRGraph` sorts them).
        start: ``(S,)`` int64 start nodes.
        walk_length: number of steps, ``>= 1``.
        weight: optional ``(E,)`` non-negative edge weights. (default: uniform)
        p: return parameter, ``> 0``. (default: ``1.0``)
        q: in-out parameter, ``> 0``. (default: ``1.0``)
        seed: seed of the counter-based generator, in ``[0, 2**63)``. (default: ``0``)
        offset: global index of the first walk: walk ``s`` uses the numbers of walk
            ``offset + s``, so a set of walks split into chunks equals the walks drawn at once.
            (default: ``0``)

    Returns:
        ``(S, walk_length + 1)`` int64 node ids; row ``s`` starts with ``start[s]``; ``-1``
        after a dead end.

    Example:
        >>> rowptr, col = torch.tensor([0, 1, 3, 4]), torch.tensor([1, 0, 2, 1])  # path 0-1-2
        >>> random_walk(rowptr, col, torch.tensor([0]), 4, seed=1)[0, :2].tolist()
        [0, 1]
    """
    check_walk_inputs(rowptr, col, start, walk_length, weight, p, q, seed, offset)
    if not use_kernel(_OP, rowptr.device):
        return random_walk_reference(
            rowptr, col, start, walk_length, weight=weight, p=p, q=q, seed=seed
        )
    return torch.ops.geolayers.random_walk.default(
        rowptr, col, weight, start, walk_length, float(p), float(q), seed, offset
    )


def random_walk_reference(
    rowptr: Tensor,
    col: Tensor,
    start: Tensor,
    walk_length: int,
    *,
    weight: Tensor | None = None,
    p: float = 1.0,
    q: float = 1.0,
    seed: int = 0,
) -> Tensor:
    """Pure-PyTorch reference of :func:`random_walk`: the same walk distribution.

    Vectorised over walks; its random numbers come from a ``torch.Generator`` seeded with
    ``seed``, so the walks are not those of the kernels, only their distribution. Shapes as
    :func:`random_walk`.

    Example:
        >>> rowptr, col = torch.tensor([0, 1, 3, 4]), torch.tensor([1, 0, 2, 1])
        >>> random_walk_reference(rowptr, col, torch.tensor([2]), 2)[0, :2].tolist()  # 2 -> 1 -> 0 or 2
        [2, 1]
    """
    device = rowptr.device
    gen = torch.Generator(device=device).manual_seed(seed)
    n = rowptr.numel() - 1
    deg = rowptr[1:] - rowptr[:-1]
    if weight is not None:
        # Global inclusive prefix sums: row v's draw is a search between its two bounds.
        cum = torch.cumsum(weight.double(), 0)
        before = torch.cat([cum.new_zeros(1), cum])[rowptr[:-1]]
        total = torch.cat([cum.new_zeros(1), cum])[rowptr[1:]] - before
    # Sorted (row, col) keys: membership of x in t's neighbours by one search.
    keys = torch.repeat_interleave(torch.arange(n, device=device), deg) * n + col
    inv_p, inv_q = 1.0 / p, 1.0 / q
    alpha_max = max(inv_p, 1.0, inv_q)
    biased = not (p == 1.0 and q == 1.0)

    def propose(cur: Tensor) -> Tensor:
        u = torch.rand(cur.shape, generator=gen, device=device, dtype=torch.float64)
        if weight is None:
            pos = rowptr[cur] + (u * deg[cur]).long().clamp_max(deg[cur] - 1)
        else:
            target = before[cur] + u * total[cur]
            pos = torch.searchsorted(cum, target, right=True)
            pos = torch.minimum(pos, rowptr[cur + 1] - 1)
        return col[pos]

    walks = torch.full((start.numel(), walk_length + 1), -1, dtype=torch.long, device=device)
    walks[:, 0] = start
    prev = torch.full_like(start, -1)
    cur = start.clone()
    for step in range(1, walk_length + 1):
        alive = cur >= 0
        safe = cur.clamp_min(0)
        if weight is None:
            alive &= deg[safe] > 0
        else:
            alive &= total[safe] > 0
        nxt = torch.full_like(cur, -1)
        todo = alive.clone()
        while bool(todo.any()):
            idx = todo.nonzero().squeeze(1)
            x = propose(cur[idx])
            if not biased or step == 1:
                accept = torch.ones_like(x, dtype=torch.bool)
            else:
                t = prev[idx]
                is_nb = torch.zeros_like(x, dtype=torch.bool)
                if keys.numel():
                    k = t * n + x
                    found = torch.searchsorted(keys, k).clamp_max(keys.numel() - 1)
                    is_nb = keys[found] == k
                alpha = torch.where(x == t, inv_p, torch.where(is_nb, 1.0, inv_q))
                u = torch.rand(x.shape, generator=gen, device=device, dtype=torch.float64)
                accept = u * alpha_max < alpha
            nxt[idx[accept]] = x[accept]
            todo[idx[accept]] = False
        prev, cur = cur, nxt
        walks[:, step] = nxt
    return walks


if EXTENSION_LOADED:

    @torch.library.register_fake("geolayers::random_walk")
    def _random_walk_fake(rowptr, col, weight, start, walk_length, p, q, seed, offset):
        return start.new_empty((start.shape[0], walk_length + 1))
