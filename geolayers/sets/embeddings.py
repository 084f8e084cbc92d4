"""Set-element embeddings whose sum pooling is injective on multisets, from
`"Polynomial Width is Sufficient for Set Representation with High-dimensional Features"
<https://arxiv.org/abs/2307.04001>`_ (Wang et al., ICLR 2024), and an empirical check of it.

For sets of at most ``N`` elements in ``R^D`` the paper shows that sum pooling after

* LP (linear + power): :math:`\\psi(x) = [(w_k^\\top x)^p]_{k \\le K,\\, 1 \\le p \\le N}`, width
  :math:`L = KN`, is injective for some weights once :math:`L \\ge N^5 D^2`, and cannot be for
  :math:`L < N(D + 1)`;
* LE (linear + exponential): :math:`\\psi(x) = [\\exp(v_k^\\top x)]_{k \\le L}`, injective for some
  weights once :math:`L \\ge N^4 D^2`.

The upper bounds are constructive and large; random weights at the lower bound already
separate random multisets in practice, which :func:`check_sum_injectivity` measures.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn


def lp_width(set_size: int, in_channels: int, bound: str = "lower") -> int:
    """Width ``L`` of the LP embedding from the paper's bounds: ``"lower"`` = ``N(D + 1)``,
    ``"upper"`` = ``N^5 D^2``.

    Example:
        >>> lp_width(10, 3)
        40
    """
    _check_sizes(set_size, in_channels)
    if bound == "lower":
        return set_size * (in_channels + 1)
    if bound == "upper":
        return set_size**5 * in_channels**2
    raise ValueError(f"bound must be 'lower' or 'upper', got {bound!r}")


def le_width(set_size: int, in_channels: int, bound: str = "lower") -> int:
    """Width ``L`` of the LE embedding: ``"lower"`` = ``N(D + 1)`` (the LP lower bound, the
    smallest width the paper's argument allows), ``"upper"`` = ``N^4 D^2``.

    Example:
        >>> le_width(10, 3, "upper")
        90000
    """
    _check_sizes(set_size, in_channels)
    if bound == "lower":
        return set_size * (in_channels + 1)
    if bound == "upper":
        return set_size**4 * in_channels**2
    raise ValueError(f"bound must be 'lower' or 'upper', got {bound!r}")


def _check_sizes(set_size: int, in_channels: int) -> None:
    if not isinstance(set_size, int) or set_size < 1:
        raise ValueError(f"set_size must be a positive int, got {set_size!r}")
    if not isinstance(in_channels, int) or in_channels < 1:
        raise ValueError(f"in_channels must be a positive int, got {in_channels!r}")


def _resolve_width(
    width: int | str, set_size: int, in_channels: int, rule: Callable[..., int]
) -> int:
    if isinstance(width, str):
        return rule(set_size, in_channels, width)
    if not isinstance(width, int) or width < 1:
        raise ValueError(f"width must be a positive int or 'lower'/'upper', got {width!r}")
    return width


class LPEmbedding(nn.Module):
    r"""Linear + power set-element embedding (LP) of Wang et al. 2024.

    .. math:: \psi(\mathbf{x}) = \big[(\mathbf{w}_k^\top \mathbf{x})^p\big]_{k=1..K,\ p=1..N}

    Args:
        in_channels: element dimension ``D``.
        set_size: largest set size ``N`` (the highest power).
        width: total width ``L`` (rounded up to a multiple of ``N``), or ``"lower"`` /
            ``"upper"`` for the paper's bounds via :func:`lp_width`. (default: ``"lower"``)

    Shapes:
        ``(*, D) -> (*, K N)`` with ``K = ceil(L / N)``.

    Example:
        >>> LPEmbedding(3, set_size=4)(torch.randn(5, 3)).shape
        torch.Size([5, 16])
    """

    def __init__(self, in_channels: int, set_size: int, width: int | str = "lower") -> None:
        super().__init__()
        _check_sizes(set_size, in_channels)
        self.in_channels = in_channels
        self.set_size = set_size
        self.num_projections = math.ceil(
            _resolve_width(width, set_size, in_channels, lp_width) / set_size
        )
        self.out_channels = self.num_projections * set_size
        self.weight = nn.Parameter(torch.empty(self.num_projections, in_channels))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Unit-norm random directions keep the powers (w^T x)^p on the scale of |x|^p.
        nn.init.normal_(self.weight)
        with torch.no_grad():
            self.weight /= self.weight.norm(dim=1, keepdim=True)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.in_channels:
            raise ValueError(
                f"x must have {self.in_channels} channels in its last dim, got {x.shape[-1]}"
            )
        z = x @ self.weight.t()  # (*, K)
        powers = torch.arange(1, self.set_size + 1, device=x.device, dtype=x.dtype)
        return (z.unsqueeze(-1) ** powers).flatten(-2)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.in_channels}, {self.out_channels}, set_size={self.set_size})"


class LEEmbedding(nn.Module):
    r"""Linear + exponential set-element embedding (LE) of Wang et al. 2024.

    .. math:: \psi(\mathbf{x}) = \big[\exp(\mathbf{v}_k^\top \mathbf{x})\big]_{k=1..L}

    Args:
        in_channels: element dimension ``D``.
        set_size: largest set size ``N`` (used to derive the width).
        width: ``L``, or ``"lower"`` / ``"upper"`` via :func:`le_width`. (default: ``"lower"``)

    Shapes:
        ``(*, D) -> (*, L)``.

    Example:
        >>> LEEmbedding(3, set_size=4)(torch.randn(5, 3)).shape
        torch.Size([5, 16])
    """

    def __init__(self, in_channels: int, set_size: int, width: int | str = "lower") -> None:
        super().__init__()
        _check_sizes(set_size, in_channels)
        self.in_channels = in_channels
        self.set_size = set_size
        self.out_channels = _resolve_width(width, set_size, in_channels, le_width)
        self.weight = nn.Parameter(torch.empty(self.out_channels, in_channels))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Variance 1/D keeps v^T x of order 1 for standardised inputs, so exp does not overflow.
        nn.init.normal_(self.weight, std=1.0 / math.sqrt(self.in_channels))

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.in_channels:
            raise ValueError(
                f"x must have {self.in_channels} channels in its last dim, got {x.shape[-1]}"
            )
        return torch.exp(x @ self.weight.t())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.in_channels}, {self.out_channels}, set_size={self.set_size})"


@dataclass
class InjectivityReport:
    """Outcome of :func:`check_sum_injectivity`.

    Attributes:
        min_separation: smallest relative distance ``|Φ(X) - Φ(X')| / max(|Φ(X)|, |Φ(X')|)``
            over the distinct multiset pairs tried.
        max_permutation_gap: largest relative distance between a multiset and a reordering of
            it (should be rounding error).
        margin: the separation required.
        pairs: number of distinct pairs tried.
    """

    min_separation: float
    max_permutation_gap: float
    margin: float
    pairs: int

    @property
    def injective(self) -> bool:
        return self.min_separation > self.margin and self.max_permutation_gap < self.margin


def check_sum_injectivity(
    embedding: Callable[[Tensor], Tensor],
    in_channels: int,
    set_size: int,
    *,
    num_pairs: int = 256,
    margin: float = 1e-6,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
) -> InjectivityReport:
    r"""Test empirically whether :math:`X \mapsto \sum_{x \in X} \psi(x)` separates multisets.

    Draws multisets of 1 to ``set_size`` elements of ``R^D`` (standard normal) and, for each, four
    partners: a reordering (must map to the same point) and three distinct multisets that must
    map at least ``margin`` apart (relative): an independent multiset, one with a single element
    perturbed, and the hard case for per-coordinate pooling, where one coordinate is swapped
    between two elements so that every coordinate's multiset of values is unchanged.

    Args:
        embedding: ``psi``, ``(M, D) -> (M, L)``; a module is evaluated in ``dtype`` on a copy.
        in_channels: ``D``.
        set_size: largest multiset size ``N``.
        num_pairs: multisets drawn. (default: ``256``)
        margin: required relative separation. (default: ``1e-6``)
        generator: random source. (default: ``None``)
        dtype: evaluation dtype. (default: ``torch.float64``)

    Returns:
        :class:`InjectivityReport`; ``report.injective`` is the verdict.

    Example:
        >>> check_sum_injectivity(LPEmbedding(3, set_size=4), 3, 4).injective
        True
    """
    _check_sizes(set_size, in_channels)
    if isinstance(embedding, nn.Module):
        import copy

        embedding = copy.deepcopy(embedding).to(dtype)
    gen = generator if generator is not None else torch.Generator().manual_seed(0)

    def pooled(x: Tensor) -> Tensor:
        with torch.no_grad():
            return embedding(x).sum(0)

    def rel(a: Tensor, b: Tensor) -> float:
        scale = torch.maximum(a.norm(), b.norm()).clamp_min(torch.finfo(dtype).tiny)
        return float((a - b).norm() / scale)

    min_sep, max_gap, pairs = math.inf, 0.0, 0
    for _ in range(num_pairs):
        n = int(torch.randint(1, set_size + 1, (1,), generator=gen))
        x = torch.randn(n, in_channels, generator=gen, dtype=dtype)
        px = pooled(x)
        max_gap = max(max_gap, rel(px, pooled(x[torch.randperm(n, generator=gen)])))
        partners = [torch.randn(n, in_channels, generator=gen, dtype=dtype)]
        bumped = x.clone()
        bumped[int(torch.randint(0, n, (1,), generator=gen))] += 0.1 * torch.randn(
            in_channels, generator=gen, dtype=dtype
        )
        partners.append(bumped)
        if n >= 2 and in_channels >= 2:
            swapped = x.clone()
            d = int(torch.randint(0, in_channels, (1,), generator=gen))
            swapped[0, d], swapped[1, d] = x[1, d], x[0, d]
            partners.append(swapped)
        for other in partners:
            min_sep = min(min_sep, rel(px, pooled(other)))
            pairs += 1
    return InjectivityReport(min_sep, max_gap, margin, pairs)
