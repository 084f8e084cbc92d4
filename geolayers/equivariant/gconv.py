r"""Group convolutions on images for the rotation/reflection groups ``C_n`` and ``D_n``.

From `"Group Equivariant Convolutional Networks" <https://arxiv.org/abs/1602.07576>`_ (Cohen &
Welling, ICML 2016). A finite group :math:`G` of orthogonal ``2 x 2`` matrices (``Cyclic(n)``,
``Dihedral(n)``, or any finite :class:`~geolayers.groups.Group` with ``d == 2``) acts on an image
:math:`f: \mathbb{Z}^2 \to \mathbb{R}^C` by :math:`(u \cdot f)(p) = f(u^{-1} p)` and on a feature
map over the group, :math:`f: G \times \mathbb{Z}^2 \to \mathbb{R}^C`, by
:math:`(u \cdot f)(h, p) = f(u^{-1} h, u^{-1} p)` (the regular representation on the group axis).
The two layers are the paper's eq. (10) and (11), written as cross-correlations:

.. math::

    [f \star \psi](g, x) = \sum_{p} \sum_{k} f_k(x + p)\, \psi_k(g^{-1} p)
    \qquad \text{(lifting)},

    [f \star \psi](g, x) = \sum_{h \in G} \sum_{p} \sum_{k} f_k(h, x + p)\,
    \psi_k(g^{-1} h, g^{-1} p) \qquad \text{(group convolution)},

so the filter bank of output element :math:`g` is the base filter transformed by :math:`g`:
rotated/reflected on the pixel grid and, for group convolutions, with its group axis permuted.
Both are equivariant, :math:`\Phi(u \cdot f) = u \cdot \Phi(f)`.

Coordinates: a pixel ``(row, col)`` of an ``H x W`` grid is the point
:math:`p = (col - \frac{W-1}{2},\ \frac{H-1}{2} - row)` (``x`` to the right, ``y`` up: the
``(-Y, X)`` layout of escnn), so the rotation by +90 degrees is ``torch.rot90(x, 1, dims=(-2,
-1))`` and ``diag(1, -1)`` is ``x.flip(-2)``.

**Exactness.** Elements whose matrices have entries in ``{-1, 0, 1}`` (multiples of 90 degrees and
the reflections about the axes and diagonals) map the pixel grid onto itself: their filters are
index permutations of the base filter, precomputed once, and equivariance to them is exact (to
rounding). Other elements (the 45-degree rotations of ``C_8``, the reflections of ``D_8`` about
the 22.5-degree axes) do not: their filters are obtained by **bilinear interpolation** of the
base filter, as in `"Roto-Translation Covariant Convolutional Networks for Medical Image
Analysis" <https://arxiv.org/abs/1804.03393>`_ (Bekkers et al., MICCAI 2018), and equivariance
to them only holds approximately, best on smooth inputs. Filters of such groups are supported
on a disk (radius ``k/2``) by default so that every transformed copy keeps the same support; the
disk is invariant under the exact elements, so exactness on the 90-degree subgroup is kept.

Zero padding of ``k // 2`` keeps ``H x W`` and commutes with the exact elements about the image
center, so equivariance to them holds on the whole image, borders included.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geolayers._checks import check_positive_int, describe
from geolayers.groups import Group

__all__ = [
    "LiftingConv2d",
    "GroupConv2d",
    "GroupPool",
    "GroupCNN",
    "group_max_pool",
    "inverse_index",
    "multiplication_table",
    "on_pixel_grid",
    "planar_group_elements",
    "transform_image",
    "transform_group_image",
]

#: Matrices closer than this (max entry) are the same element, as in ``Group.elements``.
_MATCH_ATOL = 1e-6

#: A sampling coordinate this close to an integer is a pixel center: cos(pi/2) is 6e-17 in
#: float64, not 0, and must not turn an exact rotation into an interpolation.
_GRID_ATOL = 1e-9


# -- group tables ---------------------------------------------------------------------------------


def _check_finite_group(group: object, name: str = "group") -> Tensor:
    """Elements ``(|G|, d, d)`` of a finite :class:`Group`, or a TypeError/ValueError naming it."""
    if not isinstance(group, Group):
        raise TypeError(f"{name} must be a geolayers Group, got {type(group).__name__}")
    if not group.is_finite:
        raise ValueError(f"{name} must be a finite group, got {group!r}")
    return group.elements()


def planar_group_elements(group: object, name: str = "group") -> Tensor:
    """Elements ``(|G|, 2, 2)`` float64 of a finite group of orthogonal 2x2 matrices (rotations
    and reflections of images), or a TypeError/ValueError naming ``name``.

    Example:
        >>> from geolayers.groups import Dihedral
        >>> planar_group_elements(Dihedral(4)).shape
        torch.Size([8, 2, 2])
    """
    elems = _check_finite_group(group, name)
    if group.d != 2:
        raise ValueError(
            f"{name} must act on the plane (d == 2), like Cyclic(n) or Dihedral(n); got {group!r} "
            f"with d={group.d}"
        )
    eye = torch.eye(2, dtype=elems.dtype)
    if not bool(torch.allclose(elems @ elems.mT, eye.expand_as(elems), atol=1e-9)):
        raise ValueError(f"{name} must consist of rotations and reflections (orthogonal matrices)")
    return elems


def _find(elems: Tensor, g: Tensor, what: str) -> Tensor:
    """Indices ``(m,)`` of the matrices ``g: (m, d, d)`` in ``elems: (n, d, d)``."""
    dist = (g[:, None].to(elems.dtype) - elems[None]).abs().flatten(2).amax(-1)
    best, idx = dist.min(dim=1)
    if bool((best > _MATCH_ATOL).any()):
        bad = int((best > _MATCH_ATOL).nonzero()[0])
        where = what if g.shape[0] == 1 else f"{what}[{bad}]"
        raise ValueError(f"{where} is not an element of the group (no matching matrix)")
    return idx


def multiplication_table(group: Group) -> Tensor:
    r"""The Cayley table of a finite group, read off its matrices: ``table[a, b]`` is the index
    of :math:`g_a g_b` in ``group.elements()``.

    Row ``u`` is the permutation of the regular representation of :math:`g_u`
    (:math:`e_h \mapsto e_{g_u h}`), the permutation of the group axis of a feature map.

    Args:
        group: a finite group (``elements()`` enumerable).

    Returns:
        ``(|G|, |G|)`` long.

    Raises:
        ValueError: if a product of two elements is not in ``elements()`` (not a group).

    Example:
        >>> from geolayers.groups import Cyclic
        >>> multiplication_table(Cyclic(3))
        tensor([[0, 1, 2],
                [1, 2, 0],
                [2, 0, 1]])
    """
    elems = _check_finite_group(group)
    rows = [_find(elems, elems[a] @ elems, "product") for a in range(elems.shape[0])]
    return torch.stack(rows)


def inverse_index(table: Tensor) -> Tensor:
    """``inv[a]``: index of :math:`g_a^{-1}` (the ``b`` with ``table[a, b] == 0``, the identity),
    from a :func:`multiplication_table` ``(|G|, |G|)``; returns ``(|G|,)`` long.

    Example:
        >>> from geolayers.groups import Cyclic
        >>> inverse_index(multiplication_table(Cyclic(4)))
        tensor([0, 3, 2, 1])
    """
    return (table == 0).to(torch.long).argmax(dim=1)


def on_pixel_grid(g: Tensor) -> Tensor:
    """``(n,)`` bool: which matrices ``(n, 2, 2)`` have entries in {-1, 0, 1} (to ``1e-9``), i.e.
    map the pixel grid onto itself (exact rotations/reflections of images).

    Example:
        >>> from geolayers.groups import Cyclic
        >>> on_pixel_grid(Cyclic(8).elements()).tolist()
        [True, False, True, False, True, False, True, False]
    """
    return ((g - g.round()).abs() <= _GRID_ATOL).flatten(1).all(dim=1)


# -- sampling on the pixel grid -------------------------------------------------------------------


def _bilinear_taps(
    g: Tensor, height: int, width: int, support: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    r"""Interpolation taps of :math:`(g \cdot f)(p) = f(g^{-1} p)` on an ``height x width`` grid.

    Args:
        g: ``(n, 2, 2)`` float64 orthogonal matrices.
        support: ``(height * width,)`` bool pixels where ``f`` (and the result) may be non-zero;
            taps outside it read zero. (default: all)

    Returns:
        ``index: (n, H*W, 4)`` into the flattened image with one zero slot appended at ``H*W``,
        and ``weight: (n, H*W, 4)`` float64; a pixel center that ``g^{-1}`` maps onto a pixel
        center gets weight exactly 1 on its first tap and 0 on the others.
    """
    rows = torch.arange(height, dtype=torch.float64)
    cols = torch.arange(width, dtype=torch.float64)
    ch, cw = (height - 1) / 2, (width - 1) / 2
    row, col = torch.meshgrid(rows, cols, indexing="ij")
    points = torch.stack([col.reshape(-1) - cw, ch - row.reshape(-1)], -1)  # (P, 2) as (x, y)
    # g^{-1} = g^T for orthogonal g: q[n, k] = g[n]^T p[k].
    q = torch.einsum("nji,kj->nki", g.to(torch.float64), points)
    src = torch.stack([ch - q[..., 1], q[..., 0] + cw], -1)  # (n, P, 2) as (row, col)
    snapped = src.round()
    src = torch.where((src - snapped).abs() <= _GRID_ATOL, snapped, src)
    base = src.floor()
    frac = src - base
    r0, c0 = base[..., 0].long(), base[..., 1].long()
    fr, fc = frac[..., 0], frac[..., 1]
    taps_r = torch.stack([r0, r0, r0 + 1, r0 + 1], -1)
    taps_c = torch.stack([c0, c0 + 1, c0, c0 + 1], -1)
    weight = torch.stack([(1 - fr) * (1 - fc), (1 - fr) * fc, fr * (1 - fc), fr * fc], -1)
    size = height * width
    inside = (taps_r >= 0) & (taps_r < height) & (taps_c >= 0) & (taps_c < width)
    index = torch.where(inside, taps_r * width + taps_c, size)
    if support is not None:
        padded = torch.cat([support, torch.zeros(1, dtype=torch.bool)])
        index = torch.where(padded[index], index, size)
        index = torch.where(support[None, :, None], index, size)
    return index, weight


def _apply_taps(flat: Tensor, index: Tensor, weight: Tensor | None) -> Tensor:
    """``flat: (..., P)`` sampled at ``index: (..., T)`` (slot ``P`` reads 0), weighted and summed
    over the taps; ``weight=None`` means a single tap of weight 1 (a pure gather)."""
    padded = F.pad(flat, (0, 1))
    out = padded[..., index]
    if weight is None:
        return out[..., 0]
    return (out * weight.to(out.dtype)).sum(-1)


def transform_image(g: Tensor, x: Tensor) -> Tensor:
    r"""Act on images by a rotation/reflection about their center:
    :math:`(g \cdot f)(p) = f(g^{-1} p)`.

    Elements with entries in ``{-1, 0, 1}`` are exact (``torch.rot90`` / ``flip``; a 90-degree
    rotation of an ``H x W`` image is ``W x H``); any other orthogonal ``g`` resamples the same
    ``H x W`` grid by bilinear interpolation with zeros outside (approximate, see the module notes).

    Args:
        g: ``(2, 2)`` orthogonal matrix.
        x: ``(..., H, W)``.

    Returns:
        The transformed images, ``(..., H, W)`` (``(..., W, H)`` for an exact odd quarter-turn).

    Example:
        >>> from geolayers.groups import Cyclic
        >>> transform_image(Cyclic(4).elements()[1], torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
        tensor([[2., 4.],
                [1., 3.]])
    """
    if not isinstance(g, Tensor) or g.shape != (2, 2):
        raise ValueError(f"g must be a (2, 2) matrix, got {describe(g)}")
    if not isinstance(x, Tensor) or x.dim() < 2:
        raise ValueError(f"x must be a (..., H, W) tensor, got {describe(x)}")
    g = g.detach().to(device="cpu", dtype=torch.float64)
    if not bool(torch.allclose(g @ g.T, torch.eye(2, dtype=torch.float64), atol=1e-9)):
        raise ValueError(f"g must be orthogonal (a rotation or reflection), got {g.tolist()}")
    if bool(on_pixel_grid(g[None])[0]):
        m = g.round()
        if float(torch.linalg.det(m)) < 0:
            # g = R^k diag(1, -1), and diag(1, -1) sends y to -y: reverse the rows.
            x = x.flip(-2)
            m = m @ torch.diag(torch.tensor([1.0, -1.0], dtype=torch.float64))
        quarter = {(1, 0): 0, (0, 1): 1, (-1, 0): 2, (0, -1): 3}[(int(m[0, 0]), int(m[1, 0]))]
        return torch.rot90(x, quarter, dims=(-2, -1))
    height, width = x.shape[-2:]
    index, weight = _bilinear_taps(g[None], height, width)
    flat = x.reshape(*x.shape[:-2], height * width)
    out = _apply_taps(flat, index[0].to(x.device), weight[0].to(x.device))
    return out.reshape(x.shape)


def transform_group_image(group: Group, g: Tensor, x: Tensor) -> Tensor:
    r"""Act on feature maps over a group:
    :math:`(g \cdot f)(h, p) = f(g^{-1} h, g^{-1} p)`, i.e. the spatial action of
    :func:`transform_image` and the regular representation on the group axis.

    Channel ``h`` of the group axis moves to ``index(g h)`` (row ``index(g)`` of
    :func:`multiplication_table`), as in ``Regular(group)``.

    Args:
        group: the finite planar group of the feature map (``Cyclic(n)``, ``Dihedral(n)``, ...).
        g: ``(2, 2)``, an element of ``group``.
        x: ``(B, C, |G|, H, W)``.

    Returns:
        ``(B, C, |G|, H, W)`` (``W, H`` swapped for an odd quarter-turn).

    Example:
        >>> from geolayers.groups import Cyclic
        >>> transform_group_image(Cyclic(4), Cyclic(4).elements()[1], torch.eye(4)[None, :, :, None, None])[0, :, :, 0, 0]
        tensor([[0., 1., 0., 0.],
                [0., 0., 1., 0.],
                [0., 0., 0., 1.],
                [1., 0., 0., 0.]])
    """
    elems = planar_group_elements(group)
    if not isinstance(x, Tensor) or x.dim() != 5 or x.shape[2] != elems.shape[0]:
        raise ValueError(f"x must have shape (B, C, |G|={elems.shape[0]}, H, W), got {describe(x)}")
    if not isinstance(g, Tensor) or g.shape != (2, 2):
        raise ValueError(f"g must be a (2, 2) matrix, got {describe(g)}")
    u = int(_find(elems, g.detach().cpu().to(torch.float64)[None], "g")[0])
    table = multiplication_table(group)
    # out[:, :, g h] = x[:, :, h]  <=>  out[:, :, j] = x[:, :, g^{-1} j].
    source = table[inverse_index(table)[u]].to(x.device)
    return transform_image(g, x.index_select(2, source))


# -- layers ---------------------------------------------------------------------------------------


class _GroupConvBase(nn.Module):
    """Shared set-up: group tables, filter sampling taps, parameters."""

    weight: Tensor
    bias: Tensor | None

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        group: Group,
        kernel_size: int,
        bias: bool,
        mask: bool | None,
        lifting: bool,
    ) -> None:
        super().__init__()
        self.in_channels = check_positive_int("in_channels", in_channels)
        self.out_channels = check_positive_int("out_channels", out_channels)
        elems = planar_group_elements(group)
        self.kernel_size = check_positive_int("kernel_size", kernel_size)
        if kernel_size % 2 == 0:
            raise ValueError(
                f"kernel_size must be odd (a filter centered on a pixel), got {kernel_size}"
            )
        if not isinstance(bias, bool):
            raise TypeError(f"bias must be a bool, got {type(bias).__name__}")
        if mask is not None and not isinstance(mask, bool):
            raise TypeError(f"mask must be a bool or None, got {type(mask).__name__}")
        self.group = group
        self.group_order = elems.shape[0]
        self.exact = bool(on_pixel_grid(elems).all())
        self.mask = (not self.exact) if mask is None else mask
        k = kernel_size
        support = None
        if self.mask:
            # The disk inscribed in the k x k square: invariant under every rotation, so all the
            # transformed filters share one support.
            c = (k - 1) / 2
            ii, jj = torch.meshgrid(torch.arange(k), torch.arange(k), indexing="ij")
            support = ((ii - c) ** 2 + (jj - c) ** 2 <= (c + 0.5) ** 2).reshape(-1)
        table = multiplication_table(group)
        index, weight = _bilinear_taps(elems, k, k, support)  # (n, k*k, 4)
        if self.exact:
            index, weight = index[..., :1], None
        else:
            # Multiples of 2^-24 are exact in float32 and float64 alike, so the weights do not
            # depend on the module's dtype, and elements g and u g (u a grid symmetry), whose
            # sampling points agree to rounding, get identical weights: that keeps the 90-degree
            # subgroup of C_8 / D_8 exact in both dtypes.
            weight = torch.round(weight * 2.0**24) / 2.0**24
        n, size = self.group_order, k * k
        if not lifting:
            # Output element r reads input group channel r^{-1} h for channel h: fold that
            # permutation and the spatial taps into one index over the flattened (h, pixel) axis.
            perm = table[inverse_index(table)]  # perm[r, h] = index(r^{-1} h)
            folded = perm[:, :, None, None] * size + index[:, None]  # (n_r, n_h, k*k, taps)
            index = torch.where(index[:, None] == size, n * size, folded)
            if weight is not None:
                weight = weight[:, None]
        self.register_buffer("_index", index, persistent=False)
        self.register_buffer(
            "_tap_weight",
            None if weight is None else weight.to(torch.get_default_dtype()),
            persistent=False,
        )
        shape = (
            (out_channels, in_channels, k, k) if lifting else (out_channels, in_channels, n, k, k)
        )
        self.weight = nn.Parameter(torch.empty(shape))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming-uniform weights as ``nn.Conv2d`` (fan-in counts the group axis too)."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight[0].numel()
            bound = 1 / math.sqrt(fan_in)
            nn.init.uniform_(self.bias, -bound, bound)

    def _expand(self, flat: Tensor) -> Tensor:
        """The transformed filters gathered (and interpolated) from ``flat: (O, I, P)``; taps
        outside the filter support read the zero slot, which applies the disk mask."""
        return _apply_taps(flat, self._index, self._tap_weight)

    def extra_repr(self) -> str:
        out = (
            f"{self.in_channels}, {self.out_channels}, group={self.group!r}, "
            f"kernel_size={self.kernel_size}"
        )
        if self.bias is None:
            out += ", bias=False"
        if self.mask:
            out += ", mask=disk"
        return out

    def _conv(self, x: Tensor, weight: Tensor) -> Tensor:
        bias = None
        if self.bias is not None:
            bias = self.bias.repeat_interleave(self.group_order)
        return F.conv2d(x, weight, bias, padding=self.kernel_size // 2)


class LiftingConv2d(_GroupConvBase):
    r"""Lifting convolution from images to feature maps over ``G`` (Cohen & Welling 2016, eq. 10).

    .. math::

        y_o(g, x) = b_o + \sum_{i} \sum_{p} f_i(x + p)\, \psi_{o i}(g^{-1} p)

    Output channel ``(o, g)`` correlates the input with the base filter :math:`\psi_o`
    transformed by :math:`g` (a pixel permutation for rotations by multiples of 90 degrees and
    axis/diagonal reflections; bilinear interpolation otherwise, see the module notes;
    ``layer.exact`` says whether every element is a pixel permutation). The bias is shared over
    the group axis.

    Args:
        in_channels: input channels ``C_in``.
        out_channels: output channels ``C_out`` (each with ``|G|`` group channels).
        group: a finite group of 2x2 rotations/reflections, e.g. ``Cyclic(4)``, ``Dihedral(8)``.
        kernel_size: odd side ``k`` of the square filters; padding ``k // 2`` keeps ``H x W``.
        bias: learn a bias per output channel. (default: ``True``)
        mask: restrict filters to the inscribed disk; ``None`` does so exactly when some element
            is not a grid symmetry (``C_8``, ``D_8``). (default: ``None``)

    Shapes:
        - input: ``(B, C_in, H, W)``
        - output: ``(B, C_out, |G|, H, W)``

    Example:
        >>> from geolayers.groups import Cyclic
        >>> LiftingConv2d(3, 8, Cyclic(4), kernel_size=3)(torch.randn(2, 3, 9, 9)).shape
        torch.Size([2, 8, 4, 9, 9])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        group: Group,
        kernel_size: int,
        *,
        bias: bool = True,
        mask: bool | None = None,
    ) -> None:
        super().__init__(in_channels, out_channels, group, kernel_size, bias, mask, lifting=True)

    def filters(self) -> Tensor:
        """The transformed filter bank ``(C_out * |G|, C_in, k, k)`` used by :meth:`forward`."""
        o, i, k = self.out_channels, self.in_channels, self.kernel_size
        flat = self._expand(self.weight.reshape(o, i, k * k))  # (O, I, n, k*k)
        return flat.permute(0, 2, 1, 3).reshape(o * self.group_order, i, k, k)

    def forward(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor) or x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"x must have shape (B, C_in={self.in_channels}, H, W), got {describe(x)}"
            )
        y = self._conv(x, self.filters())
        return y.reshape(x.shape[0], self.out_channels, self.group_order, *y.shape[-2:])


