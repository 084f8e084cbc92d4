r"""Learned canonicalization of images under planar rotations and reflections.

From `"Equivariance with Learned Canonicalization Functions"
<https://arxiv.org/abs/2211.06489>`_ (Kaba et al., ICML 2023): a small equivariant network
predicts a group element :math:`h(x)` per image with :math:`h(g \cdot x) = g\, h(x)` (their
eq. (2)), the image is brought to the canonical pose :math:`h(x)^{-1} \cdot x`, and any backbone
:math:`f` applied to it gives an invariant model :math:`f(h(x)^{-1} \cdot x)`, or an equivariant
one :math:`\rho_{out}(h(x))\, f(h(x)^{-1} \cdot x)` (their eq. (3), see
:class:`~geolayers.canonical.CanonicalizedModel`).

- :class:`DiscreteImageCanonicalizer`: finite groups ``C_n`` / ``D_n``. A
  :class:`~geolayers.equivariant.GroupCNN` scores every element, the argmax is the frame (with a
  straight-through gradient), and the canonical image is the exact pose :math:`h^{-1} \cdot x`.
- :class:`ContinuousImageCanonicalizer`: ``SO(2)`` / ``O(2)``. A ``C_n`` (``D_n``) group CNN
  gives a vector that rotates with the image, normalised into a rotation (and, for ``O(2)``, a
  pseudo-scalar decides the reflection); the image is resampled by bilinear interpolation.
- :func:`transform_images` / :func:`rotate_images`: per-sample rotations/reflections of a batch,
  differentiable with respect to the matrices (so gradients reach a continuous canonicalizer).

Pixel coordinates are those of :mod:`geolayers.equivariant.gconv`: pixel ``(row, col)`` of an
``H x W`` image is the point :math:`(col - \frac{W-1}{2},\ \frac{H-1}{2} - row)` (``x`` right,
``y`` up), so the rotation by +90 degrees is ``torch.rot90(x, 1, dims=(-2, -1))`` and
``diag(1, -1)`` is ``x.flip(-2)``. Images should be square: a quarter turn of an ``H x W``
image with ``H != W`` does not map the grid onto itself, so no fixed-shape canonical image can
be invariant to it.

**Exactness.** Rotations by multiples of 90 degrees and the axis/diagonal reflections permute the
pixels; the group CNNs are exactly equivariant to them and the resampling of such poses is a
pixel permutation (or, for a continuous frame, a bilinear resampling that commutes with pixel
permutations), so invariance to these elements holds to rounding. Measured through a random
backbone: below ``1e-7`` (float32) and ``1e-15`` (float64) for the discrete canonicalizer, below
``1e-11`` in float64 for the continuous one, whose float32 precision depends on how strongly its
features see the orientation (see :class:`ContinuousImageCanonicalizer`). Other angles go
through bilinear interpolation and equivariance is approximate, best on smooth, centred images;
pixels rotated in from outside the image read zero.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geolayers._checks import check_positive_int, describe
from geolayers.canonical.base import Canonicalizer, Frame
from geolayers.canonical.orbit import _ESTIMATORS, straight_through_argmax
from geolayers.equivariant import (
    GroupCNN,
    inverse_index,
    multiplication_table,
    on_pixel_grid,
    planar_group_elements,
    transform_image,
)
from geolayers.groups import O2, SO2, Cyclic, Dihedral, Group

__all__ = [
    "transform_images",
    "rotate_images",
    "DiscreteImageCanonicalizer",
    "ContinuousImageCanonicalizer",
]

_MODES = ("bilinear", "nearest", "bicubic")

#: Matrices further than this from orthogonal (max entry of ``g g^T - I``) are rejected; loose
#: enough for float32 rotations built from a normalised vector.
_ORTHOGONAL_ATOL = 1e-4

#: Entries of g this close to an integer are on the pixel grid (as in gconv), at least; float32
#: matrices get a few ulps of float32 (see transform_images).
_GRID_ATOL = 1e-9

#: The vector of a continuous canonicalizer is treated as zero below this many machine epsilons
#: times the size of its features (rounding noise of a symmetric input; see vector()).
_DEGENERATE_ULPS = 64

_FLIP = torch.diag(torch.tensor([1.0, -1.0], dtype=torch.float64))


# -- acting on batches of images ------------------------------------------------------------------


def _check_images(x: object, name: str = "x") -> Tensor:
    if not isinstance(x, Tensor) or x.dim() != 4:
        raise ValueError(f"{name} must have shape (B, C, H, W), got {describe(x)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {describe(x)}")
    return x


def _check_canonicalizer_input(x: object, in_channels: int, square_because: str | None) -> Tensor:
    """``x: (B, in_channels, H, W)``, and square when ``square_because`` (the reason, appended
    to the message as it is) is given."""
    x = _check_images(x)
    if x.shape[1] != in_channels:
        raise ValueError(f"x must have shape (B, C={in_channels}, H, W), got {describe(x)}")
    if square_because is not None and x.shape[-1] != x.shape[-2]:
        raise ValueError(f"x must hold square images (H == W){square_because}; got {describe(x)}")
    return x


def _resample(g: Tensor, x: Tensor, mode: str) -> Tensor:
    r"""``(g · x)(p) = x(g^T p)`` for every sample by ``F.grid_sample`` (zeros outside).

    ``align_corners=True`` puts the normalised coordinates ``-1`` and ``1`` on the centers of the
    border pixels, so the normalised point ``n`` of an output pixel is ``p = S F n`` with
    ``S = diag((W-1)/2, (H-1)/2)`` and ``F = diag(1, -1)`` (grid_sample's ``y`` points down):
    the grid is ``n_src = F S^{-1} g^T S F n``, which is the pixel convention of
    :func:`~geolayers.equivariant.transform_image`.
    """
    b, _, height, width = x.shape
    # A side of one pixel has S = 0; any finite factor works there since grid_sample maps every
    # normalised coordinate of a size-1 axis onto its only pixel.
    scale = torch.tensor(
        [max((width - 1) / 2, 1.0), max((height - 1) / 2, 1.0)], dtype=x.dtype, device=x.device
    )
    sign = torch.tensor([1.0, -1.0], dtype=x.dtype, device=x.device)
    left = sign / scale  # F S^{-1}, diagonal
    right = scale * sign  # S F, diagonal
    lin = left[:, None] * g.mT.to(x.dtype) * right[None, :]
    theta = torch.cat([lin, lin.new_zeros(b, 2, 1)], dim=2)
    grid = F.affine_grid(theta, [b, 1, height, width], align_corners=True)
    return F.grid_sample(x, grid, mode=mode, padding_mode="zeros", align_corners=True)


def _permute_pixels(g: Tensor, x: Tensor) -> Tensor:
    """The exact action of matrices ``g: (B, 2, 2)`` with entries in {-1, 0, 1} on square
    images: per sample a ``flip(-2)`` (the reflection ``diag(1, -1)``) and a ``rot90``."""
    m = g.detach().to(torch.float64).round()
    det = m[:, 0, 0] * m[:, 1, 1] - m[:, 0, 1] * m[:, 1, 0]
    flip = (det < 0).long()
    # g = R^q diag(1, -1)^flip has first column R^q e_1 in both cases.
    c, s = m[:, 0, 0].long(), m[:, 1, 0].long()
    quarter = torch.where(c == 1, 0, torch.where(s == 1, 1, torch.where(c == -1, 2, 3)))
    code = (quarter + 4 * flip).cpu()
    out = torch.empty_like(x)
    for value in code.unique().tolist():
        mask = (code == value).to(x.device)
        part = x[mask]
        if value >= 4:
            part = part.flip(-2)
        out[mask] = torch.rot90(part, value % 4, dims=(-2, -1))
    return out


def transform_images(g: Tensor, x: Tensor, *, mode: str = "bilinear") -> Tensor:
    r"""Rotate/reflect each image of a batch about its center by its own matrix:
    :math:`(g_b \cdot f_b)(p) = f_b(g_b^{-1} p)`.

    When every ``g_b`` has entries in ``{-1, 0, 1}`` (multiples of 90 degrees, axis/diagonal
    reflections) and the images are square, the result is an exact pixel permutation
    (``rot90`` / ``flip``), as :func:`~geolayers.equivariant.transform_image`; otherwise the
    ``H x W`` grid is resampled with ``F.grid_sample`` (``mode``, zeros outside). The result is
    differentiable with respect to ``x`` and ``g``; on the exact path the gradient with respect
    to ``g`` is that of the interpolated resampling (straight-through), so a canonicalizer that
    lands on a grid element still learns.

    Args:
        g: ``(B, 2, 2)`` orthogonal matrices (``g^{-1} = g^T`` is used).
        x: ``(B, C, H, W)`` floating-point images.
        mode: interpolation of ``F.grid_sample``: ``"bilinear"``, ``"nearest"`` or
            ``"bicubic"``. (default: ``"bilinear"``)

    Returns:
        ``(B, C, H, W)``.

    Example:
        >>> from geolayers.groups import rotation_2d
        >>> transform_images(rotation_2d(torch.pi / 2)[None].float(), torch.arange(4.0).reshape(1, 1, 2, 2))
        tensor([[[[1., 3.],
                  [0., 2.]]]])
    """
    x = _check_images(x)
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    if not isinstance(g, Tensor) or g.shape != (x.shape[0], 2, 2):
        raise ValueError(f"g must have shape (B={x.shape[0]}, 2, 2) to match x, got {describe(g)}")
    if not g.is_floating_point():
        raise TypeError(f"g must be a floating-point tensor, got {describe(g)}")
    if x.shape[0] == 0:
        return x.clone()
    gd = g.detach().to(torch.float64)
    eye = torch.eye(2, dtype=torch.float64, device=g.device)
    if not bool(((gd @ gd.mT - eye).abs() <= _ORTHOGONAL_ATOL).all()):
        raise ValueError("g must be orthogonal matrices (rotations or reflections)")
    # A float32 matrix cannot hold cos(pi/2) closer to 0 than ~1e-7 (and float32 pi is not pi):
    # entries within a few ulps of the dtype of g count as on the grid.
    atol = max(_GRID_ATOL, 8 * torch.finfo(g.dtype).eps)
    on_grid = bool(((gd - gd.round()).abs() <= atol).all())
    if x.shape[-1] == x.shape[-2] and on_grid:
        exact = _permute_pixels(g, x)
        if g.requires_grad and torch.is_grad_enabled():
            # Value of the exact permutation, gradient of the interpolation with respect to g.
            smooth = _resample(g, x.detach(), mode)
            exact = exact + (smooth - smooth.detach())
        return exact
    return _resample(g, x, mode)


def _rotation(angles: Tensor) -> Tensor:
    """Counter-clockwise rotations ``(B,) -> (B, 2, 2)`` in the dtype of ``angles``."""
    c, s = torch.cos(angles), torch.sin(angles)
    return torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)


def rotate_images(x: Tensor, angles: Tensor, *, mode: str = "bilinear") -> Tensor:
    r"""Rotate each image counter-clockwise about its center by its angle (radians):
    :func:`transform_images` with the rotation matrices of ``angles``.

    Args:
        x: ``(B, C, H, W)`` floating-point images.
        angles: ``(B,)`` angles in radians (a float applies to the whole batch).
        mode: see :func:`transform_images`. (default: ``"bilinear"``)

    Returns:
        ``(B, C, H, W)``; exact for multiples of 90 degrees on square images.

    Example:
        >>> rotate_images(torch.arange(4.0).reshape(1, 1, 2, 2), torch.tensor([torch.pi]))
        tensor([[[[3., 2.],
                  [1., 0.]]]])
    """
    x = _check_images(x)
    if isinstance(angles, (int, float)) and not isinstance(angles, bool):
        angles = torch.full((x.shape[0],), float(angles), dtype=x.dtype, device=x.device)
    if not isinstance(angles, Tensor) or angles.shape != (x.shape[0],):
        raise ValueError(
            f"angles must have shape (B={x.shape[0]},) to match x, got {describe(angles)}"
        )
    return transform_images(_rotation(angles.to(x.dtype)), x, mode=mode)


# -- finite groups: score every element -----------------------------------------------------------


def _group_scores(network: nn.Module, x: Tensor, order: int) -> Tensor:
    """``(B, |G|)`` equivariant scores: ``GroupCNN.scores`` or the output of any other module."""
    scores = network.scores(x) if isinstance(network, GroupCNN) else network(x)
    if not isinstance(scores, Tensor) or scores.shape != (x.shape[0], order):
        raise ValueError(
            f"network must return scores of shape (B, |G|) = ({x.shape[0]}, {order}), got "
            f"{describe(scores)}"
        )
    return scores


def _check_network(network: object, group: Group) -> None:
    if not isinstance(network, nn.Module):
        raise TypeError(f"network must be an nn.Module, got {describe(network)}")
    if isinstance(network, GroupCNN) and network.group != group:
        raise ValueError(
            f"network must be a GroupCNN over {group!r}, got one over {network.group!r}"
        )


class DiscreteImageCanonicalizer(Canonicalizer):
    r"""Canonicalize images to a finite rotation/reflection group (``C_n``, ``D_n``) by scoring
    the group elements with an equivariant network (Kaba et al. 2023).

    The network (a :class:`~geolayers.equivariant.GroupCNN` by default) returns one score per
    element with ``scores(g x)[:, index(g h)] == scores(x)[:, h]``: the scores permute like the
    regular representation, so their argmax :math:`h(x)` satisfies :math:`h(g x) = g\, h(x)`
    (Kaba et al., eq. (2)) and the pose :math:`h(x)^{-1} \cdot x` is invariant. The argmax is made
    differentiable with :func:`~geolayers.canonical.straight_through_argmax`: the canonical image
    is :math:`\sum_h w_h\, (h^{-1} \cdot x)` whose value is exactly the chosen pose (the weights
    are an exact one-hot) and whose gradient is that of the softmax mixture, so the task loss
    trains the network.

    The poses come from :func:`~geolayers.equivariant.transform_image`: exact pixel permutations
    for multiples of 90 degrees and the axis/diagonal reflections, bilinear interpolation for the
    other elements (the 45-degree rotations of ``C_8``). Invariance is therefore exact (to
    rounding) for ``C_4``, ``D_4``, their subgroups and the 90-degree subgroup of ``C_8``/``D_8``,
    and approximate for the other elements. An input fixed by some elements (a constant image)
    gives tied scores; the first maximal element is chosen, a valid frame whose pose is the same
    image for every tied element on the grid.

    Images must be square when the group holds a quarter turn (its poses would swap ``H`` and
    ``W``).

    A network whose scores no longer depend on the pose (a ReLU network whose units all died
    during training) ties every score on every input: each frame is then the identity and the
    model is not invariant any more. While training, such a batch raises a ``RuntimeWarning``;
    a scorer with a non-saturating activation avoids it (``examples/rotated_digits.py`` passes
    one through ``network``).

    Args:
        group: a finite planar group, e.g. ``Cyclic(4)``, ``Dihedral(4)``, ``Cyclic(8)``.
        in_channels: image channels ``C``.
        hidden_channels: hidden channels of the default ``GroupCNN``. (default: ``8``)
        out_channels: feature channels of the default ``GroupCNN`` before its score head.
            (default: ``8``)
        kernel_size: odd filter size of the default ``GroupCNN``. (default: ``5``)
        estimator: ``"straight_through"`` or ``"gumbel"``, see
            :func:`~geolayers.canonical.straight_through_argmax`. (default: ``"straight_through"``)
        temperature: softmax temperature of the estimator. (default: ``1.0``)
        network: replaces the default network: a ``GroupCNN`` over ``group`` (its ``scores`` are
            used) or any ``nn.Module`` mapping ``(B, C, H, W)`` to equivariant ``(B, |G|)``
            scores in ``group.elements()`` order. (default: ``None``)

    Shapes:
        - input: ``(B, C, H, W)``
        - output: ``(x_canonical (B, C, H, W), frame)`` with ``frame.matrix (B, 2, 2)`` (dtype of
          ``x``), ``frame.index (B,)`` and ``frame.scores (B, |G|)``.

    Example:
        >>> from geolayers.groups import Cyclic
        >>> canon = DiscreteImageCanonicalizer(Cyclic(4), 1, hidden_channels=2, kernel_size=3)
        >>> x = torch.randn(2, 1, 9, 9)
        >>> torch.equal(canon(torch.rot90(x, 1, (-2, -1)))[0], canon(x)[0])
        True
    """

    def __init__(
        self,
        group: Group,
        in_channels: int,
        *,
        hidden_channels: int = 8,
        out_channels: int = 8,
        kernel_size: int = 5,
        estimator: str = "straight_through",
        temperature: float = 1.0,
        network: nn.Module | None = None,
    ) -> None:
        super().__init__()
        elements = planar_group_elements(group)
        self.in_channels = check_positive_int("in_channels", in_channels)
        if estimator not in _ESTIMATORS:
            raise ValueError(f"estimator must be one of {_ESTIMATORS}, got {estimator!r}")
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
            raise TypeError(f"temperature must be a float, got {describe(temperature)}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if network is None:
            network = GroupCNN(
                in_channels,
                group,
                hidden_channels=hidden_channels,
                out_channels=out_channels,
                kernel_size=kernel_size,
            )
        _check_network(network, group)
        self.group = group
        self.network = network
        self.estimator = estimator
        self.temperature = float(temperature)
        # Plain float64 CPU tensors rather than buffers: ``module.float()`` would round the
        # 45-degree matrices, and transform_image works on float64 CPU matrices anyway.
        self._elements = elements.to(torch.float64)
        self._inverses = self._elements[inverse_index(multiplication_table(group))]
        # A quarter turn (an on-grid element with a zero diagonal) swaps H and W.
        grid = on_pixel_grid(self._elements)
        self._swaps_axes = bool((grid & (self._elements[:, 0, 0].abs() < 0.5)).any())

    def _check_input(self, x: object) -> Tensor:
        why = f" for {self.group!r}, whose quarter turns swap H and W"
        return _check_canonicalizer_input(x, self.in_channels, why if self._swaps_axes else None)

    def scores(self, x: Tensor) -> Tensor:
        """The network's equivariant element scores ``(B, |G|)``."""
        x = self._check_input(x)
        return _group_scores(self.network, x, self._elements.shape[0])

    def _pose(self, h: int, x: Tensor) -> Tensor:
        """:math:`h^{-1} \\cdot x` for element index ``h``."""
        return transform_image(self._inverses[h], x)

    def canonicalize(self, x: Tensor) -> tuple[Tensor, Frame]:
        scores = self.scores(x)
        if self.training and x.shape[0] > 1 and bool((scores == scores[:, :1]).all()):
            warnings.warn(
                "every score of every image in this batch is tied: the canonicalizer's network "
                "no longer depends on the pose (dead units?), so every frame is the identity and "
                "the model is not invariant; use a network with a non-saturating activation",
                RuntimeWarning,
                stacklevel=2,
            )
        weights, index = straight_through_argmax(
            scores, estimator=self.estimator, temperature=self.temperature, training=self.training
        )
        n = self._elements.shape[0]
        if weights.requires_grad:
            # sum_h w_h h^{-1} x: the chosen pose in value (the other weights are exactly 0), the
            # softmax mixture in gradient.
            poses = torch.stack([self._pose(h, x) for h in range(n)])
            w = weights.T.to(x.dtype)[:, :, None, None, None]
            x_canonical = (w * poses).sum(dim=0)
        else:
            # No gradient to the scores: only the chosen poses are needed.
            x_canonical = torch.empty_like(x)
            for h in index.unique().tolist():
                mask = index == h
                x_canonical[mask] = self._pose(h, x[mask])
        matrix = self._elements.to(device=x.device)[index].to(x.dtype)
        return x_canonical, Frame(matrix=matrix, index=index, scores=scores)

    def extra_repr(self) -> str:
        return f"group={self.group!r}, estimator={self.estimator!r}"


# -- continuous groups: an equivariant vector -----------------------------------------------------


class ContinuousImageCanonicalizer(Canonicalizer):
    r"""Canonicalize images to ``SO(2)`` or ``O(2)`` with an equivariant vector (Kaba et al. 2023).

    As in the image experiments of Kaba et al., ``SO(2)`` is approximated by ``C_n``
    (``n = approx_order``): a :class:`~geolayers.equivariant.GroupCNN` over ``C_n`` (``D_n`` for
    ``O(2)``) gives features :math:`f_h` that permute with the input,
    :math:`f_h(g x) = f_{g^{-1} h}(x)`, so the vector

    .. math::

        v(x) = \sum_{h} f_h(x)\; h\, e_1

    rotates with it, :math:`v(g x) = g\, v(x)` for every ``g`` of the group CNN. Its direction
    :math:`u = v / \|v\|` gives the rotation :math:`R = [u,\ J u]` (``J`` the quarter turn), which
    is equivariant, :math:`R(g x) = g R(x)`, and the canonical image is
    ``transform_images(R^{-1}, x)``. For ``O(2)`` the reflection is decided by the pseudo-scalar
    :math:`s(x) = \sum_{k} f_{R^k}(x) - \sum_{k} f_{R^k F}(x)` (rotations minus reflections of
    ``D_n``), which is rotation-invariant and changes sign under reflections: the frame is
    :math:`[u,\ \sigma J u]` with :math:`\sigma = \mathrm{sign}(s)` (``+1`` on ties), i.e.
    :math:`R_u` or :math:`R_u\,\mathrm{diag}(1, -1)`, equivariant under ``D_n`` since
    :math:`g J = \det(g)\, J g`. The reflection choice is trained through a straight-through
    argmax over :math:`(s, -s)` (the two candidate poses are mixed in gradient only); the
    rotation gets the gradient of the bilinear resampling with respect to the matrix.

    **Degenerate inputs.** When :math:`\|v\|` is at rounding level,
    :math:`\|v\| \le 64\, \epsilon \sum_h |f_h|` with :math:`\epsilon` the machine epsilon
    of the dtype (an image symmetric under a rotation of the group CNN, e.g. a constant or
    all-zero image, has :math:`v = 0` up to rounding), the direction is meaningless and the frame
    falls back to the identity direction :math:`e_1`. The frame is always a valid element
    (orthogonal, determinant :math:`\pm 1`), gradients stay finite. As for any continuous
    canonicalization, frames of nearly symmetric images are ill-conditioned.

    **Tolerances.** Equivariance is exact (to rounding) for the 90-degree rotations (and
    axis/diagonal reflections for ``O(2)``) when ``approx_order`` is a multiple of 4, since the
    group CNN is exact for them and bilinear resampling commutes with pixel permutations:
    invariance of a :class:`~geolayers.canonical.CanonicalizedModel` to ``< 1e-5`` in float32 and
    ``< 1e-9`` in float64. In float32 the frame angle carries the rounding of the features,
    about :math:`\epsilon \sum_h |f_h| / \|v\|`: a randomly initialised ``GroupCNN`` has an
    orientation signal :math:`\|v\|` of only ``1e-3`` to ``1e-5`` of :math:`\sum_h |f_h|` (its
    spatially averaged features are nearly isotropic), which gave invariance errors up to
    ``4e-5`` through a random backbone, ``< 1e-5`` with its biases set to zero. For other angles
    equivariance is approximate: with a well-conditioned ``C_8`` scorer on smooth, centred
    17 x 17 images the frame follows the rotation to within 1 degree (tests: 3), while the
    randomly initialised default ``GroupCNN``, whose orientation signal is tiny next to the
    interpolation error of its 45-degree filters, can be off by tens of degrees until trained.

    Args:
        group: ``SO2()`` or ``O2()``.
        in_channels: image channels ``C``.
        hidden_channels: channels of the default group CNN (hidden and output). (default: ``8``)
        kernel_size: odd filter size of the default group CNN. (default: ``5``)
        approx_order: ``n`` of the ``C_n`` (``D_n``) group CNN, ``>= 3``; a multiple of 4 keeps
            90-degree rotations exact. (default: ``8``)
        network: replaces the default network: a ``GroupCNN`` over ``Cyclic(approx_order)``
            (``Dihedral(approx_order)`` for ``O2()``) or any ``nn.Module`` mapping
            ``(B, C, H, W)`` to equivariant ``(B, |G|)`` features in that group's element order.
            (default: ``None``)

    Shapes:
        - input: ``(B, C, H, W)`` square images.
        - output: ``(x_canonical (B, C, H, W), frame)`` with ``frame.matrix (B, 2, 2)`` (dtype of
          ``x``) and no scores: the prior is :math:`\|R - I\|_F^2`.

    Example:
        >>> from geolayers.groups import SO2
        >>> canon = ContinuousImageCanonicalizer(SO2(), 1, hidden_channels=2, kernel_size=3)
        >>> canon(torch.randn(2, 1, 9, 9))[1].matrix.shape
        torch.Size([2, 2, 2])
    """

    def __init__(
        self,
        group: Group,
        in_channels: int,
        *,
        hidden_channels: int = 8,
        kernel_size: int = 5,
        approx_order: int = 8,
        network: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(group, Group):
            raise TypeError(
                f"group must be a geolayers Group (SO2() or O2()), got {describe(group)}"
            )
        if group == SO2():
            reflections = False
        elif group == O2():
            reflections = True
        else:
            raise ValueError(
                f"group must be SO2() or O2() (use DiscreteImageCanonicalizer for finite groups), "
                f"got {group!r}"
            )
        self.in_channels = check_positive_int("in_channels", in_channels)
        self.approx_order = check_positive_int("approx_order", approx_order)
        if approx_order < 3:
            raise ValueError(
                f"approx_order must be >= 3 (the vectors h e_1 of C_n must span the plane), got "
                f"{approx_order}"
            )
        approx_group = Dihedral(approx_order) if reflections else Cyclic(approx_order)
        if network is None:
            network = GroupCNN(
                in_channels,
                approx_group,
                hidden_channels=hidden_channels,
                out_channels=hidden_channels,
                kernel_size=kernel_size,
            )
        _check_network(network, approx_group)
        self.group = group
        self.approx_group = approx_group
        self.reflections = reflections
        self.network = network
        # h e_1 for every element h of C_n / D_n (float64 CPU, not a buffer: see
        # DiscreteImageCanonicalizer), and the sign of the coset for the O(2) pseudo-scalar.
        elements = approx_group.elements().to(torch.float64)
        self._directions = elements[:, :, 0]
        self._coset_sign = torch.linalg.det(elements).round()

    def _check_input(self, x: object) -> Tensor:
        why = ": a rotated H x W image with H != W has no canonical pose of the same shape"
        return _check_canonicalizer_input(x, self.in_channels, why)

    def features(self, x: Tensor) -> Tensor:
        """The network's equivariant features over ``C_n`` (``D_n``), ``(B, |G|)``."""
        x = self._check_input(x)
        return _group_scores(self.network, x, self._directions.shape[0])

    def vector(self, x: Tensor) -> tuple[Tensor, Tensor]:
        r"""``(v, s)``: the equivariant vector :math:`v = \sum_h f_h\, h e_1`, ``(B, 2)``, and the
        reflection pseudo-scalar ``s`` ``(B,)`` (zeros for ``SO(2)``)."""
        f = self.features(x)
        # The mean over the group contributes nothing (sum_h h e_1 = 0 and the cosets of D_n have
        # the same size) but is often most of f: removing it first keeps its rounding out of v.
        centered = f - f.mean(dim=1, keepdim=True)
        v = centered @ self._directions.to(device=f.device, dtype=f.dtype)
        s = centered @ self._coset_sign.to(device=f.device, dtype=f.dtype)
        # Below this norm v is rounding noise: the input is symmetric under a rotation of the
        # group CNN (v = 0 exactly in exact arithmetic), measured at a few eps * sum |f|.
        noise = _DEGENERATE_ULPS * torch.finfo(f.dtype).eps * f.abs().sum(-1)
        degenerate = v.square().sum(-1) <= noise.square()
        return torch.where(degenerate[:, None], torch.zeros_like(v), v), s

    def canonicalize(self, x: Tensor) -> tuple[Tensor, Frame]:
        v, s = self.vector(x)
        sq = v.square().sum(-1, keepdim=True)
        zero = sq <= 0
        # Divide by 1 where v = 0 so that neither value nor gradient sees 0/0.
        u = v / torch.sqrt(torch.where(zero, torch.ones_like(sq), sq))
        u = torch.where(zero, torch.tensor([1.0, 0.0], dtype=u.dtype, device=u.device), u)
        rotation = torch.stack(
            [torch.stack([u[:, 0], -u[:, 1]], -1), torch.stack([u[:, 1], u[:, 0]], -1)], -2
        )
        if not self.reflections:
            return transform_images(rotation.mT, x), Frame(matrix=rotation)
        flip = _FLIP.to(device=x.device, dtype=x.dtype)
        candidates = torch.stack([rotation, rotation @ flip])  # (2, B, 2, 2)
        weights, index = straight_through_argmax(torch.stack([s, -s], -1), training=self.training)
        matrix = candidates[index, torch.arange(x.shape[0], device=x.device)]
        if weights.requires_grad:
            poses = torch.stack([transform_images(c.mT, x) for c in candidates])
            w = weights.T.to(x.dtype)[:, :, None, None, None]
            x_canonical = (w * poses).sum(dim=0)
        else:
            x_canonical = transform_images(matrix.mT, x)
        return x_canonical, Frame(matrix=matrix)

    def extra_repr(self) -> str:
        return f"group={self.group!r}, approx_group={self.approx_group!r}"
