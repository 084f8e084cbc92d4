"""Permutation-invariant pooling of sets: sum / mean / max / min and learned attention pooling."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from geolayers.ops import segment_reduce_csr
from geolayers.sets.base import SetModule


def segment_softmax(scores: Tensor, ptr: Tensor) -> Tensor:
    """Softmax of ``scores: (M, *)`` within each segment of ``ptr: (B + 1,)``, over dim 0.

    Example:
        >>> segment_softmax(torch.zeros(3, 1), torch.tensor([0, 1, 3])).squeeze(1)
        tensor([1.0000, 0.5000, 0.5000])
    """
    sizes = ptr[1:] - ptr[:-1]
    # The max shift is a constant per segment, so it needs no gradient.
    shift = segment_reduce_csr(scores.detach(), ptr, "max")
    e = (scores - shift.repeat_interleave(sizes, dim=0, output_size=scores.shape[0])).exp()
    denom = segment_reduce_csr(e, ptr, "sum")
    return e / denom.repeat_interleave(sizes, dim=0, output_size=scores.shape[0])


class SetPool(SetModule):
    r"""Fixed pooling of each set to one vector: ``"sum"``, ``"mean"``, ``"max"`` or ``"min"``.

    .. math:: \mathbf{z}_b = \bigoplus_{i \in X_b} \mathbf{x}_i

    Args:
        reduce: the reduction. (default: ``"sum"``)

    Shapes:
        input ``(B, N, D)`` with ``mask (B, N)``, or ``(M, D)`` with ``ptr (B + 1,)`` /
        ``batch (M,)``; output ``(B, D)``. Empty sets pool to 0.

    Example:
        >>> SetPool("max")(torch.randn(4, 5, 3)).shape
        torch.Size([4, 3])
    """

    def __init__(self, reduce: str = "sum") -> None:
        super().__init__()
        if reduce not in ("sum", "mean", "max", "min"):
            raise ValueError(f"reduce must be 'sum', 'mean', 'max' or 'min', got {reduce!r}")
        self.reduce = reduce

    def out_channels(self, in_channels: int) -> int:
        return in_channels

    def forward_ragged(self, rows: Tensor, ptr: Tensor) -> Tensor:
        return segment_reduce_csr(rows, ptr, self.reduce)

    def extra_repr(self) -> str:
        return repr(self.reduce)


class AttentionPooling(SetModule):
    r"""Pooling by multi-head attention from learned queries (PMA of the Set Transformer,
    `Lee et al. 2019 <https://arxiv.org/abs/1810.00825>`_).

    .. math::
        \mathbf{z}_{b,q} = W_O \big\Vert_{h=1}^{H} \sum_{i \in X_b}
        \operatorname{softmax}_{i \in X_b}\!\Big(\tfrac{\langle \mathbf{s}_{q,h},
        W_K^h \mathbf{x}_i\rangle}{\sqrt{d_h}}\Big) W_V^h \mathbf{x}_i

    with learned seed vectors :math:`\mathbf{s}_q`. The softmax runs within each set, so the
    output is invariant to the order of the elements.

    Args:
        in_channels: ``D``.
        heads: attention heads ``H``; must divide ``in_channels``. (default: ``1``)
        num_queries: learned queries ``Q``; their outputs are concatenated. (default: ``1``)

    Shapes:
        input as :class:`SetPool`; output ``(B, Q * D)``. Empty sets pool to ``W_O 0 + b_O``.

    Example:
        >>> AttentionPooling(8, heads=2)(torch.randn(4, 5, 8)).shape
        torch.Size([4, 8])
    """

    def __init__(self, in_channels: int, heads: int = 1, num_queries: int = 1) -> None:
        super().__init__()
        if in_channels < 1 or heads < 1 or num_queries < 1:
            raise ValueError("in_channels, heads and num_queries must be positive")
        if in_channels % heads != 0:
            raise ValueError(f"heads ({heads}) must divide in_channels ({in_channels})")
        self.in_channels = in_channels
        self.heads = heads
        self.num_queries = num_queries
        self.queries = nn.Parameter(torch.empty(num_queries, in_channels))
        self.key = nn.Linear(in_channels, in_channels)
        self.value = nn.Linear(in_channels, in_channels)
        self.out = nn.Linear(in_channels, in_channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.queries, std=1.0 / math.sqrt(self.in_channels))
        for lin in (self.key, self.value, self.out):
            lin.reset_parameters()

    def out_channels(self, in_channels: int) -> int:
        return self.num_queries * in_channels

    def forward_ragged(self, rows: Tensor, ptr: Tensor) -> Tensor:
        M, D = rows.shape
        H, Q, dh = self.heads, self.num_queries, D // self.heads
        keys = self.key(rows).view(M, 1, H, dh)
        values = self.value(rows).view(M, 1, H, dh)
        queries = self.queries.view(1, Q, H, dh)
        scores = (keys * queries).sum(-1) / math.sqrt(dh)  # (M, Q, H)
        weights = segment_softmax(scores, ptr)
        pooled = segment_reduce_csr((weights.unsqueeze(-1) * values).reshape(M, Q * D), ptr, "sum")
        return self.out(pooled.view(-1, Q, D)).reshape(-1, Q * D)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.in_channels}, heads={self.heads}, "
            f"num_queries={self.num_queries})"
        )


def make_pool(pool: str | nn.Module) -> nn.Module:
    """A pooling module from a name (``"sum"``, ``"mean"``, ``"max"``, ``"min"``) or a module."""
    if isinstance(pool, str):
        return SetPool(pool)
    if isinstance(pool, SetModule) and not pool.per_element:
        return pool
    raise TypeError(
        "pool must be 'sum', 'mean', 'max', 'min' or a pooling SetModule, "
        f"got {type(pool).__name__}"
    )
