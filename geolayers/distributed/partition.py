"""Contiguous, deterministic partitions of an index range over ranks.

One rule everywhere (walks, table rows, batches): part ``k`` of ``total`` items over ``parts``
ranks is ``[total * k // parts, total * (k + 1) // parts)``. Every rank computes every part
from ``(total, parts)`` alone, so nobody has to ask who owns what; the parts differ in size by
at most one item.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["even_bounds", "owner_of", "rank_range"]


def _check_nonneg_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


def even_bounds(total: int, parts: int) -> list[int]:
    """The ``parts + 1`` bounds of the contiguous partition of ``range(total)``.

    Example:
        >>> even_bounds(10, 3)
        [0, 3, 6, 10]
    """
    _check_nonneg_int("total", total)
    if _check_nonneg_int("parts", parts) < 1:
        raise ValueError(f"parts must be >= 1, got {parts}")
    return [total * k // parts for k in range(parts + 1)]


def rank_range(total: int, rank: int, world_size: int) -> tuple[int, int]:
    """``(start, end)`` of ``rank``'s part of ``range(total)`` over ``world_size`` ranks.

    Example:
        >>> rank_range(10, 2, 3)
        (6, 10)
    """
    if not 0 <= _check_nonneg_int("rank", rank) < world_size:
        raise ValueError(f"rank must lie in [0, world_size = {world_size}), got {rank}")
    bounds = even_bounds(total, world_size)
    return bounds[rank], bounds[rank + 1]


def owner_of(index: Tensor, bounds: Tensor) -> Tensor:
    """The part that holds each index: ``index: (...)`` int64, ``bounds: (parts + 1,)`` int64
    from :func:`even_bounds` -> ``(...)`` int64 ranks.

    Example:
        >>> owner_of(torch.tensor([0, 2, 3, 9]), torch.tensor(even_bounds(10, 3))).tolist()
        [0, 0, 1, 2]
    """
    # Index i belongs to the first part whose end exceeds it; empty parts are skipped because
    # their end equals the next part's start.
    return torch.searchsorted(bounds[1:], index, right=True)
