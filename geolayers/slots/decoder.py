"""Spatial broadcast decoder, on the absolute grid (slot attention) or on every slot's own
relative grid (invariant slot attention)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

from geolayers._checks import check_positive_int, describe
from geolayers.slots.frames import (
    SlotPose,
    check_mode,
    check_pose,
    position_grid,
    project_relative_grid,
)
from geolayers.slots.invariant import default_scales_factor


class DecoderOutput(NamedTuple):
    """What :class:`SpatialBroadcastDecoder` returns.

    Attributes:
        recon: ``(B, C, H, W)`` reconstruction, the mask-weighted sum of the slots' images.
        masks: ``(B, K, H, W)`` masks, softmax over slots (they sum to 1 at every pixel).
        rgb: ``(B, K, C, H, W)`` every slot's image.
        mask_logits: ``(B, K, H, W)`` logits of the masks.
    """

    recon: Tensor
    masks: Tensor
    rgb: Tensor
    mask_logits: Tensor


class SpatialBroadcastDecoder(nn.Module):
    r"""Spatial broadcast decoder (`Watters et al. 2019 <https://arxiv.org/abs/1901.07017>`_, as
    used by slot attention, Locatello et al. 2020) that decodes every slot on its own grid.

    Each slot's features are broadcast to all pixels and combined with a code of the pixel's
    coordinates; a network shared over pixels and slots turns that into ``C`` channels and a
    mask logit; the masks are a softmax over slots:

    .. math::
        (c_{kp}, m_{kp}) = f\big(W_z s_k + W_g\, g_{kp}\big), \qquad
        \hat x_p = \sum_k \operatorname{softmax}_k(m_{kp})\, c_{kp}

    ``g_kp`` is the absolute coordinate of pixel ``p`` (``mode=None``, slot attention) or
    its coordinate in slot ``k``'s frame, :func:`~geolayers.slots.relative_grid` (ISA, section
    3: the decoder must not see absolute positions either). The first layer acts on slot and
    coordinate separately, :math:`W_z s_k` once per slot, which is what broadcasting then
    adding a position embedding computes, at a fraction of the cost. With ``kernel_size=1``
    :math:`f` is an MLP per pixel; larger kernels give the convolutional decoder of the paper.

    Args:
        slot_dim: ``D``.
        resolution: ``(H, W)`` of the output.
        hidden_dim: channels of the hidden layers. (default: ``64``)
        num_layers: layers of :math:`f` including the first and the output one, ``>= 2``.
            (default: ``3``)
        out_channels: ``C``. (default: ``3``)
        kernel_size: odd kernel size of the hidden layers. (default: ``1``)
        mode: ``None`` (absolute grid), ``"T"``, ``"TS"`` or ``"TSR"``. (default: ``None``)
        scales_factor: :math:`\delta` of the relative grid. (default: as
            :class:`~geolayers.slots.InvariantSlotAttention` for ``mode``)
        position_init_scale: factor on the default initialisation of :math:`W_g`. An MLP
            on raw coordinates starts with kinks far apart (smooth blobs) and sharpens its
            edges slowly; a larger :math:`W_g` starts it with kinks about a pixel apart, so
            the masks get object boundaries sooner. (default: ``5.0``)

    Shapes:
        ``slots: (B, K, D)`` and, for a relative ``mode``, a ``pose`` of ``B x K`` slots ->
        :class:`DecoderOutput`.

    Example:
        >>> dec = SpatialBroadcastDecoder(16, (8, 8), mode="TS")
        >>> dec(torch.randn(2, 4, 16), geolayers.slots.sample_pose(2, 4)).masks.shape
        torch.Size([2, 4, 8, 8])
    """

    def __init__(
        self,
        slot_dim: int,
        resolution: Sequence[int],
        *,
        hidden_dim: int = 64,
        num_layers: int = 3,
        out_channels: int = 3,
        kernel_size: int = 1,
        mode: str | None = None,
        scales_factor: float | None = None,
        position_init_scale: float = 5.0,
    ) -> None:
        super().__init__()
        self.slot_dim = check_positive_int("slot_dim", slot_dim)
        if len(resolution) != 2:
            raise ValueError(f"resolution must be (H, W), got {tuple(resolution)}")
        self.resolution = (
            check_positive_int("resolution", resolution[0]),
            check_positive_int("resolution", resolution[1]),
        )
        self.hidden_dim = check_positive_int("hidden_dim", hidden_dim)
        self.num_layers = check_positive_int("num_layers", num_layers)
        if num_layers < 2:
            raise ValueError(f"num_layers must be >= 2, got {num_layers}")
        self.out_channels = check_positive_int("out_channels", out_channels)
        self.kernel_size = check_positive_int("kernel_size", kernel_size)
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (same padding), got {kernel_size}")
        self.mode = None if mode is None else check_mode(mode)
        self.scales_factor = None if mode is None else default_scales_factor(mode, scales_factor)
        if not (isinstance(position_init_scale, (int, float)) and position_init_scale > 0):
            raise ValueError(
                f"position_init_scale must be a positive float, got {position_init_scale!r}"
            )
        self.position_init_scale = float(position_init_scale)
        self.slot_in = nn.Linear(slot_dim, hidden_dim)
        self.grid_in = nn.Linear(2, hidden_dim, bias=False)
        if kernel_size == 1:
            hidden = [nn.Linear(hidden_dim, hidden_dim) for _ in range(num_layers - 2)]
        else:
            hidden = [
                nn.Conv2d(hidden_dim, hidden_dim, kernel_size, padding=kernel_size // 2)
                for _ in range(num_layers - 2)
            ]
        self.hidden = nn.ModuleList(hidden)
        self.out = nn.Linear(hidden_dim, out_channels + 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for layer in (self.slot_in, self.grid_in, *self.hidden, self.out):
            layer.reset_parameters()
        with torch.no_grad():
            self.grid_in.weight.mul_(self.position_init_scale)

    def _apply_hidden(self, h: Tensor) -> Tensor:
        """Hidden layers on ``h: (B, K, N, hidden)``."""
        if self.kernel_size == 1:
            for layer in self.hidden:
                h = torch.relu(layer(h))
            return h
        b, k, _, c = h.shape
        x = h.reshape(b * k, *self.resolution, c).permute(0, 3, 1, 2)
        for layer in self.hidden:
            x = torch.relu(layer(x))
        return x.permute(0, 2, 3, 1).reshape(b, k, -1, c)

    def forward(self, slots: Tensor, pose: SlotPose | None = None) -> DecoderOutput:
        if not isinstance(slots, Tensor) or not slots.is_floating_point():
            raise TypeError(
                f"slots must be a floating-point tensor (B, K, D), got {describe(slots)}"
            )
        if slots.dim() != 3 or slots.shape[-1] != self.slot_dim:
            raise ValueError(
                f"slots must have shape (B, K, {self.slot_dim}), got {tuple(slots.shape)}"
            )
        batch, num_slots = slots.shape[:2]
        # Built per call (not a buffer) so it is exact in every dtype the module is cast to.
        grid = position_grid(*self.resolution, dtype=slots.dtype, device=slots.device)
        if self.mode is None:
            # (N, hidden), shared by all slots.
            h = torch.relu(self.slot_in(slots)[:, :, None] + self.grid_in(grid))
        else:
            if pose is None:
                raise ValueError(f"pose is required by a decoder with mode={self.mode!r}")
            check_pose(pose, batch, num_slots, slots)
            code = project_relative_grid(
                grid, pose, self.mode, self.grid_in.weight, self.slot_in(slots), self.scales_factor
            )
            h = torch.relu(code)
        out = self.out(self._apply_hidden(h))  # (B, K, N, C + 1)
        height, width = self.resolution
        out = out.view(batch, num_slots, height, width, -1).permute(0, 1, 4, 2, 3)
        rgb, logits = out[:, :, :-1], out[:, :, -1]
        masks = logits.softmax(dim=1)
        recon = (masks[:, :, None] * rgb).sum(dim=1)
        return DecoderOutput(recon, masks, rgb, logits)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.slot_dim} -> {self.out_channels} x "
            f"{self.resolution[0]} x {self.resolution[1]}, hidden_dim={self.hidden_dim}, "
            f"num_layers={self.num_layers}, kernel_size={self.kernel_size}, mode={self.mode!r})"
        )


__all__ = ["DecoderOutput", "SpatialBroadcastDecoder"]
