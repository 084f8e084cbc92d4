"""Walk corpora for node2vec-style training: :func:`random_walks`."""

from __future__ import annotations

import torch
from torch import Tensor
from tqdm.auto import tqdm

from geolayers._checks import check_positive_int
from geolayers.graph.csr import CSRGraph
from geolayers.ops.walk import random_walk


def random_walks(
    graph: CSRGraph,
    walk_length: int = 80,
    walks_per_node: int = 10,
    *,
    p: float = 1.0,
    q: float = 1.0,
    seed: int = 0,
    start: Tensor | None = None,
    chunk_size: int = 1 << 16,
    progress: bool = True,
) -> Tensor:
    """``walks_per_node`` walks of ``walk_length`` steps from every node (or from ``start``).

    Walk ``k`` of node ``v`` is row ``k * N + v`` (rounds over all nodes, as node2vec's
    ``simulate_walks``); rows are drawn in chunks of ``chunk_size`` with their global offset, so
    the result does not depend on ``chunk_size`` or on the thread count. See
    :func:`geolayers.ops.random_walk` for the walk rules and the ``-1`` padding after dead ends.

    Args:
        graph: the graph (:meth:`CSRGraph.from_edge_index`).
        walk_length: steps per walk. (default: ``80``)
        walks_per_node: walks from each start node. (default: ``10``)
        p, q: node2vec's return and in-out parameters. (default: ``1.0``)
        seed: generator seed. (default: ``0``)
        start: ``(S,)`` int64 start nodes instead of all nodes. (default: all)
        chunk_size: walks per kernel call (the progress bar's unit). (default: ``65536``)
        progress: show a tqdm bar. (default: ``True``)

    Returns:
        ``(walks_per_node * S, walk_length + 1)`` int64.

    Example:
        >>> g = CSRGraph.from_edge_index(torch.tensor([[0, 1], [1, 2]]), undirected=True)
        >>> random_walks(g, 3, 2, progress=False).shape
        torch.Size([6, 4])
    """
    check_positive_int("walk_length", walk_length)
    check_positive_int("walks_per_node", walks_per_node)
    check_positive_int("chunk_size", chunk_size)
    if start is None:
        start = torch.arange(graph.num_nodes, device=graph.col.device)
    starts = start.repeat(walks_per_node)
    out = torch.empty((starts.numel(), walk_length + 1), dtype=torch.long, device=starts.device)
    bar = tqdm(total=starts.numel(), desc="walks", unit="walk", disable=not progress)
    for begin in range(0, starts.numel(), chunk_size):
        end = min(begin + chunk_size, starts.numel())
        out[begin:end] = random_walk(
            graph.rowptr,
            graph.col,
            starts[begin:end],
            walk_length,
            weight=graph.weight,
            p=p,
            q=q,
            seed=seed,
            offset=begin,
        )
        bar.update(end - begin)
    bar.close()
    return out
