"""Convolutional image encoder that turns an image into tokens with coordinates."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from geolayers._checks import check_positive_int, describe


class CNNEncoder(nn.Module):
    r"""The image encoder of slot attention (Locatello et al. 2020, appendix E.1): a stack of
    ``same``-padded convolutions with ReLU, an optional absolute position embedding, then
    flatten, LayerNorm and a two-layer MLP per token.

    Every token comes with the coordinates of its receptive-field centre in the image's
    ``[-1, 1]`` frame (:func:`~geolayers.slots.position_grid` convention, pixel centres), so
    strided encoders keep the coordinates of the full image. Plain slot attention needs
    ``position_embedding=True`` (a linear map of the coordinates added to the features, the
    paper's soft position embedding); invariant slot attention takes the coordinates as its
    ``grid`` instead and must not see absolute positions, or it would not be invariant.

    Args:
        in_channels: image channels ``C``. (default: ``3``)
        channels: output channels of each convolution. (default: ``(32, 32, 32, 32)``)
        kernel_size: odd kernel size of every convolution. (default: ``5``)
        strides: stride of each convolution. (default: all ``1``)
        out_dim: token width ``D``. (default: ``64``)
        position_embedding: add the absolute position embedding. (default: ``True``)

    Shapes:
        ``images: (B, C, H, W)`` -> ``tokens: (B, N, D)`` and ``grid: (N, 2)``, with
        ``N = h * w`` the size of the last feature map.

    Example:
        >>> tokens, grid = CNNEncoder(channels=(8, 8), out_dim=16)(torch.rand(2, 3, 10, 10))
        >>> tokens.shape, grid.shape
        (torch.Size([2, 100, 16]), torch.Size([100, 2]))
    """

    def __init__(
        self,
        in_channels: int = 3,
        channels: Sequence[int] = (32, 32, 32, 32),
        kernel_size: int = 5,
        strides: Sequence[int] | None = None,
        out_dim: int = 64,
        position_embedding: bool = True,
    ) -> None:
        super().__init__()
        self.in_channels = check_positive_int("in_channels", in_channels)
        self.channels = [check_positive_int("channels", c) for c in channels]
        if not self.channels:
            raise ValueError("channels must list at least one convolution, got []")
        self.kernel_size = check_positive_int("kernel_size", kernel_size)
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (same padding), got {kernel_size}")
        strides = [1] * len(self.channels) if strides is None else list(strides)
        if len(strides) != len(self.channels):
            raise ValueError(
                f"strides must have one entry per convolution ({len(self.channels)}), got "
                f"{len(strides)}"
            )
        self.strides = [check_positive_int("strides", s) for s in strides]
        self.out_dim = check_positive_int("out_dim", out_dim)
        self.position_embedding = bool(position_embedding)
        layers: list[nn.Module] = []
        prev = in_channels
        for c, s in zip(self.channels, self.strides, strict=True):
            layers += [
                nn.Conv2d(prev, c, kernel_size, stride=s, padding=kernel_size // 2),
                nn.ReLU(),
            ]
            prev = c
        self.convs = nn.Sequential(*layers)
        self.pos = nn.Linear(2, prev) if self.position_embedding else None
        self.norm = nn.LayerNorm(prev)
        self.mlp = nn.Sequential(nn.Linear(prev, out_dim), nn.ReLU(), nn.Linear(out_dim, out_dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for module in self.modules():
            if module is not self and hasattr(module, "reset_parameters"):
                module.reset_parameters()

    def feature_grid(
        self, height: int, width: int, *, dtype: torch.dtype, device: torch.device
    ) -> Tensor:
        """Coordinates ``(h * w, 2)`` of the final feature map's tokens in the input image.

        With same padding, output pixel ``j`` of a convolution of stride ``s`` is centred on
        input pixel ``j * s``; over the stack, on pixel ``j * prod(strides)``.
        """
        h, w = height, width
        for s in self.strides:
            h, w = (h - 1) // s + 1, (w - 1) // s + 1
        step = 1
        for s in self.strides:
            step *= s
        ys = (torch.arange(h, dtype=dtype, device=device) * (2 * step) + 1) / height - 1
        xs = (torch.arange(w, dtype=dtype, device=device) * (2 * step) + 1) / width - 1
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")
        return torch.stack([xx, yy], dim=-1).reshape(-1, 2)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        if not isinstance(images, Tensor) or not images.is_floating_point():
            raise TypeError(
                f"images must be a floating-point tensor (B, C, H, W), got {describe(images)}"
            )
        if images.dim() != 4 or images.shape[1] != self.in_channels:
            raise ValueError(
                f"images must have shape (B, {self.in_channels}, H, W), got {tuple(images.shape)}"
            )
        features = self.convs(images)
        grid = self.feature_grid(
            images.shape[2], images.shape[3], dtype=images.dtype, device=images.device
        )
        tokens = features.flatten(2).transpose(1, 2)
        if self.pos is not None:
            tokens = tokens + self.pos(grid)
        return self.mlp(self.norm(tokens)), grid

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.in_channels} -> {self.channels} -> {self.out_dim}, "
            f"kernel_size={self.kernel_size}, strides={self.strides}, "
            f"position_embedding={self.position_embedding})"
        )


__all__ = ["CNNEncoder"]