class GroupConv2d(_GroupConvBase):
    r"""Group convolution between feature maps over ``G`` (Cohen & Welling 2016, eq. 11).

    .. math::

        y_o(g, x) = b_o + \sum_{i} \sum_{h \in G} \sum_{p} f_i(h, x + p)\,
        \psi_{o i}(g^{-1} h, g^{-1} p)

    The filter of output element ``g`` is the base filter rotated/reflected by ``g`` on the grid
    and with its group axis permuted by the regular representation (:math:`h \mapsto g^{-1} h`);
    both index maps are precomputed once. The bias is shared over the group axis.

    Args:
        in_channels: input channels ``C_in`` (each with ``|G|`` group channels).
        out_channels: output channels ``C_out``.
        group: the finite planar group of the input, e.g. ``Dihedral(4)``.
        kernel_size: odd side ``k`` of the square filters; padding ``k // 2`` keeps ``H x W``.
        bias: learn a bias per output channel. (default: ``True``)
        mask: restrict filters to the inscribed disk; ``None`` does so exactly when some element
            is not a grid symmetry. (default: ``None``)

    Shapes:
        - input: ``(B, C_in, |G|, H, W)``
        - output: ``(B, C_out, |G|, H, W)``

    Example:
        >>> from geolayers.groups import Dihedral
        >>> GroupConv2d(4, 6, Dihedral(4), kernel_size=3)(torch.randn(2, 4, 8, 7, 7)).shape
        torch.Size([2, 6, 8, 7, 7])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        group: Group,
        kernel_size: int,
        *,
        bias: bool = True,
        mask: bool | None = None,
    ) -> None:
        super().__init__(in_channels, out_channels, group, kernel_size, bias, mask, lifting=False)

    def filters(self) -> Tensor:
        """The transformed filter bank ``(C_out * |G|, C_in * |G|, k, k)`` used by :meth:`forward`."""
        o, i, n, k = self.out_channels, self.in_channels, self.group_order, self.kernel_size
        flat = self._expand(self.weight.reshape(o, i, n * k * k))  # (O, I, n_r, n_h, k*k)
        return flat.permute(0, 2, 1, 3, 4).reshape(o * n, i * n, k, k)

    def forward(self, x: Tensor) -> Tensor:
        n = self.group_order
        if not isinstance(x, Tensor) or x.dim() != 5 or x.shape[1:3] != (self.in_channels, n):
            raise ValueError(
                f"x must have shape (B, C_in={self.in_channels}, |G|={n}, H, W), got {describe(x)}"
            )
        b, _, _, h, w = x.shape
        y = self._conv(x.reshape(b, self.in_channels * n, h, w), self.filters())
        return y.reshape(b, self.out_channels, n, h, w)


def group_max_pool(x: Tensor) -> Tensor:
    r"""Max over the group axis, :math:`y(x) = \max_{g \in G} f(g, x)`: ``(B, C, |G|, H, W) ->
    (B, C, H, W)``. The result transforms like an image (spatially only): invariant to the
    group-axis permutation.

    Example:
        >>> group_max_pool(torch.arange(4.0).reshape(1, 1, 4, 1, 1)).flatten()
        tensor([3.])
    """
    if not isinstance(x, Tensor) or x.dim() != 5:
        raise ValueError(f"x must have shape (B, C, |G|, H, W), got {describe(x)}")
    return x.amax(dim=2)


class GroupPool(nn.Module):
    r"""Pooling over the group axis: ``(B, C, |G|, H, W) -> (B, C, H, W)``.

    Max (or mean) over :math:`g` is symmetric in the group channels, so the output is invariant to
    their permutation and transforms like an image under the spatial action.

    Args:
        reduction: ``"max"`` or ``"mean"``. (default: ``"max"``)

    Shapes:
        - input: ``(B, C, |G|, H, W)``
        - output: ``(B, C, H, W)``

    Example:
        >>> GroupPool("mean")(torch.ones(2, 3, 4, 5, 5)).shape
        torch.Size([2, 3, 5, 5])
    """

    def __init__(self, reduction: str = "max") -> None:
        super().__init__()
        if reduction not in ("max", "mean"):
            raise ValueError(f"reduction must be 'max' or 'mean', got {reduction!r}")
        self.reduction = reduction

    def forward(self, x: Tensor) -> Tensor:
        if self.reduction == "max":
            return group_max_pool(x)
        if not isinstance(x, Tensor) or x.dim() != 5:
            raise ValueError(f"x must have shape (B, C, |G|, H, W), got {describe(x)}")
        return x.mean(dim=2)

    def extra_repr(self) -> str:
        return repr(self.reduction)


class GroupCNN(nn.Module):
    r"""A small G-CNN backbone: lifting convolution, two group convolutions, pooling.

    ``lift -> ReLU -> gconv -> ReLU -> gconv`` gives feature maps over ``G``; their spatial mean
    is an equivariant ``(B, C_out, |G|)`` (:meth:`group_features`), whose max over ``G`` is
    invariant (:meth:`forward`), and a linear head shared by the group channels turns it into one
    score per group element (:meth:`scores`), which permutes with the input: the output a
    canonicalization network needs (``argmax`` picks an element equivariantly).

    Args:
        in_channels: image channels ``C_in``.
        group: a finite planar group, e.g. ``Cyclic(4)``.
        hidden_channels: channels of the two hidden layers. (default: ``16``)
        out_channels: channels ``C_out`` of the invariant features. (default: ``16``)
        kernel_size: odd filter side of every layer. (default: ``5``)
        mask: see :class:`LiftingConv2d`. (default: ``None``)

    Shapes:
        - input: ``(B, C_in, H, W)``
        - :meth:`forward`: ``(B, C_out)`` invariant
        - :meth:`group_features`: ``(B, C_out, |G|)`` equivariant (group axis permuted)
        - :meth:`scores`: ``(B, |G|)`` equivariant

    Example:
        >>> from geolayers.groups import Dihedral
        >>> GroupCNN(1, Dihedral(4), hidden_channels=4, kernel_size=3).scores(torch.randn(2, 1, 9, 9)).shape
        torch.Size([2, 8])
    """

    def __init__(
        self,
        in_channels: int,
        group: Group,
        *,
        hidden_channels: int = 16,
        out_channels: int = 16,
        kernel_size: int = 5,
        mask: bool | None = None,
    ) -> None:
        super().__init__()
        hidden_channels = check_positive_int("hidden_channels", hidden_channels)
        self.group = group
        self.lift = LiftingConv2d(in_channels, hidden_channels, group, kernel_size, mask=mask)
        self.conv1 = GroupConv2d(hidden_channels, hidden_channels, group, kernel_size, mask=mask)
        self.conv2 = GroupConv2d(hidden_channels, out_channels, group, kernel_size, mask=mask)
        self.head = nn.Linear(out_channels, 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for layer in (self.lift, self.conv1, self.conv2, self.head):
            layer.reset_parameters()

    def group_features(self, x: Tensor) -> Tensor:
        """Spatially averaged features over the group, ``(B, C_in, H, W) -> (B, C_out, |G|)``."""
        y = torch.relu(self.lift(x))
        y = torch.relu(self.conv1(y))
        return self.conv2(y).mean(dim=(-2, -1))

    def forward(self, x: Tensor) -> Tensor:
        """Invariant features ``(B, C_out)``: max over the group of :meth:`group_features`."""
        return self.group_features(x).amax(dim=-1)

    def scores(self, x: Tensor) -> Tensor:
        """One score per group element, ``(B, |G|)``; ``scores(g x)[:, index(g h)] ==
        scores(x)[:, h]``."""
        return self.head(self.group_features(x).transpose(1, 2)).squeeze(-1)
