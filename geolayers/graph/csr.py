"""Compressed sparse row graphs for random walks: :class:`CSRGraph`."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from geolayers._checks import describe


def _check_edge_index(edge_index: object, num_nodes: int | None) -> tuple[Tensor, int]:
    if not isinstance(edge_index, Tensor) or edge_index.dtype != torch.int64:
        raise TypeError(f"edge_index must be an int64 tensor (2, E), got {describe(edge_index)}")
    if edge_index.dim() != 2 or edge_index.shape[0] != 2:
        raise ValueError(f"edge_index must have shape (2, E), got {tuple(edge_index.shape)}")
    lo = int(edge_index.min()) if edge_index.numel() else 0
    hi = int(edge_index.max()) if edge_index.numel() else -1
    if num_nodes is None:
        num_nodes = hi + 1
    elif isinstance(num_nodes, bool) or not isinstance(num_nodes, int) or num_nodes < 0:
        raise ValueError(f"num_nodes must be a non-negative int, got {num_nodes!r}")
    if lo < 0 or hi >= num_nodes:
        raise IndexError(
            f"edge_index values must lie in [0, num_nodes) = [0, {num_nodes}), got the range "
            f"[{lo}, {hi}]"
        )
    return edge_index, num_nodes


class CSRGraph(NamedTuple):
    """A graph in compressed sparse row form, neighbours sorted within each row.

    Attributes:
        rowptr: ``(N + 1,)`` int64 offsets: the out-neighbours of ``v`` are
            ``col[rowptr[v]:rowptr[v + 1]]``.
        col: ``(E,)`` int64 neighbour ids, ascending within each row.
        weight: ``(E,)`` float edge weights, or ``None`` for an unweighted graph.
        num_nodes: ``N``.

    Sizes are int64 throughout, so graphs past :math:`2^{31}` edges are representable.

    Example:
        >>> g = CSRGraph.from_edge_index(torch.tensor([[0, 1], [1, 2]]), undirected=True)
        >>> g.rowptr.tolist(), g.col.tolist()
        ([0, 1, 3, 4], [1, 0, 2, 1])
    """

    rowptr: Tensor
    col: Tensor
    weight: Tensor | None
    num_nodes: int

    @classmethod
    def from_edge_index(
        cls,
        edge_index: Tensor,
        num_nodes: int | None = None,
        edge_weight: Tensor | None = None,
        *,
        undirected: bool = False,
    ) -> CSRGraph:
        """Build from a PyG ``edge_index`` ``(2, E)`` int64 and optional ``edge_weight (E,)``.

        Duplicate edges are merged and their weights summed. With ``undirected=True`` the
        reverse of every edge is added where it is missing (an edge already given in both
        directions keeps each direction's own weight), as for an undirected edge list that
        names each edge once. ``num_nodes`` defaults to ``edge_index.max() + 1``.

        Example:
            >>> CSRGraph.from_edge_index(torch.tensor([[0, 0], [2, 1]])).col.tolist()
            [1, 2]
        """
        edge_index, n = _check_edge_index(edge_index, num_nodes)
        if edge_weight is not None:
            if not isinstance(edge_weight, Tensor) or not edge_weight.is_floating_point():
                raise TypeError(
                    f"edge_weight must be a float tensor (E,), got {describe(edge_weight)}"
                )
            if edge_weight.shape != (edge_index.shape[1],):
                raise ValueError(
                    f"edge_weight must have shape (E,) = ({edge_index.shape[1]},), got "
                    f"{tuple(edge_weight.shape)}"
                )
            if edge_weight.numel() and (
                not bool(torch.isfinite(edge_weight).all()) or bool((edge_weight < 0).any())
            ):
                raise ValueError("edge_weight must be finite and non-negative")
        row, col = edge_index[0], edge_index[1]
        weight = edge_weight
        if undirected:
            key = row * n + col
            rev = col * n + row
            missing = ~torch.isin(rev, key)
            row, col = torch.cat([row, col[missing]]), torch.cat([col, row[missing]])
            if weight is not None:
                weight = torch.cat([weight, weight[missing]])
        key, inverse = torch.unique(row * n + col, sorted=True, return_inverse=True)
        if weight is not None:
            weight = weight.new_zeros(key.numel()).index_add_(0, inverse, weight)
        row, col = key // max(n, 1), key % max(n, 1)
        rowptr = torch.zeros(n + 1, dtype=torch.long, device=edge_index.device)
        rowptr[1:] = torch.cumsum(torch.bincount(row, minlength=n), 0)
        return cls(rowptr, col, weight, n)

    @property
    def num_edges(self) -> int:
        """Number of directed edges ``E``."""
        return self.col.numel()

    def degree(self) -> Tensor:
        """Out-degree ``(N,)`` int64 (number of out-edges, ignoring weights)."""
        return self.rowptr[1:] - self.rowptr[:-1]

    def row(self) -> Tensor:
        """Source node of every edge ``(E,)`` int64."""
        return torch.repeat_interleave(
            torch.arange(self.num_nodes, device=self.col.device), self.degree()
        )

    def edge_index(self) -> Tensor:
        """The edges as a PyG ``edge_index`` ``(2, E)``, sorted by source then target."""
        return torch.stack([self.row(), self.col])

    def to(self, device: str | torch.device) -> CSRGraph:
        """The same graph on ``device``."""
        w = None if self.weight is None else self.weight.to(device)
        return CSRGraph(self.rowptr.to(device), self.col.to(device), w, self.num_nodes)
