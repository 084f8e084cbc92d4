"""The two layouts of a batch of sets, and the conversion every set layer runs at its boundary.

* padded: ``x: (B, N, D)`` with an optional bool ``mask: (B, N)`` (``True`` = element present);
* ragged: ``x: (M, D)`` with ``M = sum_b N_b`` rows, grouped by CSR offsets ``ptr: (B + 1,)``
  or by a sorted ``batch: (M,)`` vector of set ids (PyTorch Geometric's conventions).

Layers compute on the ragged form (no work on padding) and hand results back in the layout
they were given.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from geolayers._checks import describe


@dataclass
class SetLayout:
    """How a batch of sets arrived, so that per-element outputs can be returned the same way.

    Attributes:
        ptr: ``(B + 1,)`` int64 CSR offsets of the ragged rows.
        mask: ``(B, N)`` bool for padded input, else ``None``.
    """

    ptr: Tensor
    mask: Tensor | None = None

    @property
    def num_sets(self) -> int:
        return self.ptr.numel() - 1

    def restore(self, rows: Tensor) -> Tensor:
        """Per-element ``rows: (M, D')`` back to the input layout: ``(B, N, D')`` or ``(M, D')``."""
        if self.mask is None:
            return rows
        out = rows.new_zeros((*self.mask.shape, *rows.shape[1:]))
        out[self.mask] = rows
        return out

    def sizes(self) -> Tensor:
        """``(B,)`` number of elements of each set."""
        return self.ptr[1:] - self.ptr[:-1]


def ptr_from_batch(batch: Tensor, num_sets: int | None = None) -> Tensor:
    """CSR offsets ``(B + 1,)`` from a sorted set-id vector ``batch: (M,)``.

    Example:
        >>> ptr_from_batch(torch.tensor([0, 0, 2]), num_sets=4)
        tensor([0, 2, 2, 3, 3])
    """
    if num_sets is None:
        num_sets = int(batch.max()) + 1 if batch.numel() > 0 else 0
    counts = torch.bincount(batch, minlength=num_sets)
    ptr = batch.new_zeros(num_sets + 1)
    torch.cumsum(counts, 0, out=ptr[1:])
    return ptr


def _check_ptr(ptr: Tensor, num_rows: int, device: torch.device) -> None:
    if not isinstance(ptr, Tensor) or ptr.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"ptr must be an int64 tensor of offsets (B + 1,), got {describe(ptr)}")
    if ptr.dim() != 1 or ptr.numel() < 1:
        raise ValueError(f"ptr must be 1-D of shape (B + 1,), got shape {tuple(ptr.shape)}")
    if ptr.device != device:
        raise ValueError(f"ptr must be on the device of x ({device}), got {ptr.device}")
    if int(ptr[0]) != 0:
        raise ValueError(f"ptr[0] must be 0, got {int(ptr[0])}")
    if int(ptr[-1]) != num_rows:
        raise ValueError(
            f"ptr[-1] must equal the number of rows of x ({num_rows}), got {int(ptr[-1])}"
        )
    if ptr.numel() > 1 and bool((ptr[1:] < ptr[:-1]).any()):
        raise ValueError("ptr must be non-decreasing")


def to_ragged(
    x: Tensor,
    mask: Tensor | None = None,
    ptr: Tensor | None = None,
    batch: Tensor | None = None,
    num_sets: int | None = None,
) -> tuple[Tensor, SetLayout]:
    """Validate a batch of sets given in either layout and return its ragged rows and layout.

    Args:
        x: ``(B, N, D)`` padded or ``(M, D)`` ragged features.
        mask: ``(B, N)`` bool, padded input only; ``None`` means every element is present.
        ptr: ``(B + 1,)`` offsets, ragged input only.
        batch: ``(M,)`` sorted set ids, ragged input only (alternative to ``ptr``).
        num_sets: ``B`` for ``batch`` input when trailing sets are empty.

    Returns:
        ``rows: (M, D)`` and the :class:`SetLayout`. Ragged input with neither ``ptr`` nor
        ``batch`` is one set.

    Example:
        >>> rows, layout = to_ragged(torch.randn(2, 3, 4), mask=torch.tensor([[1, 1, 0], [1, 0, 0]]).bool())
        >>> rows.shape, layout.ptr
        (torch.Size([3, 4]), tensor([0, 2, 3]))
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"x must be floating point, got dtype {x.dtype}")
    if x.dim() == 3:
        if ptr is not None or batch is not None:
            raise ValueError(
                "ptr and batch belong to ragged input (M, D); padded x (B, N, D) takes mask"
            )
        B, N = x.shape[:2]
        if mask is None:
            mask = torch.ones(B, N, dtype=torch.bool, device=x.device)
        if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
            raise TypeError(
                f"mask must be a bool tensor of shape (B, N) = ({B}, {N}), got {describe(mask)}"
            )
        if tuple(mask.shape) != (B, N):
            raise ValueError(
                f"mask must have shape (B, N) = ({B}, {N}) to match x {tuple(x.shape)}, "
                f"got {tuple(mask.shape)}"
            )
        if mask.device != x.device:
            raise ValueError(f"mask must be on the device of x ({x.device}), got {mask.device}")
        counts = mask.sum(1)
        layout_ptr = torch.zeros(B + 1, dtype=torch.long, device=x.device)
        torch.cumsum(counts, 0, out=layout_ptr[1:])
        return x[mask], SetLayout(layout_ptr, mask)
    if x.dim() != 2:
        raise ValueError(f"x must be padded (B, N, D) or ragged (M, D), got shape {tuple(x.shape)}")
    if mask is not None:
        raise ValueError(
            "mask belongs to padded input (B, N, D); ragged x (M, D) takes ptr or batch"
        )
    if ptr is not None and batch is not None:
        raise ValueError("give ptr or batch, not both")
    M = x.shape[0]
    if ptr is not None:
        _check_ptr(ptr, M, x.device)
        if num_sets is not None and num_sets != ptr.numel() - 1:
            raise ValueError(
                f"num_sets ({num_sets}) disagrees with ptr, which has {ptr.numel() - 1} sets"
            )
        return x, SetLayout(ptr.long())
    if batch is not None:
        if not isinstance(batch, Tensor) or batch.dtype not in (torch.int32, torch.int64):
            raise TypeError(f"batch must be an int64 tensor of shape (M,), got {describe(batch)}")
        if tuple(batch.shape) != (M,):
            raise ValueError(
                f"batch must have shape (M,) = ({M},) to match x, got {tuple(batch.shape)}"
            )
        if batch.device != x.device:
            raise ValueError(f"batch must be on the device of x ({x.device}), got {batch.device}")
        if M > 0 and int(batch.min()) < 0:
            raise ValueError(f"batch must hold set ids >= 0, got {int(batch.min())}")
        if M > 1 and bool((batch[1:] < batch[:-1]).any()):
            raise ValueError(
                "batch must be sorted (non-decreasing set ids), as in PyTorch Geometric"
            )
        if num_sets is not None and M > 0 and int(batch[-1]) >= num_sets:
            raise ValueError(f"batch holds set id {int(batch[-1])}, but num_sets is {num_sets}")
        return x, SetLayout(ptr_from_batch(batch.long(), num_sets))
    return x, SetLayout(torch.tensor([0, M], dtype=torch.long, device=x.device))
