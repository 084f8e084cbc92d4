"""Base class of the set layers: one boundary that accepts both layouts of a batch of sets."""

from __future__ import annotations

from torch import Tensor, nn

from geolayers.sets.batch import to_ragged


class SetModule(nn.Module):
    """A layer on batches of sets, written once for the ragged layout.

    Subclasses implement :meth:`forward_ragged` on validated rows ``(M, D)`` with offsets
    ``ptr (B + 1,)``; :meth:`forward` accepts padded ``(B, N, D)`` + ``mask`` or ragged
    ``(M, D)`` + ``ptr`` / ``batch``, checks the channel count against ``in_channels`` (when
    set), and returns per-element outputs (``per_element = True``) in the input layout or
    per-set outputs ``(B, D')`` as they are.
    """

    in_channels: int | None = None
    per_element: bool = False

    def forward(
        self,
        x: Tensor,
        mask: Tensor | None = None,
        ptr: Tensor | None = None,
        batch: Tensor | None = None,
        num_sets: int | None = None,
    ) -> Tensor:
        rows, layout = to_ragged(x, mask, ptr, batch, num_sets)
        if self.in_channels is not None and rows.shape[-1] != self.in_channels:
            raise ValueError(f"x must have {self.in_channels} channels, got {rows.shape[-1]}")
        out = self.forward_ragged(rows, layout.ptr)
        return layout.restore(out) if self.per_element else out

    def forward_ragged(self, rows: Tensor, ptr: Tensor) -> Tensor:
        """The layer on validated ragged rows ``(M, D)`` with offsets ``(B + 1,)``."""
        raise NotImplementedError(f"{type(self).__name__} must implement forward_ragged")
