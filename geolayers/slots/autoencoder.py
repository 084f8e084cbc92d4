"""Object discovery by reconstruction: encoder, (invariant) slot attention and decoder."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

from geolayers._checks import describe
from geolayers.slots.attention import SlotAttention
from geolayers.slots.decoder import SpatialBroadcastDecoder
from geolayers.slots.encoder import CNNEncoder
from geolayers.slots.frames import SlotPose
from geolayers.slots.invariant import InvariantSlotAttention

#: Model kinds of :meth:`SlotAutoencoder.build`: slot attention and the three ISA modes.
KINDS = {"sa": None, "isa-t": "T", "isa-ts": "TS", "isa-tsr": "TSR"}


class AutoencoderOutput(NamedTuple):
    """What :class:`SlotAutoencoder` returns.

    Attributes:
        recon: ``(B, C, H, W)`` reconstruction.
        masks: ``(B, K, H, W)`` decoder masks (softmax over slots): the segmentation.
        rgb: ``(B, K, C, H, W)`` every slot's decoded image.
        slots: ``(B, K, D)`` slot features.
        attn: ``(B, K, N)`` attention of the last round over the encoder's tokens.
        pose: :class:`~geolayers.slots.SlotPose` (ISA) or ``None`` (SA).
    """

    recon: Tensor
    masks: Tensor
    rgb: Tensor
    slots: Tensor
    attn: Tensor
    pose: SlotPose | None


class SlotAutoencoder(nn.Module):
    """Encoder, slot attention and spatial broadcast decoder, trained by reconstruction
    (Locatello et al. 2020, section 2.2; Biza et al. 2023 for the invariant variants).

    An ISA model passes the encoder's token coordinates to the attention and decodes every slot
    on its own relative grid; an SA model embeds absolute positions in the encoder and decodes
    on the absolute grid. :meth:`build` assembles either from a few sizes.

    Args:
        encoder: :class:`~geolayers.slots.CNNEncoder` (or any module ``images -> (tokens,
            grid)``).
        slot_attention: :class:`~geolayers.slots.SlotAttention` or
            :class:`~geolayers.slots.InvariantSlotAttention`.
        decoder: :class:`~geolayers.slots.SpatialBroadcastDecoder`, with ``mode`` set for ISA.

    Shapes:
        ``images: (B, C, H, W)`` -> :class:`AutoencoderOutput`.

    Example:
        >>> model = SlotAutoencoder.build("isa-ts", (12, 12), num_slots=3, slot_dim=16)
        >>> model(torch.rand(2, 3, 12, 12)).masks.shape
        torch.Size([2, 3, 12, 12])
    """

    def __init__(
        self, encoder: nn.Module, slot_attention: nn.Module, decoder: SpatialBroadcastDecoder
    ) -> None:
        super().__init__()
        self.invariant = isinstance(slot_attention, InvariantSlotAttention)
        if self.invariant != (decoder.mode is not None):
            raise ValueError(
                "decoder.mode must be set exactly when slot_attention is an "
                f"InvariantSlotAttention, got decoder.mode={decoder.mode!r} with "
                f"{type(slot_attention).__name__}"
            )
        if self.invariant and decoder.mode != slot_attention.mode:
            raise ValueError(
                f"decoder.mode ({decoder.mode!r}) must match slot_attention.mode "
                f"({slot_attention.mode!r})"
            )
        if self.invariant and getattr(encoder, "position_embedding", False):
            raise ValueError(
                "encoder must not embed absolute positions for InvariantSlotAttention "
                "(position_embedding=False), or the model is not invariant"
            )
        self.encoder = encoder
        self.slot_attention = slot_attention
        self.decoder = decoder

    @classmethod
    def build(
        cls,
        kind: str,
        resolution: Sequence[int],
        *,
        num_slots: int = 4,
        slot_dim: int = 64,
        iters: int = 3,
        in_channels: int = 3,
        encoder_channels: Sequence[int] = (32, 32, 32, 32),
        encoder_kernel_size: int = 5,
        encoder_strides: Sequence[int] | None = None,
        decoder_hidden_dim: int = 64,
        decoder_layers: int = 3,
        decoder_kernel_size: int = 1,
        implicit_grad: bool = False,
        init: str | None = None,
        grid_hidden_dim: int | None = None,
        decoder_position_init_scale: float = 5.0,
    ) -> SlotAutoencoder:
        """An SA (``kind="sa"``) or ISA (``"isa-t"``, ``"isa-ts"``, ``"isa-tsr"``) model of the
        same size: the encoder differs only by SA's position embedding, the attention by ISA's
        position code and MLP, the decoder only by its grid.

        Args:
            kind: one of :data:`KINDS`.
            resolution: ``(H, W)`` of the images.
            num_slots: ``K``. (default: ``4``)
            slot_dim: slot and token width. (default: ``64``)
            iters: attention rounds. (default: ``3``)
            in_channels: image channels. (default: ``3``)
            encoder_channels: channels of the encoder's convolutions. (default: 4 x 32)
            encoder_kernel_size: (default: ``5``)
            encoder_strides: (default: all 1)
            decoder_hidden_dim: (default: ``64``)
            decoder_layers: (default: ``3``)
            decoder_kernel_size: (default: ``1``, a per-pixel MLP)
            implicit_grad: (default: ``False``)
            init: initial slot features. (default: ``"sampled"`` for SA, ``"learned"`` for
                ISA, as in the two papers)
            grid_hidden_dim: hidden width of ISA's key/value MLP. (default: ``slot_dim``)
            decoder_position_init_scale: see :class:`~geolayers.slots.SpatialBroadcastDecoder`.
                (default: ``5.0``)
        """
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
        mode = KINDS[kind]
        encoder = CNNEncoder(
            in_channels,
            encoder_channels,
            encoder_kernel_size,
            encoder_strides,
            out_dim=slot_dim,
            position_embedding=mode is None,
        )
        if mode is None:
            attention: nn.Module = SlotAttention(
                num_slots,
                slot_dim,
                iters,
                init=init or "sampled",
                implicit_grad=implicit_grad,
            )
        else:
            attention = InvariantSlotAttention(
                num_slots,
                slot_dim,
                iters,
                mode=mode,
                grid_hidden_dim=grid_hidden_dim,
                init=init or "learned",
                implicit_grad=implicit_grad,
            )
        decoder = SpatialBroadcastDecoder(
            slot_dim,
            resolution,
            hidden_dim=decoder_hidden_dim,
            num_layers=decoder_layers,
            out_channels=in_channels,
            kernel_size=decoder_kernel_size,
            mode=mode,
            position_init_scale=decoder_position_init_scale,
        )
        return cls(encoder, attention, decoder)

    def forward(
        self,
        images: Tensor,
        slots: Tensor | None = None,
        pose: SlotPose | None = None,
        *,
        generator: torch.Generator | None = None,
        iters: int | None = None,
    ) -> AutoencoderOutput:
        """Encode, group into slots, decode.

        Args:
            images: ``(B, C, H, W)``.
            slots: ``(B, K, D)`` initial slot features. (default: the attention's own)
            pose: initial poses (ISA only). (default: sampled)
            generator: random source of the initialisation. (default: torch's global one)
            iters: attention rounds for this call. (default: the attention's ``iters``)
        """
        if isinstance(images, Tensor) and images.dim() == 4:
            expected = tuple(self.decoder.resolution)
            if tuple(images.shape[-2:]) != expected:
                raise ValueError(
                    f"images must have spatial size {expected} (the decoder's resolution), got "
                    f"{tuple(images.shape[-2:])}"
                )
        elif not isinstance(images, Tensor) or images.dim() != 4:
            raise ValueError(f"images must be a tensor (B, C, H, W), got {describe(images)}")
        tokens, grid = self.encoder(images)
        if self.invariant:
            out = self.slot_attention(tokens, grid, slots, pose, generator=generator, iters=iters)
        else:
            if pose is not None:
                raise ValueError("pose is only accepted by invariant slot attention models")
            out = self.slot_attention(tokens, slots, generator=generator, iters=iters)
        dec = self.decoder(out.slots, out.pose)
        return AutoencoderOutput(dec.recon, dec.masks, dec.rgb, out.slots, out.attn, out.pose)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.encoder!r}, {self.slot_attention!r}, {self.decoder!r})"


__all__ = ["KINDS", "AutoencoderOutput", "SlotAutoencoder"]
