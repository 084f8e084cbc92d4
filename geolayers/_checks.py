"""Argument checks and guarded numerics shared across geolayers' modules (private).

One place for the pieces every layer needs, so that an error names its argument the same way
everywhere and a guard against NaN gradients is written once.
"""

from __future__ import annotations

import torch
from torch import Tensor


def describe(value: object) -> str:
    """What ``value`` is, for an error message: shape and dtype of a tensor, else its type."""
    if isinstance(value, Tensor):
        return f"tensor of shape {tuple(value.shape)} and dtype {value.dtype}"
    return type(value).__name__


def check_positive_int(name: str, value: object) -> int:
    """``value`` as an int >= 1, or a TypeError/ValueError naming ``name``."""
    # bool is an int subclass: True would silently mean 1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


def safe_sqrt(sq: Tensor) -> Tensor:
    """``sqrt(sq)`` for ``sq >= 0`` whose gradient at 0 is the subgradient 0, not inf.

    sqrt has an infinite derivative at 0 (a point at the origin, two coinciding points), which
    would send NaN/inf to the parameters.
    """
    positive = sq > 0
    return torch.where(positive, torch.sqrt(torch.where(positive, sq, torch.ones_like(sq))), 0)
