"""Walk corpora drawn by several processes: :func:`distributed_random_walks`.

The corpus of :func:`geolayers.graph.random_walks` is a list of ``T = walks_per_node * S``
walks, walk ``g`` starting at ``start[g % S]`` (rounds over the start nodes). Rank ``r`` of
``R`` draws the contiguous slice ``[T r // R, T (r + 1) // R)`` of it, calling
:func:`geolayers.ops.random_walk` with ``offset`` the global index of its first walk. The
compiled walk kernels key every random number by ``(seed, offset + s)`` (Philox), so the
slices, concatenated in rank order, are exactly the single-process corpus: no communication,
and the corpus does not depend on the number of processes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import torch
from torch import Tensor
from tqdm.auto import tqdm

from geolayers._checks import check_positive_int, describe
from geolayers.distributed.launch import get_rank, get_world_size
from geolayers.distributed.partition import rank_range
from geolayers.ops.walk import random_walk

if TYPE_CHECKING:
    # Only for annotations: importing geolayers.graph pulls in torch_geometric (seconds), which
    # every spawned worker would pay for.
    from geolayers.graph.csr import CSRGraph

__all__ = ["WalkShard", "distributed_random_walks"]


class WalkShard(NamedTuple):
    """This rank's part of a walk corpus.

    Attributes:
        walks: ``(hi - lo, walk_length + 1)`` int64, ``-1`` after a dead end.
        offset: ``lo``, the global index of the first walk (row ``i`` is walk ``offset + i``).
        total: ``T``, the number of walks over all ranks.
    """

    walks: Tensor
    offset: int
    total: int

    def walk_ids(self) -> Tensor:
        """``(hi - lo,)`` int64 global indices of the local walks."""
        return torch.arange(self.offset, self.offset + self.walks.shape[0])


def distributed_random_walks(
    graph: CSRGraph,
    walk_length: int = 80,
    walks_per_node: int = 10,
    *,
    p: float = 1.0,
    q: float = 1.0,
    seed: int = 0,
    start: Tensor | None = None,
    group: torch.distributed.ProcessGroup | None = None,
    chunk_size: int = 1 << 16,
    progress: bool = False,
) -> WalkShard:
    """This rank's contiguous share of the corpus of :func:`geolayers.graph.random_walks`.

    Every rank holds the whole graph (walks need it); only the walks are split. Concatenated
    in rank order, the shards equal ``random_walks(graph, walk_length, walks_per_node, p=p,
    q=q, seed=seed, start=start)`` exactly when the compiled walk kernel runs (the
    pure-PyTorch fallback has no per-walk streams: same distribution, other walks).

    Args:
        graph: the :class:`geolayers.graph.CSRGraph` (or anything with its ``rowptr``,
            ``col``, ``weight`` and ``num_nodes``), on every rank.
        walk_length: steps per walk. (default: ``80``)
        walks_per_node: walks per start node. (default: ``10``)
        p, q: node2vec's return and in-out parameters. (default: ``1.0``)
        seed: walk seed. (default: ``0``)
        start: ``(S,)`` int64 start nodes. (default: all nodes)
        group: process group. (default: the default group; one process without one)
        chunk_size: walks per kernel call. (default: ``65536``)
        progress: tqdm bar. (default: ``False``)

    Returns:
        :class:`WalkShard` ``(walks, offset, total)``.

    Example:
        >>> from geolayers.graph import CSRGraph
        >>> g = CSRGraph.from_edge_index(torch.tensor([[0, 1], [1, 2]]), undirected=True)
        >>> distributed_random_walks(g, 3, 2).walks.shape  # one process: the whole corpus
        torch.Size([6, 4])
    """
    if not all(hasattr(graph, a) for a in ("rowptr", "col", "weight", "num_nodes")):
        raise TypeError(f"graph must be a CSRGraph, got {type(graph).__name__}")
    check_positive_int("walk_length", walk_length)
    check_positive_int("walks_per_node", walks_per_node)
    check_positive_int("chunk_size", chunk_size)
    device = graph.col.device
    if start is None:
        start = torch.arange(graph.num_nodes, device=device)
    elif not isinstance(start, Tensor) or start.dtype != torch.int64 or start.dim() != 1:
        raise TypeError(f"start must be an int64 tensor (S,), got {describe(start)}")
    num_start = start.numel()
    total = walks_per_node * num_start
    lo, hi = rank_range(total, get_rank(group), get_world_size(group))
    out = torch.empty((hi - lo, walk_length + 1), dtype=torch.long, device=device)
    bar = tqdm(total=hi - lo, desc="walks", unit="walk", disable=not progress)
    for begin in range(lo, hi, chunk_size):
        end = min(begin + chunk_size, hi)
        # Walk g starts at start[g % S]: the rounds of random_walks, cut at any index.
        starts = start[torch.arange(begin, end, device=device) % max(num_start, 1)]
        out[begin - lo : end - lo] = random_walk(
            graph.rowptr,
            graph.col,
            starts,
            walk_length,
            weight=graph.weight,
            p=p,
            q=q,
            seed=seed,
            offset=begin,
        )
        bar.update(end - begin)
    bar.close()
    return WalkShard(out, lo, total)
