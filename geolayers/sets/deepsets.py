"""DeepSets: invariant and equivariant models of sets (Zaheer et al. 2017)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import Tensor, nn

from geolayers.ops import segment_reduce_csr
from geolayers.sets.base import SetModule
from geolayers.sets.pool import make_pool


class DeepSets(SetModule):
    r"""Permutation-invariant set model from `"Deep Sets" <https://arxiv.org/abs/1703.06114>`_.

    .. math:: f(X) = \rho\Big(\bigoplus_{x \in X} \phi(x)\Big)

    Args:
        phi: element encoder, applied row-wise: ``(M, D) -> (M, H)``.
        rho: set decoder: ``(B, H') -> (B, C)``, where ``H'`` is the pool's output width.
        pool: ``"sum"``, ``"mean"``, ``"max"``, ``"min"``, or a pooling module such as
            :class:`~geolayers.sets.AttentionPooling`. (default: ``"sum"``)

    Shapes:
        input ``x: (B, N, D)`` with ``mask: (B, N)``, or ``x: (M, D)`` with ``ptr: (B + 1,)`` or
        ``batch: (M,)``; output ``(B, C)``.

    Example:
        >>> model = DeepSets(nn.Linear(3, 16), nn.Linear(16, 1))
        >>> model(torch.randn(10, 3), ptr=torch.tensor([0, 4, 10])).shape
        torch.Size([2, 1])
    """

    def __init__(self, phi: nn.Module, rho: nn.Module, pool: str | nn.Module = "sum") -> None:
        super().__init__()
        self.phi = phi
        self.rho = rho
        self.pool = make_pool(pool)

    def forward_ragged(self, rows: Tensor, ptr: Tensor) -> Tensor:
        return self.rho(self.pool.forward_ragged(self.phi(rows), ptr))


class PermEquivariantLinear(SetModule):
    r"""Permutation-equivariant linear layer on sets (`Zaheer et al. 2017
    <https://arxiv.org/abs/1703.06114>`_, eq. 4 and its pooled variants).

    .. math:: \mathbf{y}_i = \Lambda \mathbf{x}_i + \Gamma \bigoplus_{j \in X} \mathbf{x}_j + \mathbf{b}

    With ``pool="sum"`` and scalar channels this is the :math:`\lambda I + \gamma \mathbf{1}\mathbf{1}^\top`
    layer; ``"mean"`` and ``"max"`` are the paper's pooled variants (``max`` subtracts in the
    paper; here the sign is learned).

    Args:
        in_channels: ``D``.
        out_channels: ``D'``.
        pool: ``"sum"``, ``"mean"``, ``"max"`` or ``"min"``. (default: ``"mean"``)
        bias: add a learned bias. (default: ``True``)

    Shapes:
        ``(B, N, D)`` with ``mask (B, N)`` -> ``(B, N, D')`` (zeros at masked positions), or
        ``(M, D)`` with ``ptr``/``batch`` -> ``(M, D')``.

    Example:
        >>> PermEquivariantLinear(3, 8)(torch.randn(2, 5, 3)).shape
        torch.Size([2, 5, 8])
    """

    def __init__(
        self, in_channels: int, out_channels: int, pool: str = "mean", bias: bool = True
    ) -> None:
        super().__init__()
        self.per_element = True
        if pool not in ("sum", "mean", "max", "min"):
            raise ValueError(f"pool must be 'sum', 'mean', 'max' or 'min', got {pool!r}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.pool = pool
        self.lam = nn.Linear(in_channels, out_channels, bias=bias)
        self.gamma = nn.Linear(in_channels, out_channels, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.lam.reset_parameters()
        self.gamma.reset_parameters()

    def forward_ragged(self, rows: Tensor, ptr: Tensor) -> Tensor:
        pooled = self.gamma(segment_reduce_csr(rows, ptr, self.pool))
        sizes = ptr[1:] - ptr[:-1]
        return self.lam(rows) + pooled.repeat_interleave(sizes, dim=0, output_size=rows.shape[0])

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.in_channels}, {self.out_channels}, pool={self.pool!r})"


class DeepSetsEquivariant(SetModule):
    r"""A stack of :class:`PermEquivariantLinear` layers with an element-wise activation between
    them: a permutation-equivariant map from per-element features to per-element outputs.

    Args:
        channels: widths ``[D, H_1, ..., D']``, at least two entries.
        pool: pooling inside every layer. (default: ``"mean"``)
        activation: element-wise nonlinearity factory. (default: :class:`torch.nn.ReLU`)

    Shapes:
        as :class:`PermEquivariantLinear`, from ``D`` to ``D'`` channels.

    Example:
        >>> DeepSetsEquivariant([3, 32, 1])(torch.randn(7, 3), batch=torch.tensor([0, 0, 1, 1, 1, 2, 2])).shape
        torch.Size([7, 1])
    """

    def __init__(
        self,
        channels: Sequence[int],
        pool: str = "mean",
        activation: Callable[[], nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        if len(channels) < 2:
            raise ValueError(
                f"channels must list at least input and output widths, got {list(channels)}"
            )
        self.channels = list(channels)
        self.in_channels = self.channels[0]
        self.per_element = True
        self.layers = nn.ModuleList(
            PermEquivariantLinear(a, b, pool=pool)
            for a, b in zip(channels[:-1], channels[1:], strict=True)
        )
        self.activation = activation()

    def forward_ragged(self, rows: Tensor, ptr: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            if i > 0:
                rows = self.activation(rows)
            rows = layer.forward_ragged(rows, ptr)
        return rows

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.channels}, pool={self.layers[0].pool!r})"


__all__ = ["DeepSets", "DeepSetsEquivariant", "PermEquivariantLinear"]
